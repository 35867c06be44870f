"""The engine's ring-buffer decoder (rust/src/ftrace.rs) against the Python reference.

``decode_events_engine`` must give exactly what ``decode_events`` gives: the
same :class:`KernelEvent` objects in the same order and the same missed
count, for pages built the way ``kernel/trace/ring_buffer.c`` writes them
(hypothesis: every event type of this kernel's format files, with random
field bytes, foreign ids, time extends, padding and damaged commits), for
arbitrary bytes, and for pages a live session read from this kernel.  The
format files in ``tests/fixtures/tracefs`` were copied from Linux 6.18.
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tcplens.sources import tracepoints as tp

engine = pytest.importorskip("tcplens._engine")

FIXTURES = Path(__file__).parent.parent / "fixtures" / "tracefs"
LAYOUT = tp.parse_header_page((FIXTURES / "header_page").read_text())
FORMATS = [
    tp.parse_format((FIXTURES / f"{system}_{name}.format").read_text(), system=system)
    for system, name in tp.EVENTS
]
REASONS = tp._reset_reasons((FIXTURES / "tcp_tcp_send_reset.format").read_text())


def _both(pages: list[tuple[int, bytes]]) -> tuple[Any, Any]:
    """(reference, engine) results; each path with a decoder of its own (own caches)."""
    ref = tp.decode_events(pages, LAYOUT, tp.Decoder(FORMATS, REASONS), wall_offset=1.5e9)
    decoder = tp.Decoder(FORMATS, REASONS)
    fast = decoder.engine(LAYOUT)
    assert fast is not None
    got = tp.decode_events_engine(pages, fast, decoder, wall_offset=1.5e9)
    return ref, got


def _record(fmt: tp.EventFormat, body: bytes, protocol: int, family: int) -> bytes:
    size = max(f.offset + f.size for f in fmt.fields.values())
    data = bytearray((body * (size // max(len(body), 1) + 1))[:size] if body else bytes(size))
    struct.pack_into("=H", data, fmt.fields["common_type"].offset, fmt.id)
    if "protocol" in fmt.fields:
        struct.pack_into("=H", data, fmt.fields["protocol"].offset, protocol)
    if "family" in fmt.fields:
        struct.pack_into("=H", data, fmt.fields["family"].offset, family)
    return bytes(data)


_event = st.tuples(
    st.sampled_from(range(len(FORMATS) + 1)),  # the last: an id no format declares
    st.binary(min_size=0, max_size=96),
    st.sampled_from([6, 6, 6, 132, 262]),
    st.sampled_from([2, 10, 2, 0, 77]),
    st.integers(0, (1 << 27) - 1),
    st.integers(-8, 8),  # trim or pad the record: short records are skipped
)
_item = st.one_of(
    st.tuples(st.just("event"), _event),
    st.tuples(st.just("extend"), st.integers(0, 1 << 40)),
    st.tuples(st.just("abs"), st.integers(0, (1 << 59) - 1)),
    st.tuples(st.just("pad"), st.integers(0, 3)),
)


def _page(items: list[tuple[str, Any]], header_ts: int, flags: int, extra: int) -> bytes:
    body = b""
    for kind, value in items:
        if kind == "event":
            which, raw, protocol, family, delta, trim = value
            if which == len(FORMATS):
                data = struct.pack("=H", 60000) + raw
            else:
                data = _record(FORMATS[which], raw, protocol, family)
            data = data[: max(4, len(data) + trim)] if trim < 0 else data + b"\x01" * trim
            data += b"\0" * (-len(data) % 4)
            if len(data) <= 112:
                body += struct.pack("=I", (delta << 5) | (len(data) // 4)) + data
            else:
                body += struct.pack("=II", delta << 5, len(data) + 4) + data
        elif kind in ("extend", "abs"):
            code = 30 if kind == "extend" else 31
            body += struct.pack("=II", ((value & ((1 << 27) - 1)) << 5) | code, value >> 27)
        else:
            body += struct.pack("=II", (1 << 5) | 29, 4 * value + 4) + b"\0" * (4 * value)
    commit = (len(body) + extra) | flags
    page = struct.pack("=QQ", header_ts, commit) + body + struct.pack("=Q", 12345)
    return page + b"\0" * max(0, 4096 - len(page))


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 7),
            st.lists(_item, max_size=20),
            st.sampled_from([0, 1 << 30, 1 << 20, (1 << 64) - 4096]),
            st.sampled_from([0, 0, 1 << 31, (1 << 31) | (1 << 30)]),
            st.sampled_from([0, 0, 8, 9000]),
        ),
        max_size=4,
    )
)
def test_the_engine_decodes_every_event_as_the_reference_does(
    pages: list[tuple[int, list[tuple[str, Any]], int, int, int]],
) -> None:
    built = [(cpu, _page(items, ts, flags, extra)) for cpu, items, ts, flags, extra in pages]
    ref, got = _both(built)
    assert got == ref


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.binary(max_size=4200)), max_size=3))
def test_arbitrary_bytes_give_the_reference_answer_and_never_raise(
    pages: list[tuple[int, bytes]],
) -> None:
    ref, got = _both(pages)
    assert got == ref


def test_a_layout_the_engine_would_not_read_as_numbers_leaves_the_python_decoder() -> None:
    fmt = FORMATS[0]
    sport = fmt.fields["sport"]
    odd = tp.EventFormat(
        fmt.system,
        fmt.name,
        fmt.id,
        {**fmt.fields, "sport": tp.FieldSpec("sport", "__u16", sport.offset, 2, False, count=1)},
    )
    assert tp.Decoder(FORMATS, REASONS).engine(LAYOUT) is not None
    assert tp.Decoder([odd, *FORMATS[1:]], REASONS).engine(LAYOUT) is None


@pytest.mark.skipif(os.geteuid() != 0, reason="tracefs needs root")
def test_pages_of_a_live_session_decode_the_same_through_the_engine() -> None:
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen()
    port = lsock.getsockname()[1]
    with tp.TraceSession(ports=[port]) as session:
        assert session._engine is not None  # the session decodes through the engine
        for n in range(20):
            client = socket.create_connection(("127.0.0.1", port))
            server, _ = lsock.accept()
            if n % 5 == 0:  # an abortive close: a reset sent and received
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            client.close()
            with contextlib.suppress(ConnectionResetError):
                server.recv(1)
            server.close()
        time.sleep(0.05)
        pages = list(session._pages())
        assert session._layout is not None and session._decoder is not None
        layout = session._layout
        formats = session._decoder
    lsock.close()
    ref = tp.decode_events(pages, layout, formats, wall_offset=session.wall_offset)
    fresh = formats.engine(layout)
    got = tp.decode_events_engine(pages, fresh, formats, wall_offset=session.wall_offset)
    assert got == ref
    kinds = {e.kind for e in ref[0]}
    assert len(ref[0]) >= 20 * 10 and {"state", "send_reset", "receive_reset"} <= kinds
