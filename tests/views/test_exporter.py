"""The Prometheus exporter: collector arithmetic, HTTP serving, TLS/auth, a real Prometheus.

Unit tests inject snapshots; the live tests run the real ``tcplens exporter``
subprocess on a free loopback port, create their own socket population on a
dedicated listening port (so other tests' sockets do not matter) and read it
back through the exporter and through a real Prometheus server.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import enum
import functools
import inspect
import json
import os
import queue
import re
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from tcplens.errors import InputError
from tcplens.exporter import BasicAuth, is_loopback, load_web_config, parse_listen
from tcplens.model import State
from tcplens.sources.kernel import KernelSettings
from tcplens.sources.records import Addr, Snapshot, Socket
from tcplens.views.exporter import (
    METRICS,
    NO_PROCESS,
    OTHER,
    UNKNOWN_PROCESS,
    TcplensCollector,
    make_registry,
)
from tcplens.views.exporter_transitions import TransitionCollector, TransitionCounts
from tests.netns import netns, run_in_private_netns

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
DOCS = ROOT / "docs" / "exporter.md"


# --- helpers -------------------------------------------------------------------------------------


def tcp(
    local_port: int,
    state: State,
    *,
    remote_port: int = 0,
    process: str | None = None,
    recv_q: int = 0,
    send_q: int = 0,
    family: int = 4,
) -> Socket:
    ip = "127.0.0.1" if family == 4 else "::1"
    remote = Addr("0.0.0.0" if family == 4 else "::", 0)
    if state is not State.LISTEN:
        remote = Addr(ip, remote_port or 40000)
    return Socket(
        "tcp",
        family,
        Addr(ip, local_port),
        remote,
        state,
        recv_q=recv_q,
        send_q=send_q,
        process=process,
        pid=1 if process else None,
    )


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def scrape(collector: TcplensCollector) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Render through the real text exposition and parse it back, as Prometheus would."""
    text = generate_latest(make_registry(collector, process_metrics=False)).decode()
    out: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def value(samples: dict[Any, float], metric: str, /, **labels: str) -> float | None:
    return samples.get((metric, frozenset(labels.items())))


def series(samples: dict[Any, float], name: str) -> dict[frozenset[tuple[str, str]], float]:
    return {labels: v for (n, labels), v in samples.items() if n == name}


# --- collector -----------------------------------------------------------------------------------


def test_sockets_counted_by_protocol_family_and_state() -> None:
    socks = [
        tcp(80, State.LISTEN, process="nginx"),
        tcp(80, State.ESTABLISHED, process="nginx"),
        tcp(80, State.ESTABLISHED, process="nginx"),
        tcp(443, State.CLOSE_WAIT, process="nginx", family=6),
        Socket("udp", 4, Addr("0.0.0.0", 53), Addr("0.0.0.0", 0), State.CLOSED),
    ]
    samples = scrape(TcplensCollector(lambda: Snapshot(socks, "test")))
    assert value(samples, "tcplens_sockets", proto="tcp", family="ipv4", state="ESTABLISHED") == 2
    assert value(samples, "tcplens_sockets", proto="tcp", family="ipv4", state="LISTEN") == 1
    assert value(samples, "tcplens_sockets", proto="tcp", family="ipv6", state="CLOSE_WAIT") == 1
    assert value(samples, "tcplens_sockets", proto="udp", family="ipv4", state="CLOSED") == 1
    # every TCP state is present at 0 so alerts compare numbers, not "no data"
    for state in State:
        for family in ("ipv4", "ipv6"):
            key = {"proto": "tcp", "family": family, "state": state.value}
            assert value(samples, "tcplens_sockets", **key) is not None
    assert value(samples, "tcplens_snapshot_success") == 1
    assert value(samples, "tcplens_snapshots_total") == 1


def test_port_metric_counts_server_side_of_listening_ports_only() -> None:
    socks = [
        tcp(8080, State.LISTEN, recv_q=3, send_q=128),
        tcp(8080, State.LISTEN, recv_q=1, send_q=128, family=6),  # [::]:8080 as well
        tcp(8080, State.ESTABLISHED, recv_q=100, send_q=7),
        tcp(8080, State.CLOSE_WAIT, recv_q=5),
        tcp(51000, State.ESTABLISHED, remote_port=8080),  # the client side: ephemeral port
    ]
    samples = scrape(TcplensCollector(lambda: Snapshot(socks, "test")))
    ports = series(samples, "tcplens_listen_port_sockets")
    assert ports == {
        frozenset({("port", "8080"), ("state", "LISTEN")}): 2,
        frozenset({("port", "8080"), ("state", "ESTABLISHED")}): 1,
        frozenset({("port", "8080"), ("state", "CLOSE_WAIT")}): 1,
    }
    assert value(samples, "tcplens_listen_port_accept_queue", port="8080") == 4
    assert value(samples, "tcplens_listen_port_backlog", port="8080") == 256
    assert value(samples, "tcplens_listen_port_queue_bytes", port="8080", queue="receive") == 105
    assert value(samples, "tcplens_listen_port_queue_bytes", port="8080", queue="send") == 7
    # host-wide queues leave listeners out: their Recv-Q/Send-Q are connections, not bytes
    assert value(samples, "tcplens_queue_bytes", proto="tcp", queue="receive") == 105
    assert value(samples, "tcplens_queue_bytes", proto="tcp", queue="send") == 7


