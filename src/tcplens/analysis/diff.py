"""What changed between socket snapshots, and each connection's state history across many.

Theory of operation
-------------------
A live source only *samples* the socket table, so everything here is about
matching rows of one snapshot to rows of the next and being honest about
what a sampled observer can know.

**Identity.**  A connection is keyed by ``(proto, local ip, local port, remote
ip, remote port)``: the 4-tuple is unique among live TCP connections, and the
same key for listeners and UDP sockets still separates them by address.  The
socket inode breaks ties where it is known: two rows with the same key and
*different* known inodes are different sockets (the port was reused, or
``SO_REUSEPORT`` listeners share an address), so the old one closed and a new
one opened.  The inode is not always known: the kernel reports 0 (``None``
in our records) for a socket no process holds any more (after ``close()``:
FIN_WAIT*, LAST_ACK, CLOSING, TIME_WAIT) and for not-yet-accepted children,
so a row without an inode matches any row with the same key.  An
ESTABLISHED socket with inode 42 that shows up next as TIME_WAIT without
an inode is the same connection that moved on.

**Transitions and the model.**  Between two samples a connection may pass
through several states; only the first and last are seen.  Each observed
change ``old -> new`` of a TCP connection is checked against
:data:`tcplens.model.machine.TRANSITIONS`: :func:`model_path` is the shortest
chain of table rows from ``old`` to ``new`` and its inner states are the
ones "passed through unseen" (ESTABLISHED -> FIN_WAIT2 went through
FIN_WAIT1).  The search does not continue *through* CLOSED, because a
connection that reached CLOSED is over and anything after it is a new one.
No chain at all means the observation contradicts the model (or the row
was misread), and is reported as such.  A connection leaving the table is a
move to CLOSED; one appearing has no known previous state and is not
checked.  UDP "states" are not TCP states and are never checked.

**Time.**  Snapshots carry ``taken_at``; nothing here reads a clock.  A stay
in a state is measured from the first snapshot that showed it to the first
snapshot that showed the next state, so both ends carry the same sampling
error (up to one interval each) and the sum over a connection's stays is its
observed lifetime.  A stay that was already under way in the first snapshot
has no observed start: its length is a lower bound, kept apart
(``StateTime.partial``) so it does not drag means down.

**Memory.**  A :class:`Tracer` keeps one :class:`Track` per live connection,
each history capped at ``max_history`` entries, and remembers connections
that left the table only for ``horizon`` seconds (for views that show recent
closures); per-state totals are a handful of counters.  Memory is therefore
bounded by the size of the socket table, however long the trace runs.
"""

from __future__ import annotations

import collections
import functools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal

from tcplens.model.machine import TRANSITIONS
from tcplens.model.states import State
from tcplens.sources.records import Addr, Snapshot, Socket

__all__ = [
    "Change",
    "ChangeKind",
    "ConnKey",
    "Matching",
    "SnapshotDiff",
    "StateChange",
    "StateTime",
    "TraceStep",
    "Tracer",
    "Track",
    "conn_key",
    "diff",
    "match",
    "model_path",
]

ConnKey = tuple[str, str, int | None, str, int | None]
ChangeKind = Literal["opened", "closed", "changed"]

#: default number of (time, state) entries kept per connection
MAX_HISTORY: Final = 64
#: default seconds a connection that left the table is remembered
HORIZON: Final = 60.0


def conn_key(sock: Socket) -> ConnKey:
    """``(proto, local ip, local port, remote ip, remote port)``: who a row is, not how it is."""
    return (sock.proto, sock.local.ip, sock.local.port, sock.remote.ip, sock.remote.port)


@dataclass(frozen=True, slots=True)
class Matching:
    """Rows of two socket lists paired by identity, as indices into each list."""

    pairs: list[tuple[int, int]]
    closed: list[int]
    opened: list[int]


_Ident = tuple[str, Addr, Addr]


def _idents(sockets: Sequence[Socket]) -> list[_Ident]:
    """Identity keys for matching: ``conn_key`` without unpacking the addresses (faster)."""
    return [(s.proto, s.local, s.remote) for s in sockets]


def match(prev: Sequence[Socket], cur: Sequence[Socket]) -> Matching:
    """Pair each row of ``cur`` with the row of ``prev`` that is the same socket.

    Same key and same known inode pair first; then a row whose inode is
    unknown pairs with the first unpaired row of the same key (see the module
    docstring).  Linear in the number of rows.
    """
    return _match(prev, _idents(prev), cur, _idents(cur))


