"""Ladder charts: two endpoints as columns, each segment as an arrow between them.

One renderer for simulations (``tcplens simulate``), captures (``tcplens pcap
--flow``) and the lab, so the pictures users learn from the model look the
same as the ones drawn from their own traffic.  Callers build
:class:`LadderRow` values; :func:`rows_from_steps` does that for the model's
:class:`~tcplens.model.scenarios.Step`.

A state name is printed in its column only on the row where it changes, and a
``│`` otherwise, so the eye follows each side's timeline down the page.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from html import escape
from typing import Literal

from tcplens.model.scenarios import Step
from tcplens.model.states import State

__all__ = ["LadderRow", "render_ladder", "render_ladder_svg", "rows_from_steps"]

Direction = Literal["->", "<-"]


@dataclass(frozen=True, slots=True)
class LadderRow:
    """One line of a ladder: an optional arrow and both sides' states after it.

    ``left``/``right`` are state names (or any short text such as
    ``"cannot tell"``); ``left_changed``/``right_changed`` say whether to
    print them on this row.  ``lost`` draws the arrow ending in ✕.
    """

    time: float
    left: str
    right: str
    direction: Direction | None = None
    label: str = ""
    note: str = ""
    lost: bool = False
    left_changed: bool = False
    right_changed: bool = False
    sent_at: float | None = None


def rows_from_steps(steps: Iterable[Step], initial: tuple[State, State]) -> list[LadderRow]:
    """Turn a simulation's steps into ladder rows (the first row shows the start)."""
    rows = [
        LadderRow(
            0.0,
            str(initial[0]),
            str(initial[1]),
            note="start",
            left_changed=True,
            right_changed=True,
        )
    ]
    for step in steps:
        if step.kind == "delay":
            continue
        label = str(step.segment) if step.segment is not None else ""
        note = step.action if step.kind in ("call", "timer", "wait") else step.note
        if step.kind == "deliver" and not step.changed and step.note:
            note = step.note
        rows.append(
            LadderRow(
                time=step.time,
                left=str(step.client),
                right=str(step.server),
                direction=step.direction if step.kind in ("deliver", "drop") else None,
                label=label,
                note=note,
                lost=step.kind == "drop",
                left_changed="client" in step.changed,
                right_changed="server" in step.changed,
                sent_at=step.sent_at,
            )
        )
    return rows


def _arrow(row: LadderRow, width: int) -> str:
    if row.direction is None:
        return " " * width
    label = f" {row.label} " if row.label else ""
    room = max(width - len(label) - 2, 2)
    left_dash = room // 2
    right_dash = room - left_dash
    if row.direction == "->":
        head = "✕" if row.lost else "▶"
        return "─" * left_dash + label + "─" * right_dash + head + " "
    head = "✕" if row.lost else "◀"
    return " " + head + "─" * left_dash + label + "─" * right_dash


def render_ladder(
    rows: Sequence[LadderRow],
    *,
    left_title: str = "client",
    right_title: str = "server",
    width: int = 80,
    show_time: bool = True,
    time_format: str = "{:8.3f}",
) -> str:
    """Render rows as plain text that fits ``width`` columns (notes wrap under)."""
    col = max(12, max((len(r.left) for r in rows), default=0), len(left_title))
    rcol = max(12, max((len(r.right) for r in rows), default=0), len(right_title))
    tcol = len(time_format.format(0.0)) if show_time else 0
    longest_label = max((len(r.label) for r in rows), default=0) + 6
    arrow_w = max(24, min(longest_label, width - tcol - col - rcol - 6))
    lines = []
    head = (" " * (tcol + 1) if show_time else "") + left_title.ljust(col) + " "
    lines.append(head + " " * arrow_w + " " + right_title)
    for row in rows:
        time = (time_format.format(row.time) + " ") if show_time else ""
        left = row.left if row.left_changed else "│"
        right = row.right if row.right_changed else "│"
        text = time + left.ljust(col) + " " + _arrow(row, arrow_w) + " " + right.ljust(rcol)
        if row.note:
            if len(text) + 2 + len(row.note) <= width:
                text += "  " + row.note
            else:
                lines.append(text.rstrip())
                text = " " * (tcol + col + 1) + "  " + row.note
        lines.append(text.rstrip())
    return "\n".join(lines) + "\n"


def render_ladder_svg(
    rows: Sequence[LadderRow], *, left_title: str = "client", right_title: str = "server"
) -> str:
    """A standalone SVG ladder: two timelines, slanted arrows, states at changes."""
    row_h = 34
    x_left, x_right, width = 190, 610, 980
    top = 70
    height = top + row_h * (len(rows) + 1)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="monospace" font-size="13">',
        '<defs><marker id="head" markerWidth="10" markerHeight="8" refX="9" refY="4" '
        'orient="auto"><path d="M0,0 L10,4 L0,8 z" fill="#1f4e79"/></marker></defs>',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{x_left}" y="30" text-anchor="middle" font-weight="bold">'
        f"{escape(left_title)}</text>",
        f'<text x="{x_right}" y="30" text-anchor="middle" font-weight="bold">'
        f"{escape(right_title)}</text>",
        f'<line x1="{x_left}" y1="{top - 20}" x2="{x_left}" y2="{height - 10}" stroke="#888"/>',
        f'<line x1="{x_right}" y1="{top - 20}" x2="{x_right}" y2="{height - 10}" stroke="#888"/>',
    ]
    for i, row in enumerate(rows):
        y = top + i * row_h
        out.append(f'<text x="10" y="{y + 4}" fill="#666">{row.time:.3f}</text>')
        if row.left_changed:
            out.append(
                f'<text x="{x_left - 12}" y="{y + 4}" text-anchor="end" fill="#7a1f1f">'
                f"{escape(row.left)}</text>"
            )
        if row.right_changed:
            out.append(
                f'<text x="{x_right + 12}" y="{y + 4}" fill="#7a1f1f">{escape(row.right)}</text>'
            )
        if row.direction is not None:
            x1, x2 = (x_left, x_right) if row.direction == "->" else (x_right, x_left)
            y1 = y - row_h * 0.6
            if row.lost:
                x2 = (x1 + x2) // 2
            dash = ' stroke-dasharray="6,4"' if row.lost else ""
            out.append(
                f'<line x1="{x1}" y1="{y1:.0f}" x2="{x2}" y2="{y}" stroke="#1f4e79" '
                f'stroke-width="1.5" marker-end="url(#head)"{dash}/>'
            )
            if row.lost:
                out.append(
                    f'<text x="{x2}" y="{y + 5}" text-anchor="middle" fill="red" '
                    f'font-size="16">✕</text>'
                )
            mid = (x_left + x_right) // 2
            out.append(
                f'<text x="{mid}" y="{y1 + 10:.0f}" text-anchor="middle" fill="#1f4e79">'
                f"{escape(row.label)}</text>"
            )
        if row.note:
            out.append(
                f'<text x="{x_right + 130}" y="{y + 4}" fill="#444" font-size="11">'
                f"{escape(row.note)}</text>"
            )
    out.append("</svg>")
    return "\n".join(out) + "\n"
