"""The RFC 9293 connection state machine, as data, with a sans-IO endpoint.

Theory of operation
-------------------
:data:`TRANSITIONS` is the whole state diagram: ``state -> key -> Transition``
where a key is an :class:`Event` or, where the same event leads to different
states depending on context, an ``(Event, Opening)`` pair (RST in SYN_RECV
returns a passive opener to LISTEN and an active one to CLOSED) or an
``(Event, Closing)`` pair (new data reaching a side whose application called
close() is answered with RST; after shutdown(SHUT_WR) it is read as usual).
Every state has an entry; UNKNOWN maps to nothing.  The rows are RFC 9293
section 3.3.2 (figure 5) plus what Linux does where the figure is silent:
FIN_WAIT1 + FIN that also acknowledges our FIN goes straight to TIME_WAIT, an
RST kills TIME_WAIT (``tcp_rfc1337=0``), an orphaned FIN_WAIT2 gives up after
``tcp_fin_timeout``, retransmission timers re-send SYN, SYN+ACK, data and
FIN, retransmitted FINs are re-acknowledged, and a synchronised connection
gives up (CLOSED) when its retransmissions go unanswered (``tcp_retries2``,
``TCP_USER_TIMEOUT``) or its keepalive probes do (``SO_KEEPALIVE``).

What cannot be a row lives in :class:`Endpoint`:

* **Classifying a segment** into an event needs sequence numbers: an ACK is
  ``RCV_ACK`` only when it acknowledges our SYN or FIN; a FIN is
  ``RCV_FIN_ACK`` when it also acknowledges our FIN.  Anything else with an ACK
  is ``RCV_DATA``, which never changes state.
* **RST acceptability** (RFC 9293 3.10.7.3/3.10.7.4): in SYN_SENT an RST counts
  only if it acknowledges our SYN; elsewhere only if its sequence number lies in
  the receive window.  An unacceptable RST is ignored (returns no segments and
  changes nothing), as the kernel does.
* **Data acknowledgement**: received payload advances ``rcv_nxt`` and is
  acknowledged with a bare ACK; that is flow, not state, so it is not a row.
* **close() or shutdown()**: both send a FIN, but close() also gives up
  reading.  Linux then answers *new* data (payload beyond ``rcv_nxt``) in
  FIN_WAIT1 and FIN_WAIT2 with RST and drops the connection (RFC 1122
  4.2.2.13; ``tcp_rcv_state_process`` and, for an orphan already handed to
  a FIN_WAIT2 timewait socket, ``tcp_timewait_state_process``; counted as
  ``TcpExtTCPAbortOnData``).  The endpoint remembers which call it got
  (:attr:`Endpoint.closing`) and looks up ``(event, Closing.CLOSE)`` for
  such a segment, a FIN carrying data included (``RCV_FIN``, ``RCV_FIN_ACK``);
  a bare or duplicate ACK, or a bare FIN, stays a plain row.
* **Retransmission** re-sends everything unacknowledged from ``snd_una`` in
  one segment (data, then the FIN if one was sent), as Linux does when it
  collapses its retransmit queue (``net.ipv4.tcp_retrans_collapse=1``).
  In ESTABLISHED and CLOSE_WAIT the retransmission timer and the
  ``tcp_retries2`` give-up run only while data sent with ``send`` is
  unacknowledged, and the keepalive timer only while nothing is
  (``tcp_keepalive_timer`` reschedules while ``packets_out``); without that
  :meth:`Endpoint.can` says no and :meth:`Endpoint.handle` raises.
* **Timers**: time is passed in (``now``), never read.  Entering TIME_WAIT arms
  the 2MSL timer (``timer_deadline = now + 2*msl``); a retransmitted FIN in
  TIME_WAIT re-arms it.  ``TIMEOUT_2MSL`` before the deadline is illegal;
  :meth:`Endpoint.expire` fires it only when due.

An event with no row raises :class:`~tcplens.errors.IllegalTransition` and
changes nothing: every check happens before any field is written.

The model treats a passive open the way RFC 9293 does: the LISTEN endpoint
itself becomes the connection.  Linux keeps the listener in LISTEN and
creates a child socket; ``tcplens.lab`` compares the child with the model.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntFlag, StrEnum
from types import MappingProxyType
from typing import Final

from tcplens.errors import IllegalTransition
from tcplens.model.states import STATE_GROUPS, State
from tcplens.model.words import plural

__all__ = [
    "TRANSITIONS",
    "Closing",
    "Endpoint",
    "Event",
    "Flags",
    "Key",
    "Opening",
    "Segment",
    "Transition",
    "format_flags",
]

#: Receive window assumed for RST acceptability; the model does not do flow control.
RCV_WINDOW: Final = 65535
#: Sequence numbers live modulo 2**32 (RFC 9293 3.4).
SEQ_SPACE: Final = 1 << 32


class Flags(IntFlag):
    """TCP header flag bits, with their wire values."""

    FIN = 0x01
    SYN = 0x02
    RST = 0x04
    PSH = 0x08
    ACK = 0x10
    URG = 0x20


_FLAG_ORDER: Final = (Flags.SYN, Flags.FIN, Flags.RST, Flags.PSH, Flags.ACK, Flags.URG)


def format_flags(flags: Flags) -> str:
    """``SYN+ACK``, ``FIN+ACK``: the order Wireshark users read them in."""
    names = [f.name or "" for f in _FLAG_ORDER if f in flags]
    return "+".join(names) if names else "none"


@dataclass(frozen=True, slots=True)
class Segment:
    """A TCP segment as the state machine sees it: flags, numbers, payload size."""

    flags: Flags
    seq: int = 0
    ack: int = 0
    length: int = 0

    @property
    def end_seq(self) -> int:
        """Sequence number after this segment (SYN and FIN occupy one each)."""
        bits = _bits(self.flags)
        return (self.seq + self.length + (bits >> 1 & 1) + (bits & 1)) % SEQ_SPACE

    def __str__(self) -> str:
        text = f"{format_flags(self.flags)} seq={self.seq}"
        if Flags.ACK in self.flags:
            text += f" ack={self.ack}"
        if self.length:
            text += f" len={self.length}"
        return text


class Event(StrEnum):
    """What drives an endpoint: application calls, received segments, timers."""

    # application calls
    LISTEN = "listen"
    CONNECT = "connect"
    SEND = "send"
    CLOSE = "close"
    SHUTDOWN = "shutdown"  # shutdown(SHUT_WR): FIN, but the application keeps reading
    ABORT = "abort"
    # segments received (see Endpoint.classify)
    RCV_SYN = "rcv SYN"
    RCV_SYN_ACK = "rcv SYN+ACK"
    RCV_ACK = "rcv ACK"
    RCV_DATA = "rcv data"
    RCV_FIN = "rcv FIN"
    RCV_FIN_ACK = "rcv FIN+ACK"
    RCV_RST = "rcv RST"
    # timers
    TIMEOUT_RTO = "retransmit timeout"
    TIMEOUT_2MSL = "2MSL timeout"
    TIMEOUT_CONNECT = "give up"
    TIMEOUT_KEEPALIVE = "keepalive timeout"

    @property
    def kind(self) -> str:
        """``call``, ``segment`` or ``timer``: how the event reaches an endpoint."""
        if self.name.startswith("RCV_"):
            return "segment"
        if self.name.startswith("TIMEOUT_"):
            return "timer"
        return "call"


class Opening(StrEnum):
    """How the connection was opened; decides where an RST in SYN_RECV leads."""

    PASSIVE = "passive"
    ACTIVE = "active"


class Closing(StrEnum):
    """Which call ended the application's side; decides what new data arriving afterwards does."""

    CLOSE = "close"  # close(): nobody will read, new data is answered with RST
    SHUTDOWN = "shutdown"  # shutdown(SHUT_WR): only sending is over, data is still read


