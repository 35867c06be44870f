"""``tcplens trace`` as a subprocess while the test moves real loopback sockets through states.

Every run is filtered with ``--port`` on a listener this test owns, so other
suites' sockets never show up.  The test waits for each transition to be
printed before causing the next one, so a slow snapshot (the netlink dump
walks every namespace's sockets) delays the test instead of failing it.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import pytest

WAIT = 15.0  # seconds any single expected line may take before the test fails


class Follow:
    """A running ``tcplens`` subprocess whose stdout lines are read as they come."""

    def __init__(self, *args: str) -> None:
        if args[:1] == ("trace",) and "--mode" not in args:
            args = (*args, "--mode", "sampled")  # these tests are about snapshots
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tcplens", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self.err_lines: queue.Queue[str | None] = queue.Queue()
        self.stderr: list[str] = []
        assert self.proc.stdout is not None and self.proc.stderr is not None
        threading.Thread(
            target=self._pump, args=(self.proc.stdout, self._queue), daemon=True
        ).start()
        threading.Thread(
            target=self._pump, args=(self.proc.stderr, self.err_lines), daemon=True
        ).start()

    @staticmethod
    def _pump(stream: IO[str], into: queue.Queue[str | None]) -> None:
        for line in stream:
            into.put(line.rstrip("\n"))
        into.put(None)

    def started(self, word: str) -> None:
        """Wait until the first snapshot is taken (the stderr note naming ``word``)."""
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            try:
                line = self.err_lines.get(timeout=0.1)
            except queue.Empty:
                continue
            if line is None:
                break
            self.stderr.append(line)
            if line.startswith(word):
                return
        raise AssertionError(f"{word!r} never started: {self.stderr}")

    def wait_for(self, predicate: Callable[[str], bool], n: int = 1) -> list[str]:
        """Block until ``n`` stdout lines (seen so far or arriving) satisfy ``predicate``."""
        deadline = time.monotonic() + WAIT
        while True:
            hits = [line for line in self.lines if predicate(line)]
            if len(hits) >= n:
                return hits
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"expected {n} matching lines, got: {self.lines}")
            try:
                line = self._queue.get(timeout=min(remaining, 0.1))
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError(f"process ended early: {self.lines} {self.stderr}")
            self.lines.append(line)

    def finish(self, *, interrupt: bool = False, timeout: float = WAIT) -> int:
        """Let the process end (or Ctrl-C it) and collect the rest of its output."""
        if interrupt:
            self.proc.send_signal(signal.SIGINT)
        code = self.proc.wait(timeout=timeout)
        while (line := self._queue.get(timeout=WAIT)) is not None:
            self.lines.append(line)
        while (err := self.err_lines.get(timeout=WAIT)) is not None:
            self.stderr.append(err)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@contextlib.contextmanager
def following(*args: str) -> Iterator[Follow]:
    run = Follow(*args)
    try:
        yield run
    finally:
        run.kill()


@contextlib.contextmanager
def listener() -> Iterator[socket.socket]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    try:
        yield sock
    finally:
        sock.close()


def port_of(sock: socket.socket, *, peer: bool = False) -> int:
    return int((sock.getpeername() if peer else sock.getsockname())[1])


def reset(sock: socket.socket) -> None:
    """Close with SO_LINGER 0: an RST, so both ends leave the table at once."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


CHANGE_KEYS = {
    *("version", "type", "time", "time_iso", "since", "conn", "event", "proto", "family"),
    *("local", "remote", "old", "new", "spent", "spent_complete", "in_model", "model_path"),
    *("unseen", "inode", "pid", "process"),
}
SUMMARY_KEYS = {
    "version",
    "type",
    "snapshots",
    "started",
    "ended",
    "changes",
    "off_model",
    "states",
}
STATE_KEYS = {"stays", "total", "mean", "longest", "partial", "ongoing", "ongoing_longest"}
DOC = Path(__file__).resolve().parents[2] / "docs" / "watch.md"


def test_the_json_lines_contract_is_documented() -> None:
    text = DOC.read_text()
    for key in CHANGE_KEYS | SUMMARY_KEYS | STATE_KEYS:
        assert f"`{key}`" in text or f'"{key}"' in text, key


def changes(run: Follow) -> list[dict[str, Any]]:
    return [json.loads(line) for line in run.lines if '"type":"change"' in line]


