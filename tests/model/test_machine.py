"""The transition table and the sans-IO endpoint: every row, every state, no surprises."""

from __future__ import annotations

from collections import deque

import pytest

from tcplens.errors import IllegalTransition
from tcplens.model import TRANSITIONS, Endpoint, Event, Flags, Opening, Segment, State
from tcplens.model.machine import Closing, Key
from tcplens.model.scenarios import Pair, Side

HANDSHAKE = ("server listen", "client connect", "deliver all")


def _pair(*lines: str) -> Pair:
    from tcplens.model.scenarios import _run_line

    pair = Pair(msl=30.0)
    for number, line in enumerate(lines, 1):
        _run_line(pair, line.split(), number)
    return pair


#: For each (state, opening) a script that puts one side of a pair there.
REACH: dict[tuple[State, Opening | None], tuple[Side, tuple[str, ...]]] = {
    (State.CLOSED, None): ("client", ()),
    (State.LISTEN, None): ("server", ("server listen",)),
    (State.SYN_SENT, Opening.ACTIVE): ("client", ("client connect",)),
    (State.SYN_RECV, Opening.PASSIVE): ("server", ("server listen", "client connect", "deliver")),
    (State.SYN_RECV, Opening.ACTIVE): (
        "server",
        ("client connect", "server connect", "deliver to server"),
    ),
    (State.ESTABLISHED, Opening.ACTIVE): ("client", HANDSHAKE),
    (State.FIN_WAIT1, Opening.ACTIVE): ("client", (*HANDSHAKE, "client close")),
    (State.FIN_WAIT2, Opening.ACTIVE): ("client", (*HANDSHAKE, "client close", "deliver all")),
    (State.CLOSE_WAIT, Opening.PASSIVE): ("server", (*HANDSHAKE, "client close", "deliver all")),
    (State.LAST_ACK, Opening.PASSIVE): (
        "server",
        (*HANDSHAKE, "client close", "deliver all", "server close"),
    ),
    (State.CLOSING, Opening.PASSIVE): (
        "server",
        (*HANDSHAKE, "client close", "server close", "deliver to server"),
    ),
    (State.TIME_WAIT, Opening.ACTIVE): (
        "client",
        (*HANDSHAKE, "client close", "deliver all", "server close", "deliver all"),
    ),
}


#: The same states after shutdown(SHUT_WR) instead of close(): the application still reads.
REACH_SHUTDOWN: dict[State, tuple[Side, tuple[str, ...]]] = {
    State.FIN_WAIT1: ("client", (*HANDSHAKE, "client shutdown")),
    State.FIN_WAIT2: ("client", (*HANDSHAKE, "client shutdown", "deliver all")),
}


def _reach(state: State, opening: Opening | None, *, shutdown: bool = False) -> Endpoint:
    key = (state, opening) if (state, opening) in REACH else (state, None)
    if key not in REACH:
        key = next(k for k in REACH if k[0] is state)
    side, lines = REACH_SHUTDOWN[state] if shutdown else REACH[key]
    pair = _pair(*lines)
    endpoint = pair.endpoint(side)
    assert endpoint.state is state, (state, endpoint.state)
    return endpoint


def _segment_for(ep: Endpoint, event: Event, payload: int = 0) -> Segment:
    """A segment that the endpoint classifies as ``event``, with plausible numbers."""
    rcv = ep.rcv_nxt if ep.rcv_nxt is not None else 5000
    if event is Event.RCV_SYN:
        return Segment(Flags.SYN, rcv - 1 if ep.rcv_nxt is not None else 5000)
    if event is Event.RCV_SYN_ACK:
        return Segment(Flags.SYN | Flags.ACK, rcv - 1 if ep.rcv_nxt else 5000, ep.snd_nxt)
    if event is Event.RCV_ACK:
        return Segment(Flags.ACK, rcv, ep.snd_nxt)
    if event is Event.RCV_DATA:
        return Segment(Flags.PSH | Flags.ACK, rcv, ep.snd_una, 10)
    if event in (Event.RCV_FIN, Event.RCV_FIN_ACK):
        seq = ep.peer_fin_seq if ep.peer_fin_seq is not None else rcv
        ack = ep.snd_nxt if event is Event.RCV_FIN_ACK else ep.snd_una
        return Segment(Flags.FIN | Flags.ACK, seq, ack, payload)
    assert event is Event.RCV_RST
    if ep.state is State.SYN_SENT:
        return Segment(Flags.RST | Flags.ACK, 0, ep.snd_nxt)
    return Segment(Flags.RST, rcv)


