"""One answer whatever the route and whatever the input: file, stdin or pipe.

``tcplens.packets.engine.reconstruct_capture`` is the only way from a capture
to connections.  The engine (Rust) and the reference (Python) must give the
same connections, the same summary and tracker counters, and the same error
for a damaged capture, after the same connections.  Through the CLI, a file
and the same bytes on stdin must print the same thing and exit the same way:
the disagreements issue 14 reported (found by fuzzing the two old readers)
are reproduced here.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import re
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tcplens.errors import InputError, TcplensError, TruncatedInput
from tcplens.packets.engine import (
    ROUTE_ENV,
    ROW_SEPARATORS,
    engine_available,
    reconstruct_capture,
    reconstruct_frames,
    render_capture,
    route,
)
from tcplens.packets.pcap import read_frames
from tcplens.packets.tracker import CaptureSummary, Timeouts, Tracker
from tcplens.views.commands import pcap as pcap_view

from . import build
from .build import ACK, FIN, SYN

FIXTURES = Path(__file__).parent.parent / "fixtures" / "pcap"
NAMES = sorted(p.name for p in FIXTURES.glob("*.pcap*"))

pytestmark = pytest.mark.skipif(not engine_available(), reason="the engine is not built")


def run(which: str, source: Any, monkeypatch: pytest.MonkeyPatch, **tracker: Any) -> dict[str, Any]:
    """Connections (as JSON), counters and the error, through one route."""
    monkeypatch.setenv(ROUTE_ENV, which)
    tr = Tracker(**tracker)
    summary = CaptureSummary()
    conns = []
    error = None
    try:
        for conn in reconstruct_capture(source, tr, summary, "capture.pcap"):
            conns.append(json.dumps(conn.as_dict(), sort_keys=True))
    except TcplensError as exc:
        error = (type(exc).__name__, str(exc), getattr(exc, "record", None))
    return {
        "connections": conns,
        "error": error,
        "summary": (
            summary.frames,
            summary.decode,
            summary.connections,
            summary.peak_live,
            summary.status,
        ),
        "tracker": (tr.now, tr.count, tr.peak, tr.evicted),
    }


def same(data: bytes, monkeypatch: pytest.MonkeyPatch, **tracker: Any) -> dict[str, Any]:
    ref = run("python", io.BytesIO(data), monkeypatch, **tracker)
    assert run("engine", io.BytesIO(data), monkeypatch, **tracker) == ref
    return ref


@pytest.mark.parametrize("name", NAMES)
def test_every_fixture_gives_the_same_connections_by_either_route(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = str(FIXTURES / name)
    ref = run("python", path, monkeypatch)
    assert ref["connections"] and ref["error"] is None
    assert run("engine", path, monkeypatch) == ref
    with open(path, "rb") as fh:
        assert run("engine", fh, monkeypatch) == ref
    # ladder charts keep every segment
    assert same(Path(path).read_bytes(), monkeypatch, keep_segments=True)["connections"]


class _RefusingReader(io.BufferedReader):
    """A file object whose ``read`` must not be called."""

    def read(self, size: int | None = -1) -> bytes:
        raise AssertionError("read through Python")


def test_a_regular_file_object_is_read_by_the_engine_from_where_it_stands(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What ``open(path, "rb")`` gives is read by Rust itself (its worker thread), from
    the object's position, never through ``read`` (the object does not move); every other
    file object keeps its ``read``: a subclass, a decompressing file whose descriptor is
    the compressed file's, a text file, a pipe (whose buffered bytes would be lost)."""
    data = (FIXTURES / NAMES[0]).read_bytes()
    ref = run("python", io.BytesIO(data), monkeypatch)
    assert ref["connections"]
    junk = tmp_path / "after-junk.pcap"
    junk.write_bytes(b"not a capture" + data)
    with open(junk, "rb") as fh:
        fh.seek(len(b"not a capture"))
        assert run("engine", fh, monkeypatch) == ref
        assert fh.tell() == len(b"not a capture")
    with (
        _RefusingReader(io.FileIO(junk, "rb")) as sub,
        pytest.raises(AssertionError, match="read through Python"),
    ):
        run("engine", sub, monkeypatch)
    packed = tmp_path / "capture.pcap.gz"
    packed.write_bytes(gzip.compress(data))
    with gzip.open(packed, "rb") as gz:
        assert run("engine", gz, monkeypatch) == ref
    # a text file's position is a cookie, not an offset: its own read, and its error
    with (
        open(junk, encoding="latin-1") as text,
        pytest.raises(TypeError, match="must be opened in binary mode"),
    ):
        run("engine", text, monkeypatch)
    read_fd, write_fd = os.pipe()
    assert len(data) < 65536  # fits the pipe
    os.write(write_fd, data)
    os.close(write_fd)
    with open(read_fd, "rb") as pipe:
        assert pipe.peek(1)  # Python's buffer now holds bytes the pipe no longer has
        assert run("engine", pipe, monkeypatch) == ref


