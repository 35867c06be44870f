"""Snapshot diffs and state tracing on hand-built snapshots (pure: no sockets, no clock)."""

from __future__ import annotations

import itertools
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tcplens.analysis.diff import Tracer, conn_key, diff, match, model_path
from tcplens.model.machine import TRANSITIONS
from tcplens.model.states import State
from tcplens.sources.records import Addr, Snapshot, Socket

S = State
LISTENER = Addr("0.0.0.0", 0)


def sock(
    lport: int,
    rport: int | None,
    state: State = S.ESTABLISHED,
    inode: int | None = None,
    proto: str = "tcp",
) -> Socket:
    remote = LISTENER if rport is None else Addr("127.0.0.1", rport)
    return Socket(
        proto="tcp" if proto == "tcp" else "udp",
        family=4,
        local=Addr("127.0.0.1", lport),
        remote=remote,
        state=state,
        inode=inode,
    )


def snap(at: float, *sockets: Socket) -> Snapshot:
    return Snapshot(sockets=list(sockets), source="test", taken_at=at)


# --- diff ----------------------------------------------------------------------------------


def test_opened_closed_and_changed_with_the_window_they_happened_in() -> None:
    before = snap(
        10.0, sock(80, None, S.LISTEN, 1), sock(80, 5000, inode=2), sock(80, 5001, inode=3)
    )
    after = snap(
        10.5,
        sock(80, None, S.LISTEN, 1),
        sock(80, 5000, S.CLOSE_WAIT, 2),
        sock(80, 5002, inode=4),
    )
    d = diff(before, after)
    assert [(c.old, c.new) for c in d.changed] == [(S.ESTABLISHED, S.CLOSE_WAIT)]
    assert [c.sock.remote.port for c in d.opened] == [5002]
    assert [c.sock.remote.port for c in d.closed] == [5001]
    assert [c.kind for c in d.changes] == ["changed", "opened", "closed"]
    assert d.unchanged == 1
    assert all((c.since, c.at) == (10.0, 10.5) for c in d.changes)
    assert d.closed[0].new is None and d.opened[0].old is None


def test_identical_snapshots_have_no_changes() -> None:
    rows = [sock(80, None, S.LISTEN, 1), sock(80, 5000, inode=2)]
    d = diff(snap(1.0, *rows), snap(2.0, *rows))
    assert not d
    assert d.unchanged == 2


def test_port_reuse_with_a_new_inode_is_a_close_and_an_open() -> None:
    d = diff(snap(0, sock(80, 5000, S.ESTABLISHED, 7)), snap(1, sock(80, 5000, S.ESTABLISHED, 8)))
    assert [c.sock.inode for c in d.closed] == [7]
    assert [c.sock.inode for c in d.opened] == [8]
    assert not d.changed


def test_orphaned_socket_without_an_inode_is_the_same_connection() -> None:
    """After close() the kernel reports inode 0: ESTABLISHED(42) -> FIN_WAIT2(?) is one socket."""
    d = diff(snap(0, sock(5000, 80, S.ESTABLISHED, 42)), snap(1, sock(5000, 80, S.FIN_WAIT2)))
    assert [(c.old, c.new) for c in d.changed] == [(S.ESTABLISHED, S.FIN_WAIT2)]
    assert not d.opened and not d.closed


def test_reuseport_listeners_on_one_address_are_told_apart_by_inode() -> None:
    a, b = sock(80, None, S.LISTEN, 11), sock(80, None, S.LISTEN, 12)
    d = diff(snap(0, a, b), snap(1, b))
    assert [c.sock.inode for c in d.closed] == [11]
    assert d.unchanged == 1


def test_key_ignores_state_queues_and_owner() -> None:
    one = sock(80, 5000, S.ESTABLISHED, 1)
    two = sock(80, 5000, S.CLOSE_WAIT, 2)
    two.recv_q, two.pid = 10, 99
    assert conn_key(one) == conn_key(two) == ("tcp", "127.0.0.1", 80, "127.0.0.1", 5000)


# --- model paths ---------------------------------------------------------------------------


def test_active_close_seen_late_passed_through_FIN_WAIT1() -> None:
    assert model_path(S.ESTABLISHED, S.FIN_WAIT2) == (S.ESTABLISHED, S.FIN_WAIT1, S.FIN_WAIT2)


def test_established_to_TIME_WAIT_takes_linux_FIN_ACK_shortcut() -> None:
    """FIN_WAIT1 + FIN/ACK goes straight to TIME_WAIT, so FIN_WAIT2 need not have been seen."""
    assert model_path(S.ESTABLISHED, S.TIME_WAIT) == (S.ESTABLISHED, S.FIN_WAIT1, S.TIME_WAIT)


def test_direct_rows_have_no_unseen_states() -> None:
    assert model_path(S.ESTABLISHED, S.CLOSE_WAIT) == (S.ESTABLISHED, S.CLOSE_WAIT)
    assert model_path(S.CLOSE_WAIT, S.LAST_ACK) == (S.CLOSE_WAIT, S.LAST_ACK)


