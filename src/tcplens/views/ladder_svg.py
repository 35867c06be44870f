"""Ladder charts as SVG images, from the same rows as the text ladder.

``tcplens simulate NAME --format svg``, ``tcplens pcap FILE --flow N --format
svg`` and the HTML report draw with :func:`ladder_svg`: two timelines, each
segment an arrow labelled with its flags and seq/ack, a state box on a
timeline wherever that side's state changes, and, when the two sides' FINs
cross (a side passes CLOSING, the one way to get there), both FIN arrows
drawn as an X with the crossing marked.  Hand-written SVG (no dependency,
a few kilobytes per connection), readable at 100 % zoom: 13 px text, one
row per line of the text ladder.

The rows are :class:`tcplens.views.ladder.LadderRow` values, built by the
callers that already build them for the text ladder; this module only draws.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

from tcplens.model.states import State
from tcplens.views.ladder import LadderRow

__all__ = ["find_fin_crossing", "ladder_svg"]

_ROW_H = 30
_TOP = 78
_X_TIME = 8
_X_LEFT = 220
_X_RIGHT = 640
_BOX_W = 118
_NOTE_X = _X_RIGHT + _BOX_W + 22
_WIDTH = 1240
_CHAR_W = 7.2  # px per character of 12 px monospace, for fitting text

#: box fill per state: opening blue, established green, closing amber, waiting grey
_STATE_FILL = {
    State.LISTEN: "#dbe9f6",
    State.SYN_SENT: "#dbe9f6",
    State.SYN_RECV: "#dbe9f6",
    State.ESTABLISHED: "#d9f2d9",
    State.FIN_WAIT1: "#fde9c8",
    State.FIN_WAIT2: "#fde9c8",
    State.CLOSE_WAIT: "#fde9c8",
    State.CLOSING: "#fbd3a5",
    State.LAST_ACK: "#fde9c8",
    State.TIME_WAIT: "#e6e6e6",
    State.CLOSED: "#f4f4f4",
}
#: arrow colour by the strongest flag in its label
_ARROW = (("RST", "#c0392b"), ("SYN", "#1f4e79"), ("FIN", "#b9770e"))
_PLAIN_ARROW = "#555555"


@dataclass(frozen=True, slots=True)
class Crossing:
    """Two FIN arrows, one each way, that were in flight at the same time."""

    right: int  # row index of the FIN going left to right
    left: int  # row index of the FIN going right to left


def _has_fin(row: LadderRow) -> bool:
    return row.direction is not None and "FIN" in row.label.split(" ", 1)[0]


def find_fin_crossing(rows: Sequence[LadderRow]) -> Crossing | None:
    """The first pair of FINs that crossed, if any.

    Each side has sent its FIN before the other's reached it exactly when a
    side enters CLOSING (RFC 9293 figure 5: FIN_WAIT1 + FIN), so the FINs
    that crossed are the last one each way delivered up to that row.
    """
    for index, row in enumerate(rows):
        entered = (row.left_changed and row.left == State.CLOSING) or (
            row.right_changed and row.right == State.CLOSING
        )
        if not entered:
            continue
        ahead = [i for i in range(len(rows)) if _has_fin(rows[i])]
        right = [i for i in ahead if rows[i].direction == "->" and i <= index + 1]
        left = [i for i in ahead if rows[i].direction == "<-" and i <= index + 1]
        if right and left:
            # the FIN that reached the CLOSING side last, and the other side's FIN nearest it
            first, second = right[-1], left[-1]
            if abs(first - second) > 3:  # one of them is not the crossing partner
                return None
            return Crossing(first, second)
    return None


def _colour(label: str) -> str:
    flags = label.split(" ", 1)[0]
    for flag, colour in _ARROW:
        if flag in flags.split("+"):
            return colour
    return _PLAIN_ARROW


def _text(x: float, y: float, text: str, **attrs: str) -> str:
    extra = "".join(f' {k.replace("_", "-")}="{v}"' for k, v in attrs.items())
    return f'<text x="{x:.0f}" y="{y:.0f}"{extra}>{escape(text)}</text>'


def _fit(text: str, width: float) -> str:
    most = int(width / _CHAR_W)
    return text if len(text) <= most else text[: max(1, most - 1)] + "…"


def _box(x: float, y: float, state: str, anchor_right: bool) -> list[str]:
    left = x - _BOX_W if anchor_right else x
    fill = _STATE_FILL.get(State(state), "#ffffff") if state in State.__members__ else "#ffffff"
    return [
        f'<rect class="state" x="{left:.0f}" y="{y - 11:.0f}" width="{_BOX_W}" height="20" '
        f'rx="5" fill="{fill}" stroke="#444"/>',
        _text(left + _BOX_W / 2, y + 4, _fit(state, _BOX_W - 6), text_anchor="middle"),
    ]


def ladder_svg(
    rows: Sequence[LadderRow],
    *,
    left_title: str = "client",
    right_title: str = "server",
    title: str = "",
    time_format: str = "{:.3f}",
) -> str:
    """A standalone SVG document of the ladder (valid XML; inline it or save it)."""
    crossing = find_fin_crossing(rows)
    height = _TOP + _ROW_H * len(rows) + 20
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_WIDTH}" height="{height}" '
        f'viewBox="0 0 {_WIDTH} {height}" font-family="DejaVu Sans Mono, monospace" '
        'font-size="12" class="ladder">',
        "<defs>",
        *(
            f'<marker id="head-{name}" markerWidth="10" markerHeight="8" refX="9" refY="4" '
            f'orient="auto"><path d="M0,0 L10,4 L0,8 z" fill="{colour}"/></marker>'
            for name, colour in (*_ARROW, ("plain", _PLAIN_ARROW))
        ),
        "</defs>",
        f'<rect width="{_WIDTH}" height="{height}" fill="white"/>',
    ]
    if title:
        out.append(_text(_X_TIME, 20, _fit(title, _WIDTH - 16), font_weight="bold"))
    for x, name, anchor in ((_X_LEFT, left_title, "end"), (_X_RIGHT, right_title, "start")):
        out.append(_text(x, 50, _fit(name, 360), text_anchor=anchor, font_weight="bold"))
        out.append(
            f'<line x1="{x}" y1="{_TOP - 16}" x2="{x}" y2="{height - 8}" '
            'stroke="#888" stroke-width="2"/>'
        )
    crossed = {crossing.right, crossing.left} if crossing is not None else set()
    for i, row in enumerate(rows):
        y = _TOP + i * _ROW_H
        out.append(_text(_X_TIME, y + 4, time_format.format(row.time), fill="#666"))
        if row.left_changed:
            out += _box(_X_LEFT - 6, y, row.left, anchor_right=True)
        if row.right_changed:
            out += _box(_X_RIGHT + 6, y, row.right, anchor_right=False)
        if row.note:
            out.append(_text(_NOTE_X, y + 4, _fit(row.note, _WIDTH - _NOTE_X - 6), fill="#444"))
        if row.direction is None:
            continue
        colour = _colour(row.label)
        marker = next((n for n, c in _ARROW if c == colour), "plain")
        start, end = (_X_LEFT, _X_RIGHT) if row.direction == "->" else (_X_RIGHT, _X_LEFT)
        y_end = float(y)
        y_start = y - _ROW_H * 0.7
        if i in crossed:
            # an X: both FINs leave before either arrives, each arrives on its own row
            y_start = _TOP + min(crossed) * _ROW_H - _ROW_H * 0.7
        if row.lost:
            end = (start + end) // 2
        dash = ' stroke-dasharray="6,4"' if row.lost else ""
        out.append(
            f'<line class="segment" x1="{start}" y1="{y_start:.0f}" x2="{end}" y2="{y_end:.0f}" '
            f'stroke="{colour}" stroke-width="1.6" marker-end="url(#head-{marker})"{dash}/>'
        )
        if row.lost:
            out.append(_text(end, y_end + 5, "✕", text_anchor="middle", fill="#c0392b"))
        mid_x = (_X_LEFT + _X_RIGHT) / 2
        label_y = (y_start + y_end) / 2 - 5
        if i in crossed:
            # away from the crossing: the first FIN's label over its start (upper left),
            # the second's near the right end of the lower row, under the first's head
            if row.direction == "->":
                mid_x, label_y = _X_LEFT + 90, y_start - 4
            else:
                mid_x, label_y = _X_RIGHT - 110, y_end - 6
        out.append(
            _text(
                mid_x,
                label_y,
                _fit(row.label, _X_RIGHT - _X_LEFT - 20),
                text_anchor="middle",
                fill=colour,
                paint_order="stroke",
                stroke="white",
                stroke_width="4",
            )
        )
    if crossing is not None:
        # where the two lines meet: (start, y0) -> (end, y_a) and (end, y0) -> (start, y_b)
        y0 = _TOP + min(crossed) * _ROW_H - _ROW_H * 0.7
        ya, yb = _TOP + crossing.right * _ROW_H, _TOP + crossing.left * _ROW_H
        t = (yb - y0) / ((ya - y0) + (yb - y0))
        cx = _X_LEFT + t * (_X_RIGHT - _X_LEFT)
        cy = y0 + t * (ya - y0)
        out.append(
            f'<circle class="crossing" cx="{cx:.0f}" cy="{cy:.0f}" r="9" fill="none" '
            'stroke="#b9770e" stroke-width="2"/>'
        )
        out.append(
            _text(cx, cy - 14, "FINs cross", text_anchor="middle", fill="#b9770e",
                  font_weight="bold", paint_order="stroke", stroke="white", stroke_width="4")
        )  # fmt: skip
    out.append("</svg>")
    return "\n".join(out) + "\n"