ROWS = [
    pytest.param(state, key, id=f"{state}-{key if isinstance(key, Event) else '/'.join(key)}")
    for state, rows in TRANSITIONS.items()
    for key in rows
]


@pytest.mark.parametrize(("state", "key"), ROWS)
def test_every_row_is_exercised(state: State, key: Key) -> None:
    event, context = key if isinstance(key, tuple) else (key, None)
    opening = context if isinstance(context, Opening) else None
    # A plain row that has a close() variant is the shutdown(SHUT_WR) case.
    shutdown = context is None and (event, Closing.CLOSE) in TRANSITIONS[state]
    ep = _reach(state, opening, shutdown=shutdown)
    if opening is not None:
        assert ep.opening is opening
    if isinstance(context, Closing):
        assert ep.closing is context
    if shutdown:
        assert ep.closing is Closing.SHUTDOWN
    row = TRANSITIONS[state][key]
    now = 1.0
    if event in (Event.TIMEOUT_RTO, Event.TIMEOUT_CONNECT) and state in (
        State.ESTABLISHED,
        State.CLOSE_WAIT,
    ):
        ep.handle(Event.SEND, size=100)  # these timers run only while data is unacknowledged
    if event.kind == "segment":
        # Rows for close()d endpoints are about new data: the FIN carries some.
        seg = _segment_for(ep, event, 10 if isinstance(context, Closing) else 0)
        assert ep.classify(seg) is event, (seg, ep.classify(seg))
        sent = ep.receive(seg, now)
    else:
        if event is Event.TIMEOUT_2MSL:
            assert ep.timer_deadline is not None
            now = ep.timer_deadline
        sent = ep.handle(event, now, size=100 if event is Event.SEND else 0)
    assert ep.state is row.next
    assert tuple(s.flags for s in sent[: len(row.send)]) == row.send
    if row.next is not state:
        assert ep.history[-1] == (now, row.next, event.value)


def test_every_state_but_unknown_is_reachable_from_closed() -> None:
    seen = {State.CLOSED}
    queue = deque([State.CLOSED])
    while queue:
        for row in TRANSITIONS[queue.popleft()].values():
            if row.next not in seen:
                seen.add(row.next)
                queue.append(row.next)
    assert seen == set(State) - {State.UNKNOWN}


def test_every_state_has_an_entry_and_unknown_maps_to_nothing() -> None:
    assert set(TRANSITIONS) == set(State)
    assert dict(TRANSITIONS[State.UNKNOWN]) == {}


@pytest.mark.parametrize("state", [s for s in State if s is not State.UNKNOWN])
def test_close_is_allowed_in_every_state(state: State) -> None:
    assert Event.CLOSE in TRANSITIONS[state]
    assert Event.ABORT in TRANSITIONS[state]


def test_illegal_event_raises_and_changes_nothing() -> None:
    ep = _reach(State.ESTABLISHED, Opening.ACTIVE)
    before = (ep.state, list(ep.history), ep.snd_nxt, ep.snd_una, ep.rcv_nxt, ep.opening)
    with pytest.raises(IllegalTransition) as info:
        ep.handle(Event.LISTEN)
    assert info.value.state is State.ESTABLISHED
    assert info.value.event == "listen"
    assert "ESTABLISHED" in str(info.value) and "listen" in str(info.value)
    assert (ep.state, ep.history, ep.snd_nxt, ep.snd_una, ep.rcv_nxt, ep.opening) == before


