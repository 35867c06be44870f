"""The plain listing's column widths, counted from lengths, equal the widths of the rows."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from tcplens.model import State
from tcplens.sources.records import Addr, Socket
from tcplens.views import sockets as view
from tcplens.views.sockets import Columns

_ips = st.sampled_from(["127.0.0.1", "10.200.30.4", "::1", "fe80::1%eth0", "0.0.0.0", "::"])
_addrs = st.builds(
    Addr,
    _ips,
    st.one_of(st.none(), st.integers(0, 65535)),
    st.one_of(st.none(), st.sampled_from(["http", "domain"])),
)
_sockets = st.builds(
    Socket,
    st.sampled_from(["tcp", "udp"]),
    st.sampled_from([4, 6]),
    _addrs,
    _addrs,
    st.sampled_from(list(State)),
    st.one_of(st.none(), st.integers(0, 10**9)),
    st.one_of(st.none(), st.integers(0, 10**9)),
    pid=st.one_of(st.none(), st.integers(1, 4_000_000)),
    process=st.one_of(st.none(), st.text(max_size=20)),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_sockets, max_size=30), st.booleans())
def test_counted_widths_equal_measured_widths(rows: list[Socket], processes: bool) -> None:
    cols = Columns(processes=processes)
    head = view._headers(cols)
    assert view._counted_widths(rows, cols, head) == view._measured_widths(rows, cols, None, head)


def test_the_counted_path_is_the_one_a_plain_listing_takes() -> None:
    assert Columns() in view._COUNTED and Columns(processes=True) in view._COUNTED
    assert Columns(timers=True) not in view._COUNTED  # timers, info...: measured from rows
    row = Socket("tcp", 6, Addr("::1", 8080), Addr("::1", 0), State.LISTEN, 0, 128)
    out = view.render_plain([row])
    assert out.splitlines()[1].split()[:6] == [
        "tcp6",
        "0",
        "128",
        "[::1]:8080",
        "[::1]:*",
        "LISTEN",
    ]
