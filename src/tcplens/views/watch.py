"""Live views over successive snapshots: ``tcplens watch`` and ``tcplens trace``.

Three pieces, all usable without a terminal (tests drive them directly):

* :func:`sample` is the sampling loop: one snapshot every ``interval``
  seconds on a fixed schedule (a slow snapshot delays the next one, it does
  not shift every later one), stopping after ``count`` snapshots or
  ``duration`` seconds.  The clock and sleep are parameters.
* :class:`WatchView` follows snapshots through a
  :class:`~tcplens.analysis.diff.Tracer` and remembers, for a few refreshes,
  which rows are new (green), closed (red) or changed state (yellow), as
  TCPView does; :func:`render_watch` turns it into a rich renderable.
* Line formats for pipes: :func:`event_line` (``watch`` when stdout is not a
  terminal), :func:`trace_line` / :func:`trace_json` and the end-of-trace
  summary (:func:`summary_lines` / :func:`summary_json`).

``trace --json`` writes JSON lines, a versioned contract
(:data:`TRACE_JSON_VERSION`): each line is an object with ``"version"`` and
``"type"``; ``"change"`` lines carry ``time``, ``time_iso``, ``since``
(the change happened in ``(since, time]``), ``conn`` (a number stable for the
life of the trace), ``event`` (``opened``/``changed``/``closed``), ``proto``,
``family``, ``local``/``remote`` (``{"ip", "port"}``), ``old``/``new``
(state names, ``null`` for "not there"), ``spent`` (seconds observed in
``old``), ``spent_complete``, ``in_model``, ``model_path``, ``unseen``,
``inode``, ``pid`` and ``process``; the last line has type ``"summary"``.
Every key is always present.

Process names cost a scan of ``/proc/*/fd`` (over a second on a busy host),
so :class:`~tcplens.sources.processes.OwnerCache` keeps what it learnt per
inode and scans again only when sockets it has not seen appear.
"""

from __future__ import annotations

import gc
import ipaddress
import json
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

from tcplens.analysis.diff import (
    ChangeKind,
    StateChange,
    StateTime,
    Tracer,
    TraceStep,
)
from tcplens.analysis.filters import SocketFilter
from tcplens.model.states import State
from tcplens.model.words import plural
from tcplens.sources.records import Snapshot, Socket
from tcplens.views.sockets import STATE_STYLES, show_addr

if TYPE_CHECKING:
    from rich.console import JustifyMethod, RenderableType
    from rich.text import Text

__all__ = [
    "CHANGE_STYLES",
    "TRACE_JSON_VERSION",
    "Row",
    "TraceTotals",
    "WatchView",
    "event_line",
    "render_watch",
    "sample",
    "snapshot_taker",
    "summary_json",
    "summary_lines",
    "trace_json",
    "trace_line",
    "wanted",
]

#: bump when a key of ``trace --json`` changes meaning or disappears
TRACE_JSON_VERSION: Final = 1

#: TCPView's colours: new rows green, closed red, changed yellow
CHANGE_STYLES: Final[dict[str, str]] = {
    "opened": "bold green",
    "closed": "bold red",
    "changed": "bold yellow",
}
_MARKS: Final[dict[str, str]] = {"opened": "+", "closed": "-", "changed": "~"}


#: snapshots between cyclic garbage collections while sampling
_GC_EVERY: Final = 50


# --- sampling --------------------------------------------------------------------------------