def test_no_path_back_out_of_CLOSED_or_from_UNKNOWN() -> None:
    assert model_path(S.TIME_WAIT, S.ESTABLISHED) is None
    assert model_path(S.LAST_ACK, S.CLOSE_WAIT) is None
    assert model_path(S.UNKNOWN, S.LISTEN) is None


@given(st.sampled_from(list(State)), st.sampled_from(list(State)))
def test_every_model_path_is_a_chain_of_table_rows(old: State, new: State) -> None:
    path = model_path(old, new)
    if path is None:
        return
    assert path[0] is old and path[-1] is new
    assert len(set(path)) == len(path)
    for here, there in itertools.pairwise(path):
        assert any(row.next is there for row in TRANSITIONS[here].values())
    assert S.CLOSED not in path[1:-1]


@given(st.sampled_from(list(State)), st.sampled_from(list(State)), st.sampled_from(list(State)))
def test_model_paths_are_shortest(old: State, mid: State, new: State) -> None:
    """No detour through another state is shorter than the path found."""
    direct, first, second = model_path(old, new), model_path(old, mid), model_path(mid, new)
    if first is None or second is None or (mid is S.CLOSED and mid not in (old, new)):
        return
    assert direct is not None
    assert len(direct) <= len(first) + len(second) - 1


# --- tracer --------------------------------------------------------------------------------


def test_tracer_times_stays_and_reports_unseen_states() -> None:
    t = Tracer()
    first = t.update(snap(0.0, sock(80, None, S.LISTEN, 1)))
    assert first.first and not first.changes
    t.update(snap(1.0, sock(80, None, S.LISTEN, 1), sock(5000, 80, inode=2)))
    t.update(snap(3.0, sock(80, None, S.LISTEN, 1), sock(5000, 80, S.FIN_WAIT2)))
    step = t.update(snap(3.5, sock(80, None, S.LISTEN, 1), sock(5000, 80, S.TIME_WAIT)))
    (change,) = step.changes
    assert (change.old, change.new, change.spent, change.unseen) == (
        S.FIN_WAIT2,
        S.TIME_WAIT,
        0.5,
        (),
    )
    track = t.get(change.conn)
    assert track is not None
    assert [s for _, s in track.history] == [S.ESTABLISHED, S.FIN_WAIT2, S.TIME_WAIT]
    assert track.durations == {S.ESTABLISHED: 2.0, S.FIN_WAIT2: 0.5}
    last = t.update(snap(4.0, sock(80, None, S.LISTEN, 1)))
    (gone,) = last.changes
    assert gone.change.kind == "closed" and gone.path == (S.TIME_WAIT, S.CLOSED)
    assert gone.spent == 0.5


def test_tracer_flags_skipped_states_with_the_model_path() -> None:
    t = Tracer()
    t.update(snap(0.0, sock(5000, 80, S.ESTABLISHED, 2)))
    (change,) = t.update(snap(1.0, sock(5000, 80, S.FIN_WAIT2))).changes
    assert change.unseen == (S.FIN_WAIT1,)
    assert change.in_model is True
    # present from the start: the ESTABLISHED stay's beginning was never seen
    assert change.spent == 1.0 and change.spent_complete is False


def test_tracer_reports_changes_the_model_cannot_explain() -> None:
    t = Tracer()
    t.update(snap(0.0, sock(5000, 80, S.TIME_WAIT)))
    (change,) = t.update(snap(1.0, sock(5000, 80, S.ESTABLISHED))).changes
    assert change.checked and change.in_model is False and change.path is None


def test_udp_and_new_connections_are_not_checked_against_the_model() -> None:
    t = Tracer()
    t.update(snap(0.0, sock(53, None, S.CLOSED, 5, proto="udp")))
    step = t.update(snap(1.0, sock(53, None, S.ESTABLISHED, 5, proto="udp"), sock(1, 2, inode=9)))
    assert {c.change.kind: c.in_model for c in step.changes} == {"changed": None, "opened": None}


def test_state_times_separate_complete_partial_and_ongoing_stays() -> None:
    t = Tracer()
    t.update(snap(0.0, sock(1, 80, S.ESTABLISHED, 1)))  # partial: began before tracing
    t.update(snap(1.0, sock(1, 80, S.ESTABLISHED, 1), sock(2, 80, S.ESTABLISHED, 2)))
    t.update(snap(3.0, sock(1, 80, S.CLOSE_WAIT, 1), sock(2, 80, S.CLOSE_WAIT, 2)))
    t.update(snap(4.0, sock(1, 80, S.CLOSE_WAIT, 1)))
    times = t.state_times()
    assert list(times) == [S.ESTABLISHED, S.CLOSE_WAIT]
    est, cw = times[S.ESTABLISHED], times[S.CLOSE_WAIT]
    assert (est.stays, est.total, est.partial, est.ongoing) == (1, 2.0, 1, 0)
    assert (cw.stays, cw.total, cw.longest, cw.ongoing, cw.ongoing_longest) == (1, 1.0, 1.0, 1, 1.0)
    assert cw.mean == 1.0


