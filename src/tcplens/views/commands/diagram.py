"""``tcplens diagram``: the state diagram as text, Graphviz dot, Mermaid or SVG."""

from __future__ import annotations

import shutil
import subprocess

import click

from tcplens.errors import TcplensError
from tcplens.model.diagram import to_dot, to_mermaid, to_text
from tcplens.model.states import State


def _svg(dot_source: str) -> str:
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


@click.command(name="diagram")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "dot", "mermaid", "svg"]),
    default="text",
    show_default=True,
    help="text fits 80 columns; dot and mermaid are sources; svg runs Graphviz.",
)
@click.option(
    "--highlight",
    multiple=True,
    metavar="STATE",
    help="Mark a state (any spelling; repeatable).",
)
def command(fmt: str, highlight: tuple[str, ...]) -> None:
    """Print the TCP state diagram, generated from the model's transition table.

    Every row of the table is an edge labelled 'event / segments sent'. The
    usual client path is bold, the usual server path bold and dashed.

    \b
    Example: tcplens diagram --format dot | dot -Tsvg > tcp.svg
    Example: tcplens diagram --highlight close-wait --format mermaid
    """
    marked = [State.parse(text) for text in highlight]
    if fmt == "text":
        click.echo(to_text(marked), nl=False)
    elif fmt == "dot":
        click.echo(to_dot(marked), nl=False)
    elif fmt == "mermaid":
        click.echo(to_mermaid(marked), nl=False)
    else:
        click.echo(_svg(to_dot(marked)), nl=False)