def test_ports_beyond_top_k_are_summed_as_other() -> None:
    socks: list[Socket] = []
    for port, conns in ((1001, 5), (1002, 4), (1003, 3), (1004, 2), (1005, 1)):
        socks.append(tcp(port, State.LISTEN))
        socks += [tcp(port, State.ESTABLISHED) for _ in range(conns)]
    samples = scrape(TcplensCollector(lambda: Snapshot(socks, "test"), top_ports=2))
    established = {
        dict(labels)["port"]: v
        for labels, v in series(samples, "tcplens_listen_port_sockets").items()
        if ("state", "ESTABLISHED") in labels
    }
    assert established == {"1001": 5, "1002": 4, OTHER: 3 + 2 + 1}
    assert value(samples, "tcplens_listen_port_sockets", port=OTHER, state="LISTEN") == 3


def test_processes_beyond_top_k_are_other_and_unidentified_are_unknown() -> None:
    socks = [tcp(9000 + i, State.ESTABLISHED, process="big") for i in range(4)]
    socks += [tcp(9100 + i, State.ESTABLISHED, process="medium") for i in range(2)]
    socks += [tcp(9200, State.ESTABLISHED, process="small")]
    socks += [tcp(9300 + i, State.CLOSE_WAIT) for i in range(3)]  # no process: not root
    samples = scrape(TcplensCollector(lambda: Snapshot(socks, "test"), top_processes=1))
    procs = {
        (dict(k)["process"], dict(k)["state"]): v
        for k, v in series(samples, "tcplens_process_sockets").items()
    }
    assert procs == {
        ("big", "ESTABLISHED"): 4,
        (OTHER, "ESTABLISHED"): 3,
        (UNKNOWN_PROCESS, "CLOSE_WAIT"): 3,
    }
    assert value(samples, "tcplens_unattributed_sockets", proto="tcp") == 3


def test_process_sockets_keep_unconnected_udp_apart_from_closed_tcp() -> None:
    bound = Socket(
        "udp", 4, Addr("0.0.0.0", 53), Addr("0.0.0.0", 0), State.CLOSED, process="dnsd", pid=7
    )
    closed = tcp(5353, State.CLOSED, remote_port=41000, process="dnsd")
    samples = scrape(TcplensCollector(lambda: Snapshot([bound, closed], "test")))
    procs = series(samples, "tcplens_process_sockets")
    assert procs == {
        frozenset({("process", "dnsd"), ("proto", "udp"), ("state", "CLOSED")}): 1,
        frozenset({("process", "dnsd"), ("proto", "tcp"), ("state", "CLOSED")}): 1,
    }


def test_backlog_a_source_cannot_see_is_left_out_not_exported_as_0() -> None:
    socks = [
        tcp(8080, State.LISTEN, recv_q=1, send_q=128),
        tcp(9090, State.LISTEN, recv_q=1),  # /proc/net: backlog unknown
        tcp(9090, State.LISTEN, recv_q=0, send_q=64, family=6),
    ]
    socks[1].send_q = None
    samples = scrape(TcplensCollector(lambda: Snapshot(socks, "test")))
    assert value(samples, "tcplens_listen_port_backlog", port="8080") == 128
    # half a sum would overstate the fill ratio: no sample for the port at all
    assert value(samples, "tcplens_listen_port_backlog", port="9090") is None
    assert value(samples, "tcplens_listen_port_accept_queue", port="9090") == 1


def test_sockets_nobody_owns_are_none_not_unknown() -> None:
    def sock(state: State, inode: int | None) -> Socket:
        made = tcp(8000, state, remote_port=50000)
        made.inode = inode
        return made

    rows = [
        sock(State.TIME_WAIT, None),  # never has an owner
        sock(State.FIN_WAIT2, None),  # orphaned by close(): live sources report inode 0
        sock(State.ESTABLISHED, 4242),  # has a descriptor somewhere we could not read
    ]
    live = scrape(TcplensCollector(lambda: Snapshot(rows, "netlink")))
    assert (
        value(live, "tcplens_process_sockets", process=NO_PROCESS, proto="tcp", state="TIME_WAIT")
        == 1
    )
    assert (
        value(live, "tcplens_process_sockets", process=NO_PROCESS, proto="tcp", state="FIN_WAIT2")
        == 1
    )
    assert value(
        live, "tcplens_process_sockets", process=UNKNOWN_PROCESS, proto="tcp", state="ESTABLISHED"
    )
    assert value(live, "tcplens_unattributed_sockets", proto="tcp") == 1
    # a saved dump has no inodes: only TIME_WAIT is known to be ownerless
    saved = scrape(TcplensCollector(lambda: Snapshot(rows, "linux-netstat")))
    assert value(
        saved, "tcplens_process_sockets", process=UNKNOWN_PROCESS, proto="tcp", state="FIN_WAIT2"
    )
    assert value(saved, "tcplens_unattributed_sockets", proto="tcp") == 2


def test_label_sets_stay_bounded_with_thousands_of_ports_and_processes() -> None:
    socks: list[Socket] = []
    for i in range(2000):
        socks.append(tcp(10000 + i, State.LISTEN, process=f"worker-{i}"))
        socks.append(tcp(10000 + i, State.ESTABLISHED, process=f"worker-{i}"))
    samples = scrape(
        TcplensCollector(lambda: Snapshot(socks, "test"), top_ports=5, top_processes=7)
    )
    port_labels = {dict(k)["port"] for k in series(samples, "tcplens_listen_port_sockets")}
    proc_labels = {dict(k)["process"] for k in series(samples, "tcplens_process_sockets")}
    assert len(port_labels) == 6 and OTHER in port_labels
    assert len(proc_labels) == 8 and OTHER in proc_labels
    total = sum(series(samples, "tcplens_listen_port_sockets").values())
    assert total == 4000  # folding loses no socket
    assert len(samples) < 150