def test_tracer_forgets_connections_gone_longer_than_the_horizon() -> None:
    t = Tracer(horizon=5.0)
    t.update(snap(0.0, sock(1, 80, inode=1), sock(2, 80, inode=2)))
    t.update(snap(1.0, sock(2, 80, inode=2)))
    assert [tr.sock.local.port for tr in t.gone] == [1]
    t.update(snap(6.0, sock(2, 80, inode=2)))
    assert len(t.gone) == 1
    t.update(snap(6.5, sock(2, 80, inode=2)))
    assert t.gone == [] and len(t) == 1


def test_history_is_capped() -> None:
    t = Tracer(max_history=3)
    states = [S.ESTABLISHED, S.CLOSE_WAIT, S.LAST_ACK, S.ESTABLISHED, S.CLOSE_WAIT]
    for at, state in enumerate(states):
        t.update(snap(float(at), sock(1, 80, state, 1)))
    (track,) = t.live
    assert [s for _, s in track.history] == states[-3:]


def test_tracer_rejects_a_nonsense_configuration() -> None:
    with pytest.raises(ValueError):
        Tracer(max_history=0)


# --- properties ----------------------------------------------------------------------------

TCP_STATES = [s for s in State if s is not State.UNKNOWN]
rows = st.lists(
    st.tuples(
        st.integers(1, 6),  # local port: few values so keys collide
        st.sampled_from([None, 80, 443]),
        st.sampled_from(TCP_STATES),
        st.sampled_from([None, 1, 2, 3, 4]),
    ),
    max_size=12,
)


Spec = list[tuple[int, int | None, State, int | None]]


def build(at: float, spec: Spec) -> Snapshot:
    seen: set[int] = set()
    out = []
    for lport, rport, state, inode in spec:
        if inode is not None:  # socket inodes are unique on a host
            if inode in seen:
                continue
            seen.add(inode)
        out.append(sock(lport, rport, state, inode))
    return snap(at, *out)


@given(rows, rows)
def test_every_row_is_accounted_for_exactly_once(a: Spec, b: Spec) -> None:
    prev, cur = build(0.0, a), build(1.0, b)
    m = match(prev.sockets, cur.sockets)
    assert sorted([i for i, _ in m.pairs] + m.closed) == list(range(len(prev.sockets)))
    assert sorted([j for _, j in m.pairs] + m.opened) == list(range(len(cur.sockets)))
    for i, j in m.pairs:
        p, c = prev.sockets[i], cur.sockets[j]
        assert conn_key(p) == conn_key(c)
        assert not (p.inode and c.inode and p.inode != c.inode)
    d = diff(prev, cur)
    assert len(d.opened) + len(d.changed) + d.unchanged == len(cur.sockets)
    assert len(d.closed) + len(d.changed) + d.unchanged == len(prev.sockets)


@given(rows, rows)
def test_diff_backwards_swaps_opened_and_closed(a: Spec, b: Spec) -> None:
    forward, backward = diff(build(0.0, a), build(1.0, b)), diff(build(1.0, b), build(0.0, a))
    assert len(forward.opened) == len(backward.closed)
    assert len(forward.closed) == len(backward.opened)
    assert len(forward.changed) == len(backward.changed)


@settings(max_examples=60)
@given(st.lists(rows, min_size=1, max_size=8), st.floats(0.0, 3.0))
def test_tracer_agrees_with_diff_and_stays_bounded(seq: list[Spec], horizon: float) -> None:
    t = Tracer(horizon=horizon)
    snaps = [build(float(n), spec) for n, spec in enumerate(seq)]
    for n, s in enumerate(snaps):
        step = t.update(s)
        assert [tr.sock for tr in step.tracks] == s.sockets
        if n:
            expected = diff(snaps[n - 1], s)
            assert len(step.changes) == len(expected.changes)
        assert all(tr.gone_at is not None and s.taken_at - tr.gone_at <= horizon for tr in t.gone)
        for track in t:
            # stays are measured first-seen to first-seen: they add up to the observed life
            end = track.gone_at if track.gone_at is not None else s.taken_at
            lived = end - track.first_seen
            assert sum(track.durations.values()) + (end - track.entered) * (
                track.gone_at is None
            ) == pytest.approx(lived)
    ids = [tr.id for tr in t]
    assert len(ids) == len(set(ids))


def test_diff_is_pure_analysis_importing_no_views_or_sources_io() -> None:
    banned = ("tcplens.views", "tcplens.sources.netlink", "tcplens.sources.processes", "rich")
    code = (
        "import sys, tcplens.analysis.diff\n"
        f"print(sorted(m for m in sys.modules if m.startswith({banned!r})))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
