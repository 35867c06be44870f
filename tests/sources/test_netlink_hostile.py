"""sock_diag answers recorded on a real machine, damaged: one located error, never a traceback.

The seeds in ``tests/fixtures/netlink`` are real answers to tcplens' own
dump requests (``benchmarks/fuzz_inputs.py --record-netlink``: loopback
listeners, connections, a TIME_WAIT and a CLOSE_WAIT, UDP sockets, each with
and without INET_DIAG_INFO).  ``tests/fixtures/fuzz/netlink`` holds every
damaged answer the fuzzer found a fault with.  The record parser and the
column reader (``tcplens status``) read the same buffers, so they must agree
on what is readable and on every socket in it.
"""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tcplens.errors import InputError, SourceError
from tcplens.model import State
from tcplens.sources import columns, netlink
from tcplens.sources.records import Proto, Socket

FIXTURES = Path(__file__).parents[1] / "fixtures"
SEEDS = sorted((FIXTURES / "netlink").glob("*.bin"))
CORPUS = sorted((FIXTURES / "fuzz" / "netlink").glob("*.bin"))
NLMSG_ERROR, NLMSG_DONE = 2, 3


def messages(data: bytes) -> list[bytes]:
    out, pos = [], 0
    while pos + 16 <= len(data):
        length = struct.unpack_from("=I", data, pos)[0]
        out.append(data[pos : pos + ((length + 3) & ~3)])
        pos += (length + 3) & ~3
    return out


def control(mtype: int, errcode: int, length: int = 20) -> bytes:
    return struct.pack("=IHHIIi", length, mtype, 0, 1, 0, errcode) + b"\0" * (length - 20)


def read_both(data: bytes, proto: str = "tcp") -> tuple[object, object]:
    """(records or the error, columns or the error) of one buffer.

    The records are read without attributes, as the column reader reads them (it
    never needs INET_DIAG_INFO; a damaged attribute is the record parser's alone).
    """
    records: object
    out: list[Socket] = []
    try:
        netlink.parse(data, proto, out, info=False)  # type: ignore[arg-type]
        records = [(s.state, s.local.port) for s in out]
    except (InputError, SourceError) as exc:
        records = type(exc)
    table = columns.SocketColumns()
    cols: object
    try:
        columns._take(table, data, proto)  # type: ignore[arg-type]
        cols = [
            (netlink._STATES[code], port)
            for code, port in zip(table.state, table.sport, strict=True)
        ]
    except (InputError, SourceError) as exc:
        cols = type(exc)
    return records, cols


def test_the_recorded_dumps_are_real_answers_both_readers_read_alike() -> None:
    assert {p.name for p in SEEDS} >= {"tcp4-info.bin", "tcp6.bin", "udp4.bin", "udp6-info.bin"}
    seen: set[State] = set()
    for path in SEEDS:
        data = path.read_bytes()
        proto: Proto = "tcp" if path.name.startswith("tcp") else "udp"
        out: list[Socket] = []
        assert netlink.parse(data, proto, out, info=True), f"{path.name} ends with NLMSG_DONE"
        assert out, path.name
        seen |= {s.state for s in out}
        records, cols = read_both(data, proto)
        assert records == cols
        if path.name.endswith("-info.bin") and proto == "tcp":
            assert any(s.info is not None for s in out)
    assert {State.LISTEN, State.ESTABLISHED, State.TIME_WAIT, State.CLOSE_WAIT} <= seen


@pytest.mark.parametrize("errcode", [-(2**31), 2**31 - 1, -1])
def test_an_errno_no_c_int_can_negate_is_a_source_error_not_a_traceback(errcode: int) -> None:
    # os.strerror(2**31) raised OverflowError out of the parser (fuzz finding)
    for mtype in (NLMSG_DONE, NLMSG_ERROR):
        data = control(mtype, errcode)
        if mtype == NLMSG_DONE and errcode >= 0:
            assert netlink.parse(data, "tcp", [])
            continue
        with pytest.raises(SourceError, match="sock_diag dump for tcp failed: "):
            netlink.parse(data, "tcp", [])


def test_an_error_message_cut_short_is_a_located_input_error() -> None:
    # a 16-byte NLMSG_ERROR at the end of the buffer: its errno was read past the end
    head = b"".join(messages((FIXTURES / "netlink" / "tcp4.bin").read_bytes())[:2])
    data = head + struct.pack("=IHHII", 16, NLMSG_ERROR, 0, 1, 0)
    with pytest.raises(InputError) as caught:
        netlink.parse(data, "tcp", [])
    assert caught.value.offset == len(head)
    assert read_both(data) == (InputError, InputError)


@pytest.mark.parametrize(
    "extra",
    [control(NLMSG_ERROR, 0, 36), control(16, 0, 124)],
    ids=["an acknowledgement", "a message of another type"],
)
def test_columns_read_on_past_what_records_skip(extra: bytes) -> None:
    # the column reader refused the rest of the buffer ("socket messages after a control
    # message") where the record reader reads on: tcplens status and ls disagreed
    msgs = messages((FIXTURES / "netlink" / "tcp4.bin").read_bytes())
    data = b"".join(msgs[:3]) + extra + b"".join(msgs[3:])
    records, cols = read_both(data)
    assert isinstance(records, list) and len(records) == len(msgs) - 1
    assert cols == records


@pytest.mark.parametrize("path", CORPUS, ids=[p.name for p in CORPUS])
def test_every_fuzz_finding_reads_alike_or_fails_located(path: Path) -> None:
    data = path.read_bytes()
    for proto in ("tcp", "udp"):
        for info in (True, False):
            try:
                netlink.parse(data, proto, [], info=info)
            except InputError as exc:
                assert exc.offset is not None
            except SourceError:
                pass
    netlink.parse_ids(data, "tcp")
    records, cols = read_both(data)
    assert records == cols


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    which=st.sampled_from(SEEDS),
    edits=st.lists(st.tuples(st.integers(0, 4000), st.integers(0, 255)), max_size=6),
    cut=st.integers(0, 4000),
)
def test_damaged_answers_fail_located_and_both_readers_agree(
    which: Path, edits: list[tuple[int, int]], cut: int
) -> None:
    data = bytearray(which.read_bytes())
    for at, value in edits:
        if at < len(data):
            data[at] = value
    damaged = bytes(data[: len(data) - cut % max(1, len(data))])
    proto = "tcp" if which.name.startswith("tcp") else "udp"
    try:
        netlink.parse(damaged, proto, [], info=True)  # type: ignore[arg-type]
    except InputError as exc:
        assert exc.offset is not None
    except SourceError:
        pass
    netlink.parse_ids(damaged, proto)  # type: ignore[arg-type]
    assert read_both(damaged, proto)[0] == read_both(damaged, proto)[1]
