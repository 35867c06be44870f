"""``tcplens watch``: a live socket table like TCPView, or one line per change when piped."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import click

from tcplens.analysis.filters import SocketFilter
from tcplens.model.states import State
from tcplens.model.words import plural
from tcplens.sources.records import Snapshot
from tcplens.views.exact import why_sampled
from tcplens.views.options import FiniteFloat, filter_from, filter_options, live_source_options
from tcplens.views.watch import (
    WatchView,
    event_line,
    render_watch,
    sample,
    snapshot_taker,
    wanted,
)

__all__ = ["command", "live_options"]


F = TypeVar("F", bound=Callable[..., Any])


def live_options(fn: F) -> F:
    """``--interval`` and the process switch, shared by ``watch`` and ``trace``."""
    fn = click.option(
        "-P",
        "--no-processes",
        is_flag=True,
        help="Skip process names (they cost a /proc scan whenever new sockets appear).",
    )(fn)
    return click.option(
        "--interval",
        # a day at most: time.sleep() overflows on absurd values
        type=FiniteFloat(min=0.01, max=86400),
        default=1.0,
        show_default=True,
        metavar="S",
        help="Seconds between snapshots.",
    )(fn)


@click.command("watch")
@filter_options
@live_source_options  # no --from: a saved file is one moment
@live_options
@click.option(
    "--count",
    type=click.IntRange(min=1),
    default=None,
    metavar="N",
    help="Stop after N snapshots (default: until Ctrl-C).",
)
@click.option(
    "--highlight",
    type=click.IntRange(min=1),
    default=3,
    show_default=True,
    metavar="N",
    help="Refreshes a new, closed or changed row stays coloured (closed rows then go).",
)
@click.option(
    "--mode",
    type=click.Choice(["auto", "exact", "sampled"]),
    default="auto",
    show_default=True,
    help="exact: a change shows every state the kernel's tracepoints reported (root, tracefs).",
)
def command(
    interval: float,
    no_processes: bool,
    count: int | None,
    highlight: int,
    mode: str,
    **kwargs: Any,
) -> int:
    """Watch sockets live: new rows green, closed red, changed state yellow.

    On a terminal this is a table refreshed every --interval seconds with
    counts per state on top. Piped, it prints one line per change instead:
    time, + (new) / - (closed) / ~ (changed), proto, local, peer,
    OLD -> NEW, pid/program. Filters are those of `tcplens ls`; with
    --state, a connection is followed through every state and shown while
    it is in one of those asked for, or just changed from or to one.

    Example: tcplens watch --port 443 --interval 0.5
    """
    selection = filter_from(kwargs)
    why = why_sampled(mode, kwargs)
    take = snapshot_taker(kwargs, selection, processes=not no_processes)
    view = WatchView(highlight=highlight, interval=interval, states=selection.states)
    with contextlib.ExitStack() as stack:
        if why is None:
            take = stack.enter_context(_exact(view, take, selection))
        snaps = sample(take, interval=interval, count=count)
        try:
            if sys.stdout.isatty():
                _live(view, snaps)
            else:
                _lines(view, snaps, selection.states)
        except KeyboardInterrupt:
            pass
    return 0


@contextlib.contextmanager
def _exact(
    view: WatchView, take: Callable[[], Snapshot], selection: SocketFilter
) -> Iterator[Callable[[], Snapshot]]:
    """A snapshot taker that first hands the view the kernel's transitions since the last."""
    from tcplens.analysis.exact_reads import Polls, read_batch
    from tcplens.analysis.transitions import ExactTracer
    from tcplens.sources.tracepoints import TraceSession
    from tcplens.views.exact import kernel_ports

    ports = kernel_ports(selection)
    with TraceSession(ports=ports) as session:
        click.echo(f"mode: exact (kernel tracepoints in {session.instance})", err=True)
        tracer = ExactTracer()
        polls = Polls(ports)
        view.exact = {}

        def exact_take() -> Snapshot:
            found = read_batch(session, tracer, polls)
            view.kernel_moves(
                ((t.sock.local.ip, t.sock.local.port, t.sock.remote.ip, t.sock.remote.port),
                 t.old, t.new)
                for t in found
            )  # fmt: skip
            return take()

        yield exact_take


def _live(view: WatchView, snaps: Iterator[Snapshot]) -> None:
    from rich.live import Live

    from tcplens.views.console import Console

    console = Console()
    with Live(console=console, auto_refresh=False, vertical_overflow="crop") as live:
        for snap in snaps:
            view.update(snap)
            screen = render_watch(view, max_rows=max(1, console.height - 4), width=console.width)
            live.update(screen, refresh=True)


def _lines(view: WatchView, snaps: Iterator[Snapshot], states: frozenset[State]) -> None:
    out = sys.stdout
    noted = False
    for snap in snaps:
        step = view.update(snap)
        if not noted:
            for note in snap.missing:
                click.echo(f"({note})", err=True)
            click.echo(
                f"watching {plural(len(snap.sockets), 'socket')} every {view.interval:g}s; "
                "one line per change (+ new, - closed, ~ changed)",
                err=True,
            )
            noted = True
        lines = [event_line(c) for c in step.changes if wanted(c, states)]
        if lines:
            out.write("\n".join(lines) + "\n")
            out.flush()