def test_trace_follows_a_close_through_its_states_with_times_and_model_paths() -> None:
    with listener() as lsock, following(
        "trace", "--port", str(port_of(lsock)), "--interval", "0.05", "--duration", "60",
        "--json", "-P",
    ) as run:  # fmt: skip
        run.started("tracing")
        client = socket.create_connection(("127.0.0.1", port_of(lsock)))
        server, _ = lsock.accept()
        cport = port_of(client)

        def event(
            kind: str, local: int, olds: tuple[str | None, ...], new: str | None
        ) -> Callable[[str], bool]:
            def check(line: str) -> bool:
                doc = json.loads(line)
                return (
                    doc.get("type") == "change"
                    and (doc["event"], doc["local"]["port"], doc["new"]) == (kind, local, new)
                    and doc["old"] in olds
                )

            return check

        sport = port_of(server)
        run.wait_for(event("opened", cport, (None,), "ESTABLISHED"))
        run.wait_for(event("opened", sport, (None,), "ESTABLISHED"))
        client.close()  # active close: client FIN_WAIT1 -> FIN_WAIT2, server CLOSE_WAIT
        run.wait_for(event("changed", sport, ("ESTABLISHED",), "CLOSE_WAIT"))
        # FIN_WAIT1 usually lasts microseconds on loopback, but a loaded host can show it
        run.wait_for(event("changed", cport, ("ESTABLISHED", "FIN_WAIT1"), "FIN_WAIT2"))
        held = time.monotonic()
        time.sleep(0.5)  # CLOSE_WAIT lasts as long as the application waits
        server.close()
        closed_at = time.monotonic()
        run.wait_for(event("closed", sport, ("CLOSE_WAIT", "LAST_ACK"), None))
        run.wait_for(event("changed", cport, ("FIN_WAIT2",), "TIME_WAIT"))
        assert run.finish(interrupt=True) == 0

    rows = changes(run)
    assert all(r["version"] == 1 for r in rows)
    assert all(set(r) == CHANGE_KEYS for r in rows)  # every key, always
    assert all(r["in_model"] is not False for r in rows)
    client_rows = [r for r in rows if r["local"]["port"] == cport]
    server_rows = [r for r in rows if r["local"]["port"] == sport]
    # the orphaned client socket lost its inode, and is still the same connection
    assert len({r["conn"] for r in client_rows}) == 1
    assert client_rows[0]["inode"] is not None and client_rows[-1]["inode"] is None
    seen = [client_rows[0]["new"]] + [r["new"] for r in client_rows[1:]]
    unseen = [s for r in client_rows for s in r["unseen"]]
    # every state of an active close, each either observed or named as passed unseen
    assert sorted(seen + unseen) == sorted(["ESTABLISHED", "FIN_WAIT1", "FIN_WAIT2", "TIME_WAIT"])
    fin_wait2 = next(r for r in client_rows if r["new"] == "FIN_WAIT2")
    if fin_wait2["old"] == "ESTABLISHED":
        assert fin_wait2["unseen"] == ["FIN_WAIT1"]
        assert fin_wait2["model_path"] == ["ESTABLISHED", "FIN_WAIT1", "FIN_WAIT2"]
    assert fin_wait2["in_model"] is True and fin_wait2["spent_complete"] is True
    close_wait = next(r for r in server_rows if r["old"] == "CLOSE_WAIT")
    assert close_wait["model_path"] in (["CLOSE_WAIT", "CLOSED"], ["CLOSE_WAIT", "LAST_ACK"])
    assert 0.5 <= close_wait["spent"] <= closed_at - held + 5.0
    assert close_wait["since"] < close_wait["time"]
    opened = server_rows[0]
    assert opened["event"] == "opened" and opened["in_model"] is None and opened["spent"] is None

    summary = json.loads(run.lines[-1])
    assert summary["type"] == "summary" and summary["version"] == 1
    assert set(summary) == SUMMARY_KEYS
    assert all(set(v) == STATE_KEYS for v in summary["states"].values())
    states = summary["states"]
    assert states["ESTABLISHED"]["stays"] == 2
    assert states["CLOSE_WAIT"]["stays"] == 1 and states["CLOSE_WAIT"]["longest"] >= 0.5
    assert states["FIN_WAIT2"]["stays"] == 1
    assert states["TIME_WAIT"]["ongoing"] == 1
    assert states["LISTEN"]["ongoing"] == 1 and states["LISTEN"]["stays"] == 0
    assert summary["changes"] == len(rows) and summary["off_model"] == 0


def test_trace_text_lines_and_summary_with_process_names() -> None:
    with listener() as lsock, following(
        "trace", "--port", str(port_of(lsock)), "--interval", "0.05", "--duration", "60",
    ) as run:  # fmt: skip
        run.started("tracing")
        client = socket.create_connection(("127.0.0.1", port_of(lsock)))
        server, _ = lsock.accept()
        sport = port_of(server)
        run.wait_for(lambda line: f"127.0.0.1:{sport} <->" in line and "new -> ESTABLISHED" in line)
        reset(client)
        server.close()
        run.wait_for(lambda line: "ESTABLISHED -> gone" in line, n=2)
        assert run.finish(interrupt=True) == 0

    (opened,) = [line for line in run.lines if f"127.0.0.1:{sport} <->" in line and "new" in line]
    assert f"[{os.getpid()}/" in opened  # the accepted socket belongs to this test
    gone = [line for line in run.lines if "ESTABLISHED -> gone" in line]
    assert all(" after " in line for line in gone)
    head = next(i for i, line in enumerate(run.lines) if line.startswith("Time in state over"))
    table = "\n".join(run.lines[head:])
    assert "ESTABLISHED" in table and "LISTEN" in table
    assert "0 outside the state model" in run.lines[head]