def sample(
    take: Callable[[], Snapshot],
    *,
    interval: float,
    count: int | None = None,
    duration: float | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[Snapshot]:
    """Yield a snapshot now and then every ``interval`` seconds until ``count``/``duration``.

    With ``duration`` the last snapshot is taken at (or just after) the end,
    so a trace covers the whole span asked for.  Neither limit: forever.
    """
    start = clock()
    taken = 0
    # Snapshots and traces are acyclic, yet at 100k sockets the cyclic GC's passes cost
    # more than the diff itself: pause it while sampling and collect now and then.
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        while True:
            yield take()
            taken += 1
            if count is not None and taken >= count:
                return
            if taken % _GC_EVERY == 0:
                gc.collect()
            now = clock()
            if duration is not None and now - start >= duration:
                return
            due = start + taken * interval
            if duration is not None:
                due = min(due, start + duration)
            if due > now:
                sleep(due - now)
    finally:
        if was_enabled:
            gc.enable()


def snapshot_taker(
    kwargs: dict[str, Any], selection: SocketFilter, *, processes: bool = True
) -> Callable[[], Snapshot]:
    """A function taking one filtered live snapshot per call, from the shared CLI options.

    The state filter is left out here: a connection that changes state must
    stay tracked to be seen changing (callers filter events with
    :func:`wanted`).  Process names come from :class:`OwnerCache`, which looks up
    each inode once: for the selected sockets only, or for all of them when
    the filter needs owners (``--pid``, ``--process``).  psutil (macOS,
    Windows) reports owners itself, so it is asked for them instead.
    """
    from tcplens.sources.processes import OwnerCache
    from tcplens.views.options import snapshot_from

    tracking = replace(selection, states=frozenset())
    by_owner = selection.needs_processes
    owners = OwnerCache(str(kwargs.get("proc_root") or "/proc"))
    psutil_owners = False

    def take() -> Snapshot:
        nonlocal psutil_owners
        snap = snapshot_from(dict(kwargs), processes=psutil_owners, narrow=tracking)
        if snap.source == "psutil" and not psutil_owners and (processes or by_owner):
            psutil_owners = True
            snap = snapshot_from(dict(kwargs), processes=True, narrow=tracking)
        if psutil_owners:
            snap.sockets = tracking.apply(snap.sockets)
            return snap
        if by_owner:
            owners.fill(snap.sockets)
            snap.sockets = tracking.apply(snap.sockets)
        else:
            snap.sockets = tracking.apply(snap.sockets)
            if processes:
                owners.fill(snap.sockets)
        snap.missing.extend(n for n in owners.missing if n not in snap.missing)
        return snap

    return take


def wanted(change: StateChange, states: frozenset[State]) -> bool:
    """Whether a change concerns the ``--state`` selection (either side of it)."""
    return not states or change.old in states or change.new in states


# --- the live table ----------------------------------------------------------------------------


@dataclass(slots=True)
class _Mark:
    kind: ChangeKind
    refresh: int
    old: State | None
    #: exact mode: every state the kernel reported in between, ends included
    path: tuple[State, ...] | None = None


@dataclass(frozen=True, slots=True)
class Row:
    """One line of the watch table: a socket now present or recently closed."""

    conn: int
    sock: Socket
    #: ``opened``/``closed``/``changed`` while highlighted, else ``None``
    mark: ChangeKind | None
    #: the state before a highlighted change
    old: State | None
    #: seconds in the current state, and whether its start was observed
    in_state: float
    in_state_complete: bool
    #: exact mode: the kernel's own path for a highlighted change, ends included
    path: tuple[State, ...] | None = None


class WatchView:
    """Snapshots in, highlighted rows out: the state behind the TCPView-like table.

    ``highlight`` is how many refreshes a new, closed or changed row stays
    coloured (closed rows stay in the table that long, then go).
    """

    def __init__(
        self,
        *,
        highlight: int = 3,
        interval: float | None = None,
        states: frozenset[State] = frozenset(),
    ) -> None:
        self.highlight = max(1, highlight)
        self.interval = interval
        #: rows in other states are shown only while highlighted
        self.states = states
        self.tracer = Tracer(horizon=0.0)
        self.refresh = 0
        self.snapshot: Snapshot | None = None
        self.last_step: TraceStep | None = None
        self._marks: dict[int, _Mark] = {}
        self._closed: dict[int, tuple[Socket, float, bool]] = {}
        #: exact mode (kernel tracepoints) when not None: the paths since the last refresh
        self.exact: dict[tuple[str, int | None, str, int | None], list[State]] | None = None

    def kernel_moves(
        self, moves: Iterable[tuple[tuple[str, int | None, str, int | None], State, State]]
    ) -> None:
        """Exact mode: the kernel's transitions (4-tuple, old, new) since the last refresh.

        A highlighted change then shows every state the kernel went through,
        also those shorter than the refresh interval.
        """
        paths = self.exact if self.exact is not None else {}
        for key, old, new in moves:
            path = paths.setdefault(key, [old])
            if path[-1] is not old:
                path.append(old)
            path.append(new)
        self.exact = paths

    def update(self, snap: Snapshot) -> TraceStep:
        """Take the next snapshot; return what changed since the previous one."""
        self.refresh += 1
        self.snapshot = snap
        step = self.tracer.update(snap)
        self.last_step = step
        paths = self.exact or {}
        for change in step.changes:
            kind = change.change.kind
            sock = change.change.sock
            path = paths.get((sock.local.ip, sock.local.port, sock.remote.ip, sock.remote.port))
            self._marks[change.conn] = _Mark(
                kind, self.refresh, change.old, tuple(path) if path else None
            )
            if kind == "closed" and change.change.before is not None:
                spent = change.spent or 0.0
                self._closed[change.conn] = (change.change.before, spent, change.spent_complete)
        for conn in [
            c for c, m in self._marks.items() if self.refresh - m.refresh >= self.highlight
        ]:
            del self._marks[conn]
            self._closed.pop(conn, None)
        if self.exact is not None:
            self.exact = {}
        return step

    def rows(self) -> list[Row]:
        """Present sockets plus recently closed ones, ordered by local then peer address."""
        now = self.snapshot.taken_at if self.snapshot is not None else 0.0
        out: list[Row] = []
        for track in self.tracer.live:
            mark = self._marks.get(track.id)
            if self.states and track.state not in self.states and mark is None:
                continue
            out.append(
                Row(
                    conn=track.id,
                    sock=track.sock,
                    mark=mark.kind if mark else None,
                    old=mark.old if mark else None,
                    in_state=track.time_in_state(now),
                    in_state_complete=track.entered_seen,
                    path=mark.path if mark else None,
                )
            )
        for conn, (sock, spent, complete) in self._closed.items():
            mark = self._marks.get(conn)
            path = mark.path if mark is not None else None
            out.append(Row(conn, sock, "closed", sock.state, spent, complete, path))
        ip_keys: dict[str, tuple[int, int]] = {}

        def ip_key(ip: str) -> tuple[int, int]:
            key = ip_keys.get(ip)
            if key is None:  # parsed once per address, not once per row
                try:
                    parsed = ipaddress.ip_address(ip.split("%")[0])
                    key = (parsed.version, int(parsed))
                except ValueError:
                    key = (0, 0)
                ip_keys[ip] = key
            return key

        def order(r: Row) -> tuple[Any, ...]:
            local, remote = r.sock.local, r.sock.remote
            return (
                r.sock.proto,
                ip_key(local.ip),
                local.port or 0,
                ip_key(remote.ip),
                remote.port or 0,
                r.conn,
            )

        out.sort(key=order)
        return out

    def counts(self) -> Counter[State]:
        """TCP sockets per state in the latest snapshot."""
        snap = self.snapshot
        return Counter(s.state for s in (snap.sockets if snap else ()) if s.proto == "tcp")


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def _program(sock: Socket) -> str:
    if sock.pid is None:
        return "-"
    return f"{sock.pid}/{sock.process or '?'}"


def _proto(sock: Socket) -> str:
    return sock.proto if sock.family == 4 else sock.proto + "6"


def _clock(at: float) -> str:
    """Local wall-clock time to the millisecond, as tcpdump prints it."""
    return datetime.fromtimestamp(at).strftime("%H:%M:%S.%f")[:-3]


#: the watch table's columns, and how to lay them out ever narrower: an address:port
#: or a pid/program is never cut, so low-value columns go first, then local and
#: peer share one column on two lines
_WATCH_COLUMNS: Final = (
    "Proto", "Recv-Q", "Send-Q", "Local Address", "Peer Address", "State", "In state",
    "PID/Program",
)  # fmt: skip
_PAIR: Final = "Local / Peer"
_LAYOUTS: Final = (
    _WATCH_COLUMNS,
    ("Proto", "Local Address", "Peer Address", "State", "In state", "PID/Program"),
    ("Local Address", "Peer Address", "State", "In state", "PID/Program"),
    (_PAIR, "State", "In state", "PID/Program"),
    (_PAIR, "State", "PID/Program"),
    (_PAIR, "State", "In state"),
    (_PAIR, "State"),
)
_JUSTIFY: Final[dict[str, JustifyMethod]] = {
    "Recv-Q": "right",
    "Send-Q": "right",
    "In state": "right",
}


def _fitting_columns(
    cells: Sequence[dict[str, Text]], width: int | None
) -> tuple[tuple[str, ...], int]:
    """The widest layout of :data:`_LAYOUTS` whose rows fit ``width``, and its column gap."""
    from rich.cells import cell_len

    widths: dict[str, int] = {}
    for name in {n for layout in _LAYOUTS for n in layout}:
        lines = [line for row in cells for line in row[name].plain.split("\n")]
        widths[name] = max([cell_len(name), *(cell_len(line) for line in lines)])
    if width is None:
        return _WATCH_COLUMNS, 2
    for layout in _LAYOUTS:
        for gap in (2, 1):
            if sum(widths[n] for n in layout) + gap * (len(layout) - 1) <= width:
                return layout, gap
    return _LAYOUTS[-1], 1  # wider than the terminal even so: Live crops the ends


def _keep(rows: list[Row], max_rows: int | None) -> list[Row]:
    """At most ``max_rows`` rows, a line for "… N more" included; highlighted rows first."""
    if max_rows is None or len(rows) <= max_rows:
        return rows
    keep = max(0, max_rows - 1)
    marked = [r for r in rows if r.mark is not None][:keep]
    room = keep - len(marked)
    plain = [r for r in rows if r.mark is None][:room]
    chosen = {r.conn for r in marked} | {r.conn for r in plain}
    return [r for r in rows if r.conn in chosen]


def render_watch(
    view: WatchView, *, max_rows: int | None = None, width: int | None = None
) -> RenderableType:
    """Header (per-state counts, change counts) and the table, coloured by change.

    When there are more rows than ``max_rows``, highlighted rows are kept
    first and a last line says how many were left out.  Given the terminal's
    ``width``, columns are left out (and named in the title) rather than an
    address, port or pid/program cut (:func:`_fitting_columns`).
    """
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    snap = view.snapshot
    title = Text("tcplens watch", style="bold")
    if snap is not None:
        where = " · ".join(p for p in (snap.host, snap.source) if p)
        title.append(f"  {where} · {_clock(snap.taken_at)} · refresh {view.refresh}")
        if view.interval is not None:
            title.append(f" every {view.interval:g}s")
        if view.exact is not None:
            title.append(" · mode: exact (kernel tracepoints)")
    counts = Text()
    for state, n in sorted(view.counts().items(), key=lambda kv: list(State).index(kv[0])):
        if counts:
            counts.append("  ")
        counts.append(state.value, style=STATE_STYLES.get(state, ""))
        counts.append(f" {n}")
    if not counts:
        counts.append("no TCP sockets", style="dim")
    step = view.last_step
    if step is not None and not step.first:
        tally: Counter[str] = Counter(c.change.kind for c in step.changes)
        counts.append("   │ ")
        for kind, label in (("opened", "new"), ("closed", "closed"), ("changed", "changed")):
            counts.append(f"{_MARKS[kind]}{tally.get(kind, 0)} {label}", style=CHANGE_STYLES[kind])
            counts.append("  ")

    every = view.rows()
    rows = _keep(every, max_rows)
    cells: list[dict[str, Text]] = []
    for row in rows:
        sock = row.sock
        if row.path is not None and row.mark is not None:
            cell = Text(" → ".join(s.value for s in row.path))
        elif row.mark == "changed" and row.old is not None:
            cell = Text(f"{row.old.value} → {sock.state.value}")
        elif row.mark == "closed":
            cell = Text(f"{sock.state.value} → gone")
        else:
            cell = Text(sock.state.value, style=STATE_STYLES.get(sock.state, ""))
        since = ("" if row.in_state_complete else "≥") + _duration(row.in_state)
        local, remote = show_addr(sock.local, sock.proto), show_addr(sock.remote, sock.proto)
        cells.append(
            {
                "Proto": Text(_proto(sock)),
                "Recv-Q": Text("-" if sock.recv_q is None else str(sock.recv_q)),
                "Send-Q": Text("-" if sock.send_q is None else str(sock.send_q)),
                "Local Address": Text(local),
                "Peer Address": Text(remote),
                _PAIR: Text(f"{local}\n{remote}"),
                "State": cell,
                "In state": Text(since),
                "PID/Program": Text(_program(sock)),
            }
        )
    names, gap = _fitting_columns(cells, width)
    if _PAIR in names and max_rows is not None:
        # two lines a row: half as many rows fit
        kept = {r.conn for r in _keep(every, max(1, max_rows // 2))}
        cells = [c for r, c in zip(rows, cells, strict=True) if r.conn in kept]
        rows = [r for r in rows if r.conn in kept]
    hidden = len(every) - len(rows)
    left_out = [
        n for n in _WATCH_COLUMNS if n not in names and not (_PAIR in names and "Addr" in n)
    ]
    if left_out:
        title.append(f"  (narrow terminal, not shown: {', '.join(left_out)})", style="dim")
    table = Table(box=None, pad_edge=False, header_style="bold", show_edge=False, expand=False)
    if gap == 1:
        table.padding = (0, 1, 0, 0)
    for name in names:
        # never ellipsised or folded: _fitting_columns left out what did not fit
        table.add_column(
            name, justify=_JUSTIFY.get(name, "left"), no_wrap=True, overflow="ellipsis"
        )
    for row, row_cells in zip(rows, cells, strict=True):
        style = CHANGE_STYLES[row.mark] if row.mark else None
        table.add_row(*(row_cells[name] for name in names), style=style)
    parts: list[RenderableType] = [title, counts, table]
    if hidden:
        more = plural(hidden, "more socket")
        parts.append(Text(f"… {more} (narrow with filters)", style="dim"))
    return Group(*parts)


# --- lines for pipes ----------------------------------------------------------------------------


def _states(change: StateChange) -> tuple[str, str]:
    old = "new" if change.old is None else change.old.value
    new = "gone" if change.new is None else change.new.value
    return old, new


def event_line(change: StateChange) -> str:
    """``HH:MM:SS.mmm +|-|~ proto local peer OLD -> NEW pid/program``: always 9 fields."""
    sock = change.change.sock
    old, new = _states(change)
    return (
        f"{_clock(change.change.at)} {_MARKS[change.change.kind]} {_proto(sock)} "
        f"{show_addr(sock.local, sock.proto)} {show_addr(sock.remote, sock.proto)} "
        f"{old} -> {new} {_program(sock)}"
    )


def trace_line(change: StateChange) -> str:
    """One transition for people: time, connection, old -> new, time in old, skipped states."""
    sock = change.change.sock
    old, new = _states(change)
    text = (
        f"{_clock(change.change.at)}  #{change.conn} {_proto(sock)} "
        f"{show_addr(sock.local, sock.proto)} <-> {show_addr(sock.remote, sock.proto)}  "
        f"{old} -> {new}"
    )
    if change.spent is not None:
        text += f"  after {'' if change.spent_complete else '≥'}{change.spent:.2f}s"
    if change.unseen:
        text += f"  via {', '.join(s.value for s in change.unseen)} (unseen)"
    if change.in_model is False:
        text += "  (no path in the state model)"
    if sock.pid is not None:
        text += f"  [{_program(sock)}]"
    return text


def _addr_json(sock: Socket, end: str) -> dict[str, Any]:
    addr = sock.local if end == "local" else sock.remote
    return {"ip": addr.ip, "port": addr.port}


def trace_json(change: StateChange) -> str:
    """One ``"type": "change"`` line of ``trace --json`` (see the module docstring)."""
    ch = change.change
    sock = ch.sock
    return json.dumps(
        {
            "version": TRACE_JSON_VERSION,
            "type": "change",
            "time": ch.at,
            "time_iso": datetime.fromtimestamp(ch.at, UTC).isoformat(),
            "since": ch.since,
            "conn": change.conn,
            "event": ch.kind,
            "proto": sock.proto,
            "family": sock.family,
            "local": _addr_json(sock, "local"),
            "remote": _addr_json(sock, "remote"),
            "old": None if change.old is None else change.old.value,
            "new": None if change.new is None else change.new.value,
            "spent": change.spent,
            "spent_complete": change.spent_complete,
            "in_model": change.in_model,
            "model_path": None if change.path is None else [s.value for s in change.path],
            "unseen": [s.value for s in change.unseen],
            "inode": sock.inode,
            "pid": sock.pid,
            "process": sock.process,
        },
        separators=(",", ":"),
    )


@dataclass(frozen=True, slots=True)
class TraceTotals:
    """What the end-of-trace summary reports besides per-state times."""

    snapshots: int
    started: float | None
    ended: float | None
    changes: int
    off_model: int


def _totals(tracer: Tracer, changes: int, off_model: int) -> TraceTotals:
    return TraceTotals(tracer.snapshots, tracer.started, tracer.last, changes, off_model)


def _selected(tracer: Tracer, states: frozenset[State]) -> dict[State, StateTime]:
    return {s: t for s, t in tracer.state_times().items() if not states or s in states}


def summary_json(
    tracer: Tracer, *, changes: int, off_model: int, states: frozenset[State] = frozenset()
) -> str:
    """The last ``trace --json`` line: ``"type": "summary"`` with time per state."""
    totals = _totals(tracer, changes, off_model)

    def state(t: StateTime) -> dict[str, Any]:
        return {
            "stays": t.stays,
            "total": t.total,
            "mean": t.mean,
            "longest": t.longest if t.stays else None,
            "partial": t.partial,
            "ongoing": t.ongoing,
            "ongoing_longest": t.ongoing_longest if t.ongoing else None,
        }

    return json.dumps(
        {
            "version": TRACE_JSON_VERSION,
            "type": "summary",
            "snapshots": totals.snapshots,
            "started": totals.started,
            "ended": totals.ended,
            "changes": totals.changes,
            "off_model": totals.off_model,
            "states": {s.value: state(t) for s, t in _selected(tracer, states).items()},
        },
        separators=(",", ":"),
    )


def state_time_lines(
    head: str,
    times: Mapping[State, StateTime],
    secs: Callable[[float | None], str],
    note: str,
) -> list[str]:
    """The time-in-state table of ``trace`` in either mode: head, aligned rows, the note."""
    table = [("State", "Stays", "Mean", "Longest", "Total", "Partial", "Now", "Longest now")]
    for state, t in times.items():
        table.append(
            (
                state.value,
                str(t.stays),
                secs(t.mean),
                secs(t.longest if t.stays else None),
                secs(t.total if t.stays else None),
                str(t.partial),
                str(t.ongoing),
                secs(t.ongoing_longest if t.ongoing else None),
            )
        )
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    lines = [head]
    for r in table:
        cells = [r[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(r[1:], widths[1:], strict=True)
        ]
        lines.append("  " + "  ".join(cells))
    lines.append(f"  ({note})")
    return lines


def summary_lines(
    tracer: Tracer, *, changes: int, off_model: int, states: frozenset[State] = frozenset()
) -> list[str]:
    """Time spent per TCP state (only ``states`` when given), as aligned plain text."""
    totals = _totals(tracer, changes, off_model)
    span = 0.0
    if totals.started is not None and totals.ended is not None:
        span = totals.ended - totals.started
    head = (
        f"Time in state over {span:.1f}s ({plural(totals.snapshots, 'snapshot')}, "
        f"{plural(totals.changes, 'change')}, {totals.off_model} outside the state model)"
    )
    times = _selected(tracer, states)
    if not times:
        return [head, "  no TCP connections seen" + (" in those states" if states else "")]

    def secs(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f}s"

    return state_time_lines(
        head,
        times,
        secs,
        "Stays: entered and left while tracing; Partial: began before tracing, so not timed; "
        "Now: still in the state; Longest now: since first seen in it.",
    )
