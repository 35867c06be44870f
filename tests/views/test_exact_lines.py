"""Exact mode's lines, written from cached parts, against what datetime and json.dumps give."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from tcplens.analysis.diff import model_path
from tcplens.analysis.transitions import Transition
from tcplens.model.states import State as S
from tcplens.sources.records import Addr, Socket
from tcplens.views import exact

#: Unix times from 1970 to 2100, and the fractions where rounding to µs is decided
TIMES = st.one_of(
    st.floats(min_value=0, max_value=4.1e9, allow_nan=False),
    st.integers(0, 4_100_000_000).map(float),
    st.builds(lambda s, us: s + us / 1e6 + 5e-7, st.integers(1.6e9, 1.8e9), st.integers(0, 999999)),
    st.builds(lambda s, n: s + n * 1e-6, st.integers(1.6e9, 1.8e9), st.integers(999990, 1000000)),
)


@given(TIMES)
def test_times_are_written_as_datetime_writes_them(at: float) -> None:
    assert exact._iso(at) == datetime.fromtimestamp(at, UTC).isoformat()
    assert exact._clock(at) == datetime.fromtimestamp(at).strftime("%H:%M:%S.%f")


def _tw_end(since: float | None) -> Transition:
    sock = Socket("tcp", 4, Addr("127.0.0.1", 40000), Addr("127.0.0.1", 80), S.CLOSED)
    path = model_path(S.TIME_WAIT, S.CLOSED)
    cause = "minisocket gone from the TIME_WAIT table"
    return Transition(1, 1_700_000_061.5, None, sock, S.TIME_WAIT, S.CLOSED, 61.0, False,
                      cause, path, None, None, since)  # fmt: skip


def test_an_end_found_by_looking_says_when_the_minisocket_was_last_seen() -> None:
    t = _tw_end(1_700_000_060.25)
    assert "after ~61.00s (last seen 1.25s before)" in exact.exact_line(t)
    row = json.loads(exact.exact_json(t))
    assert (row["since"], row["time"], row["exact"]) == (1_700_000_060.25, t.at, False)
    assert "not timed by the kernel" in exact.exact_line(_tw_end(None))


def test_lines_of_one_connection_follow_its_port_and_owner_as_they_change() -> None:
    """Cached parts are keyed by what they show: a new port or owner is a new part."""
    sock = Socket("tcp", 4, Addr("127.0.0.1", 0), Addr("127.0.0.1", 80), S.SYN_SENT)
    first = Transition(7, 1.7e9, 1, sock, S.CLOSED, S.SYN_SENT, None, True, None,
                       model_path(S.CLOSED, S.SYN_SENT))  # fmt: skip
    a = json.loads(exact.exact_json(first))
    assert "127.0.0.1:* <-> 127.0.0.1:80" in exact.exact_line(first)
    sock.local = Addr("127.0.0.1", 40001)
    second = Transition(7, 1.7e9 + 1e-5, 2, sock, S.SYN_SENT, S.ESTABLISHED, 1e-5, True, None,
                        model_path(S.SYN_SENT, S.ESTABLISHED), 42, "curl")  # fmt: skip
    b = json.loads(exact.exact_json(second))
    assert (a["local"]["port"], a["pid"], a["process"]) == (0, None, None)
    assert (b["local"]["port"], b["pid"], b["process"]) == (40001, 42, "curl")
    assert "127.0.0.1:40001 <-> 127.0.0.1:80" in exact.exact_line(second)


def test_the_collector_is_off_while_tracing_and_back_as_it_was_after() -> None:
    import gc

    gc.enable()  # (whatever an earlier test in this process left)
    with exact._fewer_collections():
        assert not gc.isenabled() and gc.get_freeze_count() > 0
    assert gc.isenabled() and gc.get_freeze_count() == 0
    gc.disable()
    try:
        with exact._fewer_collections():
            pass
        assert not gc.isenabled()  # a caller's choice is kept
    finally:
        gc.enable()
