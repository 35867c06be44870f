"""``tcplens trace``: state transitions as they happen, then the time spent in each state."""

from __future__ import annotations

import sys
from typing import Any

import click

from tcplens.analysis.diff import Tracer
from tcplens.errors import TcplensError
from tcplens.model.states import State
from tcplens.views.commands.watch import live_options, reject_saved_text
from tcplens.views.options import FiniteFloat, filter_from, filter_options, source_options
from tcplens.views.watch import (
    sample,
    snapshot_taker,
    summary_json,
    summary_lines,
    trace_json,
    trace_line,
    wanted,
)

__all__ = ["command"]


@click.command("trace")
@filter_options
@source_options
@live_options
@click.option(
    "--duration",
    type=FiniteFloat(min=0),
    default=None,
    metavar="S",
    help="Stop after S seconds.",
)
@click.option(
    "--count",
    type=click.IntRange(min=1),
    default=None,
    metavar="N",
    help="Stop after N snapshots (default: until Ctrl-C, which also prints the summary).",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="JSON lines: one 'change' object per transition, a 'summary' object last (versioned).",
)
def command(
    interval: float,
    no_processes: bool,
    duration: float | None,
    count: int | None,
    as_json: bool,
    **kwargs: Any,
) -> int:
    """Print TCP state transitions as they happen, checked against the state model.

    Each line: time, connection, OLD -> NEW, time spent in OLD and, when
    the snapshots missed states in between, the model's shortest path
    ("via FIN_WAIT1"). A connection appearing is "new -> STATE", one leaving
    the table "STATE -> gone". Snapshots are samples: a state shorter than
    --interval may be missed, and times are accurate to about one interval.
    At the end: time spent per state.

    Example: tcplens trace --port 8080 --interval 0.1 --duration 30
    """
    reject_saved_text(kwargs, "trace")
    if duration is not None and count is not None:
        raise click.UsageError("choose one of --duration / --count")
    selection = filter_from(kwargs)
    take = snapshot_taker(kwargs, selection, processes=not no_processes)

    tracer = Tracer(horizon=max(60.0, 2 * interval))
    out = sys.stdout
    changes = off_model = 0
    try:
        for snap in sample(take, interval=interval, count=count, duration=duration):
            step = tracer.update(snap)
            if step.first:
                for note in snap.missing:
                    click.echo(f"({note})", err=True)
                click.echo(
                    f"tracing {len(snap.sockets)} sockets every {interval:g}s; "
                    "Ctrl-C stops and prints the summary",
                    err=True,
                )
            shown = [c for c in step.changes if wanted(c, selection.states)]
            changes += len(shown)
            off_model += sum(1 for c in shown if c.in_model is False)
            if shown:
                render = trace_json if as_json else trace_line
                out.write("\n".join(render(c) for c in shown) + "\n")
                out.flush()
    except KeyboardInterrupt:
        pass
    except TcplensError:
        # the source failed mid-trace (e.g. its proc root went away): keep what was seen
        if tracer.snapshots:
            _summary(tracer, changes, off_model, selection.states, as_json)
        raise
    _summary(tracer, changes, off_model, selection.states, as_json)
    return 0


def _summary(
    tracer: Tracer, changes: int, off_model: int, states: frozenset[State], as_json: bool
) -> None:
    out = sys.stdout
    if as_json:
        out.write(summary_json(tracer, changes=changes, off_model=off_model, states=states))
        out.write("\n")
    else:
        lines = summary_lines(tracer, changes=changes, off_model=off_model, states=states)
        out.write("\n" + "\n".join(lines) + "\n")
    out.flush()
