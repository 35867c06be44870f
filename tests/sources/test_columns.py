"""The columnar dump: the same sockets as the record dump, and the same summary from them."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tcplens.analysis.summary import _round2, summarize
from tcplens.errors import InputError, SourceError
from tcplens.model import State
from tcplens.sources import columns, netlink, processes
from tcplens.sources.records import Snapshot, Socket
from tcplens.sources.select import ColumnListing
from tests.netns import run_in_private_netns
from tests.sources.test_netlink import _done, _ip4, _message

ROOT = Path(__file__).resolve().parents[2]


# --- pure: receive buffers cut into columns ---------------------------------------------


def _full(state: int, port: int, inode: int, timer: int = 0, expires: int = 0) -> bytes:
    # a full socket carries attributes after the inet_diag_msg (here one 8-byte rtattr)
    return _message(
        idiag_family=2,
        idiag_state=state,
        idiag_sport=port,
        idiag_src=_ip4("127.0.0.9"),
        idiag_dst=_ip4("127.0.0.8"),
        idiag_inode=inode,
        idiag_timer=timer,
        idiag_expires=expires,
        _attrs=b"\x08\x00\x08\x00\x00\x00\x00\x00",
    )


def _tw(port: int, expires: int) -> bytes:
    return _message(
        idiag_family=2, idiag_state=6, idiag_sport=port, idiag_timer=3, idiag_expires=expires
    )


def _listing(
    cols: columns.SocketColumns,
    tally: processes.Tally | None,
    host: str = "h",
    taken_at: float = 0.0,
) -> ColumnListing:
    return ColumnListing(
        cols, source="netlink", host=host, taken_at=taken_at, missing=[], tally=tally
    )


def _cut(*buffers: bytes) -> columns.SocketColumns:
    out = columns.SocketColumns()
    done = False
    for buf in buffers:
        done = columns._take(out, buf, "tcp")
    assert done
    return out


def test_uniform_and_mixed_buffers_give_the_same_columns() -> None:
    uniform = b"".join(_full(1, 1000 + i, 500 + i) for i in range(5))
    mixed = _full(8, 2000, 900, 2, 7_000) + _tw(2001, 59_000) + _full(10, 2002, 901)
    cols = _cut(uniform, mixed + _done())
    assert list(cols.state) == [1] * 5 + [8, 6, 10]
    assert list(cols.sport) == [1000, 1001, 1002, 1003, 1004, 2000, 2001, 2002]
    assert list(cols.inode) == [500, 501, 502, 503, 504, 900, 0, 901]
    assert list(cols.timer) == [0] * 5 + [2, 3, 0]
    assert list(cols.expires) == [0] * 5 + [7_000, 59_000, 0]
    # one message back as a record, whichever buffer kind it came from
    tw = cols.socket_at(6)
    assert tw.state is State.TIME_WAIT and tw.local.port == 2001 and tw.inode is None
    assert tw.timer is not None and tw.timer.remaining == 59.0
    cw = cols.socket_at(5)
    assert cw.state is State.CLOSE_WAIT and str(cw.remote) == "127.0.0.8:0" and cw.inode == 900
    assert cols.socket_at(4).local.port == 1004


_INTEGER_FIELDS = [
    (f.name, {"B": 0xFF, "H": 0xFFFF, "I": 0xFFFF_FFFF}[f.code])
    for f in netlink.INET_DIAG_MSG.fields
    if f.code in ("B", "H", "I")
]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.fixed_dictionaries(
                {name: st.integers(0, top) for name, top in _INTEGER_FIELDS}
                | {"idiag_src": st.binary(min_size=16, max_size=16)}
                | {"idiag_dst": st.binary(min_size=16, max_size=16)}
            ),
            st.booleans(),  # with attributes (a full socket) or without (a minisocket)
        ),
        min_size=1,
        max_size=12,
    )
)
def test_named_fields_read_what_the_one_struct_declares(
    sockets: list[tuple[dict[str, int | bytes], bool]],
) -> None:
    """Columns are named after inet_diag_msg's fields, at the offsets netlink derives."""
    attrs = b"\x08\x00\x08\x00\x00\x00\x00\x00"
    buf = b"".join(_message(**values, _attrs=attrs if full else b"") for values, full in sockets)
    cols = _cut(buf + _done())
    for name, _top in _INTEGER_FIELDS:
        short = name.removeprefix("idiag_")
        assert list(cols.numbers(short)) == [values[name] for values, _ in sockets], name
    for name in ("src", "dst"):
        assert cols.field(name) == b"".join(bytes(v[f"idiag_{name}"]) for v, _ in sockets)
        assert cols.field(name, 4) == b"".join(bytes(v[f"idiag_{name}"])[:4] for v, _ in sockets)
    assert list(cols.sport) == list(cols.numbers("sport")) and list(cols.state) == list(
        cols.numbers("state")
    )
    with pytest.raises(ValueError, match="cookie"):
        cols.numbers("cookie")


