"""``tcplens diagram``: the state diagram as a drawing, Graphviz dot, Mermaid or SVG.

The model draws (:func:`tcplens.model.diagram.figure`, ``to_dot``,
``to_mermaid``); this module only chooses what to put on it: with ``--live``
or ``--from`` the sockets per state and the doctor's severities
(:mod:`tcplens.views.live_map`), with ``--duration`` the transitions traced.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from typing import TYPE_CHECKING

import click

from tcplens.errors import TcplensError
from tcplens.model.diagram import Figure, Overlay, figure, to_dot, to_mermaid, to_text
from tcplens.model.states import State
from tcplens.model.words import plural

if TYPE_CHECKING:
    from tcplens.views.live_map import LiveMap

#: rich style of a box per severity on a terminal
_BOX_STYLE = {"info": "cyan", "warning": "bold yellow", "critical": "bold red"}


def svg_from_dot(dot_source: str) -> str:
    """Graphviz's rendering of ``dot_source`` (the report inlines it too)."""
    dot = shutil.which("dot")
    if dot is None:
        raise TcplensError(
            "SVG needs Graphviz's 'dot' (apt-get install graphviz, or scripts/install-system-deps)"
        )
    done = subprocess.run(
        [dot, "-Tsvg"], input=dot_source, capture_output=True, text=True, check=False, timeout=60
    )
    if done.returncode != 0:
        raise TcplensError(f"dot failed: {done.stderr.strip().splitlines()[-1:]}")
    return done.stdout


def _take(
    live: bool, from_file: str | None, from_format: str | None, duration: float | None
) -> LiveMap:
    from tcplens.views.live_map import live_map, seen_transitions, snapshot_for

    snapshot = snapshot_for(from_file, from_format)
    placed = live_map(snapshot, live=live)
    if duration is None:
        return placed
    seen = seen_transitions(duration)
    overlay = Overlay(placed.overlay.counts, placed.overlay.severity, seen, duration)
    return type(placed)(overlay, placed.summary, placed.findings, placed.settings)


def _legend(placed: LiveMap, *, ascii_only: bool) -> list[str]:
    """Where the counts come from, and the findings behind each coloured box."""
    s = placed.summary
    where = s.host or "this host"
    lines = [
        "",
        f"Counts: TCP sockets per state on {where} ({s.source}).",
        "Boxes marked '!' have a warning, '!!' a critical finding (tcplens doctor):",
    ]
    unknown = s.tcp_states.get(State.UNKNOWN, 0)
    if unknown:
        lines.append(f"  ({plural(unknown, 'socket')} in a state the source could not name)")
    lines.extend(f"  ({note})" for note in s.missing)
    for finding in placed.findings[:8]:
        if finding.severity.value == "info":
            continue
        about = f"{finding.state}: " if finding.state is not None else ""
        lines.append(f"  {finding.severity.value}: {about}{finding.title.get('en')}")
    seen = placed.overlay.seen
    if seen is not None:
        arrow = "->" if ascii_only else "→"
        total = sum(seen.values())
        lines.append(
            f"Transitions seen in {placed.overlay.seen_seconds:g} s (kernel tracepoints): "
            + (
                ", ".join(
                    f"{a} {arrow} {b} {n}"
                    for (a, b), n in sorted(seen.items(), key=lambda kv: -kv[1])
                )
                if total
                else "none"
            )
        )
    return lines


def _print_figure(fig: Figure, placed: LiveMap | None, extra: list[str]) -> None:
    if not sys.stdout.isatty() or placed is None:
        click.echo("\n".join([*fig.lines, *extra]))
        return
    from rich.text import Text

    from tcplens.views.console import Console

    console = Console(highlight=False, soft_wrap=True)
    texts = [Text(line) for line in fig.lines]
    for state, x, y, width, height in fig.boxes:
        style = _BOX_STYLE.get(placed.overlay.severity.get(state, ""))
        if style:
            for row in range(y, y + height):
                texts[row].stylize(style, x, x + width)
    for text in texts:
        console.print(text)
    for line in extra:
        console.print(line, markup=False)


