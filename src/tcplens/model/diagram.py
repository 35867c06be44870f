"""The state diagram, generated from :data:`~tcplens.model.machine.TRANSITIONS`.

Never hand-drawn: every row of the table becomes one labelled edge line
(``event / segments sent``), so the picture cannot drift from the machine.
As in the classic figure (RFC 9293 figure 5, Stevens' TCP/IP Illustrated
figure 18.12) the usual client path is drawn solid and bold, the usual server
path dashed and bold, and everything else thin.  Rows between the same two
states share one edge with one label line per row.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final, Literal

from tcplens.model.machine import TRANSITIONS, Closing, Event, Flags, Key, format_flags
from tcplens.model.states import State

__all__ = [
    "FIGURE_WIDTH",
    "SEVERITY_FILL",
    "Edge",
    "Figure",
    "LayoutError",
    "Overlay",
    "PlacedLabel",
    "edges",
    "expand_label",
    "figure",
    "group_labels",
    "row_label",
    "to_dot",
    "to_mermaid",
    "to_text",
]

Path = Literal["client", "server", "other"]

#: The usual life of an active opener and closer (the client) ...
CLIENT_PATH: Final = frozenset(
    {
        (State.CLOSED, State.SYN_SENT),
        (State.SYN_SENT, State.ESTABLISHED),
        (State.ESTABLISHED, State.FIN_WAIT1),
        (State.FIN_WAIT1, State.FIN_WAIT2),
        (State.FIN_WAIT2, State.TIME_WAIT),
        (State.TIME_WAIT, State.CLOSED),
    }
)
#: ... and of a passive opener and closer (the server).
SERVER_PATH: Final = frozenset(
    {
        (State.CLOSED, State.LISTEN),
        (State.LISTEN, State.SYN_RECV),
        (State.SYN_RECV, State.ESTABLISHED),
        (State.ESTABLISHED, State.CLOSE_WAIT),
        (State.CLOSE_WAIT, State.LAST_ACK),
        (State.LAST_ACK, State.CLOSED),
    }
)


def row_label(key: Key, send: tuple[Flags, ...]) -> str:
    """``rcv SYN / SYN+ACK``: the event (with context) and what is sent."""
    if isinstance(key, tuple):
        event, context = key
        where = f"after {context.value}()" if isinstance(context, Closing) else f"{context} open"
        text = f"{event.value} ({where})"
    else:
        text = key.value
    sent = ", ".join(format_flags(flags) for flags in send)
    return f"{text} / {sent}" if sent else text


@dataclass(frozen=True, slots=True)
class Edge:
    """All rows from one state to another, with the path they belong to."""

    src: State
    dst: State
    labels: tuple[str, ...]
    path: Path


def edges() -> list[Edge]:
    """Every transition row grouped by (from, to), in table order."""
    grouped: dict[tuple[State, State], list[str]] = {}
    for state, rows in TRANSITIONS.items():
        for key, row in rows.items():
            grouped.setdefault((state, row.next), []).append(row_label(key, row.send))
    result = []
    for (src, dst), labels in grouped.items():
        path: Path = (
            "client"
            if (src, dst) in CLIENT_PATH
            else "server"
            if (src, dst) in SERVER_PATH
            else "other"
        )
        result.append(Edge(src, dst, tuple(labels), path))
    return result


def _states() -> list[State]:
    """CLOSED first, where every connection starts; UNKNOWN has no rows."""
    return [State.CLOSED] + [s for s in State if s not in (State.UNKNOWN, State.CLOSED)]


def to_text(highlight: Iterable[State] = ()) -> str:
    """One block per state, fitting 80 columns: ``event / sent  -> NEXT``."""
    marked = set(highlight)
    lines: list[str] = []
    for state in _states():
        star = " *" if state in marked else ""
        lines.append(f"{state}{star}")
        rows = TRANSITIONS[state]
        for key, row in rows.items():
            label = row_label(key, row.send)
            target = "(stays)" if row.next is state else f"-> {row.next}"
            lines.append(f"  {label:<48} {target}"[:80].rstrip())
        lines.append("")
    legend = "client path: " + " > ".join(
        str(s)
        for s in (
            State.SYN_SENT,
            State.ESTABLISHED,
            State.FIN_WAIT1,
            State.FIN_WAIT2,
            State.TIME_WAIT,
            State.CLOSED,
        )
    )
    legend2 = "server path: " + " > ".join(
        str(s)
        for s in (
            State.LISTEN,
            State.SYN_RECV,
            State.ESTABLISHED,
            State.CLOSE_WAIT,
            State.LAST_ACK,
            State.CLOSED,
        )
    )
    return "\n".join([legend, legend2, "", *lines]).rstrip() + "\n"


def _dot_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


#: Box fill per doctor severity (``info``, ``warning``, ``critical``) in dot, Mermaid and HTML.
SEVERITY_FILL: Final = {"info": "#dbe9f6", "warning": "#ffd966", "critical": "#f4a6a6"}


@dataclass(frozen=True, slots=True)
class Overlay:
    """What a live diagram adds to the table's: counts, severities, transitions seen.

    ``severity`` maps a state to ``info``, ``warning`` or ``critical`` (the
    doctor's words; the model does not import the doctor); ``seen`` counts
    transitions observed per (from, to) pair over ``seen_seconds``.
    """

    counts: dict[State, int]
    severity: dict[State, str]
    seen: dict[tuple[State, State], int] | None = None
    seen_seconds: float = 0.0


def to_dot(highlight: Iterable[State] = (), overlay: Overlay | None = None) -> str:
    """Graphviz source; pipe it to ``dot -Tsvg``.

    With an ``overlay`` each box shows its count and is filled by severity,
    and each edge seen during tracing is labelled with how often and drawn
    thicker, so the busy paths stand out.
    """
    marked = set(highlight)
    title = "TCP connection states (tcplens, from the transition table)"
    if overlay is not None:
        title += ", with sockets per state"
        if overlay.seen is not None:
            title += f" and transitions seen in {overlay.seen_seconds:g} s"
    out = [
        "digraph tcp_states {",
        f'  graph [rankdir=TB, fontname="Helvetica", labelloc=t, label="{title}\\n'
        'bold solid: client path   bold dashed: server path"];',
        '  node [shape=box, style="rounded,filled", fillcolor="#f4f4f4", fontname="Helvetica"];',
        '  edge [fontname="Helvetica", fontsize=9];',
    ]
    for state in _states():
        extra = ', fillcolor="#ffd966", penwidth=2' if state in marked else ""
        label = str(state)
        if overlay is not None:
            label += f"\\n{overlay.counts.get(state, 0)}"
            level = overlay.severity.get(state)
            if level in SEVERITY_FILL:
                extra = f', fillcolor="{SEVERITY_FILL[level]}", penwidth=2'
        out.append(f'  "{state}" [label="{label}"{extra}];')
    seen = overlay.seen if overlay is not None else None
    for edge in edges():
        label = "\\l".join(_dot_escape(lab) for lab in edge.labels) + "\\l"
        style = {
            "client": 'style=bold, color="#1f4e79"',
            "server": 'style="bold,dashed", color="#7a1f1f"',
            "other": 'color="#777777"',
        }[edge.path]
        if seen is not None and seen.get((edge.src, edge.dst)):
            times = seen[(edge.src, edge.dst)]
            label += f"seen {times}\\l"
            style += f", penwidth={1 + min(6.0, math.log2(1 + times)):.1f}"
        out.append(f'  "{edge.src}" -> "{edge.dst}" [label="{label}", {style}];')
    out.append("}")
    return "\n".join(out) + "\n"


def to_mermaid(highlight: Iterable[State] = (), overlay: Overlay | None = None) -> str:
    """A Mermaid ``stateDiagram-v2`` (renders on GitHub and in many wikis).

    An ``overlay`` names each state with its count, classes the states by
    severity and adds how often each seen edge was taken to its first label.
    """
    marked = set(highlight)
    out = ["stateDiagram-v2"]
    for state in _states():
        if overlay is not None:
            out.append(f'    state "{state} ({overlay.counts.get(state, 0)})" as {state}')
        else:
            out.append(f"    state {state}")
    out.append("    [*] --> CLOSED")
    seen = overlay.seen if overlay is not None else None
    for edge in edges():
        times = seen.get((edge.src, edge.dst), 0) if seen is not None else 0
        for i, label in enumerate(edge.labels):
            text = label.replace(":", " ")
            if times and i == 0:
                text += f" (seen {times})"
            out.append(f"    {edge.src} --> {edge.dst} : {text}")
    if marked:
        out.append("    classDef highlight fill:#ffd966,stroke:#333,stroke-width:2px")
        for state in sorted(marked, key=list(State).index):
            out.append(f"    class {state} highlight")
    if overlay is not None:
        for level, fill in SEVERITY_FILL.items():
            states = [s for s in _states() if overlay.severity.get(s) == level]
            if states:
                out.append(f"    classDef {level} fill:{fill},stroke:#333,stroke-width:2px")
                out.append(f"    class {','.join(states)} {level}")
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------- the figure
#
# Theory of operation: the classic picture (RFC 793 figure 6, RFC 9293 figure 5)
# has a hand-made layout, and so does this one: where each box sits and the path
# each arrow takes are fixed below (``_BOXES``, ``_ROUTES``).  What is drawn is
# not: an arrow is drawn only for a (from, to) pair that has rows in the table,
# its label is built from those rows, and every row the arrows do not carry is
# listed under the figure, per state, as "resets, aborts and give-ups to CLOSED"
# or "stays in the state".  So a row added to the table shows up without
# touching the layout, and a pair that leaves the table takes its arrow with it.
# Lines are kept as direction bits per cell (up, down, left, right) and turned
# into box-drawing characters at the end, so corners, tees and crossings come
# out right wherever two lines meet; box borders are lines too, so an arrow
# leaving a box makes a tee in its border.  Labels are written into empty cells
# only: an overlap is a layout error, raised, never a silently garbled word.

_UP, _DOWN, _LEFT, _RIGHT = 1, 2, 4, 8
_STEP: Final = {_UP: (0, -1), _DOWN: (0, 1), _LEFT: (-1, 0), _RIGHT: (1, 0)}
_OPPOSITE: Final = {_UP: _DOWN, _DOWN: _UP, _LEFT: _RIGHT, _RIGHT: _LEFT}
_UNICODE_LINES: Final = {
    0: " ",
    _UP: "│",
    _DOWN: "│",
    _UP | _DOWN: "│",
    _LEFT: "─",
    _RIGHT: "─",
    _LEFT | _RIGHT: "─",
    _DOWN | _RIGHT: "┌",
    _DOWN | _LEFT: "┐",
    _UP | _RIGHT: "└",
    _UP | _LEFT: "┘",
    _UP | _DOWN | _RIGHT: "├",
    _UP | _DOWN | _LEFT: "┤",
    _DOWN | _LEFT | _RIGHT: "┬",
    _UP | _LEFT | _RIGHT: "┴",
    _UP | _DOWN | _LEFT | _RIGHT: "┼",
}
_UNICODE_HEADS: Final = {_UP: "▲", _DOWN: "▼", _LEFT: "◀", _RIGHT: "▶"}
_ASCII_HEADS: Final = {_UP: "^", _DOWN: "v", _LEFT: "<", _RIGHT: ">"}

#: Figure width in columns; the figure and the lists under it fit it.
FIGURE_WIDTH: Final = 100
_BOX_W, _BOX_H = 15, 4
_L, _M, _R = 0, 42, FIGURE_WIDTH - _BOX_W  # left, middle and right columns of boxes

#: Where each box sits (left column, top row).  CLOSED is drawn twice, at the top
#: where connections start and at the bottom right where they end, as in RFC 793.
_BOXES: Final[tuple[tuple[State, int, int], ...]] = (
    (State.CLOSED, _M, 0),
    (State.LISTEN, _M, 9),
    (State.SYN_RECV, _L, 18),
    (State.SYN_SENT, _R, 18),
    (State.ESTABLISHED, _M, 28),
    (State.FIN_WAIT1, _L, 38),
    (State.CLOSE_WAIT, _R, 38),
    (State.FIN_WAIT2, _L, 49),
    (State.CLOSING, _M, 49),
    (State.LAST_ACK, _R, 49),
    (State.TIME_WAIT, _M, 59),
    (State.CLOSED, _R, 59),
)


@dataclass(frozen=True, slots=True)
class _Route:
    """An arrow's path: cells from next to the source box to next to the target box."""

    src: State
    dst: State
    points: tuple[tuple[int, int], ...]
    #: where the label's first line starts (column, row); further lines go below
    label_at: tuple[int, int]
    #: rows of this pair left to the lists under the figure (resets and aborts)
    summarised: bool = False
    #: widest label line; a longer label wraps after a comma
    width: int = 40


_MC = _M + _BOX_W // 2  # middle column's centre
_RC = _R + _BOX_W // 2
_LC = _L + _BOX_W // 2

_ROUTES: Final[tuple[_Route, ...]] = (
    _Route(State.CLOSED, State.LISTEN, ((_MC - 3, 4), (_MC - 3, 8)), (_MC - 15, 5)),
    _Route(State.LISTEN, State.CLOSED, ((_MC + 3, 8), (_MC + 3, 4)), (_MC + 5, 5)),
    _Route(State.CLOSED, State.SYN_SENT, ((_M + _BOX_W, 1), (_RC + 3, 1), (_RC + 3, 17)), (64, 0)),
    _Route(
        State.SYN_SENT,
        State.CLOSED,
        ((_RC - 3, 17), (_RC - 3, 2), (_M + _BOX_W, 2)),
        (_RC - 22, 8),
        width=17,
    ),
    _Route(State.LISTEN, State.SYN_RECV, ((_M - 1, 10), (_LC + 3, 10), (_LC + 3, 17)), (14, 9)),
    _Route(
        State.SYN_RECV,
        State.LISTEN,
        ((_LC - 3, 17), (_LC - 3, 11), (_M - 1, 11)),
        (_LC + 5, 13),
    ),
    _Route(State.SYN_SENT, State.SYN_RECV, ((_R - 1, 19), (_L + _BOX_W, 19)), (34, 18)),
    _Route(
        State.SYN_RECV,
        State.ESTABLISHED,
        ((_L + _BOX_W, 20), (_MC - 3, 20), (_MC - 3, 27)),
        (17, 21),
    ),
    _Route(
        State.SYN_SENT,
        State.ESTABLISHED,
        ((_R - 1, 20), (_MC + 3, 20), (_MC + 3, 27)),
        (_MC + 5, 21),
    ),
    _Route(
        State.SYN_RECV, State.FIN_WAIT1, ((_LC - 3, 22), (_LC - 3, 37)), (_LC - 1, 24), width=16
    ),
    _Route(
        State.ESTABLISHED,
        State.FIN_WAIT1,
        ((_M - 1, 30), (_LC + 3, 30), (_LC + 3, 37)),
        (_LC + 5, 29),
    ),
    _Route(
        State.ESTABLISHED,
        State.CLOSE_WAIT,
        ((_M + _BOX_W, 30), (_RC, 30), (_RC, 37)),
        (_MC + 12, 29),
    ),
    _Route(State.FIN_WAIT1, State.FIN_WAIT2, ((_LC, 42), (_LC, 48)), (_LC + 2, 44)),
    _Route(
        State.FIN_WAIT1,
        State.CLOSING,
        ((_L + _BOX_W, 39), (_MC, 39), (_MC, 48)),
        (_L + _BOX_W + 2, 38),
    ),
    _Route(
        State.FIN_WAIT1,
        State.TIME_WAIT,
        ((_L + _BOX_W, 40), (_M - 6, 40), (_M - 6, 60), (_M - 1, 60)),
        (_L + _BOX_W + 2, 41),
    ),
    _Route(
        State.FIN_WAIT2,
        State.TIME_WAIT,
        ((_LC, 53), (_LC, 61), (_M - 1, 61)),
        (_LC + 2, 56),
    ),
    _Route(State.CLOSING, State.TIME_WAIT, ((_MC, 53), (_MC, 58)), (_MC + 2, 54)),
    _Route(State.CLOSE_WAIT, State.LAST_ACK, ((_RC, 42), (_RC, 48)), (_RC - 27, 44)),
    _Route(
        State.LAST_ACK,
        State.CLOSED,
        ((_RC, 53), (_RC, 58)),
        (_RC - 20, 54),
        summarised=True,
    ),
    _Route(
        State.TIME_WAIT,
        State.CLOSED,
        ((_M + _BOX_W, 60), (_R - 1, 60)),
        (_M + _BOX_W + 3, 58),
        summarised=True,
    ),
)

#: Events whose rows into CLOSED are listed per state under the figure, not drawn
#: as arrows (every synchronised state has them; eight more arrows into one box
#: would hide the picture): resets, aborts, give-ups and data after close().
_TEARDOWN_EVENTS: Final = frozenset(
    {Event.RCV_RST, Event.ABORT, Event.TIMEOUT_CONNECT, Event.TIMEOUT_KEEPALIVE}
)


def _event_of(key: Key) -> Event:
    return key[0] if isinstance(key, tuple) else key


def _is_teardown(key: Key) -> bool:
    return _event_of(key) in _TEARDOWN_EVENTS or (
        isinstance(key, tuple) and isinstance(key[1], Closing)
    )


def group_labels(rows: Iterable[tuple[Key, tuple[Flags, ...]]]) -> list[str]:
    """Rows sharing context and segments sent, as one label: ``close, shutdown / FIN+ACK``.

    The inverse is :func:`expand_label`; labels keep table order.
    """
    groups: dict[tuple[str, str], list[str]] = {}
    for key, send in rows:
        context = ""
        if isinstance(key, tuple):
            context = row_label(key, ()).removeprefix(key[0].value).strip()
        sent = ", ".join(format_flags(flags) for flags in send)
        groups.setdefault((context, sent), []).append(_event_of(key).value)
    labels = []
    for (context, sent), events in groups.items():
        text = ", ".join(events) + (f" {context}" if context else "")
        labels.append(f"{text} / {sent}" if sent else text)
    return labels


def expand_label(label: str) -> list[str]:
    """The :func:`row_label` of each row a grouped label stands for."""
    head, slash, sent = label.partition(" / ")
    context = ""
    if head.endswith(")") and " (" in head:
        head, _, rest = head.rpartition(" (")
        context = f" ({rest}"
    tail = f" / {sent}" if slash else ""
    return [f"{event}{context}{tail}" for event in head.split(", ")]


@dataclass(frozen=True, slots=True)
class PlacedLabel:
    """A label line written into the figure, and the pair of states it belongs to."""

    src: State
    dst: State
    text: str
    x: int
    y: int
    #: the whole grouped label this line is part of (a long one wraps after commas)
    label: str


@dataclass(frozen=True, slots=True)
class Figure:
    """The drawn diagram: its lines, and where every box, arrow and label went.

    ``boxes`` lets a view colour a state's box; ``placed``, ``heads`` and
    ``listed`` let a test check every row of the table is in the picture.
    """

    lines: tuple[str, ...]
    boxes: tuple[tuple[State, int, int, int, int], ...]  # state, x, y, width, height
    placed: tuple[PlacedLabel, ...]
    heads: tuple[tuple[State, State, int, int], ...]  # arrowhead cell of each arrow
    #: rows under the figure: (heading, state, grouped label)
    listed: tuple[tuple[str, State, str], ...]

    @property
    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


class LayoutError(ValueError):
    """Two things drawn into the same cell: the hand-made layout needs fixing."""


class _Canvas:
    def __init__(self, width: int, height: int) -> None:
        self.width = width
        self.bits = [[0] * width for _ in range(height)]
        self.chars: list[list[str | None]] = [[None] * width for _ in range(height)]

    def link(self, a: tuple[int, int], b: tuple[int, int]) -> None:
        """Join two neighbouring cells with a line."""
        (ax, ay), (bx, by) = a, b
        way = _RIGHT if bx > ax else _LEFT if bx < ax else _DOWN if by > ay else _UP
        self.bits[ay][ax] |= way
        self.bits[by][bx] |= _OPPOSITE[way]

    def line(self, a: tuple[int, int], b: tuple[int, int]) -> None:
        (ax, ay), (bx, by) = a, b
        if ax != bx and ay != by:
            raise LayoutError(f"route segment {a} -> {b} is not straight")
        dx = (bx > ax) - (bx < ax)
        dy = (by > ay) - (by < ay)
        x, y = ax, ay
        while (x, y) != (bx, by):
            self.link((x, y), (x + dx, y + dy))
            x, y = x + dx, y + dy

    def put(self, x: int, y: int, text: str) -> None:
        if x < 0 or x + len(text) > self.width:
            raise LayoutError(f"{text!r} at column {x} does not fit {self.width} columns")
        for i in range(len(text)):
            if self.chars[y][x + i] is not None or self.bits[y][x + i]:
                raise LayoutError(f"{text!r} at ({x}, {y}) overlaps something drawn")
        for i, char in enumerate(text):
            self.chars[y][x + i] = char

    def render(self, ascii_only: bool) -> list[str]:
        out = []
        for bits_row, chars_row in zip(self.bits, self.chars, strict=True):
            cells = []
            for bits, char in zip(bits_row, chars_row, strict=True):
                if char is not None:
                    cells.append(char)
                elif ascii_only:
                    vertical, horizontal = bits & (_UP | _DOWN), bits & (_LEFT | _RIGHT)
                    cells.append(
                        " "
                        if not bits
                        else "+"
                        if vertical and horizontal
                        else "|"
                        if vertical
                        else "-"
                    )
                else:
                    cells.append(_UNICODE_LINES[bits])
            out.append("".join(cells).rstrip())
        return out


def _box(canvas: _Canvas, x: int, y: int, lines: tuple[str, str]) -> None:
    right, bottom = x + _BOX_W - 1, y + _BOX_H - 1
    canvas.line((x, y), (right, y))
    canvas.line((right, y), (right, bottom))
    canvas.line((right, bottom), (x, bottom))
    canvas.line((x, bottom), (x, y))
    for i, text in enumerate(lines):
        if text:
            canvas.put(x + 1 + (_BOX_W - 2 - len(text)) // 2, y + 1 + i, text)


def _wrap_entries(head: str, entries: list[str], sep: str, width: int) -> list[str]:
    """``head`` then entries joined by ``sep``, continued under the first entry."""
    indent = " " * len(head)
    lines, current = [], head
    for i, entry in enumerate(entries):
        piece = entry if i == 0 else sep + entry
        if i and len(current) + len(piece) > width:
            lines.append(current + sep.rstrip())
            current = indent + entry
        else:
            current += piece
    lines.append(current.rstrip())
    return lines


def figure(
    counts: dict[State, int] | None = None,
    marks: dict[State, str] | None = None,
    *,
    ascii_only: bool = False,
) -> Figure:
    """The state diagram laid out like RFC 793 figure 6, fitting :data:`FIGURE_WIDTH`.

    ``counts`` writes a number in each box (sockets in that state; a state
    left out shows 0); ``marks`` adds a short marker after it (the view's
    severity sign, or ``*`` for a highlighted state).
    """
    rows_by_pair: dict[tuple[State, State], list[tuple[Key, tuple[Flags, ...]]]] = {}
    for state, rows in TRANSITIONS.items():
        for key, row in rows.items():
            rows_by_pair.setdefault((state, row.next), []).append((key, row.send))
    height = max(y for _, _, y in _BOXES) + _BOX_H
    canvas = _Canvas(FIGURE_WIDTH, height)
    boxes = []
    for state, x, y in _BOXES:
        second = f"{counts.get(state, 0)}" if counts is not None else ""
        if marks and marks.get(state):
            second = f"{second} {marks[state]}".strip()
        _box(canvas, x, y, (str(state), second))
        boxes.append((state, x, y, _BOX_W, _BOX_H))
    heads_chars = _ASCII_HEADS if ascii_only else _UNICODE_HEADS
    placed: list[PlacedLabel] = []
    heads: list[tuple[State, State, int, int]] = []
    drawn_rows: set[tuple[State, State, Key]] = set()
    for route in _ROUTES:
        carried = rows_by_pair.get((route.src, route.dst), [])
        if route.summarised:
            carried = [(key, send) for key, send in carried if not _is_teardown(key)]
        if not carried:
            continue
        points = route.points
        # the first cell touches the source box: join it to the border (a tee)
        first = points[0]
        border = _nearest_border(first, route.src)
        canvas.link(border, first)
        for a, b in itertools.pairwise(points):
            canvas.line(a, b)
        last, before = points[-1], points[-2]
        way = (
            _RIGHT
            if last[0] > before[0]
            else _LEFT
            if last[0] < before[0]
            else _DOWN
            if last[1] > before[1]
            else _UP
        )
        canvas.bits[last[1]][last[0]] = 0
        canvas.chars[last[1]][last[0]] = heads_chars[way]
        heads.append((route.src, route.dst, last[0], last[1]))
        lx, ly = route.label_at
        for label in group_labels(carried):
            for text in _wrap_label(label, route.width):
                canvas.put(lx, ly, text)
                placed.append(PlacedLabel(route.src, route.dst, text, lx, ly, label))
                ly += 1
        drawn_rows.update((route.src, route.dst, key) for key, _ in carried)
    lines = canvas.render(ascii_only)
    lines += [
        "",
        "Arrows are labelled event / segments sent, one line per group of rows of the",
        "transition table (tcplens.model.machine.TRANSITIONS); its other rows are listed below.",
    ]
    # Everything the arrows do not carry, per state, in table order.
    sep = "; " if ascii_only else " · "
    arrow = "->" if ascii_only else "→"
    listed: list[tuple[str, State, str]] = []
    sections = (
        ("Resets, aborts and give-ups " + arrow + " CLOSED (not drawn):", "closed"),
        ("Stays in the state (not drawn):", "stays"),
        ("Other transitions (not drawn):", "other"),
    )
    pending: dict[str, list[tuple[State, list[str]]]] = {kind: [] for _, kind in sections}
    for state, rows in TRANSITIONS.items():
        left: dict[str, list[tuple[Key, tuple[Flags, ...]]]] = {}
        others: dict[State, list[tuple[Key, tuple[Flags, ...]]]] = {}
        for key, row in rows.items():
            if (state, row.next, key) in drawn_rows:
                continue
            if row.next is state:
                left.setdefault("stays", []).append((key, row.send))
            elif row.next is State.CLOSED:
                left.setdefault("closed", []).append((key, row.send))
            else:
                others.setdefault(row.next, []).append((key, row.send))
        for kind, kept in left.items():
            pending[kind].append((state, group_labels(kept)))
        for target, kept in others.items():
            pending["other"].append(
                (state, [f"{label} {arrow} {target}" for label in group_labels(kept)])
            )
    name_width = max(len(str(s)) for s in State) + 2
    for heading, kind in sections:
        if not pending[kind]:
            continue
        lines += ["", heading]
        for state, labels in pending[kind]:
            head = f"  {state!s:<{name_width}}"
            lines += _wrap_entries(head, labels, sep, FIGURE_WIDTH)
            listed.extend((kind, state, label) for label in labels)
    return Figure(tuple(lines), tuple(boxes), tuple(placed), tuple(heads), tuple(listed))


def _wrap_label(label: str, width: int) -> list[str]:
    """Lines of at most ``width`` (where words allow), broken after the commas between events."""
    pieces = label.split(", ")
    lines = [pieces[0]]
    for piece in pieces[1:]:
        if len(lines[-1]) + 2 + len(piece) <= width:
            lines[-1] += ", " + piece
        else:
            lines[-1] += ","
            lines.append(piece)
    return lines


def _nearest_border(cell: tuple[int, int], state: State) -> tuple[int, int]:
    """The border cell of ``state``'s box next to ``cell`` (where an arrow leaves it)."""
    x, y = cell
    for box_state, bx, by in _BOXES:
        if box_state is not state:
            continue
        for nx, ny in ((x - 1, y), (x + 1, y), (x, y - 1), (x, y + 1)):
            on_edge = nx in (bx, bx + _BOX_W - 1) and by <= ny < by + _BOX_H
            on_edge |= ny in (by, by + _BOX_H - 1) and bx <= nx < bx + _BOX_W
            if on_edge:
                return (nx, ny)
    raise LayoutError(f"route from {state} does not start next to its box at {cell}")