def test_a_buffer_of_one_length_is_sliced_without_a_walk(monkeypatch: pytest.MonkeyPatch) -> None:
    walked: list[int] = []
    real = columns._messages

    def counting(buf: bytes, proto: str) -> tuple[list[int], bool]:
        offsets, done = real(buf, proto)  # type: ignore[arg-type]
        walked.append(len(offsets))
        return offsets, done

    monkeypatch.setattr(columns, "_messages", counting)
    monkeypatch.setattr(columns, "_HEADS", None)  # the Python walk (the engine's: test_diag_engine)
    cols = _cut(b"".join(_full(1, p, p) for p in range(1, 300)) + _done())
    assert len(cols) == 299 and walked == [0]  # only the DONE after them was walked


def test_errors_read_as_the_record_parser_says_them() -> None:
    error = netlink.NLMSGHDR.pack(nlmsg_len=36, nlmsg_type=netlink.NLMSG_ERROR) + (
        (-13).to_bytes(4, "little", signed=True) + bytes(16)
    )
    with pytest.raises(SourceError, match="Permission denied"):
        _cut(error)
    bad = bytearray(_full(1, 80, 1))
    bad[0:4] = (4000).to_bytes(4, "little")  # longer than the buffer
    with pytest.raises(InputError, match="length 4000"):
        _cut(bytes(bad))


# --- live, in a network namespace of the test's own ---------------------------------------


@contextlib.contextmanager
def population(v6_time_wait: bool = True) -> Iterator[list[socket.socket]]:
    """LISTEN, ESTABLISHED, FIN_WAIT2/CLOSE_WAIT, TIME_WAIT (v4 and v6) and UDP sockets.

    Over 600 sockets, so the dump spans several receive buffers and the
    TIME_WAIT minisockets interleave with full sockets in them.
    """
    held: list[socket.socket] = []
    try:
        for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
            listener = socket.socket(family)
            listener.bind((host, 0))
            listener.listen(1024)
            held.append(listener)
            address = listener.getsockname()[:2]
            pairs = 200 if family == socket.AF_INET else 40
            for i in range(pairs):
                client = socket.socket(family)
                client.connect(address)
                server, _ = listener.accept()
                if i % 10 == 0:
                    client.shutdown(socket.SHUT_WR)  # FIN_WAIT2 / CLOSE_WAIT
                held += [client, server]
            closes = 150 if family == socket.AF_INET else (20 if v6_time_wait else 0)
            for _ in range(closes):
                client = socket.socket(family)
                client.connect(address)
                server, _ = listener.accept()
                client.close()  # active close: TIME_WAIT on the client's side
                server.close()
            udp = socket.socket(family, socket.SOCK_DGRAM)
            udp.bind((host, 0))
            held.append(udp)
            bound = socket.socket(family, socket.SOCK_DGRAM)  # idiag_if: an interface
            bound.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b"lo")
            bound.bind((host, 0))
            held.append(bound)
        time.sleep(0.2)  # let the last FINs land
        yield held
    finally:
        for s in held:
            s.close()


def _rows(snap_or_cols: object) -> Counter[tuple[str, int, State, int, int]]:
    if isinstance(snap_or_cols, Snapshot):
        return Counter(
            (s.proto, s.family, s.state, s.local.port or 0, s.inode or 0)
            for s in snap_or_cols.sockets
        )
    assert isinstance(snap_or_cols, columns.SocketColumns)
    cols = snap_or_cols
    out: Counter[tuple[str, int, State, int, int]] = Counter()
    for proto, family, start, stop in cols.ranges:
        for i in range(start, stop):
            state = netlink._STATES[cols.state[i]]
            out[(proto, family, state, cols.sport[i], cols.inode[i])] += 1
    return out