def test_asking_again_after_the_error_gives_nothing_by_either_driver(tmp_path: Path) -> None:
    """After a damaged capture's error the engine has said its last: asked again, the
    worker's route and the calling thread's route both hand out an empty batch (not an
    "internal error" because the worker is gone)."""
    from tcplens import _engine

    cut = (FIXTURES / NAMES[0]).read_bytes()[:300]
    path = tmp_path / "cut.pcap"
    path.write_bytes(cut)
    for source in (str(path), io.BytesIO(cut)):
        capture = _engine.Capture(source, Tracker(), "cut", None, None)
        with pytest.raises(TruncatedInput):
            while capture.next_batch():
                pass
        assert [capture.next_batch() for _ in range(3)] == [[], [], []]


CORPUS = Path(__file__).parents[2] / "rust" / "fuzz" / "corpus" / "reader_decode"


@pytest.mark.parametrize("path", sorted(CORPUS.iterdir()), ids=lambda p: p.name[:16])
def test_every_fuzz_corpus_input_gives_the_same_connections_and_error(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    same(path.read_bytes(), monkeypatch)


@pytest.mark.parametrize("cut", [1, 7, 40, 200])
def test_a_truncated_capture_gives_the_connections_before_the_fault_then_the_error(
    cut: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = (FIXTURES / "200722_tcp_anon.pcapng").read_bytes()
    ref = same(data[:-cut], monkeypatch)
    assert ref["error"][0] in ("TruncatedInput", "CorruptRecord")
    assert ref["summary"][-1] == "truncated"
    assert ref["connections"]


def as_pcap(path: Path) -> bytes:
    """Any fixture re-written as classic pcap."""
    with path.open("rb") as fh:
        frames = [(f.ts_ns, f.data) for f in read_frames(fh)]
    return build.pcap(frames, nanos=True)


def damaged(data: bytes, record: int) -> tuple[bytes, int]:
    """``data`` with an impossible length in packet record ``record``, and that record's offset."""
    raw = bytearray(data)
    if raw[:4] == b"\x0a\x0d\x0d\x0a":
        offset, seen = 0, 0
        while True:
            kind, total = struct.unpack_from("<II", raw, offset)
            if kind in (3, 6):
                seen += 1
                if seen == record:
                    struct.pack_into("<I", raw, offset + 4, 0x7FFFFFFC)
                    return bytes(raw), offset
            offset += total
    offset = 24
    for _ in range(record - 1):
        offset += 16 + struct.unpack_from("<I", raw, offset + 8)[0]
    struct.pack_into("<I", raw, offset + 8, 300 << 20)
    return bytes(raw), offset


@pytest.mark.parametrize("layout", ["pcap", "pcapng"])
def test_an_impossible_record_length_ends_the_capture_like_a_truncation(
    layout: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = FIXTURES / "200722_tcp_anon.pcapng"
    data, offset = damaged(as_pcap(name) if layout == "pcap" else name.read_bytes(), 30)
    ref = same(data, monkeypatch)
    assert len(ref["connections"]) == 2  # both, as a truncation at record 30 gives them
    assert ref["error"][0] == "CorruptRecord"
    assert ref["error"][2] == 30
    assert f"byte {offset}:" in ref["error"][1]


def test_timeouts_and_the_connection_cap_evict_alike(monkeypatch: pytest.MonkeyPatch) -> None:
    frames = []
    for i in range(40):
        c, s = (f"10.0.{i // 200}.{i % 200 + 1}", 30000 + i), ("10.9.9.9", 80)
        t = i * 2_000_000_000
        frames.append((t, build.ether(build.ipv4(c[0], s[0], build.tcp(c[1], 80, 1, 0, SYN)))))
        if i % 3:
            synack = build.tcp(80, c[1], 9, 2, SYN | ACK)
            frames.append((t + 1000, build.ether(build.ipv4(s[0], c[0], synack))))
        if i % 5 == 0:
            fin = build.tcp(c[1], 80, 2, 10, FIN | ACK)
            frames.append((t + 2000, build.ether(build.ipv4(c[0], s[0], fin))))
    data = build.pcap(frames)
    ref = same(data, monkeypatch, max_connections=4, timeouts=Timeouts(1, 1, 1, 3))
    assert ref["tracker"][3] > 0, "something must have been evicted"
    big = Timeouts(100000, 100000, 100000, 100000)
    same(data, monkeypatch, timeouts=big, msl=100000)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# an input error after the first packet: no flush, so no peak is reported either
@example(edits=[(796, 1)], cut=0)
@given(
    edits=st.lists(st.tuples(st.integers(0, 4000), st.integers(0, 255)), max_size=4),
    cut=st.integers(0, 4000),
)
def test_damaged_captures_give_the_same_answer_by_either_route(
    edits: list[tuple[int, int]], cut: int
) -> None:
    data = bytearray((FIXTURES / "tcp_retransmissions.pcapng").read_bytes())
    for at, value in edits:
        if at < len(data):
            data[at] = value
    with pytest.MonkeyPatch.context() as mp:
        same(bytes(data[: len(data) - cut % len(data)]), mp)


def run_frames(which: str, data: bytes, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Frames read in Python and handed over one by one, as live capture does."""
    monkeypatch.setenv(ROUTE_ENV, which)
    changes: list[str] = []
    events: list[str] = []

    def changed(change: Any) -> None:
        changes.append(repr(change))
        events.append(f"change {change.index}")

    tr = Tracker(on_change=changed)
    summary = CaptureSummary()
    error = None
    try:
        for conn in reconstruct_frames(read_frames(io.BytesIO(data)), tr, summary, "eth0"):
            events.append(json.dumps(conn.as_dict(), sort_keys=True))
    except TcplensError as exc:
        error = (type(exc).__name__, str(exc))
    return {
        "changes": changes,
        "events": events,
        "error": error,
        "summary": (summary.frames, summary.decode, summary.connections, summary.peak_live),
        "status": summary.status,
        "tracker": (tr.now, tr.count, tr.peak, tr.evicted),
    }


@pytest.mark.parametrize("name", NAMES)
def test_frames_fed_one_by_one_report_the_same_changes_in_the_same_order(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = (FIXTURES / name).read_bytes()
    ref = run_frames("python", data, monkeypatch)
    assert ref["changes"]
    assert run_frames("engine", data, monkeypatch) == ref
    cut = run_frames("python", data[:-9], monkeypatch)
    assert cut["status"] == "truncated"
    assert run_frames("engine", data[:-9], monkeypatch) == cut


def test_an_unsupported_link_type_in_live_frames_is_the_same_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = build.pcap([(0, b"user0")], linktype=147)
    ref = run_frames("python", data, monkeypatch)
    assert ref["error"][0] == "InputError"
    assert run_frames("engine", data, monkeypatch) == ref


HOSTS = ["10.0.0.1", "192.168.7.200", "::1", "2001:db8::1:0:0:1", "::ffff:10.1.2.3", "fe80::"]


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=st.lists(
        st.tuples(
            st.integers(0, 2),  # client
            st.integers(0, 2),  # server
            st.booleans(),  # from the client
            st.sampled_from([SYN, SYN | ACK, ACK, FIN | ACK, 0x04, 0x14, 0x18, 0]),
            st.integers(0, 3),  # seq step
            st.integers(0, 300),  # payload
            # timestamps in 1/128 s steps make exact rounding ties at 6 and 9 decimals
            st.integers(0, 1 << 20),
        ),
        min_size=1,
        max_size=40,
    ),
    v6=st.booleans(),
)
def test_rows_written_by_the_engine_are_pythons_text_of_the_same_connections(
    rows: list[tuple[int, int, bool, int, int, int, int]], v6: bool
) -> None:
    frames = []
    for client, server, from_client, flags, step, size, tick in sorted(rows, key=lambda r: r[6]):
        c = (HOSTS[client + 3] if v6 else HOSTS[client % 2], 40000 + client)
        s = (HOSTS[server + 3] if v6 else HOSTS[1 - server % 2], 80 + server)
        a, b = (c, s) if from_client else (s, c)
        seg = build.tcp(a[1], b[1], 1000 + step * 7, 50 + step, flags, payload=b"x" * size)
        ip = build.ipv6(a[0], b[0], seg) if v6 else build.ipv4(a[0], b[0], seg)
        ts = 1_600_000_000_000_000_000 + tick * 7_812_500  # 1/128 s
        frames.append((ts, build.ether(ip, 0x86DD if v6 else 0x0800)))
    data = build.pcap(frames, nanos=True)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(ROUTE_ENV, "engine")
        conns = list(reconstruct_capture(io.BytesIO(data), Tracker(), CaptureSummary()))
        for rendering, python in (
            ("json", lambda c: json.dumps(c.as_dict())),
            ("zeek", lambda c: "\t".join(c.zeek.values())),
        ):
            got = render_capture(io.BytesIO(data), Tracker(), CaptureSummary(), None, rendering)
            sep = ROW_SEPARATORS[rendering]
            assert sep.join(got) == sep.join(python(c) for c in conns)
        # the piped table: the view's rows of the same connections (capture order, widths
        # growing with IPv6 addresses, relative start times at rounding ties)
        table = pcap_view._TABLE
        got = render_capture(io.BytesIO(data), Tracker(), CaptureSummary(), None, "table", table)
        assert "\n".join(got) == "\n".join(table.rows(conns))


def table_rows(route: str, data: bytes, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, ...]:
    monkeypatch.setenv(ROUTE_ENV, route)
    rows: list[str] = []
    summary = CaptureSummary()
    blocks = render_capture(io.BytesIO(data), Tracker(), summary, "c", "table", pcap_view._TABLE)
    try:
        for block in blocks:  # a batch of rows from the engine, one row from the reference
            rows.extend(block.split("\n"))
    except TcplensError as exc:
        return rows, str(exc), summary.frames
    return rows, None, summary.frames


def test_table_rows_waiting_for_an_open_connection_go_out_before_the_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # connection 1 stays open while 2..6 close: their rows wait for it; the capture then
    # stops in the middle of a record
    frames, t = [], 0
    for i in range(1, 7):
        c, s = ("10.0.0.1", 40000 + i), ("10.0.0.2", 80)
        steps = [(c, s, SYN, 1, 0), (s, c, SYN | ACK, 9, 2), (c, s, ACK, 2, 10)]
        if i > 1:
            steps += [(c, s, FIN | ACK, 2, 10), (s, c, FIN | ACK, 10, 3), (c, s, ACK, 3, 11)]
        for a, b, flags, seq, ack in steps:
            seg = build.tcp(a[1], b[1], seq, ack, flags)
            frames.append((t, build.ether(build.ipv4(a[0], b[0], seg))))
            t += 1_000_000
    data = build.pcap(frames)[:-5]
    ref = table_rows("python", data, monkeypatch)
    assert [row.split()[0] for row in ref[0]] == ["1", "2", "3", "4", "5", "6"]
    assert ref[1] is not None and "truncated" in ref[1]
    assert table_rows("engine", data, monkeypatch) == ref


def test_the_engine_refuses_a_table_layout_of_another_width() -> None:
    from tcplens import _engine

    data = (FIXTURES / NAMES[0]).read_bytes()
    with pytest.raises(ValueError, match="13 columns, not 2"):
        _engine.Capture(io.BytesIO(data), Tracker(), None, "table", ((True, 5), (False, 8)))


def test_route_is_the_engine_unless_forced_or_watched(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ROUTE_ENV, raising=False)
    assert route(Tracker()) == "engine"
    watched = Tracker(on_change=lambda change: None)
    assert route(watched) == "python"
    assert route(watched, reports_changes=True) == "engine"
    monkeypatch.setenv(ROUTE_ENV, "python")
    assert route(Tracker()) == "python"
    monkeypatch.setenv(ROUTE_ENV, "fast")
    with pytest.raises(InputError, match="must be 'engine' or 'python'"):
        route(Tracker())


# --- the CLI: a file and stdin give one answer -------------------------------------------


def tcplens(
    *args: str, stdin: bytes | None = None, **env: str
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "tcplens", *args],
        input=stdin,
        capture_output=True,
        timeout=60,
        env={**os.environ, **env},
    )


def file_and_stdin(tmp_path: Path, data: bytes, *args: str) -> subprocess.CompletedProcess[bytes]:
    path = tmp_path / "capture.pcap"
    path.write_bytes(data)
    from_file = tcplens("pcap", *args, str(path))
    from_stdin = tcplens("pcap", *args, "-", stdin=data)
    assert from_stdin.returncode == from_file.returncode
    # the input's name appears in the JSON and in messages; nothing else may differ
    named = str(path).encode()
    for out in ("stdout", "stderr"):
        stdin_out = re.sub(rb'(^|"|\n|: )- ', rb"\1F ", getattr(from_stdin, out))
        stdin_out = stdin_out.replace(b'"file": "-"', b'"file": "F"')
        assert stdin_out == getattr(from_file, out).replace(named, b"F")
    return from_file


@pytest.fixture(scope="module")
def syn_flood(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A million unanswered SYNs within one second of capture time: none times out, so
    the engine's worker tracks them for a second or more before any connection finishes."""
    record = struct.Struct("<IIII")
    frame = struct.Struct(">6s6sH2B3H2BH4s4sHHIIBBHHH")
    out = bytearray(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
    for i in range(1_000_000):
        ts = i  # microseconds
        out += record.pack(1_600_000_000 + ts // 1_000_000, ts % 1_000_000, 54, 54)
        out += frame.pack(
            b"\0" * 6, b"\1" * 6,
            0x0800, 0x45, 0, 40, 0, 0x4000, 64, 6, 0,
            struct.pack(">I", 0x0B000000 | i), b"\xc0\xa8\x00\x01",
            1024 + i % 60000, 80, i, 0, 0x50, SYN, 64240, 0, 0,
        )  # fmt: skip
    path = tmp_path_factory.mktemp("flood") / "flood.pcap"
    path.write_bytes(out)
    return path


def _workers() -> int:
    """The engine's threads in this process: the tracking worker and the decoder ahead of it."""
    names = (Path(task, "comm").read_text().strip() for task in Path("/proc/self/task").iterdir())
    return sum(name in ("tcplens-capture", "tcplens-decode") for name in names)


def test_a_capture_given_up_stops_its_worker(syn_flood: Path) -> None:
    """A capture dropped before its end (an early ``break``, a closed pipe) stops its
    threads within a few thousand packets, not at the end of the file."""
    from tcplens import _engine

    assert _workers() == 0
    capture = _engine.Capture(str(syn_flood), Tracker(), "flood", None, None)
    time.sleep(0.05)
    assert _workers() == 2, "the worker is tracking the flood, the decoder reading it"
    del capture
    deadline = time.monotonic() + 0.3  # the rest of the flood takes seconds
    while _workers() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert _workers() == 0


def test_ctrl_c_stops_a_capture_while_the_engine_works_ahead(syn_flood: Path) -> None:
    """The view waits for the worker tracking the flood; Ctrl+C must still stop the run
    at once (exit 130), as it stops a blocked read or write."""
    path = syn_flood
    proc = subprocess.Popen(
        [sys.executable, "-m", "tcplens", "pcap", "--json", str(path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        time.sleep(0.6)  # started, and into the SYNs
        assert proc.poll() is None, "the run ended before Ctrl+C"
        started = time.monotonic()
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=10)
        assert proc.returncode == 130
        assert time.monotonic() - started < 1.0  # tracking the rest takes seconds
    finally:
        proc.kill()
        proc.wait()


def test_pcap_version_0xFF02_is_an_error_from_a_file_and_from_stdin(tmp_path: Path) -> None:
    data = bytearray(build.pcap([(0, build.ether(build.ipv4("1.1.1.1", "2.2.2.2", b"")))]))
    data[4:6] = (0xFF02).to_bytes(2, "little")
    res = file_and_stdin(tmp_path, bytes(data), "--json")
    assert res.returncode == 2
    assert b"unsupported pcap version 65282" in res.stderr


def test_a_small_capture_has_one_zeek_state_from_a_file_and_from_stdin(tmp_path: Path) -> None:
    c, s = ("10.0.0.1", 40000), ("10.0.0.2", 80)
    rows = [(c, s, SYN, 1, 0), (c, s, SYN, 1, 0), (s, c, SYN | ACK, 9, 2), (c, s, ACK, 2, 10)]
    frames = [
        (i * 1_000_000, build.ether(build.ipv4(a[0], b[0], build.tcp(a[1], b[1], q, k, f))))
        for i, (a, b, f, q, k) in enumerate(rows)
    ]
    res = file_and_stdin(tmp_path, build.pcap(frames), "--zeek")
    assert res.returncode == 0
    assert b"\tS1\t" in res.stdout


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("mode", [["--json"], ["--zeek"], ["--states"], []])
def test_every_output_is_byte_identical_by_either_route_and_input(
    name: str, mode: list[str], tmp_path: Path
) -> None:
    data = (FIXTURES / name).read_bytes()
    engine = file_and_stdin(tmp_path, data, *mode)
    path = str(tmp_path / "capture.pcap")
    python = tcplens("pcap", *mode, path, **{ROUTE_ENV: "python"})
    assert (engine.returncode, engine.stdout, engine.stderr) == (
        python.returncode,
        python.stdout,
        python.stderr,
    )


def test_a_truncated_file_exits_1_with_its_connections_from_a_file_and_stdin(
    tmp_path: Path,
) -> None:
    data = (FIXTURES / "http_ip4and6.pcapng").read_bytes()[:-30]
    res = file_and_stdin(tmp_path, data, "--json")
    assert res.returncode == 1
    doc = json.loads(res.stdout)
    assert doc["connections"] and doc["summary"]["truncated"]
    assert b"record" in res.stderr and b"byte" in res.stderr


def test_a_bad_route_name_is_one_line_and_exit_2(tmp_path: Path) -> None:
    res = tcplens("pcap", str(FIXTURES / NAMES[0]), **{ROUTE_ENV: "numpy"})
    assert res.returncode == 2
    assert res.stderr.decode().count("\n") == 1
    assert b"Traceback" not in res.stderr


def test_a_pipe_given_by_name_hands_out_connections_before_it_ends(tmp_path: Path) -> None:
    """A FIFO named on the command line (``<(tcpdump -w -)``) is read as it comes: 600
    refused attempts (1,200 packets, fewer than the 2,048 a regular file is decoded
    ahead by) are handed out while the writer still holds the pipe open."""
    import threading

    from tcplens import _engine

    fifo = tmp_path / "live.pcap"
    os.mkfifo(fifo)
    frames = []
    for i in range(600):
        client = f"10.0.{i // 250}.{i % 250 + 1}"
        frames.append(
            (
                i * 1_000_000,
                build.ether(build.ipv4(client, "10.9.9.9", build.tcp(40000, 80, 1, 0, SYN))),
            )
        )
        frames.append(
            (
                i * 1_000_000 + 1000,
                build.ether(
                    build.ipv4("10.9.9.9", client, build.tcp(80, 40000, 0, 2, build.RST | ACK))
                ),
            )
        )
    # much later in capture time: every refused attempt has timed out by then
    frames.append(
        (10**12, build.ether(build.ipv4("10.8.8.8", "10.9.9.9", build.tcp(1, 80, 1, 0, SYN))))
    )
    handed_out = threading.Event()

    def write() -> None:
        with fifo.open("wb") as out:
            out.write(build.pcap(frames))
            out.flush()
            handed_out.wait(timeout=10)  # the pipe stays open until then

    writer = threading.Thread(target=write)
    writer.start()
    try:
        capture = _engine.Capture(str(fifo), Tracker(), "live", None, None)
        started = time.monotonic()
        batch = capture.next_batch()
        waited = time.monotonic() - started
        names = {
            Path(task, "comm").read_text().strip() for task in Path("/proc/self/task").iterdir()
        }
        handed_out.set()
        assert len(batch) >= 512
        assert waited < 5, "the connections waited for the writer to close the pipe"
        # the worker (still waiting for the pipe's end) decodes what it reads itself
        assert "tcplens-capture" in names and "tcplens-decode" not in names
    finally:
        handed_out.set()
        writer.join()


@pytest.mark.parametrize("mode", [["--json"], ["--zeek"], []])
def test_outputs_of_many_blocks_are_byte_identical_by_either_route(
    mode: list[str], tmp_path: Path
) -> None:
    """1,000 connections write 1.5 MiB of JSON, 104 KiB of conn.log, 154 KiB of table: the
    engine hands its rows out in blocks of ~32 KiB (one Python string each); joined as the
    view joins them, the same bytes as the reference's row-by-row output, from a file and
    from stdin."""
    frames = []
    for i in range(1000):
        c, s = (f"10.1.{i // 200}.{i % 200 + 1}", 40000 + i), ("10.2.0.1", 443)
        rows = [
            (c, s, SYN, 100, 0, b""),
            (s, c, SYN | ACK, 900, 101, b""),
            (c, s, ACK, 101, 901, b"x" * 10),
            (c, s, FIN | ACK, 111, 901, b""),
            (s, c, FIN | ACK, 901, 112, b""),
            (c, s, ACK, 112, 902, b""),
        ]
        for k, (a, b, flags, seq, ack, data) in enumerate(rows):
            seg = build.tcp(a[1], b[1], seq, ack, flags, payload=data)
            frames.append(
                (i * 10_000_000 + k * 1_000_000, build.ether(build.ipv4(a[0], b[0], seg)))
            )
    engine = file_and_stdin(tmp_path, build.pcap(frames), *mode)
    python = tcplens("pcap", *mode, str(tmp_path / "capture.pcap"), **{ROUTE_ENV: "python"})
    assert engine.returncode == 0 and len(engine.stdout) > 3 * 32 * 1024
    assert (engine.stdout, engine.stderr) == (python.stdout, python.stderr)
