"""The Linux timer facts the texts quote, held against the running kernel.

The defaults are read in a fresh network namespace, where every per-namespace
sysctl starts at the kernel's own default whatever the host was tuned to.
The SYN schedule is measured: a connect() to an address that never answers,
in a private namespace, with its SYNs captured on the wire.
"""

from __future__ import annotations

import os
import re
import select
import shutil
import socket
import struct
import subprocess
import time
from pathlib import Path
from typing import Final

import pytest

from tcplens.model.explain import LANGS, explain
from tcplens.model.linux import SYSCTLS, TIME_WAIT_SECONDS, syn_schedule
from tcplens.model.states import State
from tests.netns import run_in_private_netns

ROOT = os.geteuid() == 0 and shutil.which("ip") is not None


def test_syn_schedule_before_linux_6_5_doubles_from_one_second() -> None:
    schedule = syn_schedule(6, None)
    assert schedule.retransmissions == (1, 3, 7, 15, 31, 63)
    assert schedule.give_up == 127


def test_syn_schedule_of_linux_6_5_keeps_one_second_for_the_linear_retries() -> None:
    schedule = syn_schedule(6, 4)
    assert schedule.retransmissions == (1, 2, 3, 4, 5, 7, 11, 19, 35, 67)
    assert schedule.count == 10
    assert schedule.give_up == 131
    assert syn_schedule(6, 0) == syn_schedule(6, None)


def test_syn_schedule_with_few_retries_stops_at_the_time_bound_before_the_linear_ones() -> None:
    schedule = syn_schedule(1, 4)
    assert schedule.retransmissions == (1, 2)
    assert schedule.give_up == 3


def test_syn_schedule_caps_the_interval_at_rto_max() -> None:
    schedule = syn_schedule(10, 0)
    gaps = [
        b - a
        for a, b in zip((0.0, *schedule.retransmissions), schedule.retransmissions, strict=False)
    ]
    assert max(gaps) == 120
    assert schedule.give_up - schedule.retransmissions[-1] == 120


def _sysctl(name: str) -> str | None:
    path = Path("/proc/sys/net") / name.replace(".", "/")
    try:
        return path.read_text().strip()
    except OSError:
        return None


@pytest.mark.root
@pytest.mark.skipif(not ROOT, reason="a fresh network namespace needs root")
def test_every_quoted_default_is_the_running_kernels_default() -> None:
    seen: dict[str, str | None] = {}

    def body() -> None:
        for name in SYSCTLS:
            seen[name] = _sysctl(name)

    run_in_private_netns(body, required=True)
    checked = 0
    for name, fact in SYSCTLS.items():
        text = seen[name]
        if text is None:
            continue  # an older kernel without this sysctl
        default = fact.default
        expected = " ".join(map(str, default)) if isinstance(default, tuple) else str(default)
        assert " ".join(text.split()) == expected, f"{name}: kernel {text!r}, texts say {expected}"
        checked += 1
    assert checked >= len(SYSCTLS) - 1


def test_explain_syn_sent_describes_both_schedules_with_the_computed_times() -> None:
    for lang in ("en", "zh"):
        duration = explain(State.SYN_SENT, lang).duration
        assert "tcp_syn_linear_timeouts" in duration and "6.5" in duration
        for schedule in (syn_schedule(6, 4), syn_schedule(6, None)):
            assert f"{schedule.give_up:g}" in duration
    assert "131 s" in explain(State.SYN_SENT).duration


def test_explain_time_wait_quotes_tcp_timewait_len() -> None:
    assert f"{TIME_WAIT_SECONDS} s" in explain(State.TIME_WAIT).duration


# --------------------------------------------------------------------------- measured


ETH_P_ALL = 0x0003


