"""The tracefs source: format files and ring-buffer pages parse, instances come and go, loss counts.

Parsers are tested on pages built here the way ``kernel/trace/ring_buffer.c``
writes them (property tests); the live tests run as root on this kernel's
tracefs, each with a listener of its own so other suites' sockets do not
matter.
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tcplens.errors import InputError
from tcplens.model.states import State
from tcplens.sources import tracepoints as tp

HEADER_PAGE = """\
\tfield: u64 timestamp;\toffset:0;\tsize:8;\tsigned:0;
\tfield: local_t commit;\toffset:8;\tsize:8;\tsigned:1;
\tfield: int overwrite;\toffset:8;\tsize:1;\tsigned:1;
\tfield: char data;\toffset:16;\tsize:4080;\tsigned:0;
"""
LAYOUT = tp.parse_header_page(HEADER_PAGE)


# --------------------------------------------------------------------------- format files


def test_format_file_fields_keep_offsets_sizes_signedness_and_array_lengths() -> None:
    text = (
        "name: inet_sock_set_state\nID: 2287\nformat:\n"
        "\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n"
        "\tfield:int oldstate;\toffset:16;\tsize:4;\tsigned:1;\n"
        "\tfield:__u8 saddr_v6[16];\toffset:40;\tsize:16;\tsigned:0;\n"
        '\nprint fmt: "x"\n'
    )
    fmt = tp.parse_format(text, system="sock")
    assert (fmt.name, fmt.id) == ("inet_sock_set_state", 2287)
    assert fmt.fields["oldstate"] == tp.FieldSpec("oldstate", "int", 16, 4, True)
    assert fmt.fields["saddr_v6"].count == 16


def test_an_unreadable_field_line_names_the_file_and_line() -> None:
    text = "name: x\nID: 1\nformat:\n\tfield:int a;\toffset:zero;\tsize:4;\tsigned:1;\n"
    with pytest.raises(InputError) as info:
        tp.parse_format(text, path="events/x/format")
    assert str(info.value).startswith("events/x/format line 4: unreadable field line")


@given(
    st.lists(
        st.tuples(
            st.from_regex(r"[a-z_][a-z0-9_]{0,12}", fullmatch=True),
            st.integers(0, 4096),
            st.sampled_from([1, 2, 4, 8]),
            st.booleans(),
        ),
        max_size=20,
        unique_by=lambda f: f[0],
    )
)
def test_format_files_round_trip(fields: list[tuple[str, int, int, bool]]) -> None:
    lines = ["name: e", "ID: 7", "format:"]
    for name, offset, size, signed in fields:
        lines.append(f"\tfield:int {name};\toffset:{offset};\tsize:{size};\tsigned:{int(signed)};")
    fmt = tp.parse_format("\n".join(lines))
    assert {n: (f.offset, f.size, f.signed) for n, f in fmt.fields.items()} == {
        n: (o, s, g) for n, o, s, g in fields
    }


@given(st.text(max_size=300))
def test_any_text_either_parses_or_raises_input_error(text: str) -> None:
    with contextlib.suppress(InputError):
        tp.parse_format(text)


# --------------------------------------------------------------------------- pages


def _page(items: list[tuple[str, int, bytes]], *, commit_extra: int = 0) -> tuple[bytes, int]:
    """A page as ring_buffer.c writes it: items are (kind, delta or absolute ts, payload)."""
    body = b""
    for kind, value, payload in items:
        if kind == "data" and len(payload) <= 112 and len(payload) % 4 == 0 and payload:
            body += struct.pack("=I", (value << 5) | (len(payload) // 4)) + payload
        elif kind == "data":
            padded = payload + b"\0" * (-len(payload) % 4)
            body += struct.pack("=II", value << 5, len(payload) + 4) + padded
        elif kind == "extend":
            body += struct.pack("=II", ((value & ((1 << 27) - 1)) << 5) | 30, value >> 27)
        elif kind == "pad":
            body += struct.pack("=II", (1 << 5) | 29, len(payload) + 4) + payload
    base = 1_000_000
    page = struct.pack("=Qq", base, len(body) + commit_extra) + body
    return page + b"\0" * (4096 - len(page)), base


_item = st.one_of(
    st.tuples(st.just("data"), st.integers(0, (1 << 27) - 1), st.binary(min_size=1, max_size=200)),
    st.tuples(st.just("extend"), st.integers(0, (1 << 40)), st.just(b"")),
    st.tuples(st.just("pad"), st.just(0), st.binary(min_size=4, max_size=16).map(
        lambda b: b[: len(b) // 4 * 4])),
)  # fmt: skip


@settings(max_examples=200)
@given(st.lists(_item, max_size=12))
def test_pages_give_back_every_event_with_its_timestamp(
    items: list[tuple[str, int, bytes]],
) -> None:
    page, base = _page(items)
    ts = base
    want = []
    for kind, value, payload in items:
        if kind == "data":
            ts += value
            want.append((ts, payload))
        elif kind == "extend":
            ts += value
    got = tp.parse_page(page, LAYOUT)
    assert got.damaged_at is None
    assert [(t, bytes(d[: len(p)])) for (t, d), (_, p) in zip(got.records, want, strict=True)] == [
        (t, p) for t, p in want
    ]


@given(st.binary(max_size=4096))
def test_garbage_pages_never_raise(page: bytes) -> None:
    tp.parse_page(page, LAYOUT)


def test_a_commit_past_the_page_keeps_the_events_before_the_damage() -> None:
    page, _ = _page([("data", 5, b"abcd"), ("data", 7, b"efgh")], commit_extra=8000)
    got = tp.parse_page(page, LAYOUT)
    assert [bytes(d) for _, d in got.records] == [b"abcd", b"efgh"]
    assert got.damaged_at is not None


def test_missed_events_stored_after_the_data_are_reported() -> None:
    body = struct.pack("=I", (3 << 5) | 1) + b"wxyz"
    commit = len(body) | (1 << 31) | (1 << 30)
    page = struct.pack("=Qq", 10, commit) + body + struct.pack("=Q", 42)
    got = tp.parse_page(page + b"\0" * 100, LAYOUT)
    assert got.missed == 42 and got.records[0][0] == 13


# --------------------------------------------------------------------------- live

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="tracefs needs root")


@contextlib.contextmanager
def tracefs() -> Iterator[str]:
    path, mounted = tp.find_tracefs()
    try:
        yield path
    finally:
        if mounted:
            tp._umount(path)
            os.rmdir(path)


def _instances(root: str) -> set[str]:
    return {n for n in os.listdir(f"{root}/instances") if n.startswith(tp.INSTANCE_PREFIX)}


@root_only
def test_a_session_reports_one_loopback_connection_with_kernel_times() -> None:
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen()
    port = lsock.getsockname()[1]
    with tp.TraceSession(ports=[port]) as session:
        before = time.time()
        client = socket.create_connection(("127.0.0.1", port))
        server, _ = lsock.accept()
        client.close()
        server.recv(1)
        server.close()
        time.sleep(0.05)
        events = session.read(flush=True)
        assert session.lost().total == 0
    lsock.close()
    moves = [(e.old, e.new) for e in events if e.kind == "state"]
    S = State
    assert moves == [
        (S.CLOSED, S.SYN_SENT), (S.SYN_SENT, S.ESTABLISHED), (S.LISTEN, S.SYN_RECV),
        (S.SYN_RECV, S.ESTABLISHED), (S.ESTABLISHED, S.FIN_WAIT1),
        (S.ESTABLISHED, S.CLOSE_WAIT), (S.FIN_WAIT1, S.FIN_WAIT2), (S.FIN_WAIT2, S.CLOSED),
        (S.CLOSE_WAIT, S.LAST_ACK), (S.LAST_ACK, S.CLOSED),
    ] or sorted(moves) == sorted([  # the two ends may interleave differently
        (S.CLOSED, S.SYN_SENT), (S.SYN_SENT, S.ESTABLISHED), (S.LISTEN, S.SYN_RECV),
        (S.SYN_RECV, S.ESTABLISHED), (S.ESTABLISHED, S.FIN_WAIT1),
        (S.ESTABLISHED, S.CLOSE_WAIT), (S.FIN_WAIT1, S.FIN_WAIT2), (S.FIN_WAIT2, S.CLOSED),
        (S.CLOSE_WAIT, S.LAST_ACK), (S.LAST_ACK, S.CLOSED),
    ])  # fmt: skip
    stamps = [e.mono_ns for e in events]
    assert stamps == sorted(stamps)
    assert all(before - 1 < e.at < time.time() + 1 for e in events)
    assert all(port in (e.local.port, e.remote.port) for e in events)


@root_only
def test_the_instance_is_removed_on_exit_and_on_error() -> None:
    with tracefs() as root:
        with tp.TraceSession() as session:
            name = os.path.basename(session.instance)
            assert name in _instances(root)
        assert name not in _instances(root)
        with pytest.raises(RuntimeError), tp.TraceSession():
            raise RuntimeError("boom")
        assert name not in _instances(root)
        with pytest.raises(tp.TraceUnavailable):  # fails half-way through opening
            tp.TraceSession(buffer_kb=1 << 40).open()
        assert name not in _instances(root)


@root_only
def test_instances_of_dead_runs_are_swept_and_live_ones_kept() -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    with tracefs() as root:
        os.mkdir(f"{root}/instances/{tp.INSTANCE_PREFIX}{dead.pid}")
        os.mkdir(f"{root}/instances/{tp.INSTANCE_PREFIX}1")  # init: alive
        try:
            with tp.TraceSession() as session:
                assert f"{tp.INSTANCE_PREFIX}{dead.pid}" in session.swept
            assert f"{tp.INSTANCE_PREFIX}{dead.pid}" not in _instances(root)
            assert f"{tp.INSTANCE_PREFIX}1" in _instances(root)
        finally:
            with contextlib.suppress(OSError):
                os.rmdir(f"{root}/instances/{tp.INSTANCE_PREFIX}1")


@root_only
def test_a_full_buffer_loses_events_and_says_how_many() -> None:
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(512)
    port = lsock.getsockname()[1]
    with tp.TraceSession(ports=[port], buffer_kb=64) as session:
        for _ in range(600):  # about 12 events of ~80 bytes each: far more than 64 KB
            client = socket.create_connection(("127.0.0.1", port))
            server, _ = lsock.accept()
            client.close()
            server.close()
        lost = session.lost()
        got = session.read(flush=True)
    lsock.close()
    assert lost.total > 0
    assert len(got) + lost.total >= 600 * 10  # every state event is either read or counted


@root_only
def test_another_runs_private_mount_is_never_borrowed() -> None:
    with tp.TraceSession() as first:
        if not first.mounted:
            pytest.skip("tracefs is mounted system-wide here: nothing private to borrow")
        path, mounted = tp.find_tracefs()
        try:
            assert path != first.root and mounted  # first's mount goes when first ends
        finally:
            if mounted:
                tp._umount(path)
                os.rmdir(path)


@root_only
def test_private_mounts_of_dead_runs_are_detached_and_removed() -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    base = tempfile.mkdtemp(prefix=f"tcplens-tracefs-{dead.pid}-")
    alive = tempfile.mkdtemp(prefix=f"tcplens-tracefs-{os.getpid()}-")
    try:
        tp._mount_tracefs(base)
        tp._mount_tracefs(alive)
        assert base in tp.sweep_mounts()
        assert not os.path.exists(base)
        assert os.path.isdir(f"{alive}/instances")  # ours: still mounted
    finally:
        tp._umount(alive)
        os.rmdir(alive)
        if os.path.exists(base):
            tp._umount(base)
            os.rmdir(base)


@root_only
def test_two_sessions_of_one_process_have_buffers_of_their_own() -> None:
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen()
    port = lsock.getsockname()[1]
    with tp.TraceSession(ports=[port]) as one, tp.TraceSession(ports=[port]) as two:
        assert one.instance != two.instance
        assert os.path.basename(two.instance) == f"{os.path.basename(one.instance)}-2"
        client = socket.create_connection(("127.0.0.1", port))
        client.close()
        time.sleep(0.05)
        first, second = one.read(flush=True), two.read(flush=True)
    lsock.close()
    assert [(e.old, e.new) for e in first if e.kind == "state"][:2] == [
        (State.CLOSED, State.SYN_SENT), (State.SYN_SENT, State.ESTABLISHED)
    ]  # fmt: skip
    # each instance stamps its own copy of every event, a microsecond or so apart
    assert [(e.kind, e.old, e.new, e.sk) for e in first] == [
        (e.kind, e.old, e.new, e.sk) for e in second
    ]


def test_a_dual_stack_socket_is_shown_in_v6_after_an_ipv4_one_with_the_same_bytes() -> None:
    text = Path(__file__).parent.parent / "fixtures/tracefs/sock_inet_sock_set_state.format"
    fmt = tp.parse_format(text.read_text(), system="sock")
    f = fmt.fields
    decoder = tp.Decoder([fmt])
    v4 = socket.inet_aton("192.0.2.7")
    mapped = socket.inet_pton(socket.AF_INET6, "::ffff:192.0.2.7")
    shown = []
    for family in (socket.AF_INET, socket.AF_INET6):
        data = bytearray(f["daddr_v6"].offset + 16)
        struct.pack_into("=H", data, f["common_type"].offset, fmt.id)
        struct.pack_into("=HHHH", data, f["sport"].offset, 80, 5000, family, 6)
        data[f["saddr"].offset : f["saddr"].offset + 4] = v4
        data[f["saddr_v6"].offset : f["saddr_v6"].offset + 16] = mapped
        event = decoder.decode(1, memoryview(bytes(data)), 0, 0.0)
        assert event is not None
        shown.append(event.local.ip)
    assert shown == ["192.0.2.7", "::ffff:192.0.2.7"]


@root_only
@pytest.mark.parametrize("route", ["lookups", "dump"])
def test_owners_are_looked_up_without_dumping_the_time_wait_minisockets(
    monkeypatch: pytest.MonkeyPatch, route: str
) -> None:
    """A few connections are asked for one by one; many in a dump without minisockets."""
    from tcplens.sources import netlink

    if route == "dump":
        monkeypatch.setattr(tp, "_OWNER_LOOKUPS", 1)

    asked: list[frozenset[State] | None] = []
    real = netlink.dump

    def spy(*args: object, **kwargs: object) -> object:
        states = kwargs.get("states")
        asked.append(None if states is None else frozenset(states))  # type: ignore[arg-type]
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(netlink, "dump", spy)
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen()
    port = lsock.getsockname()[1]
    closed = socket.create_connection(("127.0.0.1", port))
    peer, _ = lsock.accept()
    gone = closed.getsockname()
    closed.close()  # the client closes first: its end goes to TIME_WAIT
    peer.recv(1)
    peer.close()
    live = socket.create_connection(("127.0.0.1", port))
    key = ("127.0.0.1", live.getsockname()[1], "127.0.0.1", port)
    tw_key = ("127.0.0.1", gone[1], "127.0.0.1", port)
    time.sleep(0.05)
    assert tp.time_wait_table([port]).get(tw_key) is State.TIME_WAIT
    # the server's closed end: an exact lookup may be answered by the listener
    server_end = ("127.0.0.1", port, "127.0.0.1", gone[1])
    asked.clear()
    owners = tp.owners_by_tuple([key, tw_key, server_end], [port])
    assert owners[key][0] == os.getpid() and list(owners) == [key]
    if route == "lookups":
        assert asked == []
    else:
        dumped = asked[-1]
        assert dumped is not None and State.TIME_WAIT not in dumped
    live.close()
    lsock.close()


@root_only
def test_closes_are_told_time_wait_by_exact_lookups_as_by_the_table() -> None:
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen()
    port = lsock.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    server, _ = lsock.accept()
    mine = client.getsockname()[1]
    client.close()  # the client's end goes to TIME_WAIT, the server's to CLOSED
    server.recv(1)
    server.close()
    live = socket.create_connection(("127.0.0.1", port))
    time.sleep(0.05)
    tw = ("127.0.0.1", mine, "127.0.0.1", port)
    keys = [tw, ("127.0.0.1", port, "127.0.0.1", mine),  # the server end: closed (or the
            ("127.0.0.1", live.getsockname()[1], "127.0.0.1", port),  # listener answers)
            ("::1", 1, "::1", 2), ("not an address", 1, "::1", 2)]  # fmt: skip
    assert tp.time_wait_of(keys) == {tw: State.TIME_WAIT}
    assert tp.time_wait_table([port]) == {tw: State.TIME_WAIT}
    # and when its timer fires: TCP_TIMEWAIT_LEN (60 s) after the handover
    ((state, left),) = tp.time_wait_timers(keys).values()
    assert state is State.TIME_WAIT and 55.0 < left <= 60.0
    assert tp.time_wait_count() >= 1
    live.close()
    lsock.close()


@root_only
def test_lookups_whose_answers_overflow_the_socket_fall_back_to_the_table(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen()
    port = lsock.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    server, _ = lsock.accept()
    tw = ("127.0.0.1", client.getsockname()[1], "127.0.0.1", port)
    client.close()
    server.recv(1)
    server.close()
    time.sleep(0.05)
    monkeypatch.setattr(tp, "_LOOKUP_BATCH", 1000)  # many answers at once...
    monkeypatch.setattr(tp, "_LOOKUP_RCVBUF", 4096)  # ...into a tiny buffer: ENOBUFS
    absent = [("127.0.0.1", p, "127.0.0.2", port) for p in range(20000, 24000)]
    assert tp.time_wait_of([*absent, tw]) == {tw: State.TIME_WAIT}
    lsock.close()