def test_illegal_segment_raises_and_changes_nothing() -> None:
    ep = Endpoint(State.SYN_SENT)
    with pytest.raises(IllegalTransition):
        ep.receive(Segment(Flags.FIN | Flags.ACK, 0, 0))
    assert ep.state is State.SYN_SENT and len(ep.history) == 1


def test_two_msl_timer_is_driven_by_time_passed_in() -> None:
    ep = _reach(State.TIME_WAIT, Opening.ACTIVE)
    assert ep.timer_deadline == 60.0  # entered at t=0 with msl=30
    with pytest.raises(IllegalTransition):
        ep.handle(Event.TIMEOUT_2MSL, 59.9)
    assert ep.expire(59.9) == [] and ep.state is State.TIME_WAIT
    ep.expire(60.0)
    assert ep.state is State.CLOSED and ep.timer_deadline is None


def test_retransmitted_fin_restarts_the_2msl_timer() -> None:
    ep = _reach(State.TIME_WAIT, Opening.ACTIVE)
    assert ep.peer_fin_seq is not None
    out = ep.receive(Segment(Flags.FIN | Flags.ACK, ep.peer_fin_seq, ep.snd_nxt), 40.0)
    assert [s.flags for s in out] == [Flags.ACK]
    assert ep.timer_deadline == 100.0


def test_unacceptable_rst_is_ignored() -> None:
    ep = Endpoint()
    ep.handle(Event.CONNECT)
    # An RST in SYN_SENT that does not acknowledge our SYN is not for us.
    assert ep.receive(Segment(Flags.RST | Flags.ACK, 0, 999)) == []
    assert ep.state is State.SYN_SENT
    est = _reach(State.ESTABLISHED, Opening.ACTIVE)
    assert est.rcv_nxt is not None
    assert est.receive(Segment(Flags.RST, est.rcv_nxt + 10_000_000)) == []
    assert est.state is State.ESTABLISHED


def test_sequence_numbers_wrap_around() -> None:
    pair = Pair(client_isn=2**32 - 1, server_isn=2**32 - 2)
    for line in (*HANDSHAKE, "client close", "deliver all", "server close", "deliver all"):
        from tcplens.model.scenarios import _run_line

        _run_line(pair, line.split(), 1)
    assert pair.client.state is State.TIME_WAIT
    assert pair.server.state is State.CLOSED
    assert all(0 <= step.segment.seq < 2**32 for step in pair.steps if step.segment)


def test_send_needs_a_positive_size() -> None:
    ep = _reach(State.ESTABLISHED, Opening.ACTIVE)
    with pytest.raises(IllegalTransition):
        ep.handle(Event.SEND, size=0)


def test_segments_go_through_receive() -> None:
    with pytest.raises(IllegalTransition):
        Endpoint().handle(Event.RCV_SYN)


def test_out_of_order_fin_waits_for_the_gap() -> None:
    pair = _pair(*HANDSHAKE, "client send 100", "client close")
    server = pair.server
    data, fin = (f.segment for f in pair.wire)
    server.receive(fin)
    assert server.state is State.ESTABLISHED  # held: the data before it is missing
    out = server.receive(data)
    assert server.state is State.CLOSE_WAIT
    assert out[-1].ack == fin.end_seq


# -- close() versus shutdown(SHUT_WR): what new data meets afterwards ------------------


def _data_for(ep: Endpoint, length: int = 10) -> Segment:
    assert ep.rcv_nxt is not None
    return Segment(Flags.PSH | Flags.ACK, ep.rcv_nxt, ep.snd_una, length)


