"""The doctor tells each system's facts: Linux's for Linux, the dump's own for the others.

A Windows dump with a port-exhausting TIME_WAIT pile, a CLOSE_WAIT leak,
orphaned FIN_WAIT_2 and unanswered SYNs gets Windows' TIME_WAIT and port
range, no ``ss -K`` and no Linux connect timeout; the same sockets as a Linux
dump keep Linux's.  The SYN_SENT text of a live Linux snapshot is held
against the running kernel's own settings.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

from tcplens import parse_text
from tcplens.analysis.doctor import Finding, diagnose
from tcplens.analysis.platforms import platform_of
from tcplens.model.linux import syn_schedule
from tcplens.model.states import State
from tcplens.sources.kernel import KernelSettings, read_kernel
from tcplens.sources.records import Timer
from tests.analysis.test_doctor import snap, sock

DEFAULTS = KernelSettings.defaults()


def _windows(tw: int = 9000) -> str:
    rows = ["Active Connections", "", "  Proto  Local Address  Foreign Address  State  PID"]
    rows.append("  TCP    0.0.0.0:8080           0.0.0.0:0              LISTENING       4242")
    rows += [
        f"  TCP    10.0.0.5:8080          10.0.0.{7 + i}:{40000 + i}      CLOSE_WAIT      4242"
        for i in range(12)
    ]
    rows += [
        f"  TCP    10.0.0.5:{49152 + i}        10.0.0.9:5432          TIME_WAIT       0"
        for i in range(tw)
    ]
    rows += [
        f"  TCP    10.0.0.5:{30000 + i}        10.0.0.10:443          FIN_WAIT_2      0"
        for i in range(150)
    ]
    rows += [
        f"  TCP    10.0.0.5:{31000 + i}        10.0.0.11:443          SYN_SENT        777"
        for i in range(6)
    ]
    return "\r\n".join(rows) + "\r\n"


def _linux_twin(text: str) -> str:
    """The same sockets as Linux net-tools prints them."""
    out = [
        "Active Internet connections (servers and established)",
        "Proto Recv-Q Send-Q Local Address     Foreign Address     State     PID/Program name",
    ]
    for s in parse_text(text).sockets:
        state = s.state.value
        peer = "0.0.0.0:*" if s.state is State.LISTEN else f"{s.remote.ip}:{s.remote.port}"
        owner = f"{s.pid}/app" if s.pid else "-"
        out.append(f"tcp        0      0 {s.local.ip}:{s.local.port}  {peer}  {state}  {owner}")
    return "\n".join(out) + "\n"


def _by_kind(text: str) -> dict[str, Finding]:
    return {f.kind: f for f in diagnose(parse_text(text), DEFAULTS)}


def test_the_source_names_the_system() -> None:
    assert platform_of("text:windows-netstat").key == "windows"
    assert platform_of("text:powershell").key == "windows"
    assert platform_of("text:bsd-netstat").key == "bsd"
    assert platform_of("text:solaris-netstat").key == "solaris"
    assert platform_of("text:ss").key == platform_of("netlink").key == "linux"


def test_windows_dump_gets_windows_facts_not_linux_advice() -> None:
    findings = diagnose(parse_text(_windows()), DEFAULTS)
    kinds = {f.kind: f for f in findings}
    assert set(kinds) == {"time-wait", "close-wait", "fin-wait2", "syn-sent"}
    everything = " ".join(
        part.en + part.zh for f in findings for part in (f.title, f.explanation, f.advice)
    )
    assert "ss -K" not in everything
    assert "127" not in everything and "131" not in everything  # Linux's connect timeouts
    tw = kinds["time-wait"]
    assert "TcpTimedWaitDelay" in tw.explanation.en and "49152-65535" in tw.explanation.en
    assert "16384 ephemeral ports" in tw.title.en  # Windows' range, not Linux's 28232
    assert "netsh int ipv4" in tw.advice.en and "60 seconds" not in tw.explanation.en
    assert "21 s" in kinds["syn-sent"].explanation.en
    assert "Test-NetConnection" in kinds["syn-sent"].advice.en
    fin2 = kinds["fin-wait2"]
    assert "does not apply" in fin2.explanation.en and "tcp_fin_timeout" not in fin2.advice.en
    # Linux sysctls are no evidence about a Windows machine
    assert all(lim.name == "ip_local_port_range" for f in findings for lim in f.evidence.limits)


def test_the_same_sockets_from_linux_keep_linux_facts() -> None:
    kinds = _by_kind(_linux_twin(_windows()))
    assert "ss -K" in kinds["close-wait"].advice.en
    assert "60 seconds" in kinds["time-wait"].explanation.en
    assert "tcp_fin_timeout" in kinds["fin-wait2"].advice.en


def test_bsd_dump_names_msl_and_says_whose_figures_the_rest_are() -> None:
    rows = [
        "Active Internet connections (including servers)",
        "Proto Recv-Q Send-Q  Local Address        Foreign Address      (state)",
    ]
    rows += [
        f"tcp4       0      0  10.0.0.5.{50000 + i}         10.0.0.9.5432          TIME_WAIT"
        for i in range(9000)
    ]
    rows += [
        f"tcp4       0      0  10.0.0.5.{40000 + i}         10.0.0.7.443           FIN_WAIT_1"
        for i in range(20)
    ]
    kinds = _by_kind("\n".join(rows) + "\n")
    assert "net.inet.tcp.msl" in kinds["time-wait"].explanation.en
    assert "30 s on macOS" in kinds["time-wait"].explanation.en
    fin1 = kinds["fin-wait1"]  # no macOS text for it: its Linux figures are marked
    assert "are Linux's; this dump comes from macOS/FreeBSD" in fin1.explanation.en


def test_doctor_cli_header_names_the_system(tmp_path: Path) -> None:
    dump = tmp_path / "win.txt"
    dump.write_text(_windows(tw=10))
    out = subprocess.run(
        [sys.executable, "-m", "tcplens", "doctor", "--from", str(dump)],
        capture_output=True, text=True, timeout=60,
    ).stdout  # fmt: skip
    assert "Sockets of a Windows system" in out and "assumed Linux defaults" not in out


def test_live_syn_sent_quotes_the_running_kernels_schedule() -> None:
    settings = read_kernel("/proc")
    rows = [sock(State.SYN_SENT, ("10.0.0.5", 40007), ("10.0.0.8", 443), timer=Timer("on", 1, 3))]
    (finding,) = [f for f in diagnose(snap(*rows), settings) if f.kind == "syn-sent"]
    schedule = syn_schedule(settings.tcp_syn_retries, settings.tcp_syn_linear_timeouts)
    text = finding.explanation.en
    assert f"after {schedule.count} retransmissions" in text
    assert f"about {schedule.give_up:g} s after the first SYN" in text
    assert f"({3} of {schedule.count} SYN retransmissions so far)" in finding.title.en
    linear = Path("/proc/sys/net/ipv4/tcp_syn_linear_timeouts")
    if linear.exists():
        assert f"tcp_syn_linear_timeouts {linear.read_text().strip()}" in text
    old = replace(settings, tcp_syn_retries=6, tcp_syn_linear_timeouts=None)
    (before_6_5,) = [f for f in diagnose(snap(*rows), old) if f.kind == "syn-sent"]
    assert "about 127 s" in before_6_5.explanation.en and "doubling" in before_6_5.explanation.en