def test_one_snapshot_is_reused_within_min_interval() -> None:
    calls = 0

    def snap() -> Snapshot:
        nonlocal calls
        calls += 1
        return Snapshot([tcp(80, State.ESTABLISHED) for _ in range(calls)], "test")

    clock = FakeClock()
    collector = TcplensCollector(snap, min_interval=5.0, clock=clock)
    first = scrape(collector)
    clock.now += 4.9
    second = scrape(collector)
    assert calls == 1
    assert first[("tcplens_sockets", frozenset({("proto", "tcp"), ("family", "ipv4"),
                                                 ("state", "ESTABLISHED")}))] == 1  # fmt: skip
    assert value(second, "tcplens_sockets", proto="tcp", family="ipv4", state="ESTABLISHED") == 1
    clock.now += 0.2
    third = scrape(collector)
    assert calls == 2
    assert value(third, "tcplens_sockets", proto="tcp", family="ipv4", state="ESTABLISHED") == 2
    assert value(third, "tcplens_snapshots_total") == 2


def test_concurrent_scrapes_share_one_snapshot() -> None:
    calls = 0
    gate = threading.Event()

    def slow() -> Snapshot:
        nonlocal calls
        calls += 1
        gate.wait(5)
        return Snapshot([tcp(80, State.LISTEN)], "test")

    collector = TcplensCollector(slow, min_interval=60)
    results: list[dict[Any, float]] = []
    threads = [threading.Thread(target=lambda: results.append(scrape(collector))) for _ in range(4)]
    for thread in threads:
        thread.start()
    time.sleep(0.2)
    gate.set()
    for thread in threads:
        thread.join(10)
    assert calls == 1 and len(results) == 4
    assert all(value(r, "tcplens_snapshot_success") == 1 for r in results)


def test_scrapes_during_a_slow_snapshot_are_answered_from_the_previous_one() -> None:
    calls = 0
    gate = threading.Event()

    def snap() -> Snapshot:
        nonlocal calls
        calls += 1
        if calls == 2:
            gate.wait(10)  # the second snapshot is slow, as at 100k sockets
        return Snapshot([tcp(80, State.ESTABLISHED) for _ in range(calls)], "test")

    clock = FakeClock()
    collector = TcplensCollector(snap, min_interval=1, clock=clock)
    scrape(collector)
    clock.now += 2
    slow = threading.Thread(target=lambda: scrape(collector))
    slow.start()
    try:
        deadline = time.monotonic() + 5
        while calls < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        started = time.monotonic()
        meanwhile = scrape(collector)
        assert time.monotonic() - started < 1
        key = {"proto": "tcp", "family": "ipv4", "state": "ESTABLISHED"}
        assert value(meanwhile, "tcplens_sockets", **key) == 1
        assert calls == 2  # no second snapshot was started alongside
    finally:
        gate.set()
        slow.join(10)
    assert value(scrape(collector), "tcplens_sockets", **key) == 2


def test_failing_snapshot_counts_an_error_and_the_next_one_recovers() -> None:
    outcomes: list[Exception | Snapshot] = [
        Snapshot([tcp(80, State.LISTEN)], "test"),
        ProcessLookupError("process 4242 vanished"),
        Snapshot([tcp(80, State.LISTEN), tcp(80, State.ESTABLISHED)], "test"),
    ]

    def snap() -> Snapshot:
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    clock = FakeClock()
    collector = TcplensCollector(snap, min_interval=1, clock=clock)
    assert value(scrape(collector), "tcplens_snapshot_success") == 1
    clock.now += 1
    failed = scrape(collector)
    assert value(failed, "tcplens_snapshot_success") == 0
    assert value(failed, "tcplens_snapshot_errors_total") == 1
    # socket series are absent, not stale numbers presented as current
    assert not series(failed, "tcplens_sockets")
    assert value(failed, "tcplens_build_info", version=_version(), python=_python()) == 1
    clock.now += 1
    recovered = scrape(collector)
    assert value(recovered, "tcplens_snapshot_success") == 1
    assert value(recovered, "tcplens_snapshot_errors_total") == 1
    assert value(recovered, "tcplens_listen_port_sockets", port="80", state="ESTABLISHED") == 1


def _version() -> str:
    from tcplens import __version__

    return __version__


def _python() -> str:
    import platform

    return platform.python_version()


class Severity(enum.Enum):
    WARNING = "warning"
    CRITICAL = "critical"


@dataclass
class FakeFinding:
    rule: str
    severity: Severity


def test_findings_exported_by_rule_and_severity_with_the_kernel_settings() -> None:
    seen: list[KernelSettings] = []
    kernel = KernelSettings(
        ip_local_port_range=(40000, 40999),
        somaxconn=512,
        counters={"ListenOverflows": 17},
        defaulted=("tcp_max_orphans",),
    )

    def diagnose(snap: Snapshot, settings: KernelSettings) -> list[FakeFinding]:
        seen.append(settings)
        return [
            FakeFinding("close-wait-leak", Severity.CRITICAL),
            FakeFinding("close-wait-leak", Severity.CRITICAL),
            FakeFinding("time-wait-exhaustion", Severity.WARNING),
        ]

    collector = TcplensCollector(
        lambda: Snapshot([], "test"), diagnose=diagnose, kernel=lambda: kernel
    )
    samples = scrape(collector)
    assert seen == [kernel]
    assert value(samples, "tcplens_findings", rule="close-wait-leak", severity="critical") == 2
    assert value(samples, "tcplens_findings", rule="time-wait-exhaustion", severity="warning") == 1
    assert value(samples, "tcplens_ephemeral_ports") == 1000
    assert value(samples, "tcplens_ephemeral_port_range_first") == 40000
    assert value(samples, "tcplens_kernel_setting", name="somaxconn") == 512
    # a setting that kept its default is not presented as read from the machine
    assert value(samples, "tcplens_kernel_setting", name="tcp_max_orphans") is None
    assert value(samples, "tcplens_kernel_tcp_events_total", name="ListenOverflows") == 17


