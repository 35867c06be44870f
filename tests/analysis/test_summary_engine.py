"""The engine's counting passes (rust/src/diag.rs) give the summary the Python passes give.

``tcplens.analysis.summary`` counts a columnar dump in two passes (state
codes; then the busy states' ports, peers and owners, and the oldest
timers).  The Python passes are the reference; ``tcplens._engine`` does the
same counting when it is built.  These tests run ``_from_columns`` both
ways over the same columns: hypothesis-drawn socket messages (every kind,
mixed message lengths, duplicate inodes, tied ports, peers and timers,
sampled and exact owners) and the kernel's own dump of real sockets in a
network namespace of the test's own.
"""

from __future__ import annotations

import os
import socket

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tcplens.analysis import summary
from tcplens.analysis.summary import Summary
from tcplens.model import State
from tcplens.sources import columns, processes
from tcplens.sources.records import Proto
from tests.netns import run_in_private_netns
from tests.sources.test_columns import population
from tests.sources.test_netlink import _done, _message

engine = pytest.importorskip("tcplens._engine")
if not hasattr(engine, "socket_details"):  # pragma: no cover - an engine built before them
    pytest.skip("the engine has no socket_details: rebuild it", allow_module_level=True)


@pytest.fixture(autouse=True)
def _engine_route(monkeypatch: pytest.MonkeyPatch) -> None:
    """The engine is the route here, whatever the caller's environment says."""
    monkeypatch.delenv("TCPLENS_DIAG", raising=False)
    assert summary._engine_counter() is not None


def _both(
    cols: columns.SocketColumns,
    owners: processes.Tally | None,
    *,
    busy_states: int = 3,
    top: int = 3,
    fin_timeout: float = 60.0,
) -> Summary:
    results = [
        summary._from_columns(
            cols,
            source="netlink",
            host="h",
            taken_at=1.0,
            missing=[],
            owners=owners,
            busy_states=busy_states,
            top=top,
            fin_timeout=fin_timeout,
            engine=engine_on,
        )
        for engine_on in (False, True)
    ]
    assert results[1] == results[0]
    return results[0]


#: the dump's kinds in the order a live dump has them (``columns.DEFAULT_KINDS``)
_KINDS: list[tuple[Proto, int]] = [("tcp", 4), ("udp", 4), ("udp", 6), ("tcp", 6)]

_sock = st.tuples(
    st.integers(0, 3),  # kind
    st.sampled_from([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 0, 13, 200]),  # state code
    st.integers(0, 4),  # timer
    st.sampled_from([22, 80, 443, 8080, 40000, 40001, 65535]),  # local port
    st.sampled_from([80, 443, 51000, 51001]),  # peer port
    st.integers(0, 3),  # peer host
    st.sampled_from([0, 0, 7, 8, 9, 10, 11, 2**32 - 1]),  # inode: 0 and repeats
    st.sampled_from([0, 5, 5_000, 30_000, 59_999]),  # expires, ms
    st.booleans(),  # a full socket (attributes after the head) or a minisocket
)


def _columns(socks: list[tuple[int, ...]], cut: int) -> columns.SocketColumns:
    cols = columns.SocketColumns()
    for kind, (proto, family) in enumerate(_KINDS):
        start = len(cols)
        messages = []
        for k, state, timer, sport, dport, host, inode, expires, full in socks:
            if k != kind:
                continue
            dst = (
                socket.inet_aton(f"10.0.0.{host}").ljust(16, b"\0")
                if family == 4
                else socket.inet_pton(socket.AF_INET6, f"2001:db8::{host}")
            )
            messages.append(
                _message(
                    idiag_family=2 if family == 4 else 10,
                    idiag_state=state,
                    idiag_sport=sport,
                    idiag_dport=dport,
                    idiag_dst=dst,
                    idiag_inode=inode,
                    idiag_timer=timer,
                    idiag_expires=expires,
                    _attrs=b"\x08\x00\x08\x00\x00\x00\x00\x00" if full else b"",
                )
            )
        if messages:
            # two receive buffers, so uniform and compacted blocks both occur
            at = cut % (len(messages) + 1)
            for part in (messages[:at], messages[at:]):
                if part:
                    assert not columns._take(cols, b"".join(part), proto)
            assert columns._take(cols, _done(), proto)
        cols.ranges.append((proto, family, start, len(cols)))
    return cols