@click.command(name="diagram")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "list", "dot", "mermaid", "svg"]),
    default="text",
    show_default=True,
    help="text draws the diagram in 100 columns; list prints every row per state; "
    "dot and mermaid are sources; svg runs Graphviz.",
)
@click.option("--ascii", "ascii_only", is_flag=True, help="text: ASCII instead of box drawing.")
@click.option(
    "--highlight",
    multiple=True,
    metavar="STATE",
    help="Mark a state (any spelling; repeatable).",
)
@click.option("--live", is_flag=True, help="Put this machine's sockets on the diagram.")
@click.option(
    "--from",
    "from_file",
    metavar="FILE",
    default=None,
    help="Put the sockets of saved netstat, ss or /proc/net text on the diagram ('-' = stdin).",
)
@click.option(
    "--from-format",
    default=None,
    metavar="NAME",
    help="Format of --from FILE (default: detect; the names 'tcplens ls --format' takes).",
)
@click.option(
    "--duration",
    type=click.FloatRange(min=0.1, max=3600),
    default=None,
    metavar="SECONDS",
    help="With --live: also trace every transition for this long (kernel tracepoints, root) "
    "and weight each edge by how often it was taken.",
)
def command(
    fmt: str,
    ascii_only: bool,
    highlight: tuple[str, ...],
    live: bool,
    from_file: str | None,
    from_format: str | None,
    duration: float | None,
) -> None:
    """Draw the TCP state diagram, generated from the model's transition table.

    The text drawing has the layout of RFC 793 figure 6: a box per state and
    an arrow per pair of states, labelled 'event / segments sent'; the rows
    no arrow carries (resets, aborts, give-ups, rows that stay in a state)
    are listed under it.  --live or --from writes each state's socket count
    in its box and colours the box by the doctor's most severe finding about
    that state ('!' warning, '!!' critical when not coloured).  --duration
    needs exact tracing (root and tracefs, as 'tcplens trace' uses) and says
    why when it is not there; 'tcplens trace' still samples without it.

    \b
    Example: tcplens diagram
    Example: tcplens diagram --live --format svg > now.svg
    Example: tcplens diagram --from netstat.txt --ascii
    Example: sudo tcplens diagram --live --duration 10 --format dot | dot -Tpng > busy.png
    """
    if live and from_file is not None:
        raise click.UsageError("--live reads this machine, --from FILE a saved dump; give one")
    if duration is not None and not live:
        raise click.UsageError("--duration traces this machine; give --live with it")
    if ascii_only and fmt != "text":
        raise click.UsageError("--ascii is for --format text")
    if from_format is not None and from_file is None:
        raise click.UsageError("--from-format describes --from FILE; give --from or drop it")
    marked = [State.parse(text) for text in highlight]
    placed = None
    if live or from_file is not None:
        placed = _take(live, from_file, from_format, duration)
    overlay = placed.overlay if placed is not None else None
    if fmt == "list":
        click.echo(to_text(marked), nl=False)
    elif fmt == "dot":
        click.echo(to_dot(marked, overlay), nl=False)
    elif fmt == "mermaid":
        click.echo(to_mermaid(marked, overlay), nl=False)
    elif fmt == "svg":
        click.echo(svg_from_dot(to_dot(marked, overlay)), nl=False)
    else:
        from tcplens.views.live_map import MARKS

        marks = {s: "*" for s in marked}
        if overlay is not None:
            for state, level in overlay.severity.items():
                if level in MARKS:
                    marks[state] = MARKS[level]
        counts = overlay.counts if overlay is not None else None
        fig = figure(counts, marks, ascii_only=ascii_only)
        extra = _legend(placed, ascii_only=ascii_only) if placed is not None else []
        _print_figure(fig, placed, extra)