def test_a_failing_doctor_is_counted_and_sockets_are_still_exported() -> None:
    def diagnose(snap: Snapshot, settings: KernelSettings) -> list[FakeFinding]:
        raise RuntimeError("rule crashed")

    samples = scrape(
        TcplensCollector(lambda: Snapshot([tcp(22, State.LISTEN)], "test"), diagnose=diagnose)
    )
    assert value(samples, "tcplens_doctor_errors_total") == 1
    assert value(samples, "tcplens_snapshot_success") == 1
    assert value(samples, "tcplens_listen_port_sockets", port="22", state="LISTEN") == 1
    assert not series(samples, "tcplens_findings")


def test_unprivileged_exporter_says_so() -> None:
    samples = scrape(TcplensCollector(lambda: Snapshot([], "netlink"), privileged=False))
    assert value(samples, "tcplens_snapshot_info", source="netlink", privileged="false") == 1


def test_every_exported_metric_is_documented_with_help_and_in_the_docs() -> None:
    kernel = KernelSettings(counters={"TW": 1})
    collector = TcplensCollector(
        lambda: Snapshot([tcp(1, State.LISTEN)], "test"),
        diagnose=lambda s, k: [FakeFinding("r", Severity.WARNING)],
        kernel=lambda: kernel,
    )
    transitions = TransitionCollector(TransitionCounts())
    registry = make_registry(collector, process_metrics=False, transitions=transitions)
    text = generate_latest(registry).decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    exported = {name + ("_total" if f.type == "counter" else "") for name, f in families.items()}
    assert exported == set(METRICS)
    docs = DOCS.read_text()
    for name, family in families.items():
        assert family.documentation, name
    for name in METRICS:
        assert f"`{name}`" in docs, f"{name} is not documented in docs/exporter.md"


def test_metric_names_pass_promtool_lint() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (scripts/install-system-deps installs it)")
    collector = TcplensCollector(
        lambda: Snapshot([tcp(1, State.LISTEN)], "test"),
        diagnose=lambda s, k: [FakeFinding("r", Severity.WARNING)],
        kernel=lambda: KernelSettings(counters={"TW": 1}),
    )
    transitions = TransitionCollector(TransitionCounts())
    text = generate_latest(make_registry(collector, transitions=transitions))
    done = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, timeout=30
    )
    assert done.returncode == 0, done.stdout.decode() + done.stderr.decode()


# --- listen address and web config ---------------------------------------------------------------


def test_listen_addresses() -> None:
    assert parse_listen("127.0.0.1:9977") == ("127.0.0.1", 9977)
    assert parse_listen("[::1]:9977") == ("::1", 9977)
    assert parse_listen(":9977") == ("::", 9977)
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("::") and not is_loopback("0.0.0.0")
    for bad in ("9977", "host:http", "127.0.0.1:70000"):
        with pytest.raises(InputError, match="--listen"):
            parse_listen(bad)


def test_web_config_follows_exporter_toolkit_names(tmp_path: Path) -> None:
    import bcrypt

    hashed = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=4)).decode().replace("$2b$", "$2y$")
    config = tmp_path / "web.yml"
    config.write_text(
        "tls_server_config:\n"
        "  cert_file: tls/server.crt\n"
        "  key_file: /etc/tcplens/server.key\n"
        "  min_version: TLS13\n"
        f"basic_auth_users:\n  prometheus: '{hashed}'\n"
    )
    web = load_web_config(config)
    assert web.cert_file == str(tmp_path / "tls" / "server.crt")  # relative to the file
    assert web.key_file == "/etc/tcplens/server.key"
    assert web.min_version == "TLS13"
    auth = BasicAuth(web.basic_auth_users)
    good = "Basic " + base64.b64encode(b"prometheus:s3cret").decode()
    bad = "Basic " + base64.b64encode(b"prometheus:guess").decode()
    nobody = "Basic " + base64.b64encode(b"root:s3cret").decode()
    assert auth.check(good) and auth.check(good)  # second time from the cache
    assert not auth.check(bad) and not auth.check(nobody) and not auth.check(None)
    assert not auth.check("Basic !!!not-base64")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("tls_server_config:\n  cert_file: a.crt\n", "needs both cert_file and key_file"),
        ("tls_server_config:\n  cert_file: a\n  key_file: b\n  cipher_suites: []\n", "cipher"),
        ("basic_auth_users:\n  admin: plaintext\n", "bcrypt hash"),
        ("listen: 1\n", "unsupported key"),
        ("basic_auth_users: [\n", "not valid YAML"),
        ("- a\n", "mapping"),
    ],
)
def test_bad_web_config_is_one_clear_error(tmp_path: Path, text: str, message: str) -> None:
    config = tmp_path / "web.yml"
    config.write_text(text)
    with pytest.raises(InputError, match=message) as info:
        load_web_config(config)
    assert str(config) in str(info.value)


# --- deploy files --------------------------------------------------------------------------------


def _promtool() -> str:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (scripts/install-system-deps installs it)")
    return promtool


