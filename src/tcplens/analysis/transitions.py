"""Connections followed through the kernel's own transition events (exact mode).

Theory of operation
-------------------
Input is :class:`~tcplens.sources.tracepoints.KernelEvent` in time order;
nothing here reads a clock or the kernel: the TIME_WAIT table is passed in.

**Identity.**  A connection is one kernel socket: the event's ``skaddr``, from
the first event seen for it to its move to CLOSED.  The 4-tuple cannot be the
key: CLOSED -> SYN_SENT fires before ``connect()`` picks the local port (it
reads port 0), and the child of a listener is a different socket from the
first event on.  A socket address is reused after the kernel frees it, so a
connection ends at CLOSED and a later event on the same address starts a
new one.

**Time.**  Each stay is timed from the kernel's timestamps of the event that
entered the state and the one that left it.  A state the socket was already
in when tracing began has no known start: its stay is reported as ``None``
and counted apart (``StateTime.partial``).

**TIME_WAIT.**  The kernel reports FIN_WAIT2 -> CLOSE (or FIN_WAIT1/CLOSING
-> CLOSE) when the full socket hands over to a TIME_WAIT minisocket, which no
tracepoint reports.  Such a move is held until :meth:`ExactTracer.settle`
gets the sock_diag table of timewait minisockets: a 4-tuple found there
becomes ``old -> TIME_WAIT`` at the kernel's time of the handover; one not
found was a real close (RST, or no memory for a minisocket).  The move
TIME_WAIT -> CLOSED is reported when a settle no longer finds a followed
minisocket, timed by the looks at the table (``exact`` False, ``since`` the
last look that still found it).  A full table says that of every minisocket
followed; a partial one (lookups) only of the 4-tuples asked for, which
callers take from :meth:`ExactTracer.due`: the minisockets whose timewait
timer has fired by now (the kernel says when, in the lookup's answer;
``TIMEWAIT_LEN`` after the handover until it has).  A minisocket also ends
when a new connection takes its 4-tuple (``tcp_tw_reuse``, or a SYN the
minisocket accepts): the new socket's first event with that 4-tuple reports
the end, no later than that event.

**Process.**  An event fired outside interrupt context was caused by a
system call on the socket (connect, listen, close, shutdown, or the
processing of its backlog when the caller releases it), so the current pid
holds it; one fired in softirq says nothing about the owner.  The first such
pid is the connection's process.  Callers may also look the owner of live
connections up (sock_diag inode, then /proc: :meth:`ExactTracer.own`); until
either names one, it is unknown.

**The model.**  Every kernel transition is one step; it is in the model when
the transition table has a row from ``old`` to ``new``.  Anything else is
reported with ``in_model`` False and the model's shortest path.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

from tcplens.analysis.diff import StateTime, model_path
from tcplens.model.states import State
from tcplens.sources.records import Addr, Socket
from tcplens.sources.tracepoints import KernelEvent

__all__ = ["TIMEWAIT_LEN", "ExactTracer", "Transition", "TupleKey"]

TupleKey = tuple[str, int | None, str, int | None]
#: old states whose move to CLOSE may be a handover to a TIME_WAIT minisocket
_HANDOVER: Final = frozenset({State.FIN_WAIT1, State.FIN_WAIT2, State.CLOSING})
#: seconds a timewait timer runs (``TCP_TIMEWAIT_LEN``, include/net/tcp.h: 60 s in every
#: version to 6.18); a minisocket is asked for again this long after its handover unless
#: the kernel said when its timer fires
TIMEWAIT_LEN: Final = 60.0
#: seconds until a minisocket found after its expected end is asked for again
OVERDUE_RECHECK: Final = 1.0
# module constants: ``State.X`` is a class attribute lookup through the enum machinery
# (~0.2 µs on 3.11), several per event
_CLOSED: Final = State.CLOSED
_LISTEN: Final = State.LISTEN
_SYN_SENT: Final = State.SYN_SENT


@dataclass(slots=True)  # not frozen: one per event, and a frozen __init__ costs 2x
class Transition:
    """One state change of one connection, as the kernel reported it."""

    conn: int
    at: float
    mono_ns: int | None
    #: the connection's socket: addresses and family (shared by its transitions; its
    #: ``state`` is the latest one, ``old``/``new`` are this transition's)
    sock: Socket
    old: State
    new: State
    #: seconds in ``old`` measured by the kernel; None when ``old`` began before tracing
    spent: float | None
    #: False when the time comes from looks at the TIME_WAIT table (sock_diag), not an event
    exact: bool
    cause: str | None
    path: tuple[State, ...] | None
    #: the process known when the transition happened (see the module docstring)
    pid: int | None = None
    process: str | None = None
    #: when not ``exact``: the last time the old state was seen to hold (the change
    #: happened in ``(since, at]``); None for an event, timed by the kernel
    since: float | None = None

    @property
    def in_model(self) -> bool:
        """Whether the transition table has this step as one row."""
        return self.path is not None and len(self.path) == 2


@dataclass(slots=True)
class _Conn:
    id: int
    sock: Socket
    entered_ns: int | None
    entered_at: float
    causes: list[str] = field(default_factory=list)
    retransmits: int = 0
    pid: int | None = None
    process: str | None = None


@dataclass(slots=True)
class _Held:
    conn: _Conn
    event: KernelEvent


@dataclass(slots=True)
class _Mini:
    """A followed minisocket: its connection, substate, when last seen, when its timer fires."""

    conn: _Conn
    state: State
    seen: float
    due: float


def _cause(conn: _Conn) -> str | None:
    if not conn.causes and not conn.retransmits:
        return None
    parts = list(conn.causes)
    if conn.retransmits:
        parts.append(f"{conn.retransmits} retransmission{'s' if conn.retransmits > 1 else ''}")
    conn.causes.clear()
    conn.retransmits = 0
    return ", ".join(parts) if parts else None


class ExactTracer:
    """Kernel events in, :class:`Transition` out (see the module docstring).

    ``name_of`` maps a pid to its process name (``None`` when gone); it is a
    parameter so tests need no processes.
    """

    def __init__(self, *, name_of: Callable[[int], str | None] = lambda pid: None) -> None:
        self.name_of = name_of
        self.events = 0
        self.started: float | None = None
        self.last: float | None = None
        self._by_sk: dict[int, _Conn] = {}
        self._held: list[_Held] = []
        self._time_wait: dict[TupleKey, _Mini] = {}
        #: (due, connection id, 4-tuple) of followed minisockets; entries whose
        #: minisocket left or got a later due are skipped when popped
        self._due: list[tuple[float, int, TupleKey]] = []
        self._next = 1
        self._times: dict[State, StateTime] = {}

    # -- reading ---------------------------------------------------------
    @property
    def pending(self) -> int:
        """Moves to CLOSE waiting for :meth:`settle` to tell TIME_WAIT from CLOSED."""
        return len(self._held)

    @property
    def in_time_wait(self) -> int:
        return len(self._time_wait)

    def live(self) -> list[Socket]:
        """Sockets in their latest known state: full sockets and held minisockets."""
        out = [c.sock for c in self._by_sk.values()]
        out += [m.conn.sock for m in self._time_wait.values()]
        return out

    def state_times(self) -> dict[State, StateTime]:
        """Kernel-timed stays per state, plus the connections still in each state."""
        now = self.last if self.last is not None else 0.0
        out = {s: StateTime(t.stays, t.total, t.longest, t.partial) for s, t in self._times.items()}
        conns = [*self._by_sk.values(), *(m.conn for m in self._time_wait.values())]
        for conn in conns:
            times = out.setdefault(conn.sock.state, StateTime())
            times.ongoing += 1
            times.ongoing_longest = max(times.ongoing_longest, now - conn.entered_at)
        order = list(State)
        return dict(sorted(out.items(), key=lambda item: order.index(item[0])))

    # -- feeding ---------------------------------------------------------
    def _owner(self, conn: _Conn, event: KernelEvent) -> None:
        if conn.pid is None and not event.in_irq and event.pid > 0:
            conn.pid = conn.sock.pid = event.pid
            conn.process = conn.sock.process = self.name_of(event.pid)

    def _move(
        self,
        conn: _Conn,
        new: State,
        *,
        at: float,
        mono_ns: int | None,
        exact: bool = True,
        cause: str | None = None,
        since: float | None = None,
    ) -> Transition:
        old = conn.sock.state
        spent: float | None = None
        if conn.entered_ns is not None and mono_ns is not None:
            spent = max(0, mono_ns - conn.entered_ns) / 1e9
        elif conn.entered_ns is not None or not exact:
            spent = max(0.0, at - conn.entered_at)
        times = self._times.get(old)
        if times is None:
            times = self._times[old] = StateTime()
        if spent is None and (old is _CLOSED or old is _LISTEN) and new is not _CLOSED:
            pass  # a new socket (CLOSED) or a listener's child (LISTEN): no stay to time
        elif spent is None:
            times.partial += 1
        else:
            times.stays += 1
            times.total += spent
            times.longest = max(times.longest, spent)
        # one Socket per connection, not per transition: this runs for every event
        sock = conn.sock
        sock.state = new
        conn.entered_ns = mono_ns
        conn.entered_at = at
        return Transition(conn.id, at, mono_ns, sock, old, new, spent, exact, cause,
                          model_path(old, new), conn.pid, conn.process, since)  # fmt: skip

    def feed(self, events: Iterable[KernelEvent]) -> list[Transition]:
        """Transitions the events show; handovers to TIME_WAIT are held for :meth:`settle`."""
        out: list[Transition] = []
        by_sk = self._by_sk
        time_wait = self._time_wait
        for ev in events:
            self.events += 1
            if self.started is None:
                self.started = ev.at
            self.last = ev.at
            conn = by_sk.get(ev.sk)
            if ev.kind != "state":
                if conn is None:
                    continue
                if ev.kind == "receive_reset":
                    conn.causes.append("RST received")
                elif ev.kind == "send_reset":
                    why = f" ({ev.reason})" if ev.reason and ev.reason != "NOT_SPECIFIED" else ""
                    conn.causes.append(f"RST sent{why}")
                elif ev.kind == "retransmit":
                    conn.retransmits += 1
                elif ev.kind == "retransmit_synack":
                    conn.causes.append("SYN+ACK retransmitted")
                elif ev.kind == "destroy":
                    by_sk.pop(ev.sk, None)
                continue
            old = ev.old
            assert old is not None and ev.new is not None
            if time_wait and (old is _SYN_SENT or old is _LISTEN):
                # a new connection's first event with its 4-tuple: the kernel ended any
                # minisocket holding it (two sockets never share one in the hash table)
                mini = time_wait.pop(
                    (ev.local.ip, ev.local.port, ev.remote.ip, ev.remote.port), None
                )
                if mini is not None:
                    out.append(
                        self._move(mini.conn, _CLOSED, at=ev.at, mono_ns=None,
                                   exact=False, since=mini.seen,
                                   cause="minisocket ended by a new connection on its 4-tuple")
                    )  # fmt: skip
            if conn is None or conn.sock.state is not old:
                sock = Socket("tcp", ev.family, ev.local, ev.remote, old)
                conn = _Conn(self._next, sock, None, ev.at)
                self._next += 1
                by_sk[ev.sk] = conn
            elif conn.sock.local.port == 0 and ev.local.port:
                conn.sock.local = ev.local  # connect() picked the port after SYN_SENT
                conn.sock.remote = ev.remote
            if conn.pid is None and not ev.in_irq and ev.pid > 0:
                self._owner(conn, ev)
            if ev.new is _CLOSED:
                del by_sk[ev.sk]
                if old in _HANDOVER:
                    self._held.append(_Held(conn, ev))
                    continue
            cause = _cause(conn) if conn.causes or conn.retransmits else None
            out.append(self._move(conn, ev.new, at=ev.at, mono_ns=ev.mono_ns, cause=cause))
            if conn.sock.local.port == 0 and ev.local.port:
                conn.sock.local = ev.local
        return out

    def settle(
        self,
        table: Mapping[TupleKey, State],
        now: float,
        *,
        partial: bool = False,
        asked: Collection[TupleKey] = (),
        timers: Mapping[TupleKey, float] | None = None,
    ) -> list[Transition]:
        """Resolve held moves to CLOSE against the timewait table; report minisockets gone.

        ``table`` is every timewait minisocket the kernel holds (at least for
        the ports traced), from sock_diag, taken after the events were read;
        ``now`` is when it was taken.  With ``partial``, ``table`` answers
        only for the 4-tuples of :meth:`held_keys` and ``asked`` (looked up
        one by one): the held moves are resolved, followed minisockets in
        ``asked`` and not in ``table`` are gone, and no other is taken for
        gone because it is absent.  ``timers``: seconds left on the timer of
        entries of ``table`` (when they will be asked for again).
        """
        out: list[Transition] = []
        followed = self._time_wait
        left = timers or {}
        checked = [k for k in asked if k in followed] if partial else list(followed)
        for key in checked:
            mini = followed[key]
            if key not in table:
                del followed[key]
                out.append(
                    self._move(mini.conn, State.CLOSED, at=now, mono_ns=None, exact=False,
                               cause="minisocket gone from the TIME_WAIT table",
                               since=mini.seen)
                )  # fmt: skip
                continue
            mini.seen = now
            if key in left:
                # asked again when the kernel says its timer fires
                self._follow(key, mini, now + left[key])
            elif mini.due <= now:
                # due, still there, and no timer said (a whole-table read): the kernel's
                # timer fires a little after the estimate, so ask again soon, not a whole
                # TIMEWAIT_LEN later (when whole-table reads have stopped, that would be
                # the end reported a minute late)
                self._follow(key, mini, now + OVERDUE_RECHECK)
        for held in self._held:
            conn, ev = held.conn, held.event
            key = (ev.local.ip, ev.local.port, ev.remote.ip, ev.remote.port)
            kept = table.get(key)
            cause = _cause(conn)
            if kept is State.TIME_WAIT:
                out.append(
                    self._move(conn, State.TIME_WAIT, at=ev.at, mono_ns=ev.mono_ns,
                               cause=cause or "handed over to a TIME_WAIT minisocket")
                )  # fmt: skip
            elif kept is State.FIN_WAIT2 and conn.sock.state is State.FIN_WAIT2:
                pass  # an orphan's FIN_WAIT2 continues in a minisocket: no change to report
            else:
                out.append(
                    self._move(conn, State.CLOSED, at=ev.at, mono_ns=ev.mono_ns, cause=cause)
                )
                continue
            mini = followed[key] = _Mini(conn, kept, now, 0.0)
            self._follow(key, mini, now + left[key] if key in left else ev.at + TIMEWAIT_LEN)
        self._held.clear()
        if len(self._due) > 2 * len(followed) + 1024:
            # callers that only ever settle against whole tables never pop due times:
            # keep the heap to the minisockets still followed
            self._due = [(m.due, m.conn.id, k) for k, m in followed.items()]
            heapq.heapify(self._due)
        out.sort(key=lambda t: t.at)
        return out

    def _follow(self, key: TupleKey, mini: _Mini, due: float) -> None:
        mini.due = due
        heapq.heappush(self._due, (due, mini.conn.id, key))

    def due(self, now: float) -> list[TupleKey]:
        """Followed minisockets whose timer has fired by ``now``: to be asked for again.

        Each is returned once per due time; :meth:`settle` with it in
        ``asked`` then reports it gone or gives it its next due time.
        """
        heap, followed = self._due, self._time_wait
        out: list[TupleKey] = []
        while heap and heap[0][0] <= now:
            due, ident, key = heapq.heappop(heap)
            mini = followed.get(key)
            if mini is not None and mini.conn.id == ident and mini.due == due:
                out.append(key)
        return out

    def held_keys(self) -> list[TupleKey]:
        """4-tuples of the moves to CLOSE waiting for :meth:`settle`."""
        return [tuple_key(h.event.local, h.event.remote) for h in self._held]

    def unowned(self) -> list[TupleKey]:
        """4-tuples of live connections whose process no event has named yet."""
        return [
            (c.sock.local.ip, c.sock.local.port, c.sock.remote.ip, c.sock.remote.port)
            for c in self._by_sk.values()
            if c.pid is None and c.sock.local.port
        ]

    def own(self, owners: Mapping[TupleKey, tuple[int, str | None]]) -> None:
        """Name the process of live connections from sock_diag and /proc (``owners``).

        Only later transitions carry it: who holds a socket now says nothing
        about who held it (if anyone did) when it changed state before.
        """
        if not owners:
            return
        for c in self._by_sk.values():
            if c.pid is None:
                key = (c.sock.local.ip, c.sock.local.port, c.sock.remote.ip, c.sock.remote.port)
                found = owners.get(key)
                if found is not None:
                    c.pid = c.sock.pid = found[0]
                    c.process = c.sock.process = found[1]

    def keys_in_time_wait(self) -> list[TupleKey]:
        return list(self._time_wait)


def tuple_key(local: Addr, remote: Addr) -> TupleKey:
    return (local.ip, local.port, remote.ip, remote.port)