@pytest.mark.root
def test_live_columns_hold_the_sockets_the_record_dump_holds() -> None:
    def body() -> None:
        with population():
            cols = columns.dump_columns()
            snap = netlink.snapshot()
        assert len(cols) == len(snap.sockets) > 600
        assert _rows(cols) == _rows(snap)
        states = Counter(netlink._STATES[c] for c in cols.state)
        assert states[State.TIME_WAIT] == 170 and states[State.CLOSE_WAIT] == 24
        # every column agrees socket by socket, looked up through socket_at
        by_key = {(s.proto, str(s.local), str(s.remote)): s for s in snap.sockets}
        for i in range(0, len(cols), 7):
            sock = cols.socket_at(i)
            twin = by_key[(sock.proto, str(sock.local), str(sock.remote))]
            assert (sock.state, sock.inode, sock.uid) == (twin.state, twin.inode, twin.uid)
            assert (sock.timer is None) == (twin.timer is None)

    run_in_private_netns(body, required=True)


def test_split_states_decides_from_the_count_and_the_states() -> None:
    est = netlink.state_mask([State.ESTABLISHED])
    big = columns.SPLIT_MIN
    assert columns.split_states(None, big - 1) is None  # small: one request is cheaper
    assert columns.split_states(None, None) is None  # counters unreadable
    assert columns.split_states(None, big) == (est, netlink.state_mask(None) & ~est)
    pair = frozenset({State.ESTABLISHED, State.CLOSE_WAIT})
    assert columns.split_states(pair, big) == (est, netlink.state_mask([State.CLOSE_WAIT]))
    # nothing to split: ESTABLISHED alone, or not asked for at all
    assert columns.split_states(frozenset({State.ESTABLISHED}), big) is None
    assert columns.split_states(frozenset({State.TIME_WAIT, State.CLOSE_WAIT}), big) is None
    # every kernel code is in exactly one part, also codes newer than the state table
    a, b = columns.split_states(None, big) or (0, 0)
    assert a & b == 0 and a | b == netlink.state_mask(None)
    # every core busy: the second fill would only wait for a core, and walk the hash again
    assert columns.split_states(None, big, spare_core=False) is None