Key = Event | tuple[Event, Opening] | tuple[Event, Closing]


@dataclass(frozen=True, slots=True)
class Transition:
    """One row: the next state, the segments sent (as flags), and why."""

    next: State
    send: tuple[Flags, ...]
    note: str


_SA = Flags.SYN | Flags.ACK
_FA = Flags.FIN | Flags.ACK
_RA = Flags.RST | Flags.ACK
_DATA = Flags.PSH | Flags.ACK
_A = Flags.ACK
S = State
E = Event


def _t(next_state: State, send: tuple[Flags, ...], note: str) -> Transition:
    return Transition(next_state, send, note)


_GIVE_UP = "retransmissions unanswered (tcp_retries2 or TCP_USER_TIMEOUT): give up, ETIMEDOUT"
_KEEPALIVE = "keepalive probes unanswered (SO_KEEPALIVE): send RST, give up, ETIMEDOUT"
_DATA_AFTER_CLOSE = "new data after close(): nobody will read it, answer RST and drop"


_TABLE: dict[State, dict[Key, Transition]] = {
    S.CLOSED: {
        E.LISTEN: _t(S.LISTEN, (), "passive open: listen()"),
        E.CONNECT: _t(S.SYN_SENT, (Flags.SYN,), "active open: connect() sends SYN"),
        E.CLOSE: _t(S.CLOSED, (), "close() on a socket with no connection"),
        E.ABORT: _t(S.CLOSED, (), "abort with no connection"),
        E.RCV_SYN: _t(S.CLOSED, (_RA,), "no listener on the port: connection refused"),
        E.RCV_DATA: _t(S.CLOSED, (Flags.RST,), "segment for no connection is reset"),
        E.RCV_FIN: _t(S.CLOSED, (Flags.RST,), "segment for no connection is reset"),
        E.RCV_RST: _t(S.CLOSED, (), "RST for no connection is ignored"),
    },
    S.LISTEN: {
        E.RCV_SYN: _t(S.SYN_RECV, (_SA,), "SYN received: reply SYN+ACK (handshake 2 of 3)"),
        E.RCV_DATA: _t(S.LISTEN, (Flags.RST,), "segment for no connection is reset"),
        E.RCV_RST: _t(S.LISTEN, (), "RST to a listener is ignored"),
        E.CLOSE: _t(S.CLOSED, (), "close() of the listening socket"),
        E.ABORT: _t(S.CLOSED, (), "abort of the listening socket"),
    },
    S.SYN_SENT: {
        E.RCV_SYN_ACK: _t(S.ESTABLISHED, (_A,), "SYN+ACK received: reply ACK (handshake 3 of 3)"),
        E.RCV_SYN: _t(S.SYN_RECV, (_SA,), "simultaneous open: SYN received, reply SYN+ACK"),
        E.RCV_RST: _t(S.CLOSED, (), "RST for our SYN: connection refused (ECONNREFUSED)"),
        E.TIMEOUT_RTO: _t(S.SYN_SENT, (Flags.SYN,), "no answer: retransmit SYN"),
        E.TIMEOUT_CONNECT: _t(S.CLOSED, (), "SYN retries exhausted: connect() times out"),
        E.CLOSE: _t(S.CLOSED, (), "close() before the handshake completed"),
        E.ABORT: _t(S.CLOSED, (), "abort before the handshake completed"),
    },
    S.SYN_RECV: {
        E.RCV_ACK: _t(S.ESTABLISHED, (), "ACK of our SYN: handshake complete"),
        E.RCV_SYN_ACK: _t(S.ESTABLISHED, (), "simultaneous open: peer's SYN+ACK acks our SYN"),
        E.RCV_SYN: _t(S.SYN_RECV, (_SA,), "retransmitted SYN: repeat SYN+ACK"),
        (E.RCV_RST, Opening.PASSIVE): _t(S.LISTEN, (), "RST during a passive open: back to LISTEN"),
        (E.RCV_RST, Opening.ACTIVE): _t(S.CLOSED, (), "RST during simultaneous open: refused"),
        E.TIMEOUT_RTO: _t(S.SYN_RECV, (_SA,), "final ACK missing: retransmit SYN+ACK"),
        (E.TIMEOUT_CONNECT, Opening.PASSIVE): _t(
            S.LISTEN, (), "SYN+ACK retries exhausted: half-open connection dropped"
        ),
        (E.TIMEOUT_CONNECT, Opening.ACTIVE): _t(
            S.CLOSED, (), "SYN+ACK retries exhausted: connect() times out"
        ),
        E.CLOSE: _t(S.FIN_WAIT1, (_FA,), "close() before the final ACK: send FIN"),
        E.SHUTDOWN: _t(S.FIN_WAIT1, (_FA,), "shutdown(SHUT_WR) before the final ACK: send FIN"),
        E.ABORT: _t(S.CLOSED, (_RA,), "abort: send RST"),
    },
    S.ESTABLISHED: {
        E.SEND: _t(S.ESTABLISHED, (_DATA,), "send data"),
        E.RCV_DATA: _t(S.ESTABLISHED, (), "data or ACK received"),
        E.RCV_FIN: _t(S.CLOSE_WAIT, (_A,), "peer closed (passive close): ACK its FIN"),
        E.RCV_RST: _t(S.CLOSED, (), "connection reset by peer (ECONNRESET)"),
        E.TIMEOUT_RTO: _t(S.ESTABLISHED, (_DATA,), "data unacknowledged: retransmit it"),
        E.TIMEOUT_CONNECT: _t(S.CLOSED, (), _GIVE_UP),
        E.TIMEOUT_KEEPALIVE: _t(S.CLOSED, (_RA,), _KEEPALIVE),
        E.CLOSE: _t(S.FIN_WAIT1, (_FA,), "close() first (active close): send FIN"),
        E.SHUTDOWN: _t(
            S.FIN_WAIT1, (_FA,), "shutdown(SHUT_WR): send FIN, keep reading (half-close)"
        ),
        E.ABORT: _t(S.CLOSED, (_RA,), "abort (SO_LINGER 0): send RST"),
    },
    S.FIN_WAIT1: {
        E.RCV_ACK: _t(S.FIN_WAIT2, (), "our FIN acknowledged: wait for the peer's FIN"),
        E.RCV_FIN: _t(S.CLOSING, (_A,), "simultaneous close: peer's FIN before the ACK of ours"),
        E.RCV_FIN_ACK: _t(S.TIME_WAIT, (_A,), "peer's FIN also acks ours: straight to TIME_WAIT"),
        E.RCV_DATA: _t(S.FIN_WAIT1, (), "half-close: data still arrives from the peer"),
        (E.RCV_DATA, Closing.CLOSE): _t(S.CLOSED, (Flags.RST,), _DATA_AFTER_CLOSE),
        (E.RCV_FIN, Closing.CLOSE): _t(S.CLOSED, (Flags.RST,), _DATA_AFTER_CLOSE),
        (E.RCV_FIN_ACK, Closing.CLOSE): _t(S.CLOSED, (Flags.RST,), _DATA_AFTER_CLOSE),
        E.RCV_RST: _t(S.CLOSED, (), "reset by peer while closing"),
        E.TIMEOUT_RTO: _t(S.FIN_WAIT1, (_FA,), "FIN unacknowledged: retransmit FIN"),
        E.TIMEOUT_CONNECT: _t(S.CLOSED, (), "FIN retries exhausted: connection dropped"),
        E.CLOSE: _t(S.FIN_WAIT1, (), "close() after shutdown(): FIN already sent"),
        E.SHUTDOWN: _t(S.FIN_WAIT1, (), "shutdown() again: FIN already sent"),
        E.ABORT: _t(S.CLOSED, (_RA,), "abort while closing: send RST"),
    },
    S.FIN_WAIT2: {
        E.RCV_FIN: _t(S.TIME_WAIT, (_A,), "peer's FIN: ACK it and wait 2MSL"),
        E.RCV_DATA: _t(S.FIN_WAIT2, (), "half-close: data still flows toward this side"),
        (E.RCV_DATA, Closing.CLOSE): _t(S.CLOSED, (Flags.RST,), _DATA_AFTER_CLOSE),
        (E.RCV_FIN, Closing.CLOSE): _t(S.CLOSED, (Flags.RST,), _DATA_AFTER_CLOSE),
        E.RCV_RST: _t(S.CLOSED, (), "reset by peer while closing"),
        E.TIMEOUT_CONNECT: _t(S.CLOSED, (), "orphaned FIN_WAIT2 times out (tcp_fin_timeout)"),
        E.CLOSE: _t(S.FIN_WAIT2, (), "close() after shutdown(): FIN already sent"),
        E.SHUTDOWN: _t(S.FIN_WAIT2, (), "shutdown() again: FIN already sent"),
        E.ABORT: _t(S.CLOSED, (_RA,), "abort while closing: send RST"),
    },
    S.CLOSE_WAIT: {
        E.SEND: _t(S.CLOSE_WAIT, (_DATA,), "half-close: this side may still send"),
        E.RCV_DATA: _t(S.CLOSE_WAIT, (), "ACK received"),
        E.RCV_FIN: _t(S.CLOSE_WAIT, (_A,), "retransmitted FIN: ACK it again"),
        E.RCV_RST: _t(S.CLOSED, (), "reset by peer"),
        E.TIMEOUT_RTO: _t(S.CLOSE_WAIT, (_DATA,), "data unacknowledged: retransmit it"),
        E.TIMEOUT_CONNECT: _t(S.CLOSED, (), _GIVE_UP),
        E.TIMEOUT_KEEPALIVE: _t(S.CLOSED, (_RA,), _KEEPALIVE),
        E.CLOSE: _t(S.LAST_ACK, (_FA,), "application calls close(): send FIN"),
        E.SHUTDOWN: _t(S.LAST_ACK, (_FA,), "shutdown(SHUT_WR) after the peer's FIN: send ours"),
        E.ABORT: _t(S.CLOSED, (_RA,), "abort: send RST"),
    },
    S.CLOSING: {
        E.RCV_ACK: _t(S.TIME_WAIT, (), "our FIN acknowledged: wait 2MSL"),
        E.RCV_FIN_ACK: _t(S.TIME_WAIT, (_A,), "retransmitted FIN that acks ours: wait 2MSL"),
        E.RCV_FIN: _t(S.CLOSING, (_A,), "retransmitted FIN: ACK it again"),
        E.RCV_DATA: _t(S.CLOSING, (), "ACK that does not cover our FIN"),
        E.RCV_RST: _t(S.CLOSED, (), "reset by peer while closing"),
        E.TIMEOUT_RTO: _t(S.CLOSING, (_FA,), "FIN unacknowledged: retransmit FIN"),
        E.TIMEOUT_CONNECT: _t(S.CLOSED, (), "FIN retries exhausted: connection dropped"),
        E.CLOSE: _t(S.CLOSING, (), "close() after shutdown(): FIN already sent"),
        E.SHUTDOWN: _t(S.CLOSING, (), "shutdown() again: FIN already sent"),
        E.ABORT: _t(S.CLOSED, (_RA,), "abort while closing: send RST"),
    },
    S.LAST_ACK: {
        E.RCV_ACK: _t(S.CLOSED, (), "our FIN acknowledged: connection gone"),
        E.RCV_FIN_ACK: _t(S.CLOSED, (_A,), "retransmitted FIN that acks ours: connection gone"),
        E.RCV_FIN: _t(S.LAST_ACK, (_A,), "retransmitted FIN: ACK it again"),
        E.RCV_DATA: _t(S.LAST_ACK, (), "ACK that does not cover our FIN"),
        E.RCV_RST: _t(S.CLOSED, (), "reset by peer"),
        E.TIMEOUT_RTO: _t(S.LAST_ACK, (_FA,), "final ACK lost: retransmit FIN"),
        E.TIMEOUT_CONNECT: _t(S.CLOSED, (), "FIN retries exhausted: connection dropped"),
        E.CLOSE: _t(S.LAST_ACK, (), "close() again: FIN already sent"),
        E.SHUTDOWN: _t(S.LAST_ACK, (), "shutdown() again: FIN already sent"),
        E.ABORT: _t(S.CLOSED, (_RA,), "abort: send RST"),
    },
    S.TIME_WAIT: {
        E.TIMEOUT_2MSL: _t(S.CLOSED, (), "2MSL elapsed: connection forgotten"),
        E.RCV_FIN: _t(S.TIME_WAIT, (_A,), "FIN again (our ACK was lost): ACK, restart 2MSL"),
        E.RCV_DATA: _t(S.TIME_WAIT, (), "stray segment absorbed by TIME_WAIT"),
        E.RCV_RST: _t(S.CLOSED, (), "RST ends TIME_WAIT early (Linux, tcp_rfc1337=0)"),
        E.CLOSE: _t(S.TIME_WAIT, (), "close() after shutdown(): nothing left to send"),
        E.ABORT: _t(S.CLOSED, (), "abort: forget the TIME_WAIT connection"),
    },
    S.UNKNOWN: {},
}