def _match(
    prev: Sequence[Socket], prev_ids: list[_Ident], cur: Sequence[Socket], cur_ids: list[_Ident]
) -> Matching:
    # Keys are unique in almost every snapshot: keep the first row per key in a plain
    # dict and only build lists for the rare keys that repeat (SO_REUSEPORT, UDP).
    first: dict[_Ident, int] = {}
    repeats: dict[_Ident, list[int]] = {}
    for i, ident in enumerate(prev_ids):
        if ident in first:
            repeats.setdefault(ident, [first[ident]]).append(i)
        else:
            first[ident] = i
    # socket inodes are unique on the host, so the inode alone finds the candidate row
    by_inode = {s.inode: i for i, s in enumerate(prev) if s.inode}
    taken = [False] * len(prev)
    pairs: list[tuple[int, int]] = []
    pending: list[int] = []
    for j, sock in enumerate(cur):
        inode = sock.inode
        if inode:
            same = by_inode.get(inode)
            if same is not None and not taken[same] and prev_ids[same] == cur_ids[j]:
                taken[same] = True
                pairs.append((same, j))
                continue
        pending.append(j)
    opened: list[int] = []
    for j in pending:
        ident = cur_ids[j]
        inode = cur[j].inode
        many = repeats.get(ident)
        if many is None:
            only = first.get(ident)
            candidates: Sequence[int] = () if only is None else (only,)
        else:
            candidates = many
        for i in candidates:
            if not taken[i] and (not inode or not prev[i].inode):
                taken[i] = True
                pairs.append((i, j))
                break
        else:
            opened.append(j)
    closed = [i for i, used in enumerate(taken) if not used]
    return Matching(pairs=pairs, closed=closed, opened=opened)


@dataclass(frozen=True, slots=True)
class Change:
    """One connection that opened, closed or changed state between two snapshots.

    It happened somewhere in ``(since, at]``: after the earlier snapshot was
    taken and no later than the later one.
    """

    kind: ChangeKind
    before: Socket | None
    after: Socket | None
    since: float
    at: float

    @property
    def sock(self) -> Socket:
        """The latest row known for the connection."""
        sock = self.after if self.after is not None else self.before
        assert sock is not None
        return sock

    @property
    def key(self) -> ConnKey:
        return conn_key(self.sock)

    @property
    def old(self) -> State | None:
        """State before; ``None`` for a connection that was not there."""
        return None if self.before is None else self.before.state

    @property
    def new(self) -> State | None:
        """State after; ``None`` for a connection that left the table."""
        return None if self.after is None else self.after.state


@dataclass(frozen=True, slots=True)
class SnapshotDiff:
    """Every opened, closed and changed connection between two snapshots."""

    since: float
    at: float
    opened: list[Change] = field(default_factory=list)
    closed: list[Change] = field(default_factory=list)
    changed: list[Change] = field(default_factory=list)
    unchanged: int = 0

    @property
    def changes(self) -> list[Change]:
        """Changed, then opened, then closed: the order views print them in."""
        return [*self.changed, *self.opened, *self.closed]

    def __bool__(self) -> bool:
        return bool(self.opened or self.closed or self.changed)


def _diff(prev: Snapshot, cur: Snapshot, matching: Matching) -> SnapshotDiff:
    since, at = prev.taken_at, cur.taken_at
    ps, cs = prev.sockets, cur.sockets
    changed = [
        Change("changed", ps[i], cs[j], since, at)
        for i, j in matching.pairs
        if ps[i].state is not cs[j].state
    ]
    return SnapshotDiff(
        since=since,
        at=at,
        opened=[Change("opened", None, cs[j], since, at) for j in matching.opened],
        closed=[Change("closed", ps[i], None, since, at) for i in matching.closed],
        changed=changed,
        unchanged=len(matching.pairs) - len(changed),
    )


def diff(prev: Snapshot, cur: Snapshot) -> SnapshotDiff:
    """Connections opened, closed and changed from ``prev`` to ``cur`` (see :func:`match`)."""
    return _diff(prev, cur, match(prev.sockets, cur.sockets))


def _successors(state: State) -> list[State]:
    """Next states reachable by one table row, in table order, without self-loops."""
    seen: list[State] = []
    for row in TRANSITIONS[state].values():
        if row.next is not state and row.next not in seen:
            seen.append(row.next)
    return seen


@functools.cache
def model_path(old: State, new: State) -> tuple[State, ...] | None:
    """The shortest chain of transition rows from ``old`` to ``new``, both ends included.

    ``None`` when the model has no such chain.  The search does not pass
    through CLOSED (a closed connection does not come back); ties go to the
    row listed first in the table, so the answer is stable.  ESTABLISHED to
    FIN_WAIT2 is ``(ESTABLISHED, FIN_WAIT1, FIN_WAIT2)``; ESTABLISHED to
    TIME_WAIT is ``(ESTABLISHED, FIN_WAIT1, TIME_WAIT)`` because Linux's
    FIN_WAIT1 + FIN/ACK row goes straight there.
    """
    if old is new:
        return (old,)
    parent: dict[State, State] = {}
    queue = collections.deque([old])
    seen = {old}
    while queue:
        state = queue.popleft()
        if state is State.CLOSED and state is not old:
            continue
        for nxt in _successors(state):
            if nxt in seen:
                continue
            seen.add(nxt)
            parent[nxt] = state
            if nxt is new:
                path = [new]
                while path[-1] is not old:
                    path.append(parent[path[-1]])
                return tuple(reversed(path))
            queue.append(nxt)
    return None