def test_a_core_is_spare_when_the_load_leaves_one_idle(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    for load, spare in ((0.3, True), (1.0, True), (1.4, True), (1.5, False), (6.5, False)):
        monkeypatch.setattr(os, "getloadavg", lambda load=load: (load, 0.0, 0.0))
        assert columns._spare_core() is spare, load
    # the dump asks the load when it decides by itself, never when told to split
    monkeypatch.setattr(columns, "_tcp_sockets", lambda: columns.SPLIT_MIN)
    tcp4 = [(socket.AF_INET, "tcp")]
    for load, split, parts in ((6.5, None, False), (6.5, True, True), (0.2, None, True)):
        monkeypatch.setattr(os, "getloadavg", lambda load=load: (load, 0.0, 0.0))
        pending = columns.PendingColumns(tcp4, split=split)
        pending.result()  # this host's few sockets: reap the receivers
        assert (pending.parts is not None) is parts, (load, split)


@pytest.mark.root
def test_a_split_dump_holds_the_same_sockets_established_first(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    asked: list[tuple[int, str, object]] = []
    real = netlink.build_request

    def recording(family: int, proto: netlink.Proto, **kwargs: object) -> bytes:
        asked.append((family, proto, kwargs.get("states")))
        return real(family, proto, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(netlink, "build_request", recording)
    est = netlink.state_mask([State.ESTABLISHED])

    def body() -> None:
        with population():
            monkeypatch.setattr(columns, "_tcp_sockets", lambda: columns.SPLIT_MIN)
            monkeypatch.setattr(columns, "_spare_core", lambda: True)  # however busy the host
            pending = columns.PendingColumns()  # decided from the (faked) kernel counters
            assert pending.parts == (est, netlink.state_mask(None) & ~est)
            split = pending.result()
            whole = columns.PendingColumns(split=False).result()
            narrow = [State.ESTABLISHED, State.CLOSE_WAIT]
            split_narrow = columns.PendingColumns(states=narrow, split=True).result()
            whole_narrow = columns.PendingColumns(states=narrow, split=False).result()
            owners = processes.tally(budget=10**9)
        assert len(split) == len(whole) > 600 and _rows(split) == _rows(whole)
        assert [r[:2] for r in split.ranges] == [r[:2] for r in whole.ranges]
        assert _rows(split_narrow) == _rows(whole_narrow)
        assert {s for (_p, _f, s, _port, _i) in _rows(split_narrow)} == set(narrow)
        for cols in (split, split_narrow):
            for proto, _fam, a, b in cols.ranges:
                if proto == "tcp":  # ESTABLISHED first, then the other states
                    flags = [code == 1 for code in cols.state[a:b]]
                    assert flags == sorted(flags, reverse=True) and any(flags)
        # both parts went to the kernel as their own requests, and only TCP is split
        tcp4 = [states for fam, proto, states in asked if (fam, proto) == (socket.AF_INET, "tcp")]
        assert est in tcp4 and netlink.state_mask(None) & ~est in tcp4
        assert [st for fam, proto, st in asked if proto == "udp" and isinstance(st, int)] == []
        # the order differs, the summary does not
        one = summarize(_listing(split, owners))
        two = summarize(_listing(whole, owners))
        assert (one.tcp_states, one.busy, one.untimed) == (two.tcp_states, two.busy, two.untimed)
        assert one.oldest.keys() == two.oldest.keys() == {State.TIME_WAIT}

    run_in_private_netns(body, required=True)


def _v4_time_wait(cols: columns.SocketColumns) -> int:
    [(start, stop)] = [(a, b) for proto, fam, a, b in cols.ranges if (proto, fam) == ("tcp", 4)]
    return cols.state[start:stop].count(6)


@pytest.mark.root
def test_ipv6_tcp_is_skipped_only_when_sockstat_proves_there_is_none() -> None:
    def body() -> None:
        with population(v6_time_wait=False) as held:
            cols = columns.dump_columns()
            assert not netlink.tcp6_absent(_v4_time_wait(cols))  # v6 listener, connections
            assert any(fam == 6 and b > a for proto, fam, a, b in cols.ranges if proto == "tcp")
            for s in held:
                if s.family == socket.AF_INET6:
                    s.close()
            time.sleep(0.2)
            # no IPv6 full socket is left, but the closes left IPv6 TIME_WAIT behind
            cols = columns.dump_columns()
            assert not netlink.tcp6_absent(_v4_time_wait(cols))
            v6 = [cols.state[a:b] for proto, fam, a, b in cols.ranges if (proto, fam) == ("tcp", 6)]
            assert v6[0].count(6) > 0

    run_in_private_netns(body, required=True)


@pytest.mark.root
def test_an_ipv4_only_namespace_skips_the_ipv6_walk(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[tuple[int, str]] = []
    real = netlink.build_request

    def recording(family: int, proto: netlink.Proto, **kwargs: object) -> bytes:
        asked.append((family, proto))
        return real(family, proto, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(netlink, "build_request", recording)

    def body() -> None:
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        held = [listener]
        try:
            for _ in range(30):
                client = socket.create_connection(listener.getsockname())
                server, _ = listener.accept()
                client.close()
                server.close()  # TIME_WAIT, IPv4 only
            held.append(socket.create_connection(listener.getsockname()))
            held.append(listener.accept()[0])
            cols = columns.dump_columns()
            assert _v4_time_wait(cols) == 30
            assert netlink.tcp6_absent(30) and not netlink.tcp6_absent(29)
            [(a, b)] = [(a, b) for proto, fam, a, b in cols.ranges if (proto, fam) == ("tcp", 6)]
            assert a == b  # skipped, and nothing was missed: the record dump agrees
            del asked[:]
            assert not [s for s in netlink.snapshot().sockets if s.family == 6]
            assert (socket.AF_INET6, "tcp") not in asked and (socket.AF_INET, "tcp") in asked
            six = socket.socket(socket.AF_INET6)
            held.append(six)
            six.bind(("::1", 0))
            six.listen()
            assert [s.family for s in netlink.snapshot(protos=["tcp"]).sockets].count(6) == 1
            assert (socket.AF_INET6, "tcp") in asked
        finally:
            for s in held:
                s.close()

    run_in_private_netns(body, required=True)


@pytest.mark.root
def test_summary_from_columns_equals_the_summary_from_records() -> None:
    def body() -> None:
        with population():
            started = time.monotonic()
            cols = columns.dump_columns()
            owners = processes.tally(budget=10**9)
            snap = netlink.snapshot()
            apart = time.monotonic() - started  # the two dumps read the timer this far apart
            processes.attribute(snap.sockets)
        fast = summarize(_listing(cols, owners, snap.host, snap.taken_at))
        full = summarize(snap)
        assert owners.exact
        for name in ("total", "by_proto", "by_family", "tcp_states", "udp_states", "untimed"):
            assert getattr(fast, name) == getattr(full, name), name
        assert fast.busy == full.busy and fast.busy[0].top_processes[0][1] == os.getpid()
        assert fast.oldest.keys() == full.oldest.keys() == {State.TIME_WAIT}
        a, b = fast.oldest[State.TIME_WAIT], full.oldest[State.TIME_WAIT]
        # the timers run on between the two dumps; the kernel reports them in milliseconds
        assert abs(a.remaining - b.remaining) < apart + 0.01 and a.socket.remote.port

    run_in_private_netns(body, required=True)


@pytest.mark.root
def test_sampled_owners_estimate_each_process_share() -> None:
    """A process holding 2,000 sockets, read through 256 probes, is estimated, not guessed."""

    def body() -> None:
        with population():
            cols = columns.dump_columns()
            owners = processes.tally(budget=0, probes=256, seed=7)
        assert not owners.exact and owners.read < owners.held
        assert owners.scale[os.getpid()] > 0
        summary = summarize(_listing(cols, owners))
        est = summary.busy[0]
        assert est.state is State.ESTABLISHED and est.estimated
        [(_name, pid, count)] = [p for p in est.top_processes if p[1] is not None]
        # this process holds every ESTABLISHED socket: scaled to the exact total,
        # shown to two significant digits like every estimate
        assert (pid, count) == (os.getpid(), _round2(est.count)) and est.count == 432

    run_in_private_netns(body, required=True)


@pytest.mark.root
def test_status_fast_and_full_agree_on_the_counts() -> None:
    def body() -> None:
        env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
        with population():
            runs = {
                mode: subprocess.run(  # no flag: a namespace this small gets --full
                    [sys.executable, "-m", "tcplens", "status", mode],
                    capture_output=True,
                    text=True,
                    env=env,
                    timeout=60,
                    check=True,
                )
                for mode in ("--fast", "--full", "--source=auto")
            }
        fast, full, auto = (
            runs[m].stdout.splitlines() for m in ("--fast", "--full", "--source=auto")
        )
        until = full.index("Oldest")  # ages after it move with the clock
        assert auto[1:until] == full[1:until] and not any(line.startswith("(~") for line in auto)
        assert any(line.startswith("(~") for line in fast) or "~" not in "\n".join(fast)
        counts = slice(1, fast.index("Busiest states"))
        assert fast[counts] == full[counts]
        assert any(line.split()[:2] == ["TIME_WAIT", "170"] for line in fast[counts])
        assert fast[-1] == full[-1]  # the doctor pointer closes both
        assert not any(line.startswith("Top finding") for line in fast)

    run_in_private_netns(body, required=True)


def test_a_protocol_the_kernel_cannot_dump_is_noted_and_tcp_survives(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # the real kernel answers NLMSG_ERROR for a protocol no inet_diag handler serves
    monkeypatch.setitem(netlink._PROTO_NUMBERS, "udp", 254)
    missing: list[str] = []
    kinds = [(socket.AF_INET, "udp"), (socket.AF_INET, "tcp")]
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        cols = columns.dump_columns(kinds, missing=missing)  # type: ignore[arg-type]
        port = listener.getsockname()[1]
    assert missing == [
        "udp sockets (sock_diag dump for udp failed: No such file or directory;"
        " is the udp_diag module loaded?)"
    ]
    assert [r[:2] for r in cols.ranges] == [("udp", 4), ("tcp", 4)] and port in cols.sport
    with pytest.raises(SourceError, match="No such file"):
        columns.dump_columns([(socket.AF_INET, "udp")])  # without a list for notes


def test_sockstat_reads_both_files_and_unreadable_means_empty(tmp_path: Path) -> None:
    (tmp_path / "sockstat").write_text(
        "sockets: used 12\nTCP: inuse 7 orphan 1 tw 3 alloc 9 mem 2\nUDP: inuse 2 mem 1\n"
    )
    (tmp_path / "sockstat6").write_text("TCP6: inuse 4\nUDP6: inuse 0\n")
    counts = netlink.sockstat(str(tmp_path))
    assert counts["TCP.inuse"] == 7 and counts["TCP.tw"] == 3 and counts["TCP6.inuse"] == 4
    assert counts["sockets.used"] == 12 and counts["UDP6.inuse"] == 0
    assert netlink.tcp6_absent(3, str(tmp_path)) is False  # TCP6 in use
    (tmp_path / "sockstat6").write_text("TCP6: inuse 0\n")
    assert netlink.tcp6_absent(3, str(tmp_path)) and not netlink.tcp6_absent(2, str(tmp_path))
    assert netlink.tcp6_absent(None, str(tmp_path))  # TIME_WAIT not asked for
    assert netlink.sockstat(str(tmp_path / "none")) == {}
    assert not netlink.tcp6_absent(None, str(tmp_path / "none"))


def test_kinds_in_any_order_and_ipv6_first_do_not_wait_for_ipv4() -> None:
    kinds = [(socket.AF_INET6, "tcp"), (socket.AF_INET, "tcp")]
    with socket.socket(socket.AF_INET6) as six:
        six.bind(("::1", 0))
        six.listen()
        cols = columns.dump_columns(kinds)  # type: ignore[arg-type]
        port = six.getsockname()[1]
    assert [r[:2] for r in cols.ranges] == [("tcp", 6), ("tcp", 4)]
    [(a, b)] = [(a, b) for proto, fam, a, b in cols.ranges if fam == 6]
    assert port in cols.sport[a:b]


_message_spec = st.tuples(
    st.sampled_from([1, 2, 5, 6, 8, 10, 12]),  # state codes, minisockets included
    st.integers(0, 65535),  # port
    st.integers(0, 2**32 - 1),  # inode
    st.integers(0, 4),  # timer
    st.integers(0, 2**32 - 1),  # expires
    st.sampled_from([0, 8, 12, 20]),  # attribute bytes after the inet_diag_msg
)


def _wire(spec: tuple[int, int, int, int, int, int]) -> bytes:
    state, port, inode, timer, expires, extra = spec
    attrs = b"".join(
        (8).to_bytes(2, "little") + (100 + i).to_bytes(2, "little") + b"\x01\x02\x03\x04"
        for i in range(extra // 8)
    ) + (b"\x04\x00\x63\x00" if extra % 8 else b"")
    return _message(
        idiag_family=2, idiag_state=state, idiag_sport=port, idiag_inode=inode,
        idiag_timer=timer, idiag_expires=expires, _attrs=attrs,
    )  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(st.lists(_message_spec, max_size=60), st.lists(st.integers(1, 59), max_size=4))
def test_columns_equal_the_record_parser_however_messages_are_split(
    specs: list[tuple[int, int, int, int, int, int]], cuts: list[int]
) -> None:
    wires = [_wire(spec) for spec in specs]
    bounds = sorted({c for c in cuts if c < len(wires)})
    buffers = [
        b"".join(wires[a:b]) for a, b in zip([0, *bounds], [*bounds, len(wires)], strict=True)
    ]
    buffers = [b for b in buffers if b] + [_done()]
    cols = columns.SocketColumns()
    records: list[Socket] = []
    for buf in buffers:
        assert columns._take(cols, buf, "tcp") is (buf == buffers[-1])
        netlink.parse(buf, "tcp", records, info=False)
    assert list(cols.state) == [s[0] for s in specs]
    assert list(cols.sport) == [r.local.port for r in records]
    assert list(cols.inode) == [r.inode or 0 for r in records]
    assert list(cols.expires) == [s[4] for s in specs] and list(cols.timer) == [s[3] for s in specs]
    for i, record in enumerate(records):
        again = cols.socket_at(i)
        assert (again.state, again.local, again.inode) == (record.state, record.local, record.inode)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400), st.integers(0, 3))
def test_garbage_is_an_input_or_source_error_never_a_crash(noise: bytes, where: int) -> None:
    good = _full(1, 80, 7) + _tw(81, 5)
    buf = [noise, good + noise, noise + good, good[: where * 30] + noise][where]
    with contextlib.suppress(InputError, SourceError):
        columns._take(columns.SocketColumns(), buf, "tcp")


@pytest.mark.root
def test_the_listing_from_columns_is_the_listing_from_records() -> None:
    from tcplens.views.sockets import Columns as Shown
    from tcplens.views.sockets import write_plain, write_plain_columns

    def body() -> None:
        with population():
            cols = columns.dump_columns()
            snap = netlink.snapshot()
            only_tcp = columns.dump_columns(
                [(socket.AF_INET, "tcp"), (socket.AF_INET6, "tcp")],
                states=[State.TIME_WAIT, State.CLOSE_WAIT],
            )
        fast, slow = io.StringIO(), io.StringIO()
        write_plain_columns(fast, cols)
        write_plain(slow, snap.sockets, Shown(processes=False))
        assert fast.getvalue() == slow.getvalue()
        lines = fast.getvalue().splitlines()
        assert len(lines) == len(snap.sockets) + 1 > 600
        assert any(line.startswith("tcp6 ") and "[::1]:" in line for line in lines)
        assert any(line.startswith("udp ") for line in lines)
        narrow = io.StringIO()
        write_plain_columns(narrow, only_tcp)
        rows = narrow.getvalue().splitlines()[1:]
        assert {row.split()[-1] for row in rows} == {"TIME_WAIT", "CLOSE_WAIT"}
        assert len(rows) == 170 + 24

    run_in_private_netns(body, required=True)


@pytest.mark.root
def test_ls_without_processes_piped_lists_from_columns_and_says_the_same() -> None:
    def body() -> None:
        env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
        with population():
            runs = [
                subprocess.run(
                    [sys.executable, "-m", "tcplens", "ls", *args],
                    capture_output=True,
                    text=True,
                    env=env,
                    timeout=60,
                    check=True,
                ).stdout
                for args in (["-P"], ["-P", "--sort", "state"], ["-P", "-t", "-6"], ["-P", "-e"])
            ]
        plain, sorted_rows, v6, extended = runs
        # --sort and -e take the record path: the same rows, another order or more columns
        assert sorted(plain.splitlines()[1:]) == sorted(sorted_rows.splitlines()[1:])
        assert len(extended.splitlines()) == len(plain.splitlines())
        assert v6.splitlines()[1:] and all(r.startswith("tcp6 ") for r in v6.splitlines()[1:])

    run_in_private_netns(body, required=True)


def test_ls_without_processes_piped_builds_no_record(monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from tcplens.views.cli import cli

    def no_records(*args: object, **kwargs: object) -> None:
        raise AssertionError("the record dump was used")

    monkeypatch.setattr(netlink, "dump", no_records)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        result = CliRunner().invoke(cli, ["ls", "-P", "-t", "-4", "--state", "listen"])
        as_json = CliRunner().invoke(cli, ["ls", "-P", "--json", "-t"])
        owned = CliRunner().invoke(cli, ["ls", "-t", "--state", "listen"])
    assert owned.exit_code == 0, owned.output
    assert f"127.0.0.1:{port}" in owned.output and f"{os.getpid()}/" in owned.output
    assert result.exit_code == 0, result.output
    assert f"127.0.0.1:{port}" in result.output
    assert as_json.exit_code == 0 and f'"port":{port}' in as_json.output
    # anything the kernel cannot filter takes the record path
    failed = CliRunner().invoke(cli, ["ls", "-P", "--port", str(port)])
    assert isinstance(failed.exception, AssertionError)


@pytest.mark.root
def test_the_json_from_columns_is_the_json_from_records() -> None:
    from tcplens.views.sockets import write_json, write_json_columns

    def body() -> None:
        with population():
            cols = columns.dump_columns()
            snap = netlink.snapshot()
        fast, slow, same = io.StringIO(), io.StringIO(), io.StringIO()
        write_json_columns(fast, cols, Snapshot([], source="netlink", host=snap.host))
        write_json(slow, snap)
        # the records of these very messages, in the record dump's order of kinds
        order = sorted(cols.ranges, key=lambda r: (r[0], r[1]))
        mine = [cols.socket_at(i) for _p, _f, a, b in order for i in range(a, b)]
        write_json(same, Snapshot(mine, source="netlink"))

        def rows(text: str, *, clock: bool = True) -> str:
            body = text.split(',"sockets":[', 1)[1]
            return body if clock else re.sub(r'"remaining":[^,]+', '"remaining":_', body)

        assert rows(fast.getvalue()) == rows(same.getvalue())
        # and a record dump taken just after: the same rows but for the timers' clock
        assert rows(fast.getvalue(), clock=False) == rows(slow.getvalue(), clock=False)
        doc = json.loads(fast.getvalue())
        assert doc["snapshot"]["total"] == doc["snapshot"]["count"] == len(snap.sockets) > 600
        assert {row["interface"] for row in doc["sockets"]} == {None, "lo"}
        timers = [row["timer"] for row in doc["sockets"] if row["timer"]]
        assert {t["kind"] for t in timers} >= {"timewait"}
        assert any(row["uid"] is None for row in doc["sockets"])  # minisockets

    run_in_private_netns(body, required=True)


@pytest.mark.root
def test_listings_with_processes_from_columns_equal_the_record_path() -> None:
    from tcplens.views.sockets import Columns as Shown
    from tcplens.views.sockets import (
        write_json,
        write_json_columns,
        write_plain,
        write_plain_columns,
    )

    def body() -> None:
        with population():
            cols = columns.dump_columns()
            found = processes.scan(None)
            snap = netlink.snapshot()
            processes.attribute(snap.sockets)
        owners = processes.owners_of(cols.inode, cols.uids(), found)
        assert os.getpid() in owners.pid and "root" in owners.user
        fast, slow = io.StringIO(), io.StringIO()
        write_plain_columns(fast, cols, owners=owners)
        write_plain(slow, snap.sockets, Shown(processes=True))
        assert fast.getvalue() == slow.getvalue()
        assert fast.getvalue().splitlines()[0].endswith("PID/Program")
        painted = io.StringIO()
        write_plain_columns(painted, cols, owners=owners, colour=True)
        again = io.StringIO()
        write_plain(again, snap.sockets, Shown(processes=True), colour=True)
        assert painted.getvalue() == again.getvalue() and "\x1b[" in painted.getvalue()
        fast, slow = io.StringIO(), io.StringIO()
        write_json_columns(fast, cols, Snapshot([], source="netlink"), owners)
        write_json(slow, snap)

        def rows(text: str) -> str:
            body = text.split(',"sockets":[', 1)[1]
            return re.sub(r'"remaining":[^,]+', '"remaining":_', body)

        assert rows(fast.getvalue()) == rows(slow.getvalue())

    run_in_private_netns(body, required=True)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from([4, 6]), st.integers(0, 7), st.integers(1, 65535)),
        min_size=1,
        max_size=60,
    )
)
def test_closing_states_peers_from_columns_read_as_from_records(
    peers: list[tuple[int, int, int]],
) -> None:
    """TIME_WAIT towards IPv4 and IPv6 peers: the same top peers, counts and texts both ways."""
    by_family: dict[int, list[bytes]] = {4: [], 6: []}
    for family, host, port in peers:
        if family == 4:
            dst, af = _ip4(f"10.0.0.{host}"), 2
        else:
            dst, af = socket.inet_pton(socket.AF_INET6, f"2001:db8::{host}:1"), 10
        by_family[family].append(
            _message(
                idiag_family=af, idiag_state=6, idiag_sport=40000, idiag_dport=port,
                idiag_dst=dst, idiag_timer=3, idiag_expires=30_000,
            )
        )  # fmt: skip
    cols = columns.SocketColumns()
    for family in (4, 6):
        start = len(cols)
        if by_family[family]:
            assert columns._take(cols, b"".join(by_family[family]) + _done(), "tcp")
        cols.ranges.append(("tcp", family, start, len(cols)))
    records = Snapshot([cols.socket_at(i) for i in range(len(cols))], source="netlink")
    fast, full = summarize(_listing(cols, None)), summarize(records)
    assert [d.top_peers for d in fast.busy] == [d.top_peers for d in full.busy]
    assert fast.busy[0].top_peers and fast.busy[0].state is State.TIME_WAIT
