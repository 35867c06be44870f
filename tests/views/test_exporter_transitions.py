"""The exporter's transition metrics: counted from Transition objects, and live from the kernel."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from tcplens.analysis.diff import model_path
from tcplens.analysis.transitions import Transition
from tcplens.model.states import State
from tcplens.sources import tracepoints as tp
from tcplens.sources.records import Addr, Socket
from tcplens.views.exporter_transitions import TransitionCollector, TransitionCounts


def _t(old: State, new: State, spent: float | None) -> Transition:
    sock = Socket("tcp", 4, Addr("127.0.0.1", 1), Addr("127.0.0.1", 2), new)
    return Transition(1, 0.0, 0, sock, old, new, spent, True, None, model_path(old, new))


def _samples(counts: TransitionCounts) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    from prometheus_client.registry import CollectorRegistry

    registry = CollectorRegistry(auto_describe=False)
    registry.register(TransitionCollector(counts))
    text = generate_latest(registry).decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
    }


def test_transitions_are_counted_by_pair_and_stays_land_in_their_bucket() -> None:
    counts = TransitionCounts()
    S = State
    counts.add(
        [
            _t(S.FIN_WAIT1, S.FIN_WAIT2, 30e-6),
            _t(S.FIN_WAIT1, S.FIN_WAIT2, 2e-3),
            _t(S.CLOSE_WAIT, S.LAST_ACK, 90.0),
            _t(S.ESTABLISHED, S.SYN_SENT, None),  # off the model, and not timed
        ]
    )
    got = _samples(counts)

    def value(name: str, **labels: str) -> float:
        return got[(name, frozenset(labels.items()))]

    assert value("tcplens_transitions_total", **{"from": "FIN_WAIT1", "to": "FIN_WAIT2"}) == 2
    assert value("tcplens_transitions_total", **{"from": "ESTABLISHED", "to": "SYN_SENT"}) == 1
    assert value("tcplens_transitions_total", **{"from": "SYN_SENT", "to": "ESTABLISHED"}) == 0
    bucket = "tcplens_state_duration_seconds_bucket"
    assert value(bucket, state="FIN_WAIT1", le="1e-05") == 0
    assert value(bucket, state="FIN_WAIT1", le="0.0001") == 1
    assert value(bucket, state="FIN_WAIT1", le="0.01") == 2
    assert value(bucket, state="CLOSE_WAIT", le="60") == 0
    assert value(bucket, state="CLOSE_WAIT", le="120") == 1
    assert value("tcplens_state_duration_seconds_count", state="ESTABLISHED") == 0
    assert value("tcplens_state_duration_seconds_sum", state="CLOSE_WAIT") == 90.0
    assert value("tcplens_transitions_exact") == 0


@pytest.mark.skipif(os.geteuid() != 0, reason="tracefs needs root")
def test_a_root_exporter_counts_real_transitions_and_removes_its_instance() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tcplens", "exporter", "--listen", "127.0.0.1:0", "--no-doctor",
         "--no-processes"],
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        match = re.search(r"http://127\.0\.0\.1:(\d+)/metrics", line)
        assert match, line
        url = f"http://127.0.0.1:{match[1]}/metrics"
        lsock = socket.socket()
        lsock.bind(("127.0.0.1", 0))
        lsock.listen(64)
        port = lsock.getsockname()[1]

        def scrape() -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
            text = urllib.request.urlopen(url, timeout=30).read().decode()
            return {
                (s.name, frozenset(s.labels.items())): s.value
                for f in text_string_to_metric_families(text)
                for s in f.samples
                if s.name.startswith("tcplens_transitions") or s.name.startswith("tcplens_state")
            }

        key = ("tcplens_transitions_total", frozenset({("from", "FIN_WAIT2"), ("to", "TIME_WAIT")}))
        deadline = time.monotonic() + 20
        while scrape()[("tcplens_transitions_exact", frozenset())] != 1:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        before = scrape()[key]
        for _ in range(20):
            client = socket.create_connection(("127.0.0.1", port))
            server, _ = lsock.accept()
            client.close()
            server.recv(1)
            server.close()
        lsock.close()
        while scrape()[key] < before + 20:  # other suites' connections may add more
            assert time.monotonic() < deadline, scrape()[key]
            time.sleep(0.2)
        got = scrape()
        count = ("tcplens_state_duration_seconds_count", frozenset({("state", "LAST_ACK")}))
        assert got[count] >= 20
        name = f"{tp.INSTANCE_PREFIX}{proc.pid}"
        root, mounted = tp.find_tracefs()
        try:
            assert name in os.listdir(f"{root}/instances")
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=20) == 0
            assert name not in os.listdir(f"{root}/instances")
        finally:
            if mounted:
                tp._umount(root)
                os.rmdir(root)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