@pytest.mark.parametrize("state", [State.FIN_WAIT1, State.FIN_WAIT2])
def test_new_data_after_close_is_answered_with_rst_and_ends_the_connection(state: State) -> None:
    ep = _reach(state, Opening.ACTIVE)
    assert ep.closing is Closing.CLOSE
    seg = _data_for(ep)
    out = ep.receive(seg, 2.0)
    assert [s.flags for s in out] == [Flags.RST]
    assert out[0].seq == seg.ack  # an RST built from the segment it answers
    assert ep.state is State.CLOSED
    assert ep.history[-1] == (2.0, State.CLOSED, "rcv data")


@pytest.mark.parametrize("state", [State.FIN_WAIT1, State.FIN_WAIT2])
def test_new_data_after_shutdown_is_read(state: State) -> None:
    ep = _reach(state, Opening.ACTIVE, shutdown=True)
    assert ep.closing is Closing.SHUTDOWN
    seg = _data_for(ep)
    out = ep.receive(seg)
    assert ep.state is state
    assert [s.flags for s in out] == [Flags.ACK] and out[0].ack == seg.end_seq


def test_after_close_a_bare_ack_or_old_data_is_not_reset() -> None:
    ep = _reach(State.FIN_WAIT2, Opening.ACTIVE)
    assert ep.rcv_nxt is not None
    assert ep.receive(Segment(Flags.ACK, ep.rcv_nxt, ep.snd_nxt)) == []
    old = Segment(Flags.PSH | Flags.ACK, ep.rcv_nxt - 10, ep.snd_nxt, 10)
    assert [s.flags for s in ep.receive(old)] == [Flags.ACK]  # re-acknowledged only
    assert ep.state is State.FIN_WAIT2


def test_close_after_shutdown_gives_up_reading_too() -> None:
    ep = _reach(State.FIN_WAIT2, Opening.ACTIVE, shutdown=True)
    assert ep.handle(Event.CLOSE) == []  # FIN already sent
    assert ep.closing is Closing.CLOSE
    ep.receive(_data_for(ep))
    assert ep.state is State.CLOSED


def test_shutdown_is_its_own_call_and_sends_the_fin_close_would() -> None:
    for state in (State.ESTABLISHED, State.CLOSE_WAIT, State.SYN_RECV):
        close, shutdown = TRANSITIONS[state][Event.CLOSE], TRANSITIONS[state][Event.SHUTDOWN]
        assert (shutdown.next, shutdown.send) == (close.next, close.send)
        assert "shutdown" in shutdown.note and "shutdown" not in close.note
    # Linux answers shutdown() on an unconnected socket with ENOTCONN: no row.
    with pytest.raises(IllegalTransition):
        Endpoint().handle(Event.SHUTDOWN)


def test_only_an_orphan_fin_wait2_times_out() -> None:
    ep = _reach(State.FIN_WAIT2, Opening.ACTIVE, shutdown=True)
    assert not ep.can(Event.TIMEOUT_CONNECT)
    with pytest.raises(IllegalTransition, match="only an orphan"):
        ep.handle(Event.TIMEOUT_CONNECT)
    assert ep.state is State.FIN_WAIT2
    ep.handle(Event.CLOSE)
    ep.handle(Event.TIMEOUT_CONNECT)
    assert ep.state is State.CLOSED


# -- data retransmission and giving up --------------------------------------------------


def test_lost_data_is_retransmitted_from_snd_una() -> None:
    pair = _pair(*HANDSHAKE, "client send 100", "drop", "client send 50")
    out = pair.client.handle(Event.TIMEOUT_RTO, 1.0)
    assert [(s.flags, s.seq, s.length) for s in out] == [(Flags.PSH | Flags.ACK, 1, 150)]
    assert pair.client.snd_nxt == 151  # a retransmission sends nothing new


def test_retransmitted_fin_carries_the_unacknowledged_data_before_it() -> None:
    pair = _pair(*HANDSHAKE, "client send 100", "drop", "client close", "deliver")
    assert pair.server.state is State.ESTABLISHED  # the FIN is held: its data is missing
    out = pair.client.handle(Event.TIMEOUT_RTO, 1.0)
    assert [(s.flags, s.seq, s.length) for s in out] == [(Flags.FIN | Flags.ACK, 1, 100)]
    pair.server.receive(out[0])
    assert pair.server.state is State.CLOSE_WAIT and not pair.server.out_of_order