@dataclass(slots=True)
class Track:
    """One connection followed across snapshots."""

    id: int
    sock: Socket
    first_seen: float
    #: (time first observed, state), oldest first; capped, so long histories lose their head
    history: list[tuple[float, State]]
    #: when the current state was first observed
    entered: float
    #: False while the current state is the one the connection had when tracing began
    entered_seen: bool
    last_seen: float
    gone_at: float | None = None
    #: observed seconds per state over the connection's life (complete stays only)
    durations: dict[State, float] = field(default_factory=dict)

    @property
    def state(self) -> State:
        return self.sock.state

    @property
    def key(self) -> ConnKey:
        return conn_key(self.sock)

    def time_in_state(self, now: float) -> float:
        """Seconds since the current state was first observed (a minimum if not entered_seen)."""
        return max(0.0, (self.gone_at if self.gone_at is not None else now) - self.entered)


@dataclass(frozen=True, slots=True)
class StateChange:
    """An observed change of one traced connection, timed and checked against the model."""

    conn: int
    change: Change
    #: seconds observed in the old state; ``None`` when the connection just appeared
    spent: float | None
    #: False when the old state was already under way when tracing began (spent is a minimum)
    spent_complete: bool
    #: whether the change was checked against the model (TCP, with a known previous state)
    checked: bool
    #: shortest model chain from old to new (CLOSED when gone), ends included
    path: tuple[State, ...] | None

    @property
    def old(self) -> State | None:
        return self.change.old

    @property
    def new(self) -> State | None:
        return self.change.new

    @property
    def unseen(self) -> tuple[State, ...]:
        """States the model says the connection passed through between the two samples."""
        return self.path[1:-1] if self.path else ()

    @property
    def in_model(self) -> bool | None:
        """True/False when checked, ``None`` when the model has nothing to say."""
        return (self.path is not None) if self.checked else None


@dataclass(slots=True)
class StateTime:
    """Time connections spent in one state, from complete observed stays."""

    #: stays whose start and end were both observed
    stays: int = 0
    total: float = 0.0
    longest: float = 0.0
    #: stays that ended but began before tracing did (lengths are lower bounds, not in total)
    partial: int = 0
    #: connections still in this state at the last snapshot, and the longest of those so far
    ongoing: int = 0
    ongoing_longest: float = 0.0

    @property
    def mean(self) -> float | None:
        return self.total / self.stays if self.stays else None


@dataclass(frozen=True, slots=True)
class TraceStep:
    """What one snapshot added to a trace."""

    diff: SnapshotDiff
    changes: list[StateChange]
    #: the track of each socket of the snapshot, in the snapshot's order
    tracks: list[Track]
    first: bool


