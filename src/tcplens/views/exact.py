"""``tcplens trace`` in exact mode: the kernel's transition events, as lines and JSON.

The loop reads the tracepoint session every ``interval`` seconds, feeds the
:class:`~tcplens.analysis.transitions.ExactTracer`, asks sock_diag for the
TIME_WAIT table when a close may have been a handover to a minisocket (and
at most every :data:`TIME_WAIT_POLL` seconds while minisockets are followed),
and prints what the filters select.  Lost events are read from the kernel's
per-CPU counters after each read and reported as soon as they grow.

JSON lines keep the ``trace --json`` contract (docs/watch.md): a first line
of type ``"mode"``, then ``"change"`` lines with every sampled-mode key
(``since`` equals ``time`` for an event; ``unseen`` is always empty) plus
``mode``, ``cause``, ``exact`` and ``mono_ns``, ``"lost"`` lines when the
kernel dropped events, and the ``"summary"`` line with ``mode`` and ``lost``.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from types import FrameType
from typing import Any, Final

import click

from tcplens.analysis.filters import SocketFilter
from tcplens.analysis.transitions import ExactTracer, Transition
from tcplens.errors import Terminated
from tcplens.model.states import State
from tcplens.model.words import plural
from tcplens.sources.tracepoints import TraceSession, time_wait_table
from tcplens.views.sockets import show_addr
from tcplens.views.watch import TRACE_JSON_VERSION, summary_lines

__all__ = ["TIME_WAIT_POLL", "exact_json", "exact_line", "run_exact", "span"]

#: seconds between looks at the TIME_WAIT table while minisockets are followed
TIME_WAIT_POLL: Final = 1.0


def span(seconds: float) -> str:
    """``37µs``, ``1.17ms``, ``2.50s``: kernel-measured times keep their precision."""
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f}µs"
    if seconds < 1:
        return f"{seconds * 1e3:.2f}ms"
    return f"{seconds:.2f}s"


def _clock(at: float) -> str:
    return datetime.fromtimestamp(at).strftime("%H:%M:%S.%f")


def _proto(t: Transition) -> str:
    return "tcp" if t.sock.family == 4 else "tcp6"


def _process(t: Transition) -> str:
    if t.sock.pid is None:
        return "unknown"
    return f"{t.sock.pid}/{t.sock.process or '?'}"


def exact_line(t: Transition) -> str:
    """One kernel transition: time (µs), connection, OLD -> NEW, time in OLD, cause, process."""
    sock = t.sock
    text = (
        f"{_clock(t.at)}  #{t.conn} {_proto(t)} {show_addr(sock.local, 'tcp')} <-> "
        f"{show_addr(sock.remote, 'tcp')}  {t.old.value} -> {t.new.value}"
    )
    if t.spent is None and t.old is State.CLOSED:
        pass  # a new socket: nothing to time
    elif t.spent is None and t.old is State.LISTEN and t.new is State.SYN_RECV:
        text += "  (a new child of the listener)"
    elif t.spent is None:
        text += f"  ({t.old.value} began before tracing)"
    elif t.exact:
        text += f"  after {span(t.spent)}"
    else:
        text += f"  after ~{span(t.spent)} (TIME_WAIT table polled every {TIME_WAIT_POLL:g}s)"
    if t.cause:
        text += f"  ({t.cause})"
    if not t.in_model:
        if t.path is None:
            text += "  (no path in the state model)"
        else:
            via = " -> ".join(s.value for s in t.path)
            text += f"  (not one step in the state model: {via})"
    return text + f"  [{_process(t)}]"


def exact_json(t: Transition) -> str:
    """One ``"type": "change"`` line in exact mode (see the module docstring)."""
    sock = t.sock
    return json.dumps(
        {
            "version": TRACE_JSON_VERSION,
            "type": "change",
            "mode": "exact",
            "time": t.at,
            "time_iso": datetime.fromtimestamp(t.at, UTC).isoformat(),
            "since": t.at if t.exact else t.at - TIME_WAIT_POLL,
            "mono_ns": t.mono_ns,
            "conn": t.conn,
            "event": "closed" if t.new is State.CLOSED else "changed",
            "proto": "tcp",
            "family": sock.family,
            "local": {"ip": sock.local.ip, "port": sock.local.port},
            "remote": {"ip": sock.remote.ip, "port": sock.remote.port},
            "old": t.old.value,
            "new": t.new.value,
            "spent": t.spent,
            "spent_complete": t.spent is not None,
            "exact": t.exact,
            "cause": t.cause,
            "in_model": t.in_model,
            "model_path": None if t.path is None else [s.value for s in t.path],
            "unseen": [],
            "inode": None,
            "pid": sock.pid,
            "process": sock.process,
        },
        separators=(",", ":"),
    )


def _comm(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/comm", "rb") as fh:
            return fh.read().decode("utf-8", "replace").rstrip("\n")
    except OSError:
        return None


def _stop(signum: int, frame: FrameType | None) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise Terminated(signum)


@contextmanager
def _sigterm_unwinds() -> Iterator[None]:
    """SIGTERM unwinds like Ctrl+C, so the tracefs instance is removed either way."""
    old = signal.signal(signal.SIGTERM, _stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def _kernel_ports(selection: SocketFilter) -> tuple[int, ...]:
    """Ports the kernel can filter on (either end): all of them when no other port filter."""
    if (selection.sports or selection.dports) and not selection.ports:
        return tuple(sorted(selection.sports | selection.dports))
    if selection.ports and not (selection.sports or selection.dports):
        return tuple(sorted(selection.ports))
    return ()


def run_exact(
    selection: SocketFilter,
    *,
    interval: float,
    duration: float | None,
    count: int | None,
    as_json: bool,
    buffer_kb: int,
    processes: bool,
) -> int:
    """Trace until Ctrl+C, SIGTERM, ``duration`` seconds or ``count`` reads; print the summary."""
    states = selection.states
    narrow = replace(selection, states=frozenset())
    ports = _kernel_ports(selection)
    out = sys.stdout
    tracer = ExactTracer(name_of=_comm if processes else lambda pid: None)
    shown = off_model = 0
    lost_seen = 0
    session = TraceSession(ports=ports, buffer_kb=buffer_kb)
    with _sigterm_unwinds(), session:
        click.echo(
            f"mode: exact (kernel tracepoints in {session.instance}, "
            f"{session.buffer_kb} KB per CPU; Ctrl-C stops and prints the summary)",
            err=True,
        )
        if session.swept:
            click.echo(
                f"(removed instances left by killed runs: {', '.join(session.swept)})", err=True
            )
        if as_json:
            out.write(
                json.dumps({"version": TRACE_JSON_VERSION, "type": "mode", "mode": "exact",
                            "why": None, "instance": session.instance,
                            "buffer_kb": session.buffer_kb}, separators=(",", ":")) + "\n"
            )  # fmt: skip
            out.flush()
        start = time.monotonic()
        reads = 0
        next_poll = 0.0
        stop: KeyboardInterrupt | None = None

        def step(final: bool) -> None:
            nonlocal shown, off_model, lost_seen, next_poll
            now = time.monotonic()
            found = tracer.feed(session.read(flush=final))
            if tracer.pending or (tracer.in_time_wait and now >= next_poll):
                found += tracer.settle(time_wait_table(ports), time.time())
                found.sort(key=lambda t: t.at)
                next_poll = now + TIME_WAIT_POLL
            lines = []
            for t in found:
                if narrow.matches(t.sock) and (not states or t.old in states or t.new in states):
                    shown += 1
                    off_model += not t.in_model
                    lines.append(exact_json(t) if as_json else exact_line(t))
            if lines:
                out.write("\n".join(lines) + "\n")
                out.flush()
            lost = session.lost().total
            if lost > lost_seen:
                _say_lost(lost, lost - lost_seen, as_json)
                lost_seen = lost

        try:
            while True:
                reads += 1
                now = time.monotonic()
                done = (count is not None and reads >= count) or (
                    duration is not None and now - start >= duration
                )
                step(done)
                if done:
                    break
                due = start + reads * interval
                if duration is not None:
                    due = min(due, start + duration)
                pause = due - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
        except KeyboardInterrupt as exc:  # Ctrl-C or SIGTERM (Terminated)
            stop = exc
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            try:
                step(True)  # what was committed before the stop is still shown
            finally:
                signal.signal(signal.SIGINT, signal.default_int_handler)
        lost_total = session.lost().total
    _exact_summary(tracer, shown, off_model, states, as_json, lost_total, session.pages)
    if isinstance(stop, Terminated):
        raise stop
    return 0


def _say_lost(total: int, new: int, as_json: bool) -> None:
    text = f"lost {plural(new, 'event')} (total {total}): the ring buffer filled; raise --buffer-kb"
    click.echo(f"({text})", err=True)
    if as_json:
        sys.stdout.write(
            json.dumps({"version": TRACE_JSON_VERSION, "type": "lost", "new": new,
                        "total": total}, separators=(",", ":")) + "\n"
        )  # fmt: skip
        sys.stdout.flush()


def _exact_summary(
    tracer: ExactTracer,
    changes: int,
    off_model: int,
    states: frozenset[State],
    as_json: bool,
    lost: int,
    pages: int,
) -> None:
    times = {s: t for s, t in tracer.state_times().items() if not states or s in states}
    out = sys.stdout
    if as_json:

        def state(t: Any) -> dict[str, Any]:
            return {
                "stays": t.stays,
                "total": t.total,
                "mean": t.mean,
                "longest": t.longest if t.stays else None,
                "partial": t.partial,
                "ongoing": t.ongoing,
                "ongoing_longest": t.ongoing_longest if t.ongoing else None,
            }

        out.write(
            json.dumps(
                {
                    "version": TRACE_JSON_VERSION,
                    "type": "summary",
                    "mode": "exact",
                    "snapshots": 0,
                    "events": tracer.events,
                    "lost": lost,
                    "started": tracer.started,
                    "ended": tracer.last,
                    "changes": changes,
                    "off_model": off_model,
                    "states": {s.value: state(t) for s, t in times.items()},
                },
                separators=(",", ":"),
            )
            + "\n"
        )
        out.flush()
        return
    lines = summary_lines(_Shim(tracer, times), changes=changes, off_model=off_model)  # type: ignore[arg-type]
    lines[0] = (
        f"Time in state, measured by the kernel (mode: exact, {plural(tracer.events, 'event')}, "
        f"{plural(changes, 'change')}, {off_model} outside the state model, "
        f"{plural(lost, 'event')} lost)"
    )
    out.write("\n" + "\n".join(lines) + "\n")
    out.flush()


class _Shim:
    """What :func:`summary_lines` reads from a tracer, from the exact tracer's times."""

    def __init__(self, tracer: ExactTracer, times: dict[State, Any]) -> None:
        self.snapshots = 0
        self.started = tracer.started
        self.last = tracer.last
        self._times = times

    def state_times(self) -> dict[State, Any]:
        return self._times