#: The transition table: ``state -> (event | (event, opening)) -> Transition``.
TRANSITIONS: Final = MappingProxyType({s: MappingProxyType(rows) for s, rows in _TABLE.items()})

# -- hot-path helpers (a capture drives the model once per control segment) -----------
# IntFlag membership (``Flags.ACK in flags``) and IntFlag ``&`` run Python-level enum
# code; the flags are plain ints underneath, so the model tests bits on the int.
_bits = int  # the wire value of a Flags (or plain int) as a plain int
_FIN_BIT, _SYN_BIT, _RST_BIT, _ACK_BIT = 0x01, 0x02, 0x04, 0x10
_SEGMENT_EVENTS: Final = frozenset(e for e in Event if e.name.startswith("RCV_"))
_SYNCHRONIZED: Final = STATE_GROUPS["synchronized"]
_CLOSED_OR_LISTEN: Final = frozenset({State.CLOSED, State.LISTEN})
#: Segment events that can carry new data, which Linux resets after close()
_DATA_EVENTS: Final = frozenset({Event.RCV_DATA, Event.RCV_FIN, Event.RCV_FIN_ACK})
#: States whose retransmission, give-up and keepalive timers depend on unacknowledged data
_DATA_TIMER_STATES: Final = frozenset({State.ESTABLISHED, State.CLOSE_WAIT})


