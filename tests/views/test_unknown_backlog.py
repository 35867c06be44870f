"""A listener's backlog is unknown to /proc/net and net-tools netstat, never 0.

``/proc/net/tcp`` prints ``tx_queue`` 0 for a LISTEN socket (it is
``write_seq - snd_una``, not the backlog netlink reports there), and net-tools
netstat reads that file.  Read as a backlog of 0, one pending connection on a
``listen(128)`` socket looked like a full accept queue: a false CRITICAL, exit
1, and an exporter sample that fired the shipped alert.  Each test here builds
that real listener with one connection waiting for ``accept()`` in a network
namespace of its own and reads it through every route a user has.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tcplens.analysis.doctor import diagnose
from tcplens.analysis.summary import Fold, Folded, summarize
from tcplens.model.states import State
from tcplens.sources import netlink, procfs
from tcplens.sources.kernel import KernelSettings
from tcplens.sources.records import Snapshot
from tests.netns import run_in_private_netns

pytestmark = pytest.mark.root

BACKLOG = 128
#: /proc/net follows the process's first thread; this one sees the namespace the body runs in
_OWN_NET = "/proc/thread-self"


def _tcplens(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tcplens", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


@contextmanager
def _pending_listener() -> Iterator[int]:
    """A ``listen(128)`` socket with one completed handshake not yet accepted; its port."""
    with socket.socket() as server, socket.socket() as client:
        server.bind(("127.0.0.1", 0))
        server.listen(BACKLOG)
        port = server.getsockname()[1]
        client.connect(("127.0.0.1", port))
        deadline = time.monotonic() + 5
        while not any(
            s.state is State.LISTEN and s.local.port == port and s.recv_q == 1
            for s in procfs.read(_OWN_NET, "tcp")
        ):
            assert time.monotonic() < deadline, "the connection never reached the accept queue"
            time.sleep(0.01)
        yield port


def _folded(snapshot: Snapshot) -> Folded:
    """The label sets the exporter renders (``summarize`` with its fold)."""
    folded = summarize(snapshot, busy_states=0, fold=Fold()).folded
    assert folded is not None
    return folded


def _listener(document: dict[str, Any], port: int) -> dict[str, Any]:
    (row,) = (
        s for s in document["sockets"] if s["state"] == "LISTEN" and s["local"]["port"] == port
    )
    return row


def test_procfs_reports_a_listeners_backlog_as_unknown_and_the_doctor_stays_calm() -> None:
    def body() -> None:
        with _pending_listener() as port:
            listing = _tcplens("ls", "--json", "--source", "procfs", "-l")
            assert listing.returncode == 0, listing.stderr
            row = _listener(json.loads(listing.stdout), port)
            assert row["recv_q"] == 1
            assert row["send_q"] is None
            # netlink does know it: the same socket, the real backlog
            live = _tcplens("ls", "--json", "--source", "netlink", "-l")
            assert _listener(json.loads(live.stdout), port)["send_q"] == BACKLOG

            doctor = _tcplens("doctor", "--json", "--source", "procfs")
            assert doctor.returncode == 0, doctor.stdout + doctor.stderr
            findings = json.loads(doctor.stdout)["findings"]
            assert not [f for f in findings if f["severity"] == "critical"], findings
            assert not [f for f in findings if f["rule"] == "accept-queue"], findings
            text = _tcplens("doctor", "--source", "procfs")
            assert text.returncode == 0 and "backlog 0" not in text.stdout, text.stdout

            status = _tcplens("status", "--source", "procfs")
            assert status.returncode == 0, status.stderr
            assert "backlog 0" not in status.stdout and "critical" not in status.stdout.lower()

    run_in_private_netns(body, required=True)


@pytest.mark.skipif(shutil.which("netstat") is None, reason="net-tools netstat not installed")
def test_a_pasted_netstat_dump_of_a_waiting_connection_is_not_a_full_queue(
    tmp_path: Path,
) -> None:
    def body() -> None:
        with _pending_listener() as port:
            dump = subprocess.run(
                ["netstat", "-tanp"], capture_output=True, text=True, check=True, timeout=30
            ).stdout
        assert f"127.0.0.1:{port}" in dump
        saved = tmp_path / "netstat-tanp.txt"
        saved.write_text(dump)

        listing = _tcplens("ls", "--json", "--from", str(saved))
        assert listing.returncode == 0, listing.stderr
        row = _listener(json.loads(listing.stdout), port)
        assert row["recv_q"] == 1 and row["send_q"] is None
        plain = _tcplens("ls", "--from", str(saved), "-l")
        (line,) = (x for x in plain.stdout.splitlines() if f":{port} " in x and "LISTEN" in x)
        assert line.split()[1:3] == ["1", "-"]

        doctor = _tcplens("doctor", "--from", str(saved))
        assert doctor.returncode == 0, doctor.stdout + doctor.stderr
        assert "backlog 0" not in doctor.stdout and "CRITICAL" not in doctor.stdout.upper()
        status = _tcplens("status", "--from", str(saved))
        assert status.returncode == 0 and "backlog 0" not in status.stdout

    run_in_private_netns(body, required=True)


def test_exporter_omits_an_unknown_backlog_instead_of_exporting_0() -> None:
    found: dict[str, Any] = {}

    def body() -> None:
        with _pending_listener() as port:
            found["port"] = str(port)
            found["procfs"] = procfs.snapshot(_OWN_NET)
            found["netlink"] = netlink.snapshot()

    run_in_private_netns(body, required=True)
    port = found["port"]
    from_proc = _folded(found["procfs"])
    assert from_proc.port_accept_queue[port] == 1
    assert port not in from_proc.port_backlog  # no sample, so no alert divides by 0
    assert _folded(found["netlink"]).port_backlog[port] == BACKLOG
    # and the doctor the exporter runs finds nothing critical in the same snapshot
    settings = KernelSettings()
    assert not [f for f in diagnose(found["procfs"], settings) if f.rule == "accept-queue"]
