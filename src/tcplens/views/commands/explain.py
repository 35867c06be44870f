"""``tcplens explain [STATE]``: what a TCP state means and what to do about it.

The texts live in :mod:`tcplens.model.explain`; this module only parses the
arguments, picks the language and renders.  In a terminal an explanation is
a rich panel; piped, the same sections come out as plain wrapped text (no
colour, no box drawing, no trailing spaces) and the overview is one line per
state, so ``tcplens explain | grep WAIT`` works.  ``--json`` is a versioned
contract: bump :data:`JSON_VERSION` when a key changes meaning or goes away.

Line breaking is our own (:func:`wrap`) because rich breaks only at spaces:
a Chinese sentence is one long "word" to it, so ``socket 在本地…`` would leave
``socket`` alone on a line.  Ours may break between any two Chinese
characters, never before closing punctuation (``，。）``) or after opening
punctuation (``（“``), and keeps Latin words whole.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from collections.abc import Iterator
from typing import Final

import click
from rich import box
from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.measure import Measurement
from rich.padding import Padding
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from tcplens.model.explain import LABELS, LANGS, Explanation, explain, pick_lang
from tcplens.model.states import State

__all__ = ["JSON_VERSION", "command", "render_plain", "render_plain_overview", "wrap"]

#: bump when a key changes meaning or disappears (adding keys keeps the version)
JSON_VERSION: Final = 1

#: widest output; wider terminals still get lines that are easy to read
_MAX_WIDTH: Final = 100
_INDENT: Final = "    "
#: narrower terminals get each label above its text instead of beside it
_SIDE_BY_SIDE: Final = 72

# A unit is a whitespace run, one wide (CJK) character or curly quote, or a run of
# other characters; the quotes are units of their own so that they glue to their
# neighbour instead of joining a Latin word into a chain.
_UNIT: Final = re.compile(r"\s+|[\u2e80-\uffff\u201c\u201d]|[^\s\u2e80-\uffff\u201c\u201d]+")
_CLOSING: Final = frozenset("\uff0c\u3002\uff1a\uff1b\u3001\uff09\uff01\uff1f\u201d\u300b")
_OPENING: Final = frozenset("\uff08\u201c\u300a")


def _units(paragraph: str) -> list[str]:
    """Unbreakable pieces: closing punctuation sticks to what precedes it,
    opening punctuation to what follows it."""
    merged: list[str] = []
    glue_next = False
    for unit in _UNIT.findall(paragraph):
        if unit.isspace():
            merged.append(" ")
            glue_next = False
            continue
        if merged and not merged[-1].isspace() and (glue_next or unit[0] in _CLOSING):
            merged[-1] += unit
        else:
            merged.append(unit)
        glue_next = unit[-1] in _OPENING
    return merged


def wrap(text: str, width: int, first: str = "", rest: str = "") -> list[str]:
    """Break ``text`` into lines of at most ``width`` cells (a longer word overflows).

    ``first`` prefixes the first line and ``rest`` the others (a bullet and its
    hanging indent); a newline in ``text`` starts a new paragraph.
    """
    lines: list[str] = []
    for paragraph in text.split("\n"):
        prefix = first if not lines else rest
        line, used, space = prefix, cell_len(prefix), False
        empty = True
        for unit in _units(paragraph):
            if unit == " ":
                space = not empty
                continue
            need = cell_len(unit) + (1 if space else 0)
            if not empty and used + need > width:
                lines.append(line)
                line, used = rest + unit, cell_len(rest) + cell_len(unit)
            else:
                if space:
                    line += " "
                line += unit
                used += need
            empty, space = False, False
        lines.append(line)
    return lines


class _Wrapped:
    """Text that rich lays out with :func:`wrap` at whatever width it is given."""

    def __init__(self, text: str, style: str = "", first: str = "", rest: str = "") -> None:
        self.text, self.style, self.first, self.rest = text, style, first, rest

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        for line in wrap(self.text, options.max_width, self.first, self.rest):
            yield Text(line, style=self.style, no_wrap=True, overflow="fold")

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        longest = max(cell_len(self.first + p) for p in self.text.split("\n"))
        return Measurement(min(20, longest), longest)


def _section_texts(exp: Explanation) -> Iterator[tuple[str, str]]:
    labels = LABELS[exp.lang]
    for key in ("meaning", "side", "how_reached", "duration", "trouble"):
        yield labels[key], getattr(exp, key)


def _spellings(exp: Explanation) -> list[tuple[str, str]]:
    return [(tool, ", ".join(names)) for tool, names in exp.spellings.items()]


# --------------------------------------------------------------------------
# Plain text (piped)


def render_plain(exp: Explanation, width: int) -> str:
    """The explanation as headed, indented sections wrapped to ``width``."""
    labels = LABELS[exp.lang]
    body = width - len(_INDENT)
    out = wrap(f"{exp.state.value} — {exp.title}", width)
    for label, text in _section_texts(exp):
        out += ["", label, *wrap(text, body, _INDENT, _INDENT)]
    out += ["", labels["advice"]]
    for item in exp.advice:
        out += wrap(item, body, _INDENT + "- ", _INDENT + "  ")
    out += ["", labels["inspect"], *(_INDENT + cmd for cmd in exp.inspect)]
    out += ["", labels["spellings"]]
    rows = _spellings(exp)
    tool_w = max(len(tool) for tool, _ in rows)
    out += [f"{_INDENT}{tool:<{tool_w}}  {names}" for tool, names in rows]
    return "\n".join(line.rstrip() for line in out)


def render_plain_overview(lang: str) -> str:
    """One line per state (name, meaning, hint), aligned, never wrapped: grep-friendly."""
    rows = [explain(state, lang) for state in State]
    name_w = max(len(exp.state.value) for exp in rows)
    summary_w = max(cell_len(exp.summary) for exp in rows)
    return "\n".join(
        f"{exp.state.value:<{name_w}}  {exp.summary}"
        + " " * (summary_w - cell_len(exp.summary))
        + f"  {exp.hint}"
        for exp in rows
    )


# --------------------------------------------------------------------------
# Terminal (rich)


def _rich_state(exp: Explanation, width: int) -> RenderableType:
    """A panel: labels beside the texts, or above them when the terminal is narrow."""
    labels = LABELS[exp.lang]
    spellings = Table.grid(padding=(0, 2))
    spellings.add_column(style="dim", no_wrap=True)
    spellings.add_column()
    for tool, names in _spellings(exp):
        spellings.add_row(tool, names)
    sections: list[tuple[str, RenderableType]] = [
        (label, _Wrapped(text, "yellow" if label == labels["trouble"] else ""))
        for label, text in _section_texts(exp)
    ]
    sections += [
        (labels["advice"], Group(*(_Wrapped(a, "", "• ", "  ") for a in exp.advice))),
        (labels["inspect"], Text("\n".join(exp.inspect), style="green")),
        (labels["spellings"], spellings),
    ]
    body: RenderableType
    if width < _SIDE_BY_SIDE:
        parts: list[RenderableType] = []
        for label, renderable in sections:
            if parts:
                parts.append(Text(""))
            parts += [Text(label, style="bold"), Padding(renderable, (0, 0, 0, 2))]
        body = Group(*parts)
    else:
        grid = Table.grid(padding=(0, 2), expand=True)
        grid.add_column(style="bold", no_wrap=True)
        grid.add_column(ratio=1)
        for i, (label, renderable) in enumerate(sections):
            if i:
                grid.add_row("", "")
            grid.add_row(label, renderable)
        body = grid
    title = Text.assemble((exp.state.value, "bold cyan"), " — ", exp.title)
    code = exp.state.kernel_code
    subtitle = f"{labels['kernel_code']} {code:02X}" if code is not None else None
    return Panel(body, title=title, subtitle=subtitle, box=box.ROUNDED, padding=(1, 1))


def _rich_overview(lang: str) -> RenderableType:
    labels = LABELS[lang]
    table = Table(
        title=labels["overview_title"],
        caption=labels["overview_footer"],
        box=box.SIMPLE_HEAVY,
        header_style="bold",
    )
    table.add_column(labels["state"], style="bold cyan", no_wrap=True)
    table.add_column(labels["summary"], ratio=3)
    table.add_column(labels["hint"], ratio=2)
    for state in State:
        exp = explain(state, lang)
        table.add_row(exp.state.value, _Wrapped(exp.summary), _Wrapped(exp.hint, "dim"))
    return table


def _width() -> int:
    return min(shutil.get_terminal_size((80, 24)).columns, _MAX_WIDTH)


def _to_json(exps: list[Explanation], lang: str, single: bool) -> str:
    if single:
        doc: dict[str, object] = {"version": JSON_VERSION, **exps[0].as_dict()}
    else:
        doc = {"version": JSON_VERSION, "lang": lang, "states": [e.as_dict() for e in exps]}
    return json.dumps(doc, ensure_ascii=False, indent=2)


@click.command(
    "explain",
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
# nargs=-1: `explain close wait` unquoted is one state written with a space
@click.argument("words", nargs=-1, metavar="[STATE]")
@click.option(
    "--lang",
    type=click.Choice(LANGS, case_sensitive=False),
    default=None,
    help="Language of the texts (default: from LC_ALL / LC_MESSAGES / LANG; zh* means "
    "Chinese, anything else English).",
)
@click.option("--json", "as_json", is_flag=True, help="JSON (versioned) instead of text.")
def command(words: tuple[str, ...], lang: str | None, as_json: bool) -> None:
    """Explain a TCP state: what it means, which side gets there and how, how long
    it lasts, when many of them mean trouble, and what to do.

    STATE may be written the way any tool prints it: netstat (CLOSE_WAIT), ss
    (close-wait, ESTAB), Windows (LISTENING), BSD (SYN_RCVD), the RFC (SYN-RECEIVED)
    or a /proc/net/tcp code (08), quoted or not (close wait). Without STATE, lists
    every state.

    \b
    Example: tcplens explain close-wait
    Example: tcplens explain 08
    Example: tcplens explain LISTENING --lang zh
    Example: tcplens explain --json TIME_WAIT
    """
    chosen = pick_lang(lang, os.environ)
    state = " ".join(words) if words else None
    # Parse before printing anything: an unknown spelling raises
    # UnknownStateError, which the CLI prints as one line with suggestions.
    states = [State.parse(state)] if state is not None else list(State)
    exps = [explain(s, chosen) for s in states]
    if as_json:
        click.echo(_to_json(exps, chosen, single=state is not None))
    elif not sys.stdout.isatty():
        if state is None:
            click.echo(render_plain_overview(chosen))
        else:
            click.echo(render_plain(exps[0], _width()))
    else:
        console = Console(highlight=False, width=min(shutil.get_terminal_size().columns, 120))
        if state is None:
            console.print(_rich_overview(chosen))
        else:
            console.print(_rich_state(exps[0], console.width))
