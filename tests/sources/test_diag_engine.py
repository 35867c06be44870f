"""The compiled sock_diag walk (rust/src/diag.rs) cuts the same columns as the Python walk.

``tcplens.sources.columns`` hands each receive buffer's run of socket messages
to ``tcplens._engine.socket_heads`` when the engine is built; everything else
(control messages, errors, the columns themselves) stays Python.  These tests
feed the same buffers to both walks: synthetic ones (hypothesis: mixed lengths,
DONE, errors, other types, malformed lengths, cut tails) and the real kernel's,
received in a network namespace of the test's own.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tcplens.errors import InputError, SourceError
from tcplens.sources import columns, netlink
from tests.netns import run_in_private_netns
from tests.sources.test_columns import _wire, population
from tests.sources.test_netlink import _done

engine = pytest.importorskip("tcplens._engine")
if not hasattr(engine, "socket_heads"):  # pragma: no cover - an engine built before diag.rs
    pytest.skip("the engine has no socket_heads: rebuild it", allow_module_level=True)

Walk = Callable[[bytes, int, int, int], tuple[bytes, int, int]] | None


def _cut(buffers: list[bytes], heads: Walk) -> tuple[Any, ...]:
    """What ``_take`` makes of the buffers with one walk: the columns, or the error it raised."""
    saved = columns._HEADS
    columns._HEADS = heads  # type: ignore[misc]
    cols = columns.SocketColumns()
    said: list[bool] = []
    try:
        for buf in buffers:
            said.append(columns._take(cols, buf, "tcp"))
    except (InputError, SourceError) as exc:
        return ("error", type(exc).__name__, str(exc))
    finally:
        columns._HEADS = saved  # type: ignore[misc]
    blocks = [(b.data, b.stride, b.first) for b in cols._blocks]
    return (said, bytes(cols.state), bytes(cols.timer), cols.sport.tobytes(),
            cols.expires.tobytes(), cols.inode.tobytes(), blocks)  # fmt: skip


def _both(buffers: list[bytes]) -> tuple[Any, ...]:
    python = _cut(buffers, None)
    compiled = _cut(buffers, engine.socket_heads)
    assert compiled == python
    return python


def _header(length: int, mtype: int) -> bytes:
    return netlink.NLMSGHDR.pack(nlmsg_len=length, nlmsg_type=mtype)


_error = _header(36, netlink.NLMSG_ERROR) + (-13).to_bytes(4, "little", signed=True) + bytes(16)
_ack = _header(36, netlink.NLMSG_ERROR) + bytes(20)  # error 0: an acknowledgement, skipped
_other = _header(20, 0x30) + bytes(4)  # a message of another type, skipped
_short = _header(40, 20) + bytes(24)  # a socket message shorter than its head
_long = _header(4000, 20) + bytes(72)  # longer than the buffer

_spec = st.tuples(
    st.sampled_from([1, 2, 6, 7, 8, 10]),  # state
    st.integers(0, 65535),
    st.integers(0, 2**32 - 1),
    st.integers(0, 4),
    st.integers(0, 2**32 - 1),
    st.sampled_from([0, 8, 12, 20]),
)
_piece = st.one_of(
    _spec.map(_wire),
    st.sampled_from([_done(), _error, _ack, _other, _short, _long]),
    st.binary(max_size=20),  # a cut tail or noise
)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.lists(_piece, max_size=12), min_size=1, max_size=4))
def test_the_compiled_walk_cuts_what_the_python_walk_cuts(pieces: list[list[bytes]]) -> None:
    _both([b"".join(parts) for parts in pieces])


def test_a_mixed_buffer_ends_the_dump_at_done_in_both_walks() -> None:
    mixed = b"".join(_wire((6 if i % 3 else 1, i, i, 3, i, 8 * (i % 3 == 0))) for i in range(50))
    said, states, *_ = _both([mixed, mixed + _ack + mixed + _done()])
    assert said == [False, True] and len(states) == 150


def _ends(buf: bytes) -> bool:
    """Whether the buffer holds NLMSG_DONE or an error: the dump's last buffer."""
    offset = 0
    while offset + 16 <= len(buf):
        length, mtype = columns._HDR.unpack_from(buf, offset)
        if mtype in (netlink.NLMSG_DONE, netlink.NLMSG_ERROR) or length < 16:
            return True
        offset += (length + 3) & ~3
    return False


def _raw_dump(family: int, proto: str) -> list[bytes]:
    """One request's receive buffers as the kernel filled them, nothing parsed."""
    out: list[bytes] = []
    with netlink._open() as nl:
        nl.send(netlink.build_request(family, proto, seq=1))  # type: ignore[arg-type]
        buf = bytearray(1 << 16)
        while n := nl.recv_into(buf):
            out.append(bytes(buf[:n]))
            if _ends(out[-1]):
                break
    return out


@pytest.mark.root
def test_the_kernels_buffers_cut_the_same_in_both_walks() -> None:
    seen: list[tuple[Any, ...]] = []

    def body() -> None:
        with population():
            time.sleep(0.1)
            for family in (socket.AF_INET, socket.AF_INET6):
                seen.append(_both(_raw_dump(family, "tcp")))

    run_in_private_netns(body, required=True)
    v4, v6 = seen
    assert v4[0][-1] is True and v6[0][-1] is True  # both saw NLMSG_DONE
    # full sockets and TIME_WAIT minisockets interleaved: the walk, not only slices, ran
    assert 6 in v4[1] and 1 in v4[1] and len(v4[1]) > 500 and len(v6[1]) > 80
