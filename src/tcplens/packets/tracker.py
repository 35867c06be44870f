"""Per-connection state reconstruction from captured TCP segments.

Theory of operation
-------------------
A capture shows *segments*; the state machine is driven by *application
calls and segments received*.  The tracker turns one into the other and lets
the model (:class:`tcplens.model.machine.Endpoint`, one per side) do every
state change; it keeps no state table of its own.  For a segment sent by
side S to side R at capture time t:

* **What S did.**  A SYN from a side with no endpoint yet is ``connect()``
  (CLOSED -> SYN_SENT).  A FIN is ``close()`` (ESTABLISHED -> FIN_WAIT1,
  CLOSE_WAIT -> LAST_ACK), but the wire cannot tell it from shutdown(SHUT_WR),
  so the endpoint's ``closing`` is then set back to unknown: the model would
  answer the peer's new data after close() with RST, and a kernel that did so
  shows that RST on the wire (an abort).  An RST from a synchronised side is an abort.  A
  SYN+ACK is the reply the model itself emits when R's SYN reaches S, so it
  is not a call; it tells us S was listening.  A repeated SYN, SYN+ACK or FIN
  (same sequence number) is a retransmission timeout.  Data is flow, not
  state: it is not fed to the model one segment at a time.  Instead the
  model's sequence fields are set from the wire before every call that
  needs them (``snd_nxt`` before a FIN; ``rcv_nxt`` before a segment is
  delivered), so its ACK classification and RST acceptability check see
  the numbers the real endpoint saw.
* **What R received.**  SYN, SYN+ACK, FIN and RST segments are delivered to
  R's endpoint (``Endpoint.receive``), and so are ACKs while R waits for one
  (SYN_RECV, FIN_WAIT1, CLOSING, LAST_ACK): those are the only segments that
  can change a state.

How each state is inferred, and where the observer's view can differ:

* **LISTEN / CLOSED before the handshake**: a responder that answers a SYN
  with SYN+ACK was listening; one that answers with RST had nothing
  listening (its state stays CLOSED).  A responder that never answers is
  shown as UNKNOWN: the SYN may not have arrived, or was dropped; the wire
  cannot tell which.
* **Timing**: both sides change state at the capture timestamp of the
  segment.  A capture taken on the client sees the server's transitions
  early by half a round trip (and vice versa); a capture in the middle
  splits the difference.
* **Delivery**: a segment the capture saw is assumed delivered, unless
  later packets prove otherwise.  The proof the wire holds is a
  retransmission: a SYN+ACK retransmitted after the client's ACK was seen
  means that ACK never arrived (the server is still SYN_RECV); a SYN
  retransmitted after the SYN+ACK means the SYN+ACK was lost; a FIN
  retransmitted after its ACK means the ACK was lost.  The tracker then
  replays that endpoint's inputs through a fresh model endpoint without the
  lost segment, so the history shows what the endpoint really went through.
* **Calls the wire cannot show**: ``close()`` on a socket that still has
  unsent data queued behind a zero window produces no FIN until the window
  opens, yet Linux is already in FIN_WAIT1.  When the capture ends with the
  peer advertising a zero window and no FIN from this side, the final state
  is reported with a "cannot tell" note instead of a guess.  ``shutdown``
  vs ``close`` and ``listen()`` itself are equally invisible.
* **Mid-stream pickup**: a connection whose first captured segment is not a
  SYN is assumed ESTABLISHED on both sides (history cause says "assumed").
* **TIME_WAIT** ends after 2*MSL (Linux: 60 s) of capture time; a capture
  that ends earlier leaves the closer in TIME_WAIT, as ``ss`` would show.

Connections are keyed by their 4-tuple.  A SYN after either side closed, or
with a new initial sequence number, starts a new connection on it (port
reuse, by Zeek's rule: see ``ZeekConn.is_reuse``).  Memory is bounded:
connections idle longer than Zeek-like timeouts (5 s for an unanswered
attempt or a closed/reset connection, 5 min otherwise; all configurable) are
finished and handed to the caller, and a hard cap on live connections
evicts the longest-idle ones first, so a SYN flood of a million half-open
connections runs in bounded memory.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Literal

from tcplens.errors import IllegalTransition, InputError, TruncatedInput
from tcplens.model.machine import Endpoint, Event, Flags, Segment
from tcplens.model.states import State
from tcplens.packets.decode import (
    LINKTYPES_READ,
    DecodeStats,
    Segment4,
    decode,
    supported_linktype,
)
from tcplens.packets.encap import tunnel_parents
from tcplens.packets.pcap import LINKTYPE_NAMES, Frame, read_frames
from tcplens.packets.zeek import ZeekConn, ZeekRow, should_flip
from tcplens.sources.records import Addr

__all__ = [
    "CaptureSummary",
    "Change",
    "Connection",
    "DirectionStats",
    "Timeouts",
    "Tracker",
    "WireSegment",
    "reconstruct",
]

FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10
_MOD = 1 << 32
_HALF = 1 << 31

#: Flags values by wire byte (building an IntFlag costs more than the rest of a lookup).
_FLAGS: tuple[Flags, ...] = tuple(Flags(v) for v in range(64))

#: States in which an ACK can change an endpoint's state.
_WAITING = frozenset({State.SYN_RECV, State.FIN_WAIT1, State.CLOSING, State.LAST_ACK})
#: Waiting states, left by an acknowledgement; used to find which input a retransmission disproves.
_ACKED_FROM = frozenset(
    {State.SYN_SENT, State.SYN_RECV, State.FIN_WAIT1, State.CLOSING, State.LAST_ACK}
)
_ACKING = frozenset({Event.RCV_ACK, Event.RCV_SYN_ACK, Event.RCV_FIN_ACK})

# Wireshark's tcp.completeness bits (epan/dissectors/packet-tcp.c)
COMPLETE_SYN, COMPLETE_SYNACK, COMPLETE_ACK = 1, 2, 4
COMPLETE_DATA, COMPLETE_FIN, COMPLETE_RST = 8, 16, 32


def _after(a: int, b: int) -> bool:
    """``a > b`` in 32-bit sequence space."""
    return 0 < (a - b) % _MOD < _HALF


def _relative(base: list[int | None], s: int, flags: int, seq: int, ack: int) -> tuple[int, int]:
    """Wireshark's relative seq and ack (``tcp.relative_sequence_numbers``) of one segment.

    Each side's base is fixed by the first segment that shows it: that side's
    SYN (its ISN, so the SYN is 0), or else its first segment as if an unseen
    SYN had used one number (seq - 1, so a capture picked up mid-stream starts
    at 1), or, earlier still, the peer's first acknowledgement of it (ack - 1).
    A FIN uses one number as a SYN does.  Checked against tshark 4.0
    (packet-tcp.c) on captures picked up mid-stream, including one whose
    first acknowledgement disagrees with the first sequence number seen.
    """
    mine = base[s]
    if mine is None:
        mine = base[s] = seq if flags & SYN else (seq - 1) % _MOD
    if not flags & ACK:
        return (seq - mine) % _MOD, 0
    peer = base[1 - s]
    if peer is None:
        peer = base[1 - s] = (ack - 1) % _MOD
    return (seq - mine) % _MOD, (ack - peer) % _MOD


@dataclass(slots=True)
class DirectionStats:
    """What one side sent."""

    packets: int = 0
    payload_bytes: int = 0
    ip_bytes: int = 0
    frame_bytes: int = 0
    syn: int = 0
    fin: int = 0
    rst: int = 0
    ack: int = 0
    psh: int = 0
    #: segments with data, SYN or FIN that did not advance this side's sequence space
    #: (Wireshark's tcp.analysis.retransmission, also set on a repeated SYN or SYN+ACK)
    retransmissions: int = 0
    zero_windows: int = 0


@dataclass(frozen=True, slots=True)
class WireSegment:
    """One segment of a connection, kept only when asked (for ladder charts)."""

    time: float
    from_orig: bool
    flags: int
    seq: int  # Wireshark's relative number (tcp.seq): see _relative()
    ack: int  # Wireshark's relative number (tcp.ack); 0 without the ACK flag
    length: int
    record: int


History = list[tuple[float, State, str]]


@dataclass(frozen=True, slots=True)
class Change:
    """One side of one connection entering a state, reported as it happens (live use)."""

    index: int
    orig: Addr
    resp: Addr
    side: Literal["orig", "resp"]
    time: float
    state: State
    cause: str


@dataclass(slots=True)
class Connection:
    """Everything reconstructed about one TCP connection."""

    index: int
    orig: Addr
    resp: Addr
    start: float
    end: float
    orig_stats: DirectionStats
    resp_stats: DirectionStats
    orig_history: History
    resp_history: History
    conn_state: str
    history: str
    completeness: int
    zeek: ZeekRow
    cannot_tell: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    segments: list[WireSegment] = field(default_factory=list)
    first_record: int = 0
    #: frame number behind each history entry (0: inferred or a timer), per side
    history_frames: tuple[list[int], list[int]] = field(default_factory=lambda: ([], []))
    #: the encapsulation chain, outermost first ("vlan 100", "gre 10.0.0.1-10.0.0.2"):
    #: the same 4-tuple in another tunnel or VLAN is another connection (issue 15)
    tunnel: tuple[str, ...] = ()

    @property
    def duration(self) -> float:
        return self.end - self.start

    @property
    def orig_state(self) -> State:
        return self.orig_history[-1][1]

    @property
    def resp_state(self) -> State:
        return self.resp_history[-1][1]

    @property
    def retransmissions(self) -> int:
        return self.orig_stats.retransmissions + self.resp_stats.retransmissions

    @property
    def zero_windows(self) -> int:
        return self.orig_stats.zero_windows + self.resp_stats.zero_windows

    @property
    def completeness_text(self) -> str:
        """Wireshark's rendering of tcp.completeness, e.g. ``Complete, WITH_DATA``."""
        names = [
            (COMPLETE_RST, "R"),
            (COMPLETE_FIN, "F"),
            (COMPLETE_DATA, "D"),
            (COMPLETE_ACK, "A"),
            (COMPLETE_SYNACK, "S"),
            (COMPLETE_SYN, "S"),
        ]
        return "".join(ch if self.completeness & bit else "·" for bit, ch in names)

    def as_dict(self) -> dict[str, Any]:
        """The JSON form (``tcplens pcap --json``, schema version 1)."""

        def side(addr: Addr, stats: DirectionStats, hist: History) -> dict[str, Any]:
            return {
                "ip": addr.ip,
                "port": addr.port,
                "packets": stats.packets,
                "payload_bytes": stats.payload_bytes,
                "ip_bytes": stats.ip_bytes,
                "frame_bytes": stats.frame_bytes,
                "flags": {
                    "syn": stats.syn,
                    "fin": stats.fin,
                    "rst": stats.rst,
                    "ack": stats.ack,
                    "psh": stats.psh,
                },
                "retransmissions": stats.retransmissions,
                "zero_windows": stats.zero_windows,
                "final_state": str(hist[-1][1]),
                "history": [{"time": round(t, 9), "state": str(s), "cause": c} for t, s, c in hist],
            }

        return {
            "index": self.index,
            "start": round(self.start, 9),
            "duration": round(self.duration, 9),
            "orig": side(self.orig, self.orig_stats, self.orig_history),
            "resp": side(self.resp, self.resp_stats, self.resp_history),
            "conn_state": self.conn_state,
            "history": self.history,
            "zeek": {
                # conn.log's own counts where they differ from the sides' (Zeek's
                # duration ends at the last packet before both closed; bytes come
                # from sequence numbers; missed bytes from content gaps)
                "duration": round(self.zeek.duration, 9),
                "orig_bytes": self.zeek.orig_bytes,
                "resp_bytes": self.zeek.resp_bytes,
                "missed_bytes": self.zeek.missed_bytes,
                "tunnel_parents": list(self.zeek.tunnel_parents),
            },
            "completeness": self.completeness,
            "cannot_tell": dict(self.cannot_tell),
            "notes": list(self.notes),
            "first_record": self.first_record,
            "tunnel": list(self.tunnel),
        }


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds of capture time after which an idle connection is finished.

    Defaults follow Zeek (``tcp_attempt_delay``, ``tcp_close_delay``,
    ``tcp_reset_delay``, ``tcp_inactivity_timeout``).
    """

    attempt: float = 5.0
    closed: float = 5.0
    reset: float = 5.0
    inactivity: float = 300.0


# --- per-endpoint input log, so an endpoint can be replayed without a lost segment -----
#: Retransmissions one endpoint's history is rechecked for (``drop_last_ack`` calls,
#: whether or not they find an ACK to drop). Each costs a pass over the endpoint's
#: inputs, so without a limit a crafted capture (an ACK and a retransmitted SYN+ACK,
#: again and again) costs time quadratic in its length. An endpoint retransmits its SYN
#: or SYN+ACK and its FIN; Linux gives up after 6, 5 and at most 15 retransmissions
#: (tcp_syn_retries, tcp_synack_retries, tcp_retries2): 32 covers any real one.
REPLAY_LIMIT = 32
# ("call", event, size) | ("recv", segment) | ("set", attribute, value)
_Input = tuple[str, Any, Any, float, int]


@dataclass(frozen=True, slots=True)
class _Init:
    """How an endpoint was created, so it can be created again for a replay."""

    state: State
    name: str
    msl: float
    isn: int
    now: float

    def make(self) -> Endpoint:
        return Endpoint(self.state, name=self.name, msl=self.msl, isn=self.isn, now=self.now)


class _Side:
    """One endpoint of a flow: the model endpoint plus what it took to get there."""

    __slots__ = ("endpoint", "frames", "init", "log", "outcomes", "replays")

    def __init__(self, endpoint: Endpoint, init: _Init, cause: str, record: int) -> None:
        self.endpoint = endpoint
        self.init = init
        endpoint.history[0] = (endpoint.history[0][0], endpoint.state, cause)
        self.frames: list[int] = [record]
        self.log: list[_Input] = []
        # for each log entry: (event, state before, state after) of a "recv"
        self.outcomes: list[tuple[Event | None, State, State]] = []
        self.replays = 0  # drop_last_ack calls so far (see REPLAY_LIMIT)

    def run(self, entry: _Input, flow: _Flow | None = None) -> Event | None:
        kind, a, b, t, record = entry
        ep = self.endpoint
        before = ep.state
        history = ep.history
        grown = len(history)
        event: Event | None = None
        try:
            if kind == "recv":
                event = ep.classify(a)
                ep._receive(a, t, event)  # receive() without classifying a second time
            elif kind == "call":
                ep.handle(a, t, size=b)
                event = a
            else:
                setattr(ep, a, b)
        except IllegalTransition as exc:
            if flow is not None:
                flow.note(f"frame {record}: {exc}")
        if len(history) > grown:
            self.frames.extend([record] * (len(history) - grown))
            if flow is not None and flow.watcher is not None:
                name = "orig" if flow.sides[0] is self else "resp"
                for when, state, cause in history[grown:]:
                    flow.watcher(flow, name, when, state, f"{cause} (frame {record})")
        self.log.append(entry)
        self.outcomes.append((event if kind == "recv" else None, before, ep.state))
        return event

    def call(self, flow: _Flow, event: Event, t: float, record: int, size: int = 0) -> None:
        self.run(("call", event, size, t, record), flow)

    def recv(self, flow: _Flow, seg: Segment, t: float, record: int) -> None:
        self.run(("recv", seg, None, t, record), flow)

    def set(self, attr: str, value: int | None, t: float, record: int) -> None:
        # A sequence-number sync changes no state: record it for replays, nothing more.
        setattr(self.endpoint, attr, value)
        self.log.append(("set", attr, value, t, record))
        state = self.endpoint.state
        self.outcomes.append((None, state, state))

    def _replay_without(self, index: int) -> _Input:
        """Rebuild the endpoint from its inputs, leaving out input ``index``."""
        removed = self.log[index]
        log = self.log[:index] + self.log[index + 1 :]
        cause = self.endpoint.history[0][2]
        self.endpoint = self.init.make()
        self.endpoint.history[0] = (self.endpoint.history[0][0], self.endpoint.state, cause)
        self.frames = [self.frames[0]]
        self.log = []
        self.outcomes = []
        for entry in log:
            self.run(entry)
        return removed

    def drop_last_ack(self, flow: _Flow, why: str) -> bool:
        """Replay this endpoint without the last segment that acknowledged it."""
        self.replays += 1
        if self.replays > REPLAY_LIMIT:
            if self.replays == REPLAY_LIMIT + 1:
                flow.note(
                    f"{why}: not checked (tcplens rechecks an endpoint's history for at "
                    f"most {REPLAY_LIMIT} retransmissions); from here it may show a "
                    "segment as delivered that never arrived"
                )
            return False
        for index in range(len(self.log) - 1, -1, -1):
            event, before, after = self.outcomes[index]
            if event in _ACKING and before in _ACKED_FROM and after != before:
                lost = self._replay_without(index)
                flow.note(f"frame {lost[4]} did not arrive: {why}")
                return True
        return False

    def take_back(self, event: Event) -> _Input | None:
        """Undo the last delivery classified as ``event`` (it had not arrived yet)."""
        for index in range(len(self.log) - 1, -1, -1):
            if self.outcomes[index][0] is event:
                return self._replay_without(index)
        return None


class _Flow:
    """The working state of one connection while packets arrive."""

    __slots__ = (
        "completeness",
        "fin_dirs",
        "first_record",
        "index",
        "isn",
        "last",
        "last_window",
        "max_end",
        "notes",
        "orig_ip",
        "orig_port",
        "pending_syns",
        "rel_base",
        "resp_ip",
        "resp_port",
        "segments",
        "sides",
        "start",
        "stats",
        "tunnel",
        "watcher",
        "zeek",
    )

    def __init__(
        self, index: int, src: bytes, sport: int, dst: bytes, dport: int, t: float, record: int
    ) -> None:
        self.index = index
        self.orig_ip, self.orig_port, self.resp_ip, self.resp_port = src, sport, dst, dport
        self.start = t
        self.last = t
        self.first_record = record
        self.tunnel: tuple[str, ...] = ()
        self.stats = (DirectionStats(), DirectionStats())
        self.sides: list[_Side | None] = [None, None]
        self.isn: list[int | None] = [None, None]
        self.max_end: list[int | None] = [None, None]
        self.last_window: list[int | None] = [None, None]
        self.pending_syns: list[tuple[float, int, int]] = []  # (time, seq, record)
        self.zeek = ZeekConn()
        self.completeness = 0
        self.fin_dirs = 0
        self.notes: list[str] = []
        self.segments: list[WireSegment] | None = None
        #: Wireshark's relative-number bases per side, set only while segments are kept
        self.rel_base: list[int | None] = [None, None]
        self.watcher: Callable[[_Flow, str, float, State, str], None] | None = None

    def note(self, text: str) -> None:
        if len(self.notes) < 50:
            self.notes.append(text)

    def flip(self) -> None:
        self.orig_ip, self.resp_ip = self.resp_ip, self.orig_ip
        self.orig_port, self.resp_port = self.resp_port, self.orig_port
        self.stats = (self.stats[1], self.stats[0])
        self.sides.reverse()
        self.isn.reverse()
        self.max_end.reverse()
        self.last_window.reverse()
        self.rel_base.reverse()


class Tracker:
    """Feed it decoded segments in capture order; it hands back finished connections."""

    def __init__(
        self,
        *,
        msl: float = 30.0,
        timeouts: Timeouts | None = None,
        max_connections: int = 1_000_000,
        keep_segments: bool = False,
        on_change: Callable[[Change], None] | None = None,
        check_checksums: bool = False,
    ) -> None:
        self.msl = msl
        #: validate checksums as Zeek does (the decoder reads it: DecodeStats.check_checksums)
        self.check_checksums = check_checksums
        self.timeouts = timeouts or Timeouts()
        self.max_connections = max_connections
        self.keep_segments = keep_segments
        #: called with a :class:`Change` whenever a side enters a new state (live views)
        self.on_change = on_change
        self.flows: dict[tuple[bytes, int, bytes, int, tuple[str, ...]], _Flow] = {}
        self.now = 0.0
        self.count = 0
        self.peak = 0
        self.evicted = 0
        self._next_sweep = 0.0
        self._since_sweep = 0
        #: take the short path for plain segments (tests turn it off to compare)
        self.shortcut = True
        #: evict inside feed(); a batch feeder turns this off and calls sweep()
        self.sweeping = True

    # -- input ------------------------------------------------------------------------
    def feed(
        self, t: float, seg: Segment4, frame_len: int = 0, record: int = 0
    ) -> list[Connection]:
        """Process one segment; return connections that finished because of it."""
        done: list[Connection] = []
        if t > self.now:
            self.now = t
        src, dst, sport, dport = seg.src, seg.dst, seg.sport, seg.dport
        tunnel = seg.tunnel
        key = (
            (src, sport, dst, dport, tunnel)
            if (src, sport) <= (dst, dport)
            else (dst, dport, src, sport, tunnel)
        )
        flow = self.flows.get(key)
        flags = seg.flags
        if flow is not None and flags & SYN and flow.zeek.is_reuse(flags, seg.seq):
            # Port reuse, by Zeek's rule (ZeekConn.is_reuse): a SYN after either side
            # closed, or with a new initial sequence number, is a new connection.
            done.append(self._finish(flow))
            del self.flows[key]
            flow = None
        if flow is None:
            self.count += 1
            flow = _Flow(self.count, src, sport, dst, dport, t, record)
            flow.tunnel = tunnel
            if self.keep_segments:
                flow.segments = []
            if self.on_change is not None:
                flow.watcher = self._report
            if should_flip(sport, dport, flags):
                flow.flip()
                flow.zeek.flip()
            self.flows[key] = flow
            if len(self.flows) > self.peak:
                self.peak = len(self.flows)
        self._packet(
            flow, src == flow.orig_ip and sport == flow.orig_port, t, seg, frame_len, record
        )
        self._since_sweep += 1
        if self.sweeping and (
            len(self.flows) > self.max_connections
            or (t >= self._next_sweep and self._since_sweep * 4 >= len(self.flows))
        ):
            done.extend(self._sweep())
        return done

    def sweep(self, packets: int = 0) -> list[Connection]:
        """Evict idle connections now if due (for callers that feed in batches)."""
        self._since_sweep += packets
        if len(self.flows) > self.max_connections or (
            self.now >= self._next_sweep and self._since_sweep * 4 >= len(self.flows)
        ):
            return self._sweep()
        return []

    def finish(self) -> list[Connection]:
        """End of capture: every connection still open is finished as it stands."""
        out = [self._finish(flow) for flow in self.flows.values()]
        self.flows.clear()
        out.sort(key=lambda c: c.index)
        return out

    def _report(self, flow: _Flow, side: str, when: float, state: State, cause: str) -> None:
        if self.on_change is None:
            return
        orig = Addr(_ip(flow.orig_ip), flow.orig_port)
        resp = Addr(_ip(flow.resp_ip), flow.resp_port)
        which: Literal["orig", "resp"] = "orig" if side == "orig" else "resp"
        self.on_change(Change(flow.index, orig, resp, which, when, state, cause))

    # -- eviction -------------------------------------------------------------------------
    def _idle_limit(self, flow: _Flow) -> float:
        z = flow.zeek
        if flow.stats[0].rst or flow.stats[1].rst:
            limit = self.timeouts.reset
        elif z.orig.did_close and z.resp.did_close:
            limit = self.timeouts.closed
        elif flow.stats[1].packets == 0:
            limit = self.timeouts.attempt
        else:
            limit = self.timeouts.inactivity
        return limit

    def _sweep(self) -> list[Connection]:
        self._since_sweep = 0
        self._next_sweep = self.now + 1.0
        now = self.now
        # every limit is at least the shortest timeout: most live flows fail that first test
        to = self.timeouts
        floor = min(to.attempt, to.closed, to.reset, to.inactivity)
        limit = self._idle_limit
        stale = [
            k for k, f in self.flows.items() if now - f.last > floor and now - f.last > limit(f)
        ]
        if len(self.flows) - len(stale) > self.max_connections:
            # Over the cap even after timeouts: the longest idle go first.
            keep = self.max_connections * 9 // 10
            ranked = sorted(self.flows.items(), key=lambda kv: kv[1].last)
            stale = [k for k, _ in ranked[: len(ranked) - keep]]
        out = []
        for k in stale:
            out.append(self._finish(self.flows.pop(k)))
        self.evicted += len(out)
        out.sort(key=lambda c: c.index)
        return out

    # -- one packet ---------------------------------------------------------------------
    def _packet(
        self, flow: _Flow, from_orig: bool, t: float, seg: Segment4, frame_len: int, record: int
    ) -> None:
        if seg.bad_checksum:
            # Zeek's TCPAnalyzer::DeliverPacket returns when ValidateChecksum fails,
            # having recorded only history C/c: no state, time or count moves.
            flow.zeek.checksum_error(from_orig)
            return
        s = 0 if from_orig else 1
        r = 1 - s
        flags, seq, ack, length = seg.flags, seg.seq, seg.ack, seg.payload
        if (
            # The common case: no SYN/FIN/RST on a side already known.
            self.shortcut
            and not flags & 7
            and flow.segments is None
            and flow.sides[s] is not None
            and flow.zeek.plain(
                from_orig, flags, seq, ack, length, seg.window, t, not seg.payload_cut
            )
        ):
            self._plain(flow, s, r, t, seg, frame_len, record)
            return
        st = flow.stats[s]
        st.packets += 1
        st.payload_bytes += length
        st.ip_bytes += seg.ip_len
        st.frame_bytes += frame_len
        flow.last = t
        if flags & ACK:
            st.ack += 1
        if flags & PSH:
            st.psh += 1
        if seg.window == 0 and not flags & RST:
            st.zero_windows += 1
        flow.last_window[s] = seg.window
        end = (seq + length + (1 if flags & SYN else 0) + (1 if flags & FIN else 0)) % _MOD
        prev_end = flow.max_end[s]
        if (
            (length or flags & (SYN | FIN))
            and prev_end is not None
            and not _after(end, prev_end)
            and not flags & RST
        ):
            # Wireshark's rule: a segment that occupies sequence space (data, SYN or
            # FIN) without advancing it is a retransmission, so a repeated SYN, SYN+ACK
            # or FIN counts as a repeated data segment does.
            st.retransmissions += 1

        # Wireshark's completeness bits, as tshark reports them.
        if flags & SYN:
            flow.completeness |= COMPLETE_SYNACK if flags & ACK else COMPLETE_SYN
        elif flags & ACK and not flags & FIN and length == 0:
            flow.completeness |= COMPLETE_ACK
        if length:
            flow.completeness |= COMPLETE_DATA
        if flags & FIN:
            flow.fin_dirs |= 1 << s
            if flow.fin_dirs == 3:
                flow.completeness |= COMPLETE_FIN
        if flags & RST:
            flow.completeness |= COMPLETE_RST

        zeek = flow.zeek
        flips = zeek.flips
        zeek.packet(from_orig, flags, seq, ack, length, seg.window, t, not seg.payload_cut)
        if zeek.flips != flips:
            # Zeek saw a SYN/SYN+ACK reversal and swapped roles: follow it.
            flow.flip()
            s, r = r, s

        if flow.segments is not None and len(flow.segments) < 100_000:
            rel_seq, rel_ack = _relative(flow.rel_base, s, flags, seq, ack)
            flow.segments.append(WireSegment(t, s == 0, flags, rel_seq, rel_ack, length, record))

        if flags & (SYN | FIN | RST):
            self._control(flow, s, r, t, seg, record)
        elif flow.sides[s] is None:
            self._pickup(flow, s, r, t, seg, record)
        elif flags & ACK:
            receiver = flow.sides[r]
            if receiver is not None and receiver.endpoint.state in _WAITING:
                self._deliver(flow, s, r, t, seg, record)
        if prev_end is None or _after(end, prev_end):
            flow.max_end[s] = end
        if flags & SYN and flow.isn[s] is None:
            flow.isn[s] = seq

    def _plain(
        self, flow: _Flow, s: int, r: int, t: float, seg: Segment4, frame_len: int, record: int
    ) -> None:
        """:meth:`_packet` for a segment without SYN, FIN or RST (same effects, fewer steps)."""
        flags, length, window = seg.flags, seg.payload, seg.window
        st = flow.stats[s]
        st.packets += 1
        st.payload_bytes += length
        st.ip_bytes += seg.ip_len
        st.frame_bytes += frame_len
        flow.last = t
        if flags & PSH:
            st.psh += 1
        if window == 0:
            st.zero_windows += 1
        flow.last_window[s] = window
        end = (seg.seq + length) % _MOD
        prev_end = flow.max_end[s]
        after = prev_end is None or 0 < (end - prev_end) % _MOD < _HALF
        if length:
            flow.completeness |= COMPLETE_DATA
            if not after:
                st.retransmissions += 1
        if flags & ACK:
            st.ack += 1
            if not length:
                flow.completeness |= COMPLETE_ACK
            receiver = flow.sides[r]
            if receiver is not None and receiver.endpoint.state in _WAITING:
                self._deliver(flow, s, r, t, seg, record)
        if after:
            flow.max_end[s] = end

    def _segment(self, seg: Segment4) -> Segment:
        return Segment(_FLAGS[seg.flags & 0x3F], seg.seq, seg.ack, seg.payload)

    def _deliver(self, flow: _Flow, s: int, r: int, t: float, seg: Segment4, record: int) -> None:
        receiver = flow.sides[r]
        if receiver is None:
            return
        ep = receiver.endpoint
        sent = flow.max_end[s]
        if ep.rcv_nxt is not None and sent is not None and _after(sent, ep.rcv_nxt):
            receiver.set("rcv_nxt", sent, t, record)
        receiver.recv(flow, self._segment(seg), t, record)

    def _new_side(
        self, flow: _Flow, s: int, state: State, isn: int, t: float, cause: str, record: int
    ) -> _Side:
        init = _Init(state, "orig" if s == 0 else "resp", self.msl, isn, t)
        side = _Side(init.make(), init, cause, record)
        flow.sides[s] = side
        if flow.watcher is not None:
            flow.watcher(flow, "orig" if s == 0 else "resp", t, state, cause)
        return side

    def _pickup(self, flow: _Flow, s: int, r: int, t: float, seg: Segment4, record: int) -> None:
        """First segment of a connection already under way: assume both ESTABLISHED."""
        cause = "assumed: picked up mid-stream"
        side = self._new_side(flow, s, State.ESTABLISHED, (seg.seq - 1) % _MOD, t, cause, record)
        for attr in ("snd_una", "snd_nxt"):
            side.set(attr, seg.seq, t, record)
        if seg.flags & ACK:
            side.set("rcv_nxt", seg.ack, t, record)
        if flow.sides[r] is None:
            peer = self._new_side(
                flow, r, State.ESTABLISHED, (seg.ack - 1) % _MOD, t, cause, record
            )
            if seg.flags & ACK:
                peer.set("snd_una", seg.ack, t, record)
                peer.set("snd_nxt", seg.ack, t, record)
            peer.set("rcv_nxt", seg.seq, t, record)
        flow.note(f"frame {record}: connection picked up mid-stream; earlier states assumed")

    def _control(self, flow: _Flow, s: int, r: int, t: float, seg: Segment4, record: int) -> None:
        flags = seg.flags
        sender = flow.sides[s]
        st = flow.stats[s]
        if flags & SYN:
            st.syn += 1
            if flags & ACK:
                self._syn_ack(flow, s, r, t, seg, record)
            else:
                self._syn(flow, s, r, t, seg, record)
            if flags & (FIN | RST):
                flow.note(f"frame {record}: SYN combined with FIN or RST")
            return
        if flags & FIN:
            st.fin += 1
        if flags & RST:
            st.rst += 1
        if sender is None:
            if flags & RST and not flags & FIN and flow.pending_syns and s == 1:
                self._refused(flow, s, r, t, seg, record)
                return
            self._pickup(flow, s, r, t, seg, record)
            sender = flow.sides[s]
            assert sender is not None
        ep = sender.endpoint
        if flags & RST:
            if ep.state not in (State.CLOSED, State.LISTEN):
                sender.call(flow, Event.ABORT, t, record)
            self._deliver(flow, s, r, t, seg, record)
            return
        # FIN
        fin_at = (seg.seq + seg.payload) % _MOD
        if ep.fin_seq is not None and fin_at == ep.fin_seq % _MOD:
            if ep.state in (State.FIN_WAIT2, State.TIME_WAIT, State.CLOSED):
                sender.drop_last_ack(flow, f"FIN retransmitted in frame {record}")
            if sender.endpoint.can(Event.TIMEOUT_RTO):
                sender.call(flow, Event.TIMEOUT_RTO, t, record)
        else:
            late: _Input | None = None
            if (
                ep.state is State.CLOSE_WAIT
                and seg.flags & ACK
                and ep.peer_fin_seq is not None
                and not _after(seg.ack, ep.peer_fin_seq)
            ):
                # This FIN does not acknowledge the peer's FIN: it was sent before that
                # FIN arrived (simultaneous close), so deliver the peer's FIN after it.
                late = sender.take_back(Event.RCV_FIN)
            sender.set("snd_nxt", fin_at, t, record)
            sender.call(flow, Event.CLOSE, t, record)
            sender.set("closing", None, t, record)  # close() or shutdown(): see the docstring
            if late is not None:
                sender.run(("recv", late[1], None, t, late[4]), flow)
        self._deliver(flow, s, r, t, seg, record)

    def _syn(self, flow: _Flow, s: int, r: int, t: float, seg: Segment4, record: int) -> None:
        sender = flow.sides[s]
        if sender is None:
            sender = self._new_side(flow, s, State.CLOSED, seg.seq, t, "initial", record)
            sender.call(flow, Event.CONNECT, t, record)
        elif sender.endpoint.isn == seg.seq:
            if sender.endpoint.state is State.ESTABLISHED:
                sender.drop_last_ack(flow, f"SYN retransmitted in frame {record}")
            if sender.endpoint.can(Event.TIMEOUT_RTO):
                sender.call(flow, Event.TIMEOUT_RTO, t, record)
        else:
            flow.note(f"frame {record}: SYN with a new sequence number inside a connection")
        if flow.sides[r] is None:
            flow.pending_syns.append((t, seg.seq, record))
        else:
            self._deliver(flow, s, r, t, seg, record)

    def _syn_ack(self, flow: _Flow, s: int, r: int, t: float, seg: Segment4, record: int) -> None:
        sender = flow.sides[s]
        if sender is None:
            if flow.sides[r] is None:
                # The SYN was not captured: the other side must have sent one.
                peer = self._new_side(
                    flow, r, State.CLOSED, (seg.ack - 1) % _MOD, t, "initial", record
                )
                peer.call(flow, Event.CONNECT, t, record)
                flow.note(f"frame {record}: SYN+ACK without a captured SYN; SYN assumed")
                flow.pending_syns.append((t, (seg.ack - 1) % _MOD, record))
            syn_t, syn_seq, syn_record = flow.pending_syns[-1] if flow.pending_syns else (t, 0, 0)
            sender = self._new_side(
                flow,
                s,
                State.LISTEN,
                seg.seq,
                flow.pending_syns[0][0] if flow.pending_syns else t,
                "inferred: it answered a SYN, so a listener existed",
                record,
            )
            sender.recv(flow, Segment(Flags.SYN, syn_seq, 0, 0), syn_t, syn_record)
            flow.pending_syns.clear()
        elif sender.endpoint.state is State.SYN_RECV or (
            sender.endpoint.isn == seg.seq and sender.endpoint.state is not State.CLOSED
        ):
            if sender.endpoint.state is State.ESTABLISHED:
                sender.drop_last_ack(flow, f"SYN+ACK retransmitted in frame {record}")
            if sender.endpoint.can(Event.TIMEOUT_RTO):
                sender.call(flow, Event.TIMEOUT_RTO, t, record)
        receiver = flow.sides[r]
        if receiver is not None and receiver.endpoint.state is State.SYN_SENT:
            self._deliver(flow, s, r, t, seg, record)

    def _refused(self, flow: _Flow, s: int, r: int, t: float, seg: Segment4, record: int) -> None:
        syn_t, syn_seq, syn_record = flow.pending_syns[-1]
        side = self._new_side(
            flow,
            s,
            State.CLOSED,
            0,
            flow.pending_syns[0][0],
            "inferred: it answered the SYN with RST, so nothing was listening",
            record,
        )
        side.recv(flow, Segment(Flags.SYN, syn_seq, 0, 0), syn_t, syn_record)
        flow.pending_syns.clear()
        self._deliver(flow, s, r, t, seg, record)

    # -- output -----------------------------------------------------------------------
    def _finish(self, flow: _Flow) -> Connection:
        # Timers run until the capture ends or the connection's idle timeout, whichever
        # is first: the same answer however late a batch feeder evicts it.  With the
        # default 5 s close timeout a TIME_WAIT is reported as such (its 2MSL is 60 s);
        # a close timeout beyond 2MSL follows it to CLOSED.
        until = min(self.now, flow.last + self._idle_limit(flow))
        cannot: dict[str, str] = {}
        histories: list[History] = []
        frames: list[list[int]] = []
        for s, name in ((0, "orig"), (1, "resp")):
            side = flow.sides[s]
            if side is None:
                when = flow.pending_syns[0][0] if flow.pending_syns else flow.start
                reason = (
                    "never seen on the wire: the SYN may not have arrived or was dropped"
                    if flow.pending_syns
                    else "never seen on the wire"
                )
                histories.append([(when, State.UNKNOWN, reason)])
                frames.append([0])
                cannot[name] = reason
                continue
            ep = side.endpoint
            if ep.timer_deadline is not None and ep.timer_deadline <= until:
                side.run(("call", Event.TIMEOUT_2MSL, 0, ep.timer_deadline, 0))
            side_frames = side.frames
            known = len(side_frames)
            history = side.endpoint.history
            hist_frames = [side_frames[i] if 0 < i < known else 0 for i in range(len(history))]
            hist = [
                (when, state, f"{cause} (frame {frame})" if frame else cause)
                for (when, state, cause), frame in zip(history, hist_frames, strict=True)
            ]
            histories.append(hist)
            frames.append(hist_frames)
            other = 1 - s
            if flow.stats[s].packets == 0:
                cannot[name] = (
                    "sent nothing the capture saw: its state is assumed from the peer's segments"
                )
            if (
                side.endpoint.state in (State.ESTABLISHED, State.CLOSE_WAIT)
                and flow.last_window[other] == 0
                and not flow.stats[s].fin
            ):
                cannot[name] = (
                    "the peer advertised a zero window at the end: a close() may be "
                    "queued behind unsent data (its FIN cannot be sent yet), so "
                    f"{side.endpoint.state} or FIN_WAIT1 cannot be told"
                )
        z = flow.zeek
        orig = Addr(_ip(flow.orig_ip), flow.orig_port)
        resp = Addr(_ip(flow.resp_ip), flow.resp_port)
        ost, rst = flow.stats
        row = ZeekRow(
            ts=flow.start,
            orig_h=orig.ip,
            orig_p=flow.orig_port,
            resp_h=resp.ip,
            resp_p=flow.resp_port,
            duration=max(0.0, z.last_time - flow.start),
            orig_bytes=z.orig_bytes(),
            resp_bytes=z.resp_bytes(),
            conn_state=z.conn_state,
            missed_bytes=z.missed_bytes,
            history=z.history,
            orig_pkts=ost.packets,
            orig_ip_bytes=ost.ip_bytes,
            resp_pkts=rst.packets,
            resp_ip_bytes=rst.ip_bytes,
            tunnel_parents=tunnel_parents(flow.tunnel),
        )
        return Connection(
            index=flow.index,
            orig=orig,
            resp=resp,
            start=flow.start,
            end=flow.last,
            orig_stats=ost,
            resp_stats=rst,
            orig_history=histories[0],
            resp_history=histories[1],
            conn_state=row.conn_state,
            history=row.history,
            completeness=flow.completeness,
            zeek=row,
            cannot_tell=cannot,
            notes=flow.notes,
            segments=flow.segments or [],
            first_record=flow.first_record,
            tunnel=flow.tunnel,
            history_frames=(frames[0], frames[1]),
        )


_IP_CACHE: dict[bytes, str] = {}


def _ip(raw: bytes) -> str:
    text = _IP_CACHE.get(raw)
    if text is None:
        # IPv4 through inet_ntop (same text, no object); IPv6 through ipaddress, whose
        # spelling of mapped addresses the rest of tcplens uses
        if len(raw) == 4:
            text = socket.inet_ntop(socket.AF_INET, raw)
        else:
            text = str(ipaddress.ip_address(raw))
        if len(_IP_CACHE) < 65536:
            _IP_CACHE[raw] = text
    return text


@dataclass(slots=True)
class CaptureSummary:
    """What a whole capture held besides connections (for the CLI footer)."""

    frames: int = 0
    decode: DecodeStats = field(default_factory=DecodeStats)
    connections: int = 0
    peak_live: int = 0
    truncated: TruncatedInput | None = None
    status: Literal["ok", "truncated"] = "ok"

    def finish(self, tracker: Tracker, truncated: TruncatedInput | None = None) -> list[Connection]:
        """End of input (clean or cut short): flush the tracker and count what it held.

        Both the packet-by-packet and the vectorised readers end this way, so a
        truncated capture reports exactly the connections a clean one would.
        """
        if truncated is not None:
            self.truncated = truncated
            self.status = "truncated"
        rest = tracker.finish()
        self.connections += len(rest)
        self.peak_live = tracker.peak
        return rest


def reconstruct(
    frames: Iterable[Frame],
    tracker: Tracker | None = None,
    summary: CaptureSummary | None = None,
    path: str | None = None,
) -> Iterator[Connection]:
    """Decode and track every frame; yield connections as they finish.

    A truncated capture yields every connection seen so far, then re-raises
    the :class:`TruncatedInput` so the caller can report record and offset.
    """
    tr = tracker or Tracker()
    sm = summary or CaptureSummary()
    stats = sm.decode
    stats.check_checksums = tr.check_checksums
    feed = tr.feed
    checked: set[int] = set()
    try:
        for frame in frames:
            sm.frames += 1
            linktype = frame.linktype
            if linktype not in checked:
                if not supported_linktype(linktype):
                    name = LINKTYPE_NAMES.get(linktype, "unknown")
                    raise InputError(
                        f"link type {linktype} ({name}) is not supported; tcplens reads "
                        + LINKTYPES_READ,
                        path=path,
                        record=frame.record,
                        offset=frame.offset,
                    )
                checked.add(linktype)
            seg = decode(linktype, frame.data, stats)
            if seg is None:
                continue
            finished = feed(frame.ts_ns / 1e9, seg, frame.wire_len, frame.record)
            if finished:
                sm.connections += len(finished)
                yield from finished
    except TruncatedInput as exc:
        yield from sm.finish(tr, exc)
        raise
    yield from sm.finish(tr)


def reconstruct_file(fileobj: BinaryIO, path: str | None = None, **kwargs: Any) -> list[Connection]:
    """Convenience for tests and small files: every connection of a capture, in order."""
    conns = reconstruct(read_frames(fileobj, path), Tracker(**kwargs), path=path)
    return sorted(conns, key=lambda c: c.index)