def test_alert_rules_pass_promtool_check_and_unit_tests() -> None:
    promtool = _promtool()
    rules = DEPLOY / "prometheus" / "tcplens-rules.yml"
    done = subprocess.run(
        [promtool, "check", "rules", str(rules)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout
    tests = DEPLOY / "prometheus" / "tcplens-rules.test.yml"
    done = subprocess.run(
        [promtool, "test", "rules", str(tests)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tests.parent,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def _metric_names(expr: str) -> set[str]:
    """Metric names a query uses; a histogram's _bucket/_count/_sum series name the histogram."""
    names = set(re.findall(r"\b(tcplens_[a-z0-9_]+)", expr))
    return {
        base if (base := re.sub(r"_(bucket|count|sum)$", "", n)) in METRICS else n for n in names
    }


def test_alert_rules_only_use_exported_metrics() -> None:
    import yaml

    rules = yaml.safe_load((DEPLOY / "prometheus" / "tcplens-rules.yml").read_text())
    alerts = [r for g in rules["groups"] for r in g["rules"] if "alert" in r]
    names = {r["alert"] for r in alerts}
    assert {
        "TcplensCloseWaitLeak",
        "TcplensTimeWaitExhaustion",
        "TcplensSynFlood",
        "TcplensAcceptQueueOverflow",
    } <= names
    for rule in alerts:
        used = _metric_names(rule["expr"])
        assert used, rule["alert"]
        assert used <= set(METRICS), (rule["alert"], used - set(METRICS))
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]


def dashboard_exprs() -> list[str]:
    """PromQL of every panel target (variables' label_values() queries are not PromQL)."""
    board = json.loads((DEPLOY / "grafana" / "tcplens-dashboard.json").read_text())
    return [t["expr"] for p in board["panels"] for t in p.get("targets", [])]


def dashboard_variable_queries() -> list[str]:
    board = json.loads((DEPLOY / "grafana" / "tcplens-dashboard.json").read_text())
    return [v["query"]["query"] for v in board["templating"]["list"] if v["type"] == "query"]


def test_dashboard_queries_only_exported_metrics() -> None:
    exprs = dashboard_exprs()
    assert len(exprs) >= 6
    used: set[str] = set()
    for expr in exprs + dashboard_variable_queries():
        used |= _metric_names(expr)
    assert used <= set(METRICS), used - set(METRICS)
    for needed in (
        "tcplens_sockets",
        "tcplens_listen_port_sockets",
        "tcplens_process_sockets",
        "tcplens_findings",
    ):
        assert needed in used


def test_systemd_unit_runs_unprivileged_and_hardened() -> None:
    import configparser

    unit = DEPLOY / "systemd" / "tcplens-exporter.service"
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(unit)
    service = parser["Service"]
    assert "tcplens exporter" in service["ExecStart"]
    assert service.get("DynamicUser") == "yes" or service.get("User") not in (None, "root")
    for key, expected in (
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
    ):
        assert service.get(key) == expected, key
    assert "AF_NETLINK" in service["RestrictAddressFamilies"]
    analyze = shutil.which("systemd-analyze")
    if analyze is not None:
        done = subprocess.run(
            [analyze, "verify", "--man=no", str(unit)], capture_output=True, text=True, timeout=60
        )
        # verify also complains when the ExecStart binary is not installed; nothing else may fail
        problems = [
            line
            for line in (done.stdout + done.stderr).splitlines()
            if line.strip() and "is not executable" not in line and "not found" not in line
            and "Command" not in line
        ]  # fmt: skip
        assert not problems, problems


# --- live: a real exporter process and a real socket population ----------------------------------


class Population:
    """N ESTABLISHED pairs and M server-side CLOSE_WAIT sockets on one dedicated port."""

    def __init__(self, established: int, close_wait: int) -> None:
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port: int = self.listener.getsockname()[1]
        self.keep: list[socket.socket] = []
        for _ in range(established):
            client = socket.create_connection(("127.0.0.1", self.port))
            server, _ = self.listener.accept()
            self.keep += [client, server]
        for _ in range(close_wait):
            client = socket.create_connection(("127.0.0.1", self.port))
            server, _ = self.listener.accept()
            client.close()  # our FIN: the server side, never closed, sits in CLOSE_WAIT
            self.keep.append(server)

    def close(self) -> None:
        for sock in self.keep:
            with contextlib.suppress(OSError):
                sock.close()
        self.listener.close()


def isolated(test: Callable[..., None]) -> Callable[..., None]:
    """Run a live test in its own network namespace; give it a ``population`` if it asks.

    The namespace (and the population in it) must be created in the thread
    that runs the test, so ``population`` is made here rather than by a fixture.
    """
    signature = inspect.signature(test)
    wants_population = "population" in signature.parameters

    @functools.wraps(test)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        def body() -> None:
            if not wants_population:
                test(*args, **kwargs)
                return
            pop = Population(established=3, close_wait=4)
            try:
                test(*args, population=pop, **kwargs)
            finally:
                pop.close()

        run_in_private_netns(body)

    params = [p for name, p in signature.parameters.items() if name != "population"]
    wrapper.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
    return wrapper


class Exporter:
    def __init__(self, *args: str, launcher: list[str] | None = None) -> None:
        env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
        launch = launcher or [sys.executable, "-m", "tcplens"]
        self.proc = subprocess.Popen(
            [*launch, "exporter", "--listen", "127.0.0.1:0", *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        assert self.proc.stderr is not None
        stream = self.proc.stderr
        threading.Thread(target=lambda: [self.lines.put(x) for x in stream], daemon=True).start()
        deadline = time.monotonic() + 20
        while True:
            try:
                line = self.lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                self.stop()
                raise AssertionError("exporter did not start") from None
            match = re.search(r"serving (https?)://([^ ]+)/metrics", line)
            if match:
                self.url = f"{match.group(1)}://{match.group(2)}"
                self.port = int(match.group(2).rsplit(":", 1)[1])
                return
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.stop()
                raise AssertionError(f"exporter did not start: {line}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@contextlib.contextmanager
def running_exporter(*args: str, launcher: list[str] | None = None) -> Iterator[Exporter]:
    exporter = Exporter(*args, launcher=launcher)
    try:
        yield exporter
    finally:
        exporter.stop()


def get(url: str, **kwargs: Any) -> tuple[int, str]:
    try:
        # generous: other test suites may load this machine while a snapshot is taken
        with urllib.request.urlopen(url, timeout=30, **kwargs) as response:
            return int(response.status), response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def parse_exposition(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


@isolated
def test_real_exporter_serves_the_population_it_sees(population: Population) -> None:
    with running_exporter("--min-interval", "0", "--top-ports", "500") as exporter:
        status, body = get(exporter.url + "/metrics")
        assert status == 200
        samples = parse_exposition(body)
        port = str(population.port)
        assert value(samples, "tcplens_listen_port_sockets", port=port, state="ESTABLISHED") == 3
        assert value(samples, "tcplens_listen_port_sockets", port=port, state="CLOSE_WAIT") == 4
        assert value(samples, "tcplens_listen_port_sockets", port=port, state="LISTEN") == 1
        assert value(samples, "tcplens_listen_port_backlog", port=port) == 64
        if getattr(netns, "private", False):  # only this test's sockets exist
            assert sum(series(samples, "tcplens_sockets").values()) < 30
            # root sees every owner; the clients' orphaned FIN_WAIT2 halves belong to nobody
            assert value(samples, "tcplens_unattributed_sockets", proto="tcp") == 0
            orphans = value(
                samples, "tcplens_process_sockets", process="none", proto="tcp", state="FIN_WAIT2"
            )
            assert orphans == 4
        assert value(samples, "tcplens_snapshot_success") == 1
        # the population changes and the next scrape sees it (min-interval 0)
        for sock in population.keep[-4:]:
            sock.close()
        samples = parse_exposition(get(exporter.url + "/metrics")[1])
        assert value(samples, "tcplens_listen_port_sockets", port=port, state="CLOSE_WAIT") is None
        assert get(exporter.url + "/")[0] == 200
        assert get(exporter.url + "/nope")[0] == 404
    assert exporter.proc.returncode == 0  # SIGTERM is a clean stop


@isolated
def test_scrapes_survive_sockets_and_processes_vanishing(population: Population) -> None:
    """Short-lived processes open connections and exit while every scrape takes a snapshot."""
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("needs bash for /dev/tcp")
    stop = threading.Event()
    spawned = 0

    def churn() -> None:
        nonlocal spawned
        children: list[subprocess.Popen[bytes]] = []
        deadline = time.monotonic() + 20
        while not stop.is_set() and time.monotonic() < deadline:
            children.append(
                subprocess.Popen(
                    [bash, "-c", f"exec 3<>/dev/tcp/127.0.0.1/{population.port}; sleep 0.02"],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
            spawned += 1
            with contextlib.suppress(OSError):
                server, _ = population.listener.accept()
                server.close()  # the server side vanishes too
            children = [c for c in children if c.poll() is None]
        for child in children:
            child.kill()
            child.wait(5)

    population.listener.settimeout(0.5)
    worker = threading.Thread(target=churn)
    with running_exporter("--min-interval", "0") as exporter:
        worker.start()
        try:
            results = [parse_exposition(get(exporter.url + "/metrics")[1]) for _ in range(10)]
        finally:
            stop.set()
            worker.join(30)
    assert spawned > 10
    assert all(value(r, "tcplens_snapshot_success") == 1 for r in results)
    assert value(results[-1], "tcplens_snapshot_errors_total") == 0
    assert value(results[-1], "tcplens_snapshots_total") == 10


SAVED = """\
Active Internet connections (servers and established)
Proto Recv-Q Send-Q Local Address           Foreign Address         State       PID/Program name
tcp        0      0 0.0.0.0:8080            0.0.0.0:*               LISTEN      100/nginx
tcp      100      0 10.0.0.1:8080           10.0.0.9:51000          ESTABLISHED 101/nginx
tcp        0      0 10.0.0.1:8080           10.0.0.9:51001          CLOSE_WAIT  101/nginx
tcp        0      0 10.0.0.1:8080           10.0.0.9:51002          CLOSE_WAIT  101/nginx
tcp        0      0 10.0.0.1:44000          10.0.0.7:5432           TIME_WAIT   -
"""


def test_exporter_serves_a_saved_dump_and_rereads_it(tmp_path: Path) -> None:
    dump = tmp_path / "netstat.txt"
    dump.write_text(SAVED)
    with running_exporter("--from", str(dump), "--min-interval", "0") as exporter:
        samples = parse_exposition(get(exporter.url + "/metrics")[1])
        assert value(samples, "tcplens_listen_port_sockets", port="8080", state="CLOSE_WAIT") == 2
        assert (
            value(samples, "tcplens_listen_port_queue_bytes", port="8080", queue="receive") == 100
        )
        assert (
            value(
                samples,
                "tcplens_process_sockets",
                process="nginx",
                proto="tcp",
                state="ESTABLISHED",
            )
            == 1
        )
        key = {"proto": "tcp", "family": "ipv4", "state": "TIME_WAIT"}
        assert value(samples, "tcplens_sockets", **key) == 1
        # nothing is known about the kernel that wrote a saved dump: no limits are invented
        assert not series(samples, "tcplens_kernel_setting")
        assert value(samples, "tcplens_ephemeral_ports") is None
        dump.write_text(SAVED.replace("CLOSE_WAIT ", "LAST_ACK   "))
        samples = parse_exposition(get(exporter.url + "/metrics")[1])
        assert value(samples, "tcplens_listen_port_sockets", port="8080", state="LAST_ACK") == 2
        # a dump that became unreadable is a failed snapshot, not a dead exporter
        dump.unlink()
        samples = parse_exposition(get(exporter.url + "/metrics")[1])
        assert value(samples, "tcplens_snapshot_success") == 0
        assert value(samples, "tcplens_snapshot_errors_total") == 1
        dump.write_text(SAVED)
        samples = parse_exposition(get(exporter.url + "/metrics")[1])
        assert value(samples, "tcplens_snapshot_success") == 1


#: Drops to nobody after importing everything the exporter needs: the interpreter and its
#: packages may live where nobody cannot read (/root/.pyenv), as on this CI image.
UNPRIVILEGED = """\
import importlib, os, sys
for name in ("tcplens.views.cli", "tcplens.views.commands.exporter", "tcplens.sources.netlink",
             "tcplens.sources.procfs", "tcplens.sources.processes", "tcplens.analysis.doctor",
             "prometheus_client", "prometheus_client.process_collector", "yaml", "bcrypt",
             "wsgiref.simple_server", "wsgiref.handlers", "http.server", "email.utils",
             "encodings.idna", "pwd", "grp"):
    try:
        importlib.import_module(name)
    except ImportError:
        pass
os.setgroups([])
os.setgid(65534)
os.setuid(65534)
from tcplens.views.cli import main
main(sys.argv[1:])
"""


@pytest.mark.root
@isolated
def test_unprivileged_exporter_counts_everything_and_says_what_it_cannot_see(
    population: Population, tmp_path: Path
) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to drop to an unprivileged user")
    script = tmp_path / "unprivileged.py"
    script.write_text(UNPRIVILEGED)  # read by root; the privileges drop inside
    launcher = [sys.executable, str(script)]
    with running_exporter("--min-interval", "0", "--top-ports", "500", launcher=launcher) as exp:
        samples = parse_exposition(get(exp.url + "/metrics")[1])
        port = str(population.port)
        # netlink sock_diag needs no privilege: root's sockets are all counted ...
        assert value(samples, "tcplens_listen_port_sockets", port=port, state="ESTABLISHED") == 3
        assert value(samples, "tcplens_listen_port_sockets", port=port, state="CLOSE_WAIT") == 4
        # ... but their owner (this root test process) cannot be named, and the metrics say so
        assert value(samples, "tcplens_snapshot_info", source="netlink", privileged="false") == 1
        unknown = value(samples, "tcplens_process_sockets", process=UNKNOWN_PROCESS,
                        proto="tcp", state="CLOSE_WAIT")  # fmt: skip
        assert unknown is not None and unknown >= 4
        unattributed = value(samples, "tcplens_unattributed_sockets", proto="tcp")
        assert unattributed is not None and unattributed >= 3 * 2 + 4 + 1
        assert value(samples, "tcplens_snapshot_success") == 1


def test_exporter_with_a_bad_web_config_fails_in_one_line(tmp_path: Path) -> None:
    config = tmp_path / "web.yml"
    config.write_text("tls_server_config:\n  cert_file: x.crt\n")
    done = subprocess.run(
        [sys.executable, "-m", "tcplens", "exporter", "--listen", "127.0.0.1:0",
         "--web-config", str(config)],
        capture_output=True, text=True, timeout=30,
        env=dict(os.environ, PYTHONPATH=str(ROOT / "src")),
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and str(config) in done.stderr
    assert "Traceback" not in done.stderr


def test_exporter_with_an_unknown_source_fails_at_start_in_one_line() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tcplens", "exporter", "--listen", "127.0.0.1:0"],
        capture_output=True, text=True, timeout=30,
        env=dict(os.environ, PYTHONPATH=str(ROOT / "src"), TCPLENS_SOURCE="bogus"),
    )  # fmt: skip
    assert done.returncode == 2
    assert "unknown source 'bogus'" in done.stderr
    assert done.stderr.count("\n") == 1 and "serving" not in done.stderr


def test_exporter_that_cannot_bind_says_where_in_one_line() -> None:
    # 192.0.2.0/24 is TEST-NET-1: never configured here, so the bind fails without exposing
    done = subprocess.run(
        [sys.executable, "-m", "tcplens", "exporter", "--listen", "192.0.2.1:9977"],
        capture_output=True, text=True, timeout=30,
        env=dict(os.environ, PYTHONPATH=str(ROOT / "src")),
    )  # fmt: skip
    assert done.returncode == 2
    assert "cannot listen on 192.0.2.1:9977" in done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr


def make_tls(tmp_path: Path, password: str) -> tuple[Path, Path]:
    """A self-signed cert for 127.0.0.1 and a web config with TLS and one bcrypt user."""
    import bcrypt
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tcplens-test")])
    now = datetime.datetime.now(datetime.UTC)
    import ipaddress

    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    (tmp_path / "server.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "server.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()
    config = tmp_path / "web.yml"
    config.write_text(
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
        f"basic_auth_users:\n  prometheus: '{hashed}'\n"
    )
    return config, tmp_path / "server.crt"


@isolated
def test_tls_and_basic_auth(tmp_path: Path) -> None:
    config, cert = make_tls(tmp_path, "hunter2")
    with running_exporter("--web-config", str(config)) as exporter:
        assert exporter.url.startswith("https://")
        trusted = ssl.create_default_context(cafile=str(cert))
        url = exporter.url + "/metrics"

        def fetch(user: str | None, password: str = "") -> tuple[int, str]:
            request = urllib.request.Request(url)
            if user is not None:
                token = base64.b64encode(f"{user}:{password}".encode()).decode()
                request.add_header("Authorization", f"Basic {token}")
            try:
                with urllib.request.urlopen(request, timeout=10, context=trusted) as response:
                    return int(response.status), response.read().decode()
            except urllib.error.HTTPError as exc:
                return exc.code, ""

        assert fetch(None)[0] == 401
        assert fetch("prometheus", "wrong")[0] == 401
        status, body = fetch("prometheus", "hunter2")
        assert status == 200 and "tcplens_sockets{" in body
        # plain HTTP to the TLS port gets nothing, and the server keeps serving
        with pytest.raises((urllib.error.URLError, ConnectionError, http_client_errors())):
            urllib.request.urlopen(f"http://127.0.0.1:{exporter.port}/metrics", timeout=5)
        # a client that connects and never handshakes does not block others
        with socket.create_connection(("127.0.0.1", exporter.port)):
            assert fetch("prometheus", "hunter2")[0] == 200


def http_client_errors() -> type[Exception]:
    import http.client

    return http.client.HTTPException


# --- a real Prometheus server --------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def prom_query(base: str, expr: str) -> list[dict[str, Any]]:
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=10) as response:
        data = json.load(response)
    assert data["status"] == "success", data
    result: list[dict[str, Any]] = data["data"]["result"]
    return result


@isolated
def test_real_prometheus_scrapes_the_population(population: Population, tmp_path: Path) -> None:
    prometheus = shutil.which("prometheus")
    if prometheus is None:
        pytest.skip("prometheus not installed (scripts/install-system-deps installs it)")
    config, cert = make_tls(tmp_path, "hunter2")
    plain = Exporter("--min-interval", "0.5", "--top-ports", "500")
    tls = None
    server = None
    try:
        tls = Exporter("--min-interval", "0.5", "--web-config", str(config))
        prom_port = free_port()
        (tmp_path / "prometheus.yml").write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            "rule_files:\n  - " + str(DEPLOY / "prometheus" / "tcplens-rules.yml") + "\n"
            "scrape_configs:\n"
            "  - job_name: tcplens\n"
            f"    static_configs: [{{targets: ['127.0.0.1:{plain.port}']}}]\n"
            "  - job_name: tcplens-tls\n"
            "    scheme: https\n"
            f"    tls_config: {{ca_file: '{cert}'}}\n"
            "    basic_auth: {username: prometheus, password: hunter2}\n"
            f"    static_configs: [{{targets: ['127.0.0.1:{tls.port}']}}]\n"
        )
        server = subprocess.Popen(
            [
                prometheus,
                f"--config.file={tmp_path / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp_path / 'data'}",
                f"--web.listen-address=127.0.0.1:{prom_port}",
                "--log.level=warn",
            ],
            stdout=subprocess.DEVNULL,
            stderr=open(tmp_path / "prometheus.log", "w"),  # noqa: SIM115
        )
        base = f"http://127.0.0.1:{prom_port}"
        port = population.port
        wanted = {"ESTABLISHED": 3.0, "CLOSE_WAIT": 4.0, "LISTEN": 1.0}
        got: dict[str, float] = {}
        up: dict[str, float] = {}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            time.sleep(0.5)
            try:
                rows = prom_query(
                    base, f'tcplens_listen_port_sockets{{job="tcplens",port="{port}"}}'
                )
                ups = prom_query(base, "up")
            except (urllib.error.URLError, ConnectionError):
                continue  # still starting
            got = {r["metric"]["state"]: float(r["value"][1]) for r in rows}
            up = {r["metric"]["job"]: float(r["value"][1]) for r in ups}
            if got == wanted and up == {"tcplens": 1.0, "tcplens-tls": 1.0}:
                break
        assert got == wanted, (got, (tmp_path / "prometheus.log").read_text()[-2000:])
        assert up == {"tcplens": 1.0, "tcplens-tls": 1.0}, up
        # the same population through the TLS + basic-auth scrape
        rows = prom_query(base, 'tcplens_listen_port_sockets{job="tcplens-tls",state="CLOSE_WAIT"}')
        assert sum(float(r["value"][1]) for r in rows) >= 4
        # every dashboard query is valid PromQL that Prometheus evaluates
        for expr in dashboard_exprs():
            concrete = (
                expr.replace("$__rate_interval", "1m")
                .replace("$__interval", "15s")
                .replace("$instance", ".*")
                .replace("$job", "tcplens")
            )
            prom_query(base, concrete)
        # the alert rules loaded and evaluate without errors
        with urllib.request.urlopen(f"{base}/api/v1/rules", timeout=10) as response:
            groups = json.load(response)["data"]["groups"]
        health = {r["name"]: r["health"] for g in groups for r in g["rules"]}
        assert health and set(health.values()) <= {"ok", "unknown"}, health
    finally:
        if server is not None:
            server.terminate()
            try:
                server.wait(10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait(5)
        plain.stop()
        if tls is not None:
            tls.stop()


def test_head_is_answered_as_get_without_a_body() -> None:
    import http.client

    with running_exporter("--min-interval", "60") as exporter:
        for path, kind in (("/metrics", "text/plain"), ("/", "text/html")):
            conn = http.client.HTTPConnection("127.0.0.1", exporter.port, timeout=30)
            try:
                conn.request("HEAD", path)
                response = conn.getresponse()
                assert response.status == 200, (path, response.status)
                assert response.read() == b""
                assert (response.getheader("Content-Type") or "").startswith(kind)
                assert int(response.getheader("Content-Length") or 0) > 0
            finally:
                conn.close()
        assert get(exporter.url + "/metrics")[0] == 200  # GET is untouched


def test_systemd_unit_comment_gives_capabilities_its_bounding_set_allows() -> None:
    """Ambient capabilities outside CapabilityBoundingSet are dropped: the advice sets both."""
    unit = (DEPLOY / "systemd" / "tcplens-exporter.service").read_text()
    settings = dict(
        line.split("=", 1) for line in unit.splitlines() if "=" in line and line[:1].isalpha()
    )
    advised = dict(
        line.lstrip("# ").split("=", 1)
        for line in unit.splitlines()
        if line.startswith("#   ") and "=" in line
    )
    assert settings["CapabilityBoundingSet"] == "" and settings["AmbientCapabilities"] == ""
    ambient = set(advised["AmbientCapabilities"].split())
    assert ambient == {"CAP_SYS_PTRACE", "CAP_DAC_READ_SEARCH"}
    assert ambient <= set(advised["CapabilityBoundingSet"].split())
