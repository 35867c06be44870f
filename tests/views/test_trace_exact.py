"""``tcplens trace`` in exact mode, as a subprocess, against real loopback connections (root).

Each run is narrowed with ``--port`` to a listener of its own.  The lines are
JSON so they can be grouped per connection and compared with the kernel's
sequence for a close the client starts.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections import defaultdict
from typing import Any

import pytest

from tcplens.sources import tracepoints as tp
from tests.unprivileged import cli_as_nobody
from tests.views.test_trace import Follow, listener, port_of

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="exact mode needs root")

CLIENT = [
    ("CLOSED", "SYN_SENT"), ("SYN_SENT", "ESTABLISHED"), ("ESTABLISHED", "FIN_WAIT1"),
    ("FIN_WAIT1", "FIN_WAIT2"), ("FIN_WAIT2", "TIME_WAIT"),
]  # fmt: skip
SERVER = [
    ("LISTEN", "SYN_RECV"), ("SYN_RECV", "ESTABLISHED"), ("ESTABLISHED", "CLOSE_WAIT"),
    ("CLOSE_WAIT", "LAST_ACK"), ("LAST_ACK", "CLOSED"),
]  # fmt: skip


def _rows(run: Follow, kind: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in run.lines if f'"type":"{kind}"' in line]


def test_500_connections_each_show_every_kernel_transition_and_none_is_lost() -> None:
    n = 500
    with listener() as lsock:
        lsock.listen(1024)
        port = port_of(lsock)
        run = Follow(
            "trace", "--port", str(port), "--json", "--interval", "0.05", "--mode", "exact"
        )
        try:
            run.wait_for(lambda line: '"type":"mode"' in line)
            for _ in range(n):
                client = socket.create_connection(("127.0.0.1", port))
                server, _ = lsock.accept()
                client.close()  # the client closes first ...
                assert server.recv(1) == b""
                server.close()  # ... and the server after it has read the FIN
            run.wait_for(lambda line: '"new":"TIME_WAIT"' in line, n=n)
            run.wait_for(lambda line: '"old":"LAST_ACK"' in line, n=n)
            assert run.finish(interrupt=True) == 0
        finally:
            run.kill()
    assert any(line.startswith("mode: exact") for line in run.stderr), run.stderr
    by_conn: dict[int, list[tuple[str, str]]] = defaultdict(list)
    local_port: dict[int, int] = {}
    for row in _rows(run, "change"):
        assert row["mode"] == "exact" and row["unseen"] == []
        if row["local"]["port"] == port and row["remote"]["port"] in (0, None):
            continue  # the listener itself
        by_conn[row["conn"]].append((row["old"], row["new"]))
        local_port[row["conn"]] = row["local"]["port"]
    clients = [c for c, moves in by_conn.items() if local_port[c] != port]
    servers = [c for c, moves in by_conn.items() if local_port[c] == port]
    assert len(clients) == n and len(servers) == n
    assert all(by_conn[c] == CLIENT for c in clients), [by_conn[c] for c in clients[:3]]
    assert all(by_conn[c] == SERVER for c in servers), [by_conn[c] for c in servers[:3]]
    (summary,) = _rows(run, "summary")
    assert summary["mode"] == "exact" and summary["lost"] == 0
    assert _rows(run, "lost") == []


def test_text_lines_show_kernel_times_causes_and_processes() -> None:
    with listener() as lsock:
        port = port_of(lsock)
        run = Follow("trace", "--port", str(port), "--interval", "0.05", "--mode", "exact")
        try:
            run.started("mode: exact")
            client = socket.create_connection(("127.0.0.1", port))
            server, _ = lsock.accept()
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
            client.close()  # RST
            run.wait_for(lambda line: "ESTABLISHED -> CLOSED" in line, n=2)
            server.close()
            assert run.finish(interrupt=True) == 0
        finally:
            run.kill()
    text = "\n".join(run.lines)
    assert "SYN_SENT -> ESTABLISHED  after " in text and "µs" in text
    assert "(RST received)" in text
    assert f"[{os.getpid()}/" in text  # connect() ran in this process
    assert "[unknown]" in text  # the listener's child before anyone accepted it
    assert "Time in state, measured by the kernel (mode: exact" in text


def _reap(proc: subprocess.Popen[str] | subprocess.Popen[bytes] | None) -> None:
    """Leave no tracer behind when an assertion stopped the test half-way."""
    if proc is not None and proc.poll() is None:
        proc.kill()
        proc.wait()


def _instances(root: str) -> set[str]:
    return {n for n in os.listdir(f"{root}/instances") if n.startswith(tp.INSTANCE_PREFIX)}


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 0), (signal.SIGTERM, 143)])
def test_the_instance_goes_on_ctrl_c_and_sigterm(sig: signal.Signals, code: int) -> None:
    root, mounted = tp.find_tracefs()
    proc: subprocess.Popen[str] | None = None
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tcplens", "trace", "--port", "1", "--mode", "exact"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        name = f"{tp.INSTANCE_PREFIX}{proc.pid}"
        deadline = time.monotonic() + 20
        while name not in _instances(root):
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.05)
        time.sleep(0.3)  # past the set-up, into the read loop
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=20)
        assert proc.returncode == code, err
        assert "Traceback" not in err
        assert "mode: exact" in out
        assert name not in _instances(root)
    finally:
        _reap(proc)
        if mounted:
            tp._umount(root)
            with contextlib.suppress(OSError):
                os.rmdir(root)


def test_a_killed_runs_instance_is_swept_by_the_next_run() -> None:
    root, mounted = tp.find_tracefs()
    proc: subprocess.Popen[bytes] | None = None
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tcplens", "trace", "--port", "1", "--mode", "exact"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        name = f"{tp.INSTANCE_PREFIX}{proc.pid}"
        deadline = time.monotonic() + 20
        while name not in _instances(root):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        proc.kill()
        proc.wait()
        assert name in _instances(root)  # SIGKILL: no cleanup possible
        done = subprocess.run(
            [sys.executable, "-m", "tcplens", "trace", "--port", "1", "--count", "1"],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert name in done.stderr and "removed" in done.stderr
        assert name not in _instances(root)
    finally:
        _reap(proc)
        if mounted:
            tp._umount(root)
            with contextlib.suppress(OSError):
                os.rmdir(root)


def test_unprivileged_runs_are_sampled_and_say_why_in_one_line() -> None:
    done = cli_as_nobody(
        "trace", "--port", "1", "--count", "1", "--interval", "0.05", "--json",
        preload=["tcplens.views.commands.trace", "tcplens.sources.netlink",
                 "tcplens.sources.procfs", "tcplens.sources.select"],
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    modes = [line for line in done.stderr.splitlines() if line.startswith("mode:")]
    assert modes == [
        "mode: sampled (not root: tracefs and its instances need root (CAP_SYS_ADMIN))"
    ]
    first = json.loads(done.stdout.splitlines()[0])
    assert first["type"] == "mode" and first["mode"] == "sampled" and first["why"]


def test_a_long_lived_connection_gets_its_owner_from_sock_diag_and_proc() -> None:
    with listener() as lsock:
        port = port_of(lsock)
        run = Follow("trace", "--port", str(port), "--interval", "0.05", "--mode", "exact")
        try:
            run.started("mode: exact")
            client = socket.create_connection(("127.0.0.1", port))
            server, _ = lsock.accept()
            run.wait_for(lambda line: "SYN_RECV -> ESTABLISHED" in line)
            time.sleep(2.5)  # past one owner lookup (every 2 s)
            client.close()  # the server's ESTABLISHED -> CLOSE_WAIT fires in softirq
            (line,) = run.wait_for(lambda line: "ESTABLISHED -> CLOSE_WAIT" in line)
            server.close()
            assert run.finish(interrupt=True) == 0
        finally:
            run.kill()
    assert line.endswith(f"[{os.getpid()}/{_comm()}]"), line


def _comm() -> str:
    with open(f"/proc/{os.getpid()}/comm") as fh:
        return fh.read().strip()


@pytest.mark.parametrize("host", ["::1", "::ffff:127.0.0.1"])
def test_ipv6_and_v4_mapped_connections_reach_time_wait_too(host: str) -> None:
    lsock = socket.socket(socket.AF_INET6)
    lsock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    lsock.bind(("::", 0))
    lsock.listen()
    port = lsock.getsockname()[1]
    run = Follow("trace", "--port", str(port), "--json", "--interval", "0.05", "--mode", "exact")
    try:
        run.wait_for(lambda line: '"type":"mode"' in line)
        client = socket.create_connection((host, port))
        server, _ = lsock.accept()
        client.close()
        server.recv(1)
        server.close()
        (line,) = run.wait_for(lambda line: '"new":"TIME_WAIT"' in line)
        assert run.finish(interrupt=True) == 0
    finally:
        run.kill()
        lsock.close()
    row = json.loads(line)
    assert (row["family"], row["old"], row["remote"]["ip"]) == (6, "FIN_WAIT2", host)


def test_exact_mode_asked_for_but_impossible_is_one_line_and_exit_2() -> None:
    done = cli_as_nobody(
        "trace", "--mode", "exact", "--count", "1",
        preload=["tcplens.views.commands.trace", "tcplens.sources.netlink"],
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "tcplens: error: exact mode unavailable: not root: tracefs and its instances need root "
        "(CAP_SYS_ADMIN)"
    ]


def test_closes_are_confirmed_by_exact_lookups_and_never_wait_for_a_table_dump() -> None:
    from tcplens.analysis import exact_reads
    from tcplens.analysis.transitions import ExactTracer

    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen()
    port = lsock.getsockname()[1]

    def connection() -> int:
        client = socket.create_connection(("127.0.0.1", port))
        server, _ = lsock.accept()
        mine: int = client.getsockname()[1]
        client.close()
        server.recv(1)
        server.close()
        return mine

    tracer = ExactTracer()
    polls = exact_reads.Polls((port,))
    with tp.TraceSession(ports=[port]) as session:
        mine = {connection() for _ in range(6)}
        time.sleep(0.05)
        found = exact_reads.read_batch(session, tracer, polls)  # nothing followed: no dump
        assert (polls.dumps, polls.lookups, tracer.in_time_wait) == (0, 1, 6)
        last = connection()
        time.sleep(exact_reads.CONFIRM_EVERY + 0.05)
        found += exact_reads.read_batch(session, tracer, polls)
    lsock.close()
    tw = {t.sock.local.port for t in found if t.new.name == "TIME_WAIT"}
    assert tw == mine | {last} and tracer.in_time_wait == 7


def test_the_whole_table_is_read_only_while_cheap_and_spaced_by_what_it_cost(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tcplens.analysis import exact_reads
    from tcplens.analysis.transitions import ExactTracer

    assert exact_reads.dump_spacing(0.001) == exact_reads.TIME_WAIT_POLL
    assert exact_reads.dump_spacing(0.1) == pytest.approx(0.1 / exact_reads.DUMP_SHARE)
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen()
    port = lsock.getsockname()[1]
    tracer = ExactTracer()
    polls = exact_reads.Polls((port,))
    many = int(exact_reads.DUMP_STALL / exact_reads.DUMP_ENTRY_COST) + 1
    with tp.TraceSession(ports=[port]) as session:
        client = socket.create_connection(("127.0.0.1", port))
        server, _ = lsock.accept()
        client.close()
        server.recv(1)
        server.close()
        lsock.close()
        time.sleep(0.05)
        exact_reads.read_batch(session, tracer, polls)
        assert (polls.dumps, tracer.in_time_wait) == (0, 1)
        # too many minisockets in the kernel: reading them all would stall the reads
        monkeypatch.setattr(exact_reads, "time_wait_count", lambda: many)
        exact_reads.read_batch(session, tracer, polls)
        assert polls.dumps == 0
        monkeypatch.setattr(exact_reads, "time_wait_count", lambda: 10)
        polls.next_poll = 0.0
        before = time.monotonic()
        exact_reads.read_batch(session, tracer, polls)
        assert polls.dumps == 1 and tracer.in_time_wait == 1
        assert polls.next_poll >= before + exact_reads.TIME_WAIT_POLL
        exact_reads.read_batch(session, tracer, polls)  # spaced: not again at once
        assert polls.dumps == 1