@pytest.mark.parametrize("event", [Event.TIMEOUT_RTO, Event.TIMEOUT_CONNECT])
def test_retransmission_timers_need_unacknowledged_data(event: Event) -> None:
    ep = _reach(State.ESTABLISHED, Opening.ACTIVE)
    before = (ep.state, list(ep.history), ep.snd_nxt, ep.snd_una)
    assert not ep.can(event)
    with pytest.raises(IllegalTransition, match="no data is unacknowledged"):
        ep.handle(event)
    assert (ep.state, ep.history, ep.snd_nxt, ep.snd_una) == before


def test_keepalive_runs_only_when_nothing_is_unacknowledged() -> None:
    ep = _reach(State.ESTABLISHED, Opening.ACTIVE)
    assert ep.can(Event.TIMEOUT_KEEPALIVE)
    ep.handle(Event.SEND, size=10)
    assert not ep.can(Event.TIMEOUT_KEEPALIVE)
    with pytest.raises(IllegalTransition, match="not keepalive"):
        ep.handle(Event.TIMEOUT_KEEPALIVE)
    assert ep.state is State.ESTABLISHED


@pytest.mark.parametrize("state", [State.ESTABLISHED, State.CLOSE_WAIT])
def test_synchronized_states_give_up_to_closed(state: State) -> None:
    assert TRANSITIONS[state][Event.TIMEOUT_CONNECT].next is State.CLOSED
    assert "tcp_retries2" in TRANSITIONS[state][Event.TIMEOUT_CONNECT].note
    keepalive = TRANSITIONS[state][Event.TIMEOUT_KEEPALIVE]
    assert (keepalive.next, keepalive.send) == (State.CLOSED, (Flags.RST | Flags.ACK,))


# -- notes say what happened --------------------------------------------------------------


def test_trail_is_kept_only_when_asked_for() -> None:
    ep = _reach(State.ESTABLISHED, Opening.ACTIVE)
    assert ep.trail is None
    ep.handle(Event.SEND, size=10)
    assert ep.trail is None
    ep.trail = []
    ep.handle(Event.CLOSE)
    assert ep.trail == ["close() first (active close): send FIN"]


def test_kernel_knobs_the_rows_name_exist_on_this_kernel() -> None:
    """Every ``tcp_*`` sysctl a row's note names is real (read from the running kernel)."""
    import re
    from pathlib import Path

    names = {
        name
        for rows in TRANSITIONS.values()
        for row in rows.values()
        for name in re.findall(r"\btcp_[a-z0-9_]+", row.note)
    }
    assert {"tcp_retries2", "tcp_fin_timeout", "tcp_rfc1337"} <= names
    for name in names:
        assert Path("/proc/sys/net/ipv4", name).is_file(), name
    # The retransmission collapse the model follows is on (the theory of operation).
    assert Path("/proc/sys/net/ipv4/tcp_retrans_collapse").read_text().strip() == "1"
    # The counter Linux bumps when it resets data that arrives after close().
    assert "TCPAbortOnData" in Path("/proc/net/netstat").read_text()


@pytest.mark.parametrize("lang", ["en", "zh"])
@pytest.mark.parametrize("state", [State.FIN_WAIT1, State.FIN_WAIT2])
def test_explain_tells_shutdown_from_close_as_the_table_does(state: State, lang: str) -> None:
    """The texts must not say a closer 'still receives' without saying after which call."""
    from tcplens.model.explain import explain

    meaning = explain(state, lang).meaning
    assert "shutdown(SHUT_WR)" in meaning and "close()" in meaning and "RST" in meaning
    assert TRANSITIONS[state][(Event.RCV_DATA, Closing.CLOSE)].next is State.CLOSED