class Tracer:
    """Per-connection state histories over successive snapshots (see the module docstring).

    Feed snapshots in time order to :meth:`update`; each call returns the
    changes it observed.  ``horizon`` is how long (in snapshot time) a
    connection that left the table is remembered; ``max_history`` caps each
    connection's history.
    """

    def __init__(self, *, horizon: float = HORIZON, max_history: int = MAX_HISTORY) -> None:
        if horizon < 0 or max_history < 1:
            raise ValueError("horizon must be >= 0 and max_history >= 1")
        self.horizon = horizon
        self.max_history = max_history
        self.snapshots = 0
        self.started: float | None = None
        self.last: float | None = None
        self._prev: list[Socket] = []
        self._prev_ids: list[_Ident] = []
        self._tracks: list[Track] = []
        self._gone: dict[int, Track] = {}
        self._next_id = 1
        self._times: dict[State, StateTime] = {}

    # -- reading -----------------------------------------------------------
    @property
    def live(self) -> list[Track]:
        """Tracks of the sockets in the last snapshot, in its order."""
        return list(self._tracks)

    @property
    def gone(self) -> list[Track]:
        """Connections that left the table within the horizon, oldest departure first."""
        return list(self._gone.values())

    def get(self, conn: int) -> Track | None:
        for track in self._tracks:
            if track.id == conn:
                return track
        return self._gone.get(conn)

    def __iter__(self) -> Iterator[Track]:
        yield from self._tracks
        yield from self._gone.values()

    def __len__(self) -> int:
        return len(self._tracks) + len(self._gone)

    def state_times(self) -> dict[State, StateTime]:
        """Per TCP state: complete stays so far plus connections still in it, in enum order."""
        now = self.last if self.last is not None else 0.0
        out: dict[State, StateTime] = {}
        for state, times in self._times.items():
            out[state] = StateTime(times.stays, times.total, times.longest, times.partial)
        for track in self._tracks:
            if track.sock.proto != "tcp":
                continue
            times = out.setdefault(track.state, StateTime())
            times.ongoing += 1
            times.ongoing_longest = max(times.ongoing_longest, track.time_in_state(now))
        order = list(State)
        return dict(sorted(out.items(), key=lambda item: order.index(item[0])))

    # -- feeding -----------------------------------------------------------
    def _new_track(self, sock: Socket, at: float, *, seen_entering: bool) -> Track:
        track = Track(
            id=self._next_id,
            sock=sock,
            first_seen=at,
            history=[(at, sock.state)],
            entered=at,
            entered_seen=seen_entering,
            last_seen=at,
        )
        self._next_id += 1
        return track

    def _end_stay(self, track: Track, at: float) -> tuple[float, bool]:
        """Close the track's current stay at ``at``; return its length and completeness."""
        spent = max(0.0, at - track.entered)
        state = track.state
        track.durations[state] = track.durations.get(state, 0.0) + spent
        if track.sock.proto == "tcp":
            times = self._times.setdefault(state, StateTime())
            if track.entered_seen:
                times.stays += 1
                times.total += spent
                times.longest = max(times.longest, spent)
            else:
                times.partial += 1
        return spent, track.entered_seen

    def update(self, snap: Snapshot) -> TraceStep:
        """Match ``snap`` against the previous snapshot and record what changed."""
        at = snap.taken_at
        cur = snap.sockets
        self.snapshots += 1
        if self.started is None:
            self.started = at
            self.last = at
            self._prev = list(cur)
            self._prev_ids = _idents(cur)
            self._tracks = [self._new_track(s, at, seen_entering=False) for s in cur]
            empty = SnapshotDiff(since=at, at=at, unchanged=len(cur))
            return TraceStep(diff=empty, changes=[], tracks=list(self._tracks), first=True)
        since = self.last if self.last is not None else at
        cur_ids = _idents(cur)
        prev = self._prev
        matching = _match(prev, self._prev_ids, cur, cur_ids)
        old_tracks = self._tracks
        tracks: list[Track] = [old_tracks[0]] * len(cur) if old_tracks else []
        changed: list[Change] = []
        changes: list[StateChange] = []
        for i, j in matching.pairs:
            track = old_tracks[i]
            sock = cur[j]
            if prev[i].state is not sock.state:
                change = Change("changed", prev[i], sock, since, at)
                changed.append(change)
                spent, complete = self._end_stay(track, at)
                track.entered = at
                track.entered_seen = True
                self._remember(track, at, sock.state)
                changes.append(self._checked(track.id, change, spent, complete))
            track.sock = sock
            track.last_seen = at
            tracks[j] = track
        opened: list[Change] = []
        for j in matching.opened:
            change = Change("opened", None, cur[j], since, at)
            opened.append(change)
            track = self._new_track(cur[j], at, seen_entering=True)
            if not tracks:
                tracks = [track] * len(cur)
            tracks[j] = track
            changes.append(StateChange(track.id, change, None, True, False, None))
        closed: list[Change] = []
        for i in matching.closed:
            change = Change("closed", prev[i], None, since, at)
            closed.append(change)
            track = old_tracks[i]
            spent, complete = self._end_stay(track, at)
            track.gone_at = at
            self._remember(track, at, State.CLOSED)
            self._gone[track.id] = track
            changes.append(self._checked(track.id, change, spent, complete))
        result = SnapshotDiff(
            since=since,
            at=at,
            opened=opened,
            closed=closed,
            changed=changed,
            unchanged=len(matching.pairs) - len(changed),
        )
        self._tracks = tracks
        self._prev = list(cur)
        self._prev_ids = cur_ids
        self.last = at
        self._forget(at)
        return TraceStep(diff=result, changes=changes, tracks=list(tracks), first=False)

    def _remember(self, track: Track, at: float, state: State) -> None:
        track.history.append((at, state))
        if len(track.history) > self.max_history:
            del track.history[0]

    @staticmethod
    def _checked(conn: int, change: Change, spent: float, complete: bool) -> StateChange:
        sock = change.sock
        old = change.old
        if sock.proto != "tcp" or old is None:
            return StateChange(conn, change, spent, complete, False, None)
        new = change.new if change.new is not None else State.CLOSED
        return StateChange(conn, change, spent, complete, True, model_path(old, new))

    def _forget(self, now: float) -> None:
        gone = self._gone
        while gone:
            conn, track = next(iter(gone.items()))
            if track.gone_at is not None and now - track.gone_at <= self.horizon:
                break
            del gone[conn]