_owners = st.one_of(
    st.none(),
    st.tuples(
        st.dictionaries(
            st.integers(1, 6), st.lists(st.sampled_from([0, 7, 8, 9, 10, 11, 12, 2**40]))
        ),
        st.dictionaries(st.integers(1, 6), st.sampled_from([1.0, 2.5, 7.0])),
        st.integers(0, 2),
    ),
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(_sock, max_size=80),
    st.integers(0, 100),
    _owners,
    st.integers(0, 4),
    st.integers(0, 4),
)
def test_engine_and_python_passes_give_one_summary(
    socks: list[tuple[int, ...]],
    cut: int,
    owners: tuple[dict[int, list[int]], dict[int, float], int] | None,
    busy_states: int,
    top: int,
) -> None:
    cols = _columns(socks, cut)
    tally = None
    if owners is not None:
        inodes, scale, denied = owners
        tally = processes.Tally(
            inodes=inodes,
            scale={pid: s for pid, s in scale.items() if pid in inodes},
            names={pid: f"p{pid}" for pid in inodes},
            denied=denied,
        )
    _both(cols, tally, busy_states=busy_states, top=top, fin_timeout=42.0)


def test_the_engine_names_what_the_python_passes_name() -> None:
    """A fixed case with every part filled in, so equality is not equality of empties."""
    socks = [(0, 10, 0, 8080, 0, 0, 0, 0, True)]  # the listener on 8080
    socks += [(0, 1, 0, 8080, 51000, h, 7 + h, 0, True) for h in range(3)]  # accepted
    socks += [(0, 6, 3, 40000 + i, 443, i % 2, 0, 30_000 - i, False) for i in range(5)]
    socks += [(0, 6, 3, 8080, 51001, 3, 0, 100, False)]  # the server closed first
    socks += [(3, 5, 3, 40100, 80, 1, 0, 20_000, True), (3, 5, 0, 40101, 80, 1, 12, 0, True)]
    socks += [(1, 7, 0, 53, 0, 0, 9, 0, True)]
    tally = processes.Tally(inodes={3: [7, 8], 4: [9, 12]}, names={3: "web", 4: "dns"})
    result = _both(_columns(socks, 3), tally)
    assert [d.state for d in result.busy] == [State.TIME_WAIT, State.ESTABLISHED, State.FIN_WAIT2]
    assert result.busy[0].top_local_ports == [(8080, 1)]
    assert result.busy[0].top_peers == [("10.0.0.0:443", 3), ("10.0.0.1:443", 2)]
    assert result.busy[1].top_processes == [("web", 3, 2), ("dns", 4, 1)]
    assert result.oldest[State.TIME_WAIT].remaining == 0.1
    assert result.untimed == {State.FIN_WAIT2: 1}


@pytest.mark.root
def test_engine_and_python_passes_agree_on_the_kernels_dump() -> None:
    def body() -> None:
        with population():
            cols = columns.dump_columns()
            exact = processes.tally(budget=10**9)
            sampled = processes.tally(budget=0, probes=64, seed=3)
        assert exact.exact and not sampled.exact
        for owners in (exact, sampled, None):
            result = _both(cols, owners)
            assert result.busy and result.oldest
        assert _both(cols, exact).busy[0].top_processes[0][1] == os.getpid()

    run_in_private_netns(body, required=True)


def test_python_is_the_route_when_asked_for(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TCPLENS_DIAG", "python")
    assert summary._engine_counter() is None
