"""Every doctor rule triggered by a real situation in a network namespace the test creates.

Each test makes a fresh namespace (so other helpers' sockets on this
machine's loopback cannot leak into the findings, and per-namespace sysctls
and counters are our own), builds the situation with
``doctor_scenarios.py`` inside it, and runs the real ``tcplens doctor
--json`` inside it too.  Thresholds are overridden only where the natural
limit would need thousands of sockets.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import count
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.root

#: The kernel names a process after the file it executed (at most 15 bytes).
COMM = Path(sys.executable).name[:15]
DRIVER = Path(__file__).with_name("doctor_scenarios.py")
_names = count(1)
_IN_NS = ("ip", "netns", "exec")


def _need_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root for network namespaces")


@dataclass
class Scenario:
    ns: str
    proc: subprocess.Popen[str]
    facts: dict[str, Any]

    def doctor(self, *args: str) -> tuple[int, dict[str, Any]]:
        result = subprocess.run(
            [*_IN_NS, self.ns, sys.executable, "-m", "tcplens", "doctor", "--json", *args],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode in (0, 1), result.stderr
        return result.returncode, json.loads(result.stdout)

    def send(self, command: str) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        assert self.proc.stdout.readline().strip() == "ok"


@pytest.fixture
def scenario() -> Iterator[Any]:
    _need_root()
    started: list[tuple[str, subprocess.Popen[str]]] = []

    def start(name: str, *args: str, ns: str | None = None) -> Scenario:
        if ns is None:
            ns = f"tld{os.getpid()}x{next(_names)}"
            subprocess.run(["ip", "netns", "add", ns], check=True)
        proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, sys.executable, str(DRIVER), name, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        started.append((ns, proc))
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line, f"scenario {name} failed to start"
        return Scenario(ns, proc, json.loads(line))

    try:
        yield start
    finally:
        for _ns, proc in started:
            try:
                if proc.stdin is not None:
                    proc.stdin.close()
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for ns in dict.fromkeys(ns for ns, _proc in started):
            subprocess.run(["ip", "netns", "del", ns], check=False)


def _by_rule(document: dict[str, Any], rule: str) -> list[dict[str, Any]]:
    return [f for f in document["findings"] if f["rule"] == rule]


def test_server_that_never_closes_is_blamed_by_pid_and_port(scenario: Any) -> None:
    run = scenario("close-wait")
    code, doc = run.doctor("--threshold", "close-wait=5")
    assert code == 1
    (leak,) = _by_rule(doc, "close-wait")
    assert leak["severity"] == "warning"
    assert leak["state"] == "CLOSE_WAIT"
    ev = leak["evidence"]
    assert ev["count"] == run.facts["n"]
    assert ev["processes"][0]["pid"] == run.facts["server_pid"]
    assert ev["local"] == f"*:{run.facts['port']}"
    assert str(run.facts["server_pid"]) in leak["title"]
    assert "ss -K" in leak["advice"] and "descriptor" in leak["advice"]
    assert ev["idle_seconds"] is not None  # from TCP info: time since data last arrived
    # the clients closed first: their orphaned FIN_WAIT2 points at the same leak
    (fin2,) = _by_rule(doc, "fin-wait2")
    assert fin2["evidence"]["peer_processes"][0]["pid"] == run.facts["server_pid"]
    assert fin2["evidence"]["oldest_seconds"] is not None
    # default threshold (10) makes 8 leaked sockets a note, not an alarm
    code, doc = run.doctor("--lang", "zh")
    assert code == 0
    (leak,) = _by_rule(doc, "close-wait")
    assert leak["severity"] == "info"
    assert f"进程 {run.facts['server_pid']}" in leak["title"]


def test_short_client_connections_exhaust_a_narrow_port_range(scenario: Any) -> None:
    run = scenario("time-wait")
    code, doc = run.doctor()
    assert code == 1
    assert doc["kernel"]["settings"]["ip_local_port_range"] == [40000, 40039]
    (tw,) = _by_rule(doc, "time-wait")
    assert tw["severity"] == "warning"
    assert tw["evidence"]["remote"] == "127.0.0.1:8080"
    assert tw["evidence"]["count"] == run.facts["n"]
    assert tw["evidence"]["share"] == pytest.approx(run.facts["n"] / 40)
    assert "active closer" in tw["explanation"]
    # TIME_WAIT has no owner; the process still connected to the peer is named instead
    assert tw["evidence"]["processes"][0]["pid"] == run.facts["pid"]
    assert f"process {run.facts['pid']} ({COMM})" in tw["explanation"]
    assert 0 <= tw["evidence"]["oldest_seconds"] <= 60
    limits = {x["name"]: x for x in tw["evidence"]["limits"]}
    assert limits["ip_local_port_range"] == {
        "name": "ip_local_port_range",
        "value": "40000-40039",
        "assumed": False,
    }
    assert limits["tcp_tw_reuse"]["value"] == 0


def test_listener_that_never_accepts_fills_its_queue_and_strands_clients(scenario: Any) -> None:
    run = scenario("backlog")
    code, doc = run.doctor()
    assert code == 1
    (queue,) = _by_rule(doc, "accept-queue")
    assert queue["severity"] == "critical"
    ev = queue["evidence"]
    assert ev["local"] == f"127.0.0.1:{run.facts['port']}"
    assert ev["count"] == 2  # Linux queues backlog + 1
    assert ev["processes"][0]["pid"] == run.facts["pid"]
    assert ev["counters"]["ListenOverflows"] >= 1  # this namespace's own counter
    (stuck,) = _by_rule(doc, "syn-sent")
    assert stuck["severity"] == "warning"
    assert stuck["evidence"]["remote"] == f"127.0.0.1:{run.facts['port']}"
    assert stuck["evidence"]["count"] == run.facts["n"] - 2
    assert f"listener on this machine, 127.0.0.1:{run.facts['port']}" in stuck["explanation"]


def test_dropped_syn_acks_leave_a_full_syn_queue(scenario: Any) -> None:
    run = scenario("syn-flood")
    code, doc = run.doctor()
    assert code == 1
    (flood,) = _by_rule(doc, "syn-recv")
    assert flood["severity"] == "critical"
    ev = flood["evidence"]
    # recent kernels admit backlog + 1 requests, older ones backlog
    assert ev["count"] in (run.facts["backlog"], run.facts["backlog"] + 1)
    assert ev["share"] >= 1.0
    assert ev["local"] == f"127.0.0.1:{run.facts['port']}"
    assert ev["processes"][0]["pid"] == run.facts["pid"]
    assert ev["distinct_peers"] == 1
    assert ev["counters"]["SyncookiesSent"] >= 1  # the SYNs beyond the queue got cookies
    assert "tcp_syncookies is 1" in flood["advice"]


def test_spoofed_syn_flood_from_another_namespace(scenario: Any) -> None:
    """Raw SYNs from made-up sources through a veth pair: a real SYN flood, in miniature."""
    server = scenario("listen", "16")
    tag = os.getpid() % 250
    client_ns = f"tlc{os.getpid()}"
    here, there = f"tdS{tag}x{os.getpid() % 10000}", f"tdC{tag}x{os.getpid() % 10000}"
    peer = ["peer", "name", there, "netns", client_ns]
    subprocess.run(["ip", "netns", "add", client_ns], check=True)
    try:
        for argv in (
            ["ip", "link", "add", here, "netns", server.ns, "type", "veth", *peer],
            [*_IN_NS, server.ns, "ip", "addr", "add", f"10.77.{tag}.1/24", "dev", here],
            [*_IN_NS, server.ns, "ip", "link", "set", here, "up"],
            [*_IN_NS, server.ns, "ip", "route", "add", "default", "via", f"10.77.{tag}.2"],
            [*_IN_NS, client_ns, "ip", "addr", "add", f"10.77.{tag}.2/24", "dev", there],
            [*_IN_NS, client_ns, "ip", "link", "set", there, "up"],
        ):
            subprocess.run(argv, check=True, capture_output=True)
        flood = scenario(
            "raw-syns",
            f"10.77.{tag}.1",
            str(server.facts["port"]),
            "24",
            f"10.78.{tag}",
            ns=client_ns,
        )
        assert flood.facts == {"sent": 24}
        deadline = time.monotonic() + 5
        while True:
            code, doc = server.doctor()
            if _by_rule(doc, "syn-recv") or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    finally:
        subprocess.run(["ip", "netns", "del", client_ns], check=False)
    (syn,) = _by_rule(doc, "syn-recv")
    assert code == 1 and syn["severity"] == "critical"
    ev = syn["evidence"]
    assert ev["local"] == f"0.0.0.0:{server.facts['port']}"  # matched to the wildcard listener
    assert ev["processes"][0]["pid"] == server.facts["pid"]
    assert ev["count"] in (16, 17)  # the queue: backlog (+1 on recent kernels)
    assert ev["distinct_peers"] == ev["count"]  # every SYN from its own made-up source
    assert all(p["address"].startswith(f"10.78.{tag}.") for p in ev["peers"])
    assert ev["counters"]["SyncookiesSent"] >= 24 - 17  # the rest were answered with cookies


def test_receiver_that_stops_reading_then_a_sender_that_closes(scenario: Any) -> None:
    run = scenario("slow-reader")
    code, doc = run.doctor("--threshold", "recv-q=64k", "--threshold", "send-q=64k")
    assert code == 1
    (unread,) = _by_rule(doc, "recv-q")
    assert unread["evidence"]["processes"][0]["pid"] == run.facts["receiver_pid"]
    assert unread["evidence"]["queue"] >= 64 * 1024
    assert unread["evidence"]["local_ports"][0]["port"] == run.facts["port"]
    (unacked,) = _by_rule(doc, "send-q")
    assert unacked["evidence"]["remote"] == f"127.0.0.1:{run.facts['port']}"
    assert unacked["evidence"]["queue"] >= 64 * 1024
    assert unacked["evidence"]["peer_processes"][0]["pid"] == run.facts["receiver_pid"]
    assert "zero window" in unacked["explanation"]
    run.send("close-sender")
    deadline = time.monotonic() + 5
    while True:
        code, doc = run.doctor("--threshold", "orphans=0.000001")
        if _by_rule(doc, "fin-wait1") or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    (fin1,) = _by_rule(doc, "fin-wait1")
    assert fin1["severity"] == "warning"
    assert fin1["evidence"]["remote"] == f"127.0.0.1:{run.facts['port']}"
    assert fin1["evidence"]["queue"] > 0
    assert "zero window" in fin1["explanation"]
    assert f"process {run.facts['receiver_pid']} ({COMM}) holds it" in fin1["explanation"]
    (orphans,) = _by_rule(doc, "orphans")
    assert orphans["evidence"]["count"] >= 1
    # inside a namespace tcp_max_orphans cannot be read: the doctor says it assumed it
    assert orphans["evidence"]["limits"][0]["assumed"] is True


def test_fin_never_acknowledged_lingers_in_last_ack(scenario: Any) -> None:
    run = scenario("last-ack")
    deadline = time.monotonic() + 5
    while True:
        code, doc = run.doctor("--threshold", "last-ack.retransmits=2")
        if _by_rule(doc, "last-ack") or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    (la,) = _by_rule(doc, "last-ack")
    assert code == 1
    assert la["severity"] == "warning"
    assert la["evidence"]["retransmits"] >= 2
    assert la["evidence"]["local"] == f"*:{run.facts['port']}"


def test_healthy_namespace_has_nothing_at_warning_or_above(scenario: Any) -> None:
    run = scenario("healthy")
    code, doc = run.doctor()
    assert code == 0
    assert doc["summary"]["warning"] == doc["summary"]["critical"] == 0
    assert doc["snapshot"]["sockets"] >= 7
    assert doc["kernel"]["assumed"] is False
    result = subprocess.run(
        ["ip", "netns", "exec", run.ns, sys.executable, "-m", "tcplens", "doctor"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "Kernel settings read from /proc." in result.stdout
