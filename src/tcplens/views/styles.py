"""State colours, and styled lines that need rich only when a terminal shows them.

Why not rich's ``Text`` everywhere: importing rich costs ~20 ms, paid by
every ``tcplens status`` even when its output goes to a pipe, where the
styles are dropped anyway.  A :class:`Line` records the same spans and
becomes a ``Text`` only in :func:`emit` on a terminal.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import TYPE_CHECKING, Final

from tcplens.model.states import State

if TYPE_CHECKING:
    from rich.text import Text

__all__ = ["STATE_STYLES", "Line", "emit"]

#: colours by state: green is healthy-and-waiting, red needs an application's attention
STATE_STYLES: Final = {
    State.LISTEN: "green",
    State.ESTABLISHED: "bold",
    State.SYN_SENT: "cyan",
    State.SYN_RECV: "cyan",
    State.FIN_WAIT1: "magenta",
    State.FIN_WAIT2: "magenta",
    State.CLOSE_WAIT: "bold red",
    State.CLOSING: "magenta",
    State.LAST_ACK: "yellow",
    State.TIME_WAIT: "dim",
    State.CLOSED: "blue",
    State.UNKNOWN: "red",
}


class Line:
    """A line of text and the styles of its spans (the part of rich's ``Text`` we use)."""

    __slots__ = ("plain", "spans", "style")

    def __init__(self, text: str = "", style: str = "") -> None:
        self.plain = text
        self.style = style
        self.spans: list[tuple[int, int, str]] = []

    def append(self, text: str, style: str = "") -> Line:
        start = len(self.plain)
        self.plain += text
        if style:
            self.spans.append((start, len(self.plain), style))
        return self

    def stylize(self, style: str, start: int, end: int) -> None:
        if style:
            self.spans.append((start, end, style))

    def __str__(self) -> str:
        return self.plain

    def to_rich(self) -> Text:
        from rich.text import Text

        text = Text(self.plain, style=self.style)
        for start, end, style in self.spans:
            text.stylize(style, start, end)
        return text


def emit(lines: Iterable[Line | Text]) -> None:
    """Print the lines: styled through rich on a terminal, plain text otherwise."""
    if sys.stdout.isatty():
        from tcplens.views.console import Console

        console = Console(highlight=False, soft_wrap=True)
        for line in lines:
            console.print(line.to_rich() if isinstance(line, Line) else line)
        return
    out = sys.stdout
    out.write("".join(f"{line}\n" for line in lines))
    out.flush()