def _syn_times(retries: int, linear: int, out: list[float]) -> None:
    """In the current (private) namespace: connect() into a void, time each SYN on the wire."""
    for cmd in (
        "ip link add t0 type veth peer name t1",
        "ip link set t1 up",
        "ip addr add 10.77.0.1/24 dev t0",
        "ip link set t0 up",
        # a neighbour that exists nowhere: the SYNs leave t0 and are dropped by t1
        "ip neigh add 10.77.0.2 lladdr 02:00:00:00:00:77 dev t0 nud permanent",
    ):
        subprocess.run(cmd.split(), check=True, timeout=10)
    Path("/proc/sys/net/ipv4/tcp_syn_retries").write_text(str(retries))
    linear_path = Path("/proc/sys/net/ipv4/tcp_syn_linear_timeouts")
    if linear_path.exists():
        linear_path.write_text(str(linear))
    elif linear:
        pytest.skip("kernel before 6.5: no tcp_syn_linear_timeouts")
    cap = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    cap.bind(("t0", 0))
    cap.setblocking(False)
    client = socket.socket()
    client.setblocking(False)
    start = time.monotonic()
    client.connect_ex(("10.77.0.2", 80))
    while True:
        ready, _, _ = select.select([cap, client], [], [], 30)
        now = time.monotonic() - start
        if cap in ready:
            frame = cap.recv(2048)
            # Ethernet + IPv4 (IHL) + TCP flags byte 13: SYN without ACK
            ihl = (frame[14] & 0x0F) * 4
            flags = frame[14 + ihl + 13]
            if struct.unpack("!H", frame[12:14])[0] == 0x0800 and flags & 0x12 == 0x02:
                out.append(now)
        if client in ready or not ready:
            err = client.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            assert err == 110, os.strerror(err)  # ETIMEDOUT
            out.append(-now)  # the give-up time, marked negative
            break
    cap.close()
    client.close()


@pytest.mark.root
@pytest.mark.slow
@pytest.mark.skipif(not ROOT, reason="network namespaces and AF_PACKET need root")
@pytest.mark.parametrize(("retries", "linear"), [(1, 2), (2, 0), (2, 2)])
def test_measured_syn_schedule_matches_the_model(retries: int, linear: int) -> None:
    times: list[float] = []
    run_in_private_netns(lambda: _syn_times(retries, linear, times), required=True)
    give_up = -times.pop()
    first, *rest = times
    measured = [round(t - first, 2) for t in rest]
    expected = syn_schedule(retries, linear)
    assert len(measured) == expected.count, measured
    for got, want in zip(measured, expected.retransmissions, strict=True):
        assert want <= got < want + 0.3, (measured, expected)
    assert expected.give_up <= give_up - first < expected.give_up + 0.6


#: ``net.ipv4.X = N`` in the explanations that is advice, not the default
_ADVISED: Final = {("ipv4", "tcp_tw_reuse"): "1"}


@pytest.mark.root
@pytest.mark.skipif(not ROOT, reason="a fresh network namespace needs root")
def test_every_sysctl_value_explain_states_is_the_running_kernels_default() -> None:
    stated: set[tuple[str, str, str]] = set()
    for state in State:
        for lang in LANGS:
            e = explain(state, lang)
            text = " ".join((e.meaning, e.how_reached, e.duration, e.trouble, *e.advice))
            for m in re.finditer(r"net\.(ipv4|core)\.(\w+) = (\d+)", text):
                stated.add((m[1], m[2], m[3]))
    seen: dict[tuple[str, str], str | None] = {}

    def body() -> None:
        for group, name, _ in stated:
            seen[group, name] = _sysctl(f"{group}.{name}")

    run_in_private_netns(body, required=True)
    assert len(stated) >= 6
    for group, name, value in stated:
        if _ADVISED.get((group, name)) == value or seen[group, name] is None:
            continue
        assert seen[group, name] == value, f"explain says net.{group}.{name} = {value}"


@pytest.mark.root
@pytest.mark.skipif(not ROOT or shutil.which("ss") is None, reason="needs root and ss")
def test_time_wait_lasts_tcp_timewait_len_on_this_kernel() -> None:
    timers: list[str] = []

    def body() -> None:
        server = socket.create_server(("127.0.0.1", 0))
        client = socket.create_connection(server.getsockname())
        conn, _ = server.accept()
        client.close()  # the client closes first: it holds TIME_WAIT
        conn.close()
        time.sleep(0.2)
        out = subprocess.run(
            ["ss", "-tnoH", "state", "time-wait"], capture_output=True, text=True, check=True
        ).stdout
        timers.extend(re.findall(r"timer:\(timewait,([\d.]+)(min|sec|ms)", out))
        server.close()

    run_in_private_netns(body, required=True)
    assert timers, "no TIME_WAIT socket seen"
    value, unit = timers[0]
    seconds = float(value) * {"min": 60, "sec": 1, "ms": 0.001}[unit]
    assert TIME_WAIT_SECONDS - 5 < seconds <= TIME_WAIT_SECONDS
