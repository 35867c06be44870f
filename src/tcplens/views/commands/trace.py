"""``tcplens trace``: state transitions as they happen, then the time spent in each state."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from tcplens.analysis.diff import Tracer
from tcplens.errors import TcplensError
from tcplens.model.states import State
from tcplens.model.words import plural
from tcplens.sources.tracepoints import DEFAULT_BUFFER_KB
from tcplens.views.commands.watch import live_options
from tcplens.views.exact import why_sampled
from tcplens.views.options import FiniteFloat, filter_from, filter_options, live_source_options
from tcplens.views.watch import (
    TRACE_JSON_VERSION,
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
@live_source_options  # no --from: a saved file is one moment
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
@click.option(
    "--mode",
    type=click.Choice(["auto", "exact", "sampled"]),
    default="auto",
    show_default=True,
    help="exact: the kernel's tracepoints (root, tracefs); sampled: snapshots; "
    "auto: exact when possible.",
)
@click.option(
    "--buffer-kb",
    type=click.IntRange(min=64, max=1 << 20),
    default=DEFAULT_BUFFER_KB,
    show_default=True,
    metavar="KB",
    help="Exact mode: ring buffer per CPU (events beyond it are lost, and counted).",
)
def command(
    interval: float,
    no_processes: bool,
    duration: float | None,
    count: int | None,
    as_json: bool,
    mode: str,
    buffer_kb: int,
    **kwargs: Any,
) -> int:
    """Print TCP state transitions as they happen, checked against the state model.

    Exact mode (root, tracefs; the default when possible): every transition
    from the kernel's own tracepoints, with the time in OLD measured by the
    kernel, the cause where the kernel gives one (RST sent or received,
    retransmissions) and the process ("unknown" when the kernel did not say).
    A close into TIME_WAIT is confirmed through sock_diag, and its end is
    seen by asking sock_diag again when its timer is due. Lost events are
    counted and shown.

    Sampled mode: snapshots every --interval. Each line: time, connection,
    OLD -> NEW, time spent in OLD and, when the snapshots missed states in
    between, the model's shortest path ("via FIN_WAIT1"). A connection
    appearing is "new -> STATE", one leaving the table "STATE -> gone". A
    state shorter than --interval may be missed, and times are accurate to
    about one interval. The first line (stderr) says which mode and, when
    sampled, why. At the end: time spent per state.

    Example: tcplens trace --port 8080 --interval 0.1 --duration 30
    """
    if duration is not None and count is not None:
        raise click.UsageError("choose one of --duration / --count")
    selection = filter_from(kwargs)
    why = why_sampled(mode, kwargs)
    if why is None:
        from tcplens.views.exact import run_exact

        return run_exact(
            selection,
            interval=interval,
            duration=duration,
            count=count,
            as_json=as_json,
            buffer_kb=buffer_kb,
            processes=not no_processes,
        )
    _say_mode(why, as_json)
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
                    f"tracing {plural(len(snap.sockets), 'socket')} every {interval:g}s; "
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


def _say_mode(why: str, as_json: bool) -> None:
    click.echo(f"mode: sampled ({why})", err=True)
    if as_json:
        sys.stdout.write(
            json.dumps({"version": TRACE_JSON_VERSION, "type": "mode", "mode": "sampled",
                        "why": why}, separators=(",", ":")) + "\n"
        )  # fmt: skip
        sys.stdout.flush()


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
