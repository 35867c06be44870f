"""Doctor rules on saved dumps and on snapshots shaped like real tables, thresholds, texts.

The live tests (``test_doctor_live.py``) trigger every rule on real sockets;
these cover what a live namespace cannot show cheaply: Linux defaults for
dumps, settings other than this machine's (syncookies off, tw_reuse on),
thousands of sockets, and the contract between rules, texts and docs.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tcplens.analysis.doctor import (
    RULES,
    THRESHOLDS,
    Finding,
    RuleContext,
    Severity,
    ThresholdError,
    close_wait,
    diagnose,
    parse_threshold,
    thresholds_from_toml,
)
from tcplens.analysis.doctor_texts import PHRASES, TEXTS, render
from tcplens.errors import InputError
from tcplens.model.states import State
from tcplens.sources.kernel import KernelSettings
from tcplens.sources.records import Addr, Snapshot, Socket, TcpInfo, Timer
from tcplens.sources.text import read_text

TEXT = Path(__file__).resolve().parents[1] / "fixtures" / "text"
SEED_PARTS = ("seed003-linux-netstat-anlp.txt", "seed003-linux-netstat-anlp-2.txt")
DOCS = Path(__file__).resolve().parents[2] / "docs" / "doctor.md"
CJK = re.compile(r"[\u4e00-\u9fff]")
DEFAULTS = KernelSettings.defaults()


def sock(
    state: State,
    local: tuple[str, int],
    remote: tuple[str, int],
    *,
    pid: int | None = None,
    process: str | None = None,
    recv_q: int = 0,
    send_q: int = 0,
    timer: Timer | None = None,
) -> Socket:
    return Socket(
        "tcp",
        4,
        Addr(*local),
        Addr(*remote),
        state,
        recv_q=recv_q,
        send_q=send_q,
        pid=pid,
        process=process,
        timer=timer,
    )


def listener(port: int, *, pending: int = 0, backlog: int = 128, pid: int = 10) -> Socket:
    return sock(
        State.LISTEN,
        ("0.0.0.0", port),
        ("0.0.0.0", 0),
        pid=pid,
        process="srv",
        recv_q=pending,
        send_q=backlog,
    )


def snap(*sockets: Socket, source: str = "netlink") -> Snapshot:
    return Snapshot(list(sockets), source=source)


def only(findings: list[Finding], rule: str) -> Finding:
    (found,) = [f for f in findings if f.rule == rule]
    return found


# --------------------------------------------------------------------------- saved dumps


def test_seed_shows_both_sides_of_the_killed_peer_experiment(tmp_path: Path) -> None:
    seed = tmp_path / "seed003.txt"
    # the article shows its listings step by step; the last rows repeat in it
    seed.write_text("".join((TEXT / name).read_text() for name in (*SEED_PARTS, SEED_PARTS[1])))
    findings = diagnose(read_text(str(seed)), DEFAULTS)
    assert {f.rule for f in findings} == {"close-wait", "fin-wait2"}
    assert all(f.severity is Severity.INFO for f in findings)
    leaks = {f.evidence.processes[0].pid: f for f in findings if f.rule == "close-wait"}
    # repeated rows count once
    assert {pid: f.evidence.count for pid, f in leaks.items()} == {2510: 1, 2568: 1}
    assert leaks[2568].evidence.local == "*:10050"  # the server leaks on its port
    assert leaks[2510].evidence.remote == "192.168.190.81:10050"  # the client towards it
    assert "not even read the end-of-file" in leaks[2510].explanation.en  # Recv-Q 1 = the FIN
    fin2 = [f for f in findings if f.rule == "fin-wait2"]
    assert sorted(f.evidence.peer_processes[0].pid for f in fin2) == [2510, 2568]
    for f in fin2:
        assert "assumed default" in f.explanation.en
        assert "other user" in f.explanation.en  # the dump says not all processes are shown
        assert f.evidence.limits[0].assumed


def test_fixtures_give_sensible_findings() -> None:
    macos = diagnose(read_text(str(TEXT / "macos10.14-netstat-An.txt")), DEFAULTS)
    assert {f.rule for f in macos} == {"close-wait"}
    remotes = {f.evidence.remote for f in macos}
    assert "35.236.87.93:8081" in remotes
    # no process column: nobody is blamed by name, and the advice says how to find out
    assert all(f.evidence.processes[0].pid is None for f in macos)
    assert all(f.title.en.startswith("the application holds") for f in macos)
    # macOS netstat has no -p: the advice names the macOS and FreeBSD tools that do
    assert all("lsof -nP -iTCP" in f.advice.en and "sockstat" in f.advice.zh for f in macos)
    for name in ("windows10-netstat-an.txt", "ubuntu18.04-ss-tulpen.txt", "solaris-netstat-n.txt"):
        findings = diagnose(read_text(str(TEXT / name)), DEFAULTS)
        assert all(f.severity is Severity.INFO for f in findings), name


def test_every_saved_dump_gives_nothing_above_info() -> None:
    dumps = sorted(TEXT.glob("*.txt"))
    assert len(dumps) >= 10
    for path in dumps:
        findings = diagnose(read_text(str(path)), DEFAULTS)
        assert all(f.severity is Severity.INFO for f in findings), path.name
        for f in findings:
            assert any(lim.assumed for lim in f.evidence.limits) or not f.evidence.limits


# --------------------------------------------------------------------------- rules


def test_close_wait_grades_by_group_size_and_names_the_process() -> None:
    rows = [listener(8080, pid=42)] + [
        sock(State.CLOSE_WAIT, ("10.0.0.5", 8080), ("10.0.0.7", 40000 + i), pid=42, process="java")
        for i in range(12)
    ]
    finding = only(close_wait(RuleContext.of(snap(*rows), DEFAULTS)), "close-wait")
    assert finding.severity is Severity.WARNING
    assert finding.title.en == "process 42 (java) holds 12 CLOSE_WAIT sockets on port 8080"
    assert finding.title.zh.startswith("进程 42（java）在端口 8080 上有 12 个")
    rows[1].info = TcpInfo(last_recv_ms=7_380_000)
    aged = only(diagnose(snap(*rows), DEFAULTS), "close-wait")
    assert aged.title.en.endswith("on port 8080, idle up to 2 h 3 min")
    assert aged.evidence.idle_s == 7380.0
    crit = diagnose(snap(*rows), DEFAULTS, {"close-wait.critical": 12})
    assert only(crit, "close-wait").severity is Severity.CRITICAL


def test_time_wait_towards_one_peer_against_the_port_range_and_tw_reuse() -> None:
    rows = [
        sock(
            State.TIME_WAIT,
            ("10.0.0.5", 33000 + i),
            ("10.0.0.9", 5432),
            timer=Timer("timewait", 20.0 + i % 30),
        )
        for i in range(600)
    ]
    narrow = replace(DEFAULTS, ip_local_port_range=(33000, 33999), tcp_tw_reuse=0)
    finding = only(diagnose(snap(*rows), narrow), "time-wait")
    assert finding.severity is Severity.WARNING and finding.evidence.share == 0.6
    assert finding.evidence.oldest_s == 40.0
    assert "tcp_tw_reuse is 0" in finding.advice.en
    # reuse for all outgoing connections: ports are not at risk, one notch milder
    milder = only(diagnose(snap(*rows), replace(narrow, tcp_tw_reuse=1)), "time-wait")
    assert milder.severity is Severity.INFO
    # reuse for loopback only does not apply to a remote peer
    remote = only(diagnose(snap(*rows), replace(narrow, tcp_tw_reuse=2)), "time-wait")
    assert remote.severity is Severity.WARNING and "does not apply" in remote.advice.en


def test_server_side_time_wait_and_the_bucket_limit() -> None:
    rows = [listener(80)] + [
        sock(State.TIME_WAIT, ("10.0.0.5", 80), (f"10.1.{i // 250}.{i % 250}", 50000))
        for i in range(1200)
    ]
    small = replace(DEFAULTS, tcp_max_tw_buckets=1300)
    found = [f for f in diagnose(snap(*rows), small) if f.rule == "time-wait"]
    kinds = {f.kind: f for f in found}
    assert set(kinds) == {"time-wait-server", "time-wait-buckets"}
    assert kinds["time-wait-server"].severity is Severity.INFO
    assert (
        "The server on port 80 (process 10 (srv)) closes"
        in kinds["time-wait-server"].explanation.en
    )
    assert kinds["time-wait-buckets"].severity is Severity.CRITICAL  # 92% of the buckets


def test_syn_recv_without_syncookies_says_to_enable_them() -> None:
    rows = [listener(443, backlog=100)] + [
        sock(
            State.SYN_RECV, ("10.0.0.5", 443), (f"203.0.113.{i}", 40000), timer=Timer("on", 1.0, 3)
        )
        for i in range(60)
    ]
    off = replace(DEFAULTS, tcp_syncookies=0)
    finding = only(diagnose(snap(*rows), off), "syn-recv")
    assert finding.severity is Severity.WARNING
    assert finding.evidence.distinct_peers == 60 and finding.evidence.retransmits == 3
    assert finding.evidence.local == "0.0.0.0:443"
    assert "tcp_syncookies is 0" in finding.advice.en
    assert "3 SYN-ACK retransmissions" in finding.explanation.en


def test_ipv4_half_open_connections_belong_to_a_dual_stack_listener() -> None:
    dual = Socket("tcp", 6, Addr("::", 8443), Addr("::", 0), State.LISTEN, 0, 4, pid=9)
    rows = [dual] + [
        sock(State.SYN_RECV, ("10.0.0.5", 8443), (f"203.0.113.{i}", 40000)) for i in range(4)
    ]
    finding = only(diagnose(snap(*rows), DEFAULTS), "syn-recv")
    assert finding.evidence.local == "[::]:8443" and finding.severity is Severity.CRITICAL
    assert finding.evidence.processes[0].pid == 9


def test_listen_overflow_counters_alone_are_info_and_only_when_live() -> None:
    live = replace(
        DEFAULTS,
        assumed=False,
        counters=MappingProxyType({"ListenOverflows": 17, "ListenDrops": 19}),
    )
    finding = only(diagnose(snap(listener(80, pending=3)), live), "accept-queue")
    assert finding.kind == "listen-overflows" and finding.severity is Severity.INFO
    assert "17" in finding.title.en and "19" in finding.title.en
    assert not [f for f in diagnose(snap(listener(80, pending=3)), DEFAULTS)]


def test_fin_wait2_held_by_a_process_waits_forever() -> None:
    rows = [
        sock(State.FIN_WAIT2, ("10.0.0.5", 40000 + i), ("10.0.0.9", 9000), pid=7, process="app")
        for i in range(3)
    ]
    finding = only(diagnose(snap(*rows), DEFAULTS), "fin-wait2")
    assert "shutdown()" in finding.explanation.en and "process 7 (app)" in finding.explanation.en


def test_fin_wait2_facing_a_local_close_wait_of_an_unknown_process() -> None:
    rows = [
        sock(State.CLOSE_WAIT, ("127.0.0.1", 40697), ("127.0.0.1", 46360), recv_q=1),
        sock(State.FIN_WAIT2, ("127.0.0.1", 46360), ("127.0.0.1", 40697)),
    ]
    finding = only(diagnose(snap(*rows, source="procfs"), DEFAULTS), "fin-wait2")
    assert finding.evidence.peer_processes == ()
    assert "holds the other end in CLOSE_WAIT: the application there" in finding.explanation.en


def test_dump_states_without_timers_are_reported_as_info() -> None:
    rows = [
        sock(State.FIN_WAIT1, ("10.0.0.5", 40001), ("10.0.0.9", 9000), send_q=5000),
        sock(State.LAST_ACK, ("10.0.0.5", 40002), ("10.0.0.9", 9000)),
        sock(State.SYN_SENT, ("10.0.0.5", 40003), ("192.0.2.1", 22)),
    ]
    findings = diagnose(snap(*rows, source="text:linux-netstat"), DEFAULTS)
    assert {f.rule: f.severity for f in findings} == {
        "fin-wait1": Severity.INFO,
        "last-ack": Severity.INFO,
        "syn-sent": Severity.INFO,
    }
    # live, a fresh SYN_SENT (no retransmission yet) is normal and not reported
    fresh = sock(State.SYN_SENT, ("10.0.0.5", 40003), ("192.0.2.1", 22), timer=Timer("on", 0.9))
    assert diagnose(snap(fresh), DEFAULTS) == []


def test_send_q_with_a_zero_window_blames_the_peer() -> None:
    row = sock(
        State.ESTABLISHED,
        ("10.0.0.5", 40000),
        ("10.0.0.9", 9000),
        pid=3,
        process="x",
        send_q=3 << 20,
        timer=Timer("persist", 0.4, 2),
    )
    finding = only(diagnose(snap(row), DEFAULTS), "send-q")
    assert finding.severity is Severity.WARNING
    assert "zero window" in finding.explanation.en and "3.0 MiB" in finding.title.en


def test_orphans_from_sockstat_against_the_limit() -> None:
    live = replace(
        DEFAULTS,
        assumed=False,
        tcp_max_orphans=1000,
        sockstat=MappingProxyType({"orphan": 950}),
        counters=MappingProxyType({"TCPAbortOnMemory": 12}),
    )
    finding = only(diagnose(snap(), live), "orphans")
    assert finding.severity is Severity.CRITICAL and finding.state is None
    assert "TCPAbortOnMemory: 12" in finding.explanation.en


def test_findings_are_sorted_most_severe_then_largest_first() -> None:
    rows = (
        [listener(8080, pending=200, backlog=128)]
        + [
            sock(State.CLOSE_WAIT, ("10.0.0.5", 8080), ("10.0.0.7", 40000 + i), pid=1, process="a")
            for i in range(30)
        ]
        + [sock(State.CLOSE_WAIT, ("10.0.0.5", 8080), ("10.0.0.8", 40000), pid=2, process="b")]
    )
    order = [(f.severity, f.evidence.count) for f in diagnose(snap(*rows), DEFAULTS)]
    assert order == [(Severity.CRITICAL, 200), (Severity.WARNING, 30), (Severity.INFO, 1)]


def test_many_sockets_take_well_under_a_second() -> None:
    import time

    rows = [listener(8080)] + [
        sock(
            (State.ESTABLISHED, State.TIME_WAIT, State.CLOSE_WAIT, State.FIN_WAIT2)[i % 4],
            (f"127.0.0.{i % 5 + 1}", 30000 + i % 30000),
            ("127.0.0.1", 8080),
            pid=100 + i % 7,
            process="p",
        )
        for i in range(50_000)
    ]
    started = time.perf_counter()
    findings = diagnose(snap(*rows), DEFAULTS)
    assert time.perf_counter() - started < 4.0  # linear; a quadratic step would take minutes
    assert only([f for f in findings if f.evidence.processes[:1]], "fin-wait2").evidence.count


# --------------------------------------------------------------------------- texts


def test_every_kind_of_finding_renders_in_both_languages() -> None:
    live = replace(
        DEFAULTS,
        assumed=False,
        tcp_max_tw_buckets=10,
        tcp_max_orphans=10,
        sockstat=MappingProxyType({"orphan": 9}),
        counters=MappingProxyType({"ListenOverflows": 1, "ListenDrops": 1}),
    )
    overrides = {key: 0.0 for key in THRESHOLDS if not key.endswith("critical")}
    overrides.update({"time-wait.server": 1, "recv-q": 1, "send-q": 1})
    rows = [
        listener(80, pending=5, backlog=4),
        sock(State.CLOSE_WAIT, ("10.0.0.5", 80), ("10.0.0.7", 40000), pid=1, process="a", recv_q=1),
        sock(State.TIME_WAIT, ("10.0.0.5", 80), ("10.0.0.7", 40001)),
        sock(State.TIME_WAIT, ("10.0.0.5", 40002), ("10.0.0.7", 443)),
        sock(State.SYN_RECV, ("10.0.0.5", 80), ("10.0.0.7", 40003), timer=Timer("on", 1, 2)),
        sock(State.FIN_WAIT2, ("10.0.0.5", 40004), ("10.0.0.7", 443), timer=Timer("timewait", 5)),
        sock(State.FIN_WAIT1, ("10.0.0.5", 40005), ("10.0.0.7", 443), timer=Timer("persist", 1)),
        sock(State.LAST_ACK, ("10.0.0.5", 40006), ("10.0.0.7", 443), timer=Timer("on", 1, 4)),
        sock(State.SYN_SENT, ("10.0.0.5", 40007), ("10.0.0.8", 443), timer=Timer("on", 1, 3)),
        sock(State.ESTABLISHED, ("10.0.0.5", 40008), ("10.0.0.9", 443), recv_q=9, send_q=9),
    ]
    findings = diagnose(snap(*rows), live, overrides)
    kinds = {f.kind for f in findings}
    assert kinds >= set(TEXTS) - {"listen-overflows"}
    counters_only = diagnose(snap(listener(80)), live, overrides)
    assert {f.kind for f in counters_only} >= {"listen-overflows"}
    for f in findings + counters_only:
        for text in (f.title, f.explanation, f.advice):
            assert text.en and text.zh and "{" not in text.en + text.zh, f.kind
            assert CJK.search(text.zh), (f.kind, text.zh)
            assert not CJK.search(text.en), (f.kind, text.en)


def test_phrases_exist_in_both_languages() -> None:
    for key, phrase in PHRASES.items():
        assert bool(phrase.en) == bool(phrase.zh), key
    assert render(PHRASES["pid_name"], pid=1, name="x").zh == "进程 1（x）"


# --------------------------------------------------------------------------- thresholds


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("close-wait=5", ("close-wait", 5.0)),
        ("recv-q=64k", ("recv-q", 65536.0)),
        ("send-q=2M", ("send-q", 2 * 1024.0**2)),
        ("time-wait=20%", ("time-wait", 0.2)),
        (" syn-recv.critical = 0.9 ", ("syn-recv.critical", 0.9)),
    ],
)
def test_parse_threshold(text: str, expected: tuple[str, float]) -> None:
    key, value = parse_threshold(text)
    assert (key, value) == (expected[0], pytest.approx(expected[1]))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("close-wait", "expected RULE=VALUE"),
        ("nope=1", "unknown threshold 'nope'; known: accept-queue"),
        ("close-wait=lots", "is not a number"),
        ("close-wait=-1", "must be a number >= 0"),
    ],
)
def test_bad_thresholds_are_usage_errors(text: str, message: str) -> None:
    with pytest.raises(ThresholdError, match=re.escape(message)):
        parse_threshold(text)


def test_toml_config_flattens_nested_tables() -> None:
    text = (
        '[thresholds]\nclose-wait = 3\n[thresholds.time-wait]\ncritical = 0.8\n[other]\nx = "y"\n'
    )
    assert thresholds_from_toml(text) == {"close-wait": 3.0, "time-wait.critical": 0.8}
    with pytest.raises(InputError, match=r"cfg.toml: threshold close-wait must be a number"):
        thresholds_from_toml('[thresholds]\nclose-wait = "x"\n', path="cfg.toml")
    with pytest.raises(InputError, match=r"cfg.toml: unknown threshold 'bogus'"):
        thresholds_from_toml("[thresholds]\nbogus = 1\n", path="cfg.toml")
    with pytest.raises(InputError, match=r"^cfg.toml: "):
        thresholds_from_toml("[thresholds\n", path="cfg.toml")


def test_docs_list_every_rule_and_threshold_with_its_default() -> None:
    docs = DOCS.read_text()
    table = docs.split("## Thresholds", 1)[1].split("\n## ", 1)[0]
    for key, threshold in THRESHOLDS.items():
        row = re.search(rf"^\| `{re.escape(key)}` \| ([^|]+) \|", table, re.MULTILINE)
        assert row, key
        assert float(row.group(1)) == threshold.default, key
    for rule_id, registered in RULES.items():
        assert f"| `{rule_id}` |" in docs
        assert registered.summary and registered.func.__doc__


# --------------------------------------------------------------------------- robustness

_ips = st.sampled_from(
    ["10.0.0.5", "10.0.0.9", "127.0.0.1", "*", "::1", "fe80::1%eth0", "host.lan"]
)
_ports = st.one_of(st.none(), st.sampled_from([0, 22, 80, 8080, 33000, 40000, 60999, 65535]))
_timers = st.one_of(
    st.none(),
    st.builds(
        Timer,
        st.sampled_from(["on", "keepalive", "timewait", "persist", "probe", "other", "off"]),
        st.floats(0, 200, allow_nan=False),
        st.integers(0, 20),
    ),
)
_sockets = st.builds(
    Socket,
    st.sampled_from(["tcp", "udp"]),
    st.sampled_from([4, 6]),
    st.builds(Addr, _ips, _ports, st.sampled_from([None, "http"])),
    st.builds(Addr, _ips, _ports, st.sampled_from([None, "http"])),
    st.sampled_from(list(State)),
    recv_q=st.one_of(st.none(), st.integers(0, 1 << 24)),
    send_q=st.one_of(st.none(), st.integers(0, 1 << 24)),
    pid=st.one_of(st.none(), st.integers(1, 5)),
    process=st.one_of(st.none(), st.sampled_from(["java", "nginx"])),
    timer=_timers,
)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(_sockets, max_size=40),
    st.sampled_from(["netlink", "text:linux-netstat"]),
    st.booleans(),
)
def test_any_table_gives_sorted_findings_with_complete_texts(
    rows: list[Socket], source: str, assumed: bool
) -> None:
    kernel = DEFAULTS if assumed else replace(DEFAULTS, assumed=False, tcp_max_orphans=1)
    overrides = {"close-wait": 2.0, "time-wait.info": 0.0, "recv-q": 100.0, "send-q": 100.0}
    findings = diagnose(Snapshot(rows, source=source), kernel, overrides)
    ranks = [f.severity.rank for f in findings]
    assert ranks == sorted(ranks, reverse=True)
    for f in findings:
        assert f.rule in RULES and f.evidence.count >= 0
        for text in (f.title, f.explanation, f.advice):
            assert text.en and text.zh and "{" not in text.en + text.zh


def test_each_rule_declares_its_thresholds_and_receives_a_context() -> None:
    import threading

    from tcplens.analysis import doctor

    declared = {t.key: t for r in RULES.values() for t in r.thresholds}
    assert declared == THRESHOLDS and list(declared) == list(THRESHOLDS)
    for registered in RULES.values():
        assert all(t.key.split(".")[0] == registered.id for t in registered.thresholds)
    borrowed = (doctor.Threshold("fin-wait1.x", 1, "sockets", "?"),)
    with pytest.raises(ValueError, match=r"'fin-wait1\.x' is not rule 'stray'"):
        doctor.rule("stray", None, borrowed)(lambda ctx: [])
    assert "stray" not in RULES and "fin-wait1.x" not in THRESHOLDS
    # no side channel: everything a rule reads comes in its RuleContext
    assert not [v for v in vars(doctor).values() if isinstance(v, threading.local)]
    rows = [sock(State.CLOSE_WAIT, ("10.0.0.1", 80), ("10.0.0.2", 40000 + i)) for i in range(3)]
    ctx = RuleContext.of(snap(*rows), DEFAULTS, {"close-wait": 2})
    assert ctx.thresholds["close-wait"] == 2 and ctx.platform.key == "linux"
    assert [f.severity for f in close_wait(ctx)] == [Severity.WARNING]