class Endpoint:
    """One side of a connection, sans IO: feed it events, it returns segments to send."""

    def __init__(
        self,
        state: State = State.CLOSED,
        *,
        name: str = "",
        msl: float = 30.0,
        isn: int = 0,
        now: float = 0.0,
        opening: Opening | None = None,
    ) -> None:
        self.name = name
        self.msl = msl
        self.isn = isn
        self.state = state
        self.opening = opening
        self.history: list[tuple[float, State, str]] = [(now, state, "initial")]
        self.timer_deadline: float | None = now + 2 * msl if state is State.TIME_WAIT else None
        self.snd_una = isn
        self.snd_nxt = isn
        self.rcv_nxt: int | None = None
        self.fin_seq: int | None = None  # sequence number of our FIN, once sent
        self.peer_fin_seq: int | None = None
        self.out_of_order: list[Segment] = []
        self.last_transition: Transition | None = None
        #: close() or shutdown(), once the application has called one (context for RCV_DATA)
        self.closing: Closing | None = None
        #: end of the data sent with SEND; unacknowledged data is snd_una .. data_end
        self.data_end: int | None = None
        #: when a list, every outcome of handle()/receive() appends its note to it (the
        #: ladder's annotations); None (the default, and what a capture uses) keeps nothing
        self.trail: list[str] | None = None

    def __repr__(self) -> str:
        label = f" {self.name}" if self.name else ""
        return f"<Endpoint{label} {self.state}>"

    # -- classification -------------------------------------------------
    def _acks_our_fin(self, seg: Segment) -> bool:
        fin_seq = self.fin_seq
        if fin_seq is None or not _bits(seg.flags) & _ACK_BIT:
            return False
        after_fin = (fin_seq + 1) % SEQ_SPACE
        return not _seq_ge(self.snd_una, after_fin) and _seq_ge(seg.ack, after_fin)

    def classify(self, seg: Segment) -> Event:
        """Name the event a segment is for this endpoint (see the theory of operation)."""
        flags = _bits(seg.flags)
        if flags & _RST_BIT:
            return Event.RCV_RST
        if flags & _SYN_BIT:
            return Event.RCV_SYN_ACK if flags & _ACK_BIT else Event.RCV_SYN
        if flags & _FIN_BIT:
            return Event.RCV_FIN_ACK if self._acks_our_fin(seg) else Event.RCV_FIN
        if flags & _ACK_BIT:
            if self.state is State.SYN_RECV and _seq_ge(seg.ack, self.isn + 1):
                return Event.RCV_ACK
            if self._acks_our_fin(seg):
                return Event.RCV_ACK
        return Event.RCV_DATA

    def unacked_data(self) -> int:
        """Bytes sent with SEND and not yet acknowledged (what a retransmission re-sends)."""
        end = self.data_end
        if end is None or not _seq_gt(end, self.snd_una):
            return 0
        return (end - self.snd_una) % SEQ_SPACE

    def _is_new_data(self, seg: Segment) -> bool:
        """Payload beyond ``rcv_nxt``, what Linux resets after close(): ``after(end_seq, rcv_nxt)``.

        A retransmission of data already received is only re-acknowledged.
        """
        rcv_nxt = self.rcv_nxt
        return (
            seg.length > 0
            and rcv_nxt is not None
            and _seq_gt((seg.seq + seg.length) % SEQ_SPACE, rcv_nxt)
        )

    def _rst_acceptable(self, seg: Segment) -> bool:
        if self.state is State.SYN_SENT:
            return bool(_bits(seg.flags) & _ACK_BIT) and seg.ack == self.snd_nxt
        if self.rcv_nxt is None:
            return True
        return (seg.seq - self.rcv_nxt) % SEQ_SPACE <= RCV_WINDOW

    # -- the one place state changes --------------------------------------
    def lookup(self, event: Event, seg: Segment | None = None) -> Transition | None:
        """The row that applies now, or None; context keys win over plain ones.

        ``seg`` is the received segment, when there is one: new data in it
        after close() selects the ``(event, Closing.CLOSE)`` rows.
        """
        rows = _TABLE[self.state]  # the same rows TRANSITIONS shows, without the proxy
        if (
            seg is not None
            and self.closing is Closing.CLOSE
            and event in _DATA_EVENTS
            and self._is_new_data(seg)
        ):
            row = rows.get((event, Closing.CLOSE))
            if row is not None:
                return row
        if self.opening is not None:
            row = rows.get((event, self.opening))
            if row is not None:
                return row
        return rows.get(event)

    def _refusal(self, event: Event, now: float) -> str | None:
        """Why a call or timer with a row still cannot happen now (None: it can)."""
        if event is Event.TIMEOUT_2MSL and (
            self.timer_deadline is None or now < self.timer_deadline
        ):
            due = "not armed" if self.timer_deadline is None else f"due at {self.timer_deadline:g}"
            return f"2MSL timer {due}"
        if self.state in _DATA_TIMER_STATES:
            unacked = self.unacked_data() > 0
            if event in (Event.TIMEOUT_RTO, Event.TIMEOUT_CONNECT) and not unacked:
                return "no data is unacknowledged, so no retransmission timer runs"
            if event is Event.TIMEOUT_KEEPALIVE and unacked:
                return "data is unacknowledged: the retransmission timer runs, not keepalive"
        if (
            event is Event.TIMEOUT_CONNECT
            and self.state is State.FIN_WAIT2
            and self.closing is Closing.SHUTDOWN
        ):
            return "only an orphan (after close()) times out; after shutdown() FIN_WAIT2 waits"
        return None

    def can(self, event: Event, now: float = 0.0) -> bool:
        """Whether ``event`` has a row in the current state and can happen now."""
        if self.lookup(event) is None:
            return False
        return event in _SEGMENT_EVENTS or self._refusal(event, now) is None

    def handle(self, event: Event, now: float = 0.0, *, size: int = 0) -> list[Segment]:
        """Apply an application call or a timer; return the segments sent.

        ``size`` is the payload length for :attr:`Event.SEND`.  Segment
        events must go through :meth:`receive`, which knows the numbers.
        """
        if event in _SEGMENT_EVENTS:
            raise IllegalTransition(self.state, event.value, "use receive() for segments")
        row = self.lookup(event)
        if row is None:
            raise IllegalTransition(self.state, event.value)
        refusal = self._refusal(event, now)
        if refusal is not None:
            raise IllegalTransition(self.state, event.value, refusal)
        if event is Event.SEND and size <= 0:
            raise IllegalTransition(self.state, event.value, "send needs a positive size")
        return self._apply(event, row, now, None, size)

    def receive(self, seg: Segment, now: float = 0.0) -> list[Segment]:
        """Process a received segment; return the segments sent in reply.

        A segment that starts beyond ``rcv_nxt`` (it overtook earlier data) is
        held and answered with a duplicate ACK; it is processed, state change
        included, once the gap before it is filled, as RFC 9293 3.10.7.4 asks.
        """
        return self._receive(seg, now, None)

    def _receive(self, seg: Segment, now: float, event: Event | None) -> list[Segment]:
        """:meth:`receive`, given ``classify(seg)`` when the caller already has it."""
        if self._is_ahead(seg):
            self.out_of_order.append(seg)
            if self.trail is not None:
                self.trail.append(
                    f"ahead of the next expected seq={self.rcv_nxt}: held until the gap "
                    "before it is filled; duplicate ACK"
                )
            return [Segment(Flags.ACK, self.snd_nxt, self.rcv_nxt or 0)]
        out = self._receive_in_order(seg, now, event)
        while self.rcv_nxt is not None and self.out_of_order:
            rcv_nxt = self.rcv_nxt
            # A retransmission can cover what was held: drop what is now old.
            self.out_of_order = [s for s in self.out_of_order if _seq_gt(s.end_seq, rcv_nxt)]
            ready = [s for s in self.out_of_order if s.seq == rcv_nxt]
            if not ready:
                break
            self.out_of_order.remove(ready[0])
            if self.trail is not None:
                self.trail.append(f"the held segment {ready[0]} is now in order")
            out.extend(self._receive_in_order(ready[0], now))
        return out

    def _is_ahead(self, seg: Segment) -> bool:
        rcv_nxt = self.rcv_nxt
        if rcv_nxt is None or seg.seq == rcv_nxt:
            return False
        flags = _bits(seg.flags)
        return (
            self.state in _SYNCHRONIZED
            and not flags & (_SYN_BIT | _RST_BIT)
            and (seg.length > 0 or bool(flags & _FIN_BIT))
            and _seq_ge(seg.seq, rcv_nxt)
        )

    def _receive_in_order(
        self, seg: Segment, now: float, event: Event | None = None
    ) -> list[Segment]:
        if event is None:
            event = self.classify(seg)
        if event is Event.RCV_RST and not self._rst_acceptable(seg):
            if self.trail is not None:
                self.trail.append("RST outside the receive window: ignored")
            return []
        row = self.lookup(event, seg)
        if row is None:
            raise IllegalTransition(self.state, event.value, f"segment {seg}")
        return self._apply(event, row, now, seg, 0)

    def expire(self, now: float) -> list[Segment]:
        """Fire the 2MSL timer if it is due at ``now``; otherwise do nothing."""
        if self.timer_deadline is not None and now >= self.timer_deadline:
            return self.handle(Event.TIMEOUT_2MSL, now)
        return []

    def _apply(
        self, event: Event, row: Transition, now: float, seg: Segment | None, size: int
    ) -> list[Segment]:
        # Sequence bookkeeping for the received segment.
        una = self.snd_una
        if seg is not None:
            self._absorb(event, seg)
        if event is Event.CONNECT:
            self.opening = Opening.ACTIVE
        elif event is Event.RCV_SYN and self.state is State.LISTEN:
            self.opening = Opening.PASSIVE
        elif event is Event.CLOSE:
            self.closing = Closing.CLOSE
        elif event is Event.SHUTDOWN and self.closing is None:
            self.closing = Closing.SHUTDOWN
        if self.trail is not None:
            acked = (self.snd_una - una) % SEQ_SPACE if _seq_gt(self.snd_una, una) else 0
            self.trail.append(_describe(event, row, seg, acked, self.unacked_data()))
        out: list[Segment] = []
        for flags in row.send:
            out.append(self._emit(flags, event, seg, size))
        if (
            seg is not None
            and not row.send
            and (seg.length > 0)
            and row.next not in _CLOSED_OR_LISTEN
        ):
            # Payload is acknowledged whatever the state; that is flow, not a row.
            out.append(Segment(Flags.ACK, self.snd_nxt, self.rcv_nxt or 0))
        previous = self.state
        self.state = row.next
        self.last_transition = row
        if row.next is State.TIME_WAIT:
            if previous is not State.TIME_WAIT or event is Event.RCV_FIN:
                self.timer_deadline = now + 2 * self.msl
        else:
            self.timer_deadline = None
        if row.next in _CLOSED_OR_LISTEN and previous is not row.next:
            self._reset_numbers(row.next)
        if row.next is not previous:
            self.history.append((now, row.next, event.value))
        return out

    def _reset_numbers(self, state: State) -> None:
        self.rcv_nxt = None
        self.fin_seq = None
        self.peer_fin_seq = None
        self.out_of_order.clear()
        self.snd_una = self.snd_nxt = self.isn
        self.closing = None
        self.data_end = None
        if state is State.CLOSED:
            self.opening = None

    def _absorb(self, event: Event, seg: Segment) -> None:
        if self.state is State.CLOSED or (
            self.state is State.LISTEN and event is not Event.RCV_SYN
        ):
            return
        flags = _bits(seg.flags)
        if flags & _SYN_BIT:
            self.rcv_nxt = (seg.seq + 1) % SEQ_SPACE
        elif self.rcv_nxt is not None and seg.seq == self.rcv_nxt:
            self.rcv_nxt = (seg.seq + seg.length) % SEQ_SPACE
        if flags & _FIN_BIT:
            fin = (seg.seq + seg.length) % SEQ_SPACE
            if self.peer_fin_seq is None:
                self.peer_fin_seq = fin
            if self.rcv_nxt is not None and self.rcv_nxt == fin:
                self.rcv_nxt = (fin + 1) % SEQ_SPACE
        if flags & _ACK_BIT and _seq_ge(seg.ack, self.snd_una):
            self.snd_una = seg.ack

    def _emit(self, flags: Flags, event: Event, seg: Segment | None, size: int) -> Segment:
        """Build an outgoing segment and advance ``snd_nxt``."""
        bits = _bits(flags)
        if (
            (self.state in _CLOSED_OR_LISTEN or event in _DATA_EVENTS)
            and bits & _RST_BIT
            and seg is not None
        ):
            # Reply to a segment for no connection (RFC 9293 3.10.7.1), or to data
            # nobody will read after close(): the RST is built from that segment.
            if _bits(seg.flags) & _ACK_BIT:
                return Segment(Flags.RST, seg.ack, 0)
            return Segment(Flags.RST | Flags.ACK, 0, seg.end_seq)
        ack = self.rcv_nxt or 0
        if event is Event.TIMEOUT_RTO or (event is Event.RCV_SYN and self.state is State.SYN_RECV):
            if bits & _SYN_BIT:
                return Segment(flags, self.isn, ack)
            # Everything unacknowledged from snd_una, collapsed into one segment.
            unacked = self.unacked_data()
            if self.fin_seq is not None:
                if unacked and _seq_gt(self.fin_seq, self.snd_una):
                    length = (self.fin_seq - self.snd_una) % SEQ_SPACE
                    return Segment(flags, self.snd_una, ack, length)
                return Segment(flags, self.fin_seq, ack)
            if unacked:
                return Segment(flags, self.snd_una, ack, unacked)
        if bits & _RST_BIT:
            return Segment(flags, self.snd_nxt, ack)
        if bits & _SYN_BIT:
            self.snd_una = self.isn
            self.snd_nxt = (self.isn + 1) % SEQ_SPACE
            return Segment(flags, self.isn, ack)
        length = size if event is Event.SEND else 0
        out = Segment(flags, self.snd_nxt, ack, length)
        if bits & _FIN_BIT:
            self.fin_seq = (self.snd_nxt + length) % SEQ_SPACE
        self.snd_nxt = out.end_seq
        if length:
            self.data_end = self.snd_nxt
        return out


def _seq_ge(a: int, b: int) -> bool:
    """``a >= b`` in 32-bit sequence space (RFC 9293 3.4)."""
    return ((a - b) % SEQ_SPACE) < (SEQ_SPACE >> 1)


def _seq_gt(a: int, b: int) -> bool:
    """``a > b`` in 32-bit sequence space."""
    return 0 < ((a - b) % SEQ_SPACE) < (SEQ_SPACE >> 1)


def _describe(event: Event, row: Transition, seg: Segment | None, acked: int, unacked: int) -> str:
    """The note for what one row did: the row's own, unless the segment says more.

    ``RCV_DATA`` rows cover every segment that changes no state, so their note
    is built from the segment itself (payload, a new ACK or a duplicate one).
    """
    if event is not Event.RCV_DATA or seg is None or row.send:
        return row.note
    if seg.length:
        return f"{plural(seg.length, 'byte')} of data received: ACK them"
    if acked:
        return f"ACK of {plural(acked, 'byte')}: no state change"
    if unacked:
        return f"duplicate ACK: {plural(unacked, 'byte')} still unacknowledged"
    return "ACK with nothing new: no state change"
