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
from typing import Literal

from tcplens.model.scenarios import Step
from tcplens.model.states import State

__all__ = ["LadderRow", "render_ladder", "rows_from_steps"]

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