def test_duration_stops_the_trace_by_itself() -> None:
    with listener() as lsock:
        args = ["trace", "--port", str(port_of(lsock)), "-P", "--interval", "0.2"]
        args += ["--mode", "sampled"]
        started = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-m", "tcplens", *args, "--duration", "1"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        took = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    assert 1.0 <= took < 1.0 + WAIT
    # (that the last snapshot falls on the end is tested with a fake clock in test_watch.py)
    assert re.search(r"Time in state over [0-9.]+s \(\d+ snapshots, 0 changes", done.stdout)


def test_state_filter_shows_changes_from_or_to_the_state() -> None:
    with listener() as lsock, following(
        "trace", "--port", str(port_of(lsock)), "--state", "close-wait", "--interval", "0.05",
        "--duration", "30", "-P",
    ) as run:  # fmt: skip
        run.started("tracing")
        client = socket.create_connection(("127.0.0.1", port_of(lsock)))
        server, _ = lsock.accept()
        time.sleep(0.3)  # likely, not certain, to be sampled as ESTABLISHED first
        client.close()
        run.wait_for(lambda line: "-> CLOSE_WAIT" in line)
        server.close()
        run.wait_for(lambda line: "CLOSE_WAIT -> gone" in line)
        assert run.finish(interrupt=True) == 0
    events = [line for line in run.lines if " -> " in line and line[:2].isdigit()]
    head = next(i for i, line in enumerate(run.lines) if line.startswith("Time in state over"))
    assert [line.split()[0] for line in run.lines[head + 2 : -1]] == ["CLOSE_WAIT"]
    # into CLOSE_WAIT ("new -> CLOSE_WAIT" if the ESTABLISHED moment fell between two
    # snapshots) and out of it; not the client's FIN_WAIT2/TIME_WAIT, not ESTABLISHED opens
    assert len(events) == 2, events
    assert "ESTABLISHED -> CLOSE_WAIT" in events[0] or "new -> CLOSE_WAIT" in events[0]
    assert "CLOSE_WAIT -> gone" in events[1]


def test_from_file_and_conflicting_limits_are_usage_errors(tmp_path: Any) -> None:
    saved = tmp_path / "ss.txt"
    saved.write_text("State Recv-Q Send-Q Local Address:Port Peer Address:Port\n")
    for args in (["--from", str(saved)], ["--count", "2", "--duration", "1"]):
        done = subprocess.run(
            [sys.executable, "-m", "tcplens", "trace", *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 2, done.stderr
        assert "Traceback" not in done.stderr
    assert "live source" in done.stderr or "--duration" in done.stderr


@pytest.mark.parametrize("verb", ["trace", "watch"])
def test_count_stops_after_n_snapshots(verb: str) -> None:
    with listener() as lsock:
        args = [verb, "--port", str(port_of(lsock)), "-P", "--interval", "0.05", "--count", "3"]
        if verb == "trace":
            args += ["--mode", "sampled"]
        done = subprocess.run(
            [sys.executable, "-m", "tcplens", *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert done.returncode == 0, done.stderr
    assert "1 socket every" in done.stderr  # the listener, and nothing from other suites
    if verb == "trace":
        assert "(3 snapshots, 0 changes" in done.stdout
    else:
        assert done.stdout == ""


def test_pid_filter_follows_only_this_process_sockets() -> None:
    with listener() as lsock, following(
        "trace", "--pid", str(os.getpid()), "--port", str(port_of(lsock)), "--interval", "0.05",
        "--duration", "60", "--json",
    ) as run:  # fmt: skip
        run.started("tracing")
        client = socket.create_connection(("127.0.0.1", port_of(lsock)))
        server, _ = lsock.accept()
        run.wait_for(lambda line: '"event":"opened"' in line, n=2)
        reset(client)
        server.close()
        run.wait_for(lambda line: '"event":"closed"' in line, n=2)
        assert run.finish(interrupt=True) == 0
    rows = changes(run)
    assert rows and all(r["pid"] == os.getpid() for r in rows)


def test_source_failing_mid_trace_keeps_the_summary_and_exits_2(tmp_path: Path) -> None:
    root = tmp_path / "proc"
    shutil.copytree(Path(__file__).parents[1] / "fixtures" / "proc", root)
    with following(
        "trace", "--proc-root", str(root), "-P", "--interval", "0.05", "--duration", "60",
    ) as run:  # fmt: skip
        run.started("tracing")
        shutil.rmtree(root)
        code = run.finish()
    assert code == 2
    assert any(line.startswith("tcplens: error:") for line in run.stderr), run.stderr
    assert not any("Traceback" in line for line in run.stderr)
    assert any(line.startswith("Time in state over") for line in run.lines)


def test_ctrl_c_stops_trace_started_with_sigint_ignored() -> None:
    """`tcplens trace &` from a non-interactive shell inherits SIGINT ignored; Ctrl+C stops it."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tcplens", "trace", "--port", "1", "--interval", "0.05",
         "--mode", "sampled"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        assert proc.stderr is not None
        while "tracing" not in proc.stderr.readline():  # the loop is running
            assert time.monotonic() < deadline and proc.poll() is None
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
