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

import functools
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
from tcplens.sources.records import Addr
from tcplens.sources.tracepoints import (
    TraceSession,
    TraceUnavailable,
    owners_by_tuple,
    time_wait_of,
    time_wait_table,
    unavailable_reason,
)
from tcplens.views.sockets import show_addr
from tcplens.views.watch import TRACE_JSON_VERSION, state_time_lines

__all__ = [
    "TIME_WAIT_POLL",
    "Polls",
    "exact_json",
    "exact_line",
    "kernel_ports",
    "read_batch",
    "run_exact",
    "span",
    "why_sampled",
]

#: seconds between looks at the TIME_WAIT table while minisockets are followed
TIME_WAIT_POLL: Final = 1.0
#: longest time between two reads of the ring buffers, whatever --interval is
READ_EVERY: Final = 0.1
#: seconds between looks for the owners of connections no event named (a /proc scan)
OWNER_EVERY: Final = 2.0
#: seconds between looks at it while closes wait to be told TIME_WAIT from CLOSED: one
#: dump per batch, since a dump walks every minisocket (tens of thousands under load)
CONFIRM_EVERY: Final = 0.25
#: one exact sock_diag lookup costs about as much as this many entries of a dump
#: (20 vs 5 µs, measured on 6.18 under load): closes are looked up one by one while
#: they are fewer than the followed minisockets over this
LOOKUP_COST: Final = 4


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
    if t.pid is None:
        return "unknown"
    return f"{t.pid}/{t.process or '?'}"


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


_string = json.JSONEncoder(separators=(",", ":")).encode
#: State -> name without the enum's attribute machinery (once per line adds up)
_NAMES_OF: Final = {s: s.value for s in State}


def _opt(value: object) -> str:
    """A JSON scalar: numbers as json.dumps writes them, strings escaped, None as null."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        return _string(value)
    return repr(value)


@functools.cache
def _path_json(path: tuple[State, ...] | None) -> str:
    return "null" if path is None else _string([s.value for s in path])


@functools.lru_cache(maxsize=1 << 16)
def _ends(local: Addr, remote: Addr) -> str:
    """``"local":{…},"remote":{…}`` of a connection, encoded once per connection."""
    return (
        f'"local":{{"ip":{_string(local.ip)},"port":{_opt(local.port)}}},'
        f'"remote":{{"ip":{_string(remote.ip)},"port":{_opt(remote.port)}}}'
    )


def exact_json(t: Transition) -> str:
    """One ``"type": "change"`` line in exact mode (see the module docstring).

    Written out key by key rather than through a dict and json.dumps: this
    runs once per kernel transition and was half the tracer's time.  A test
    holds every line equal to what json.dumps of the documented dict gives.
    """
    sock = t.sock
    at = t.at
    since = at if t.exact else at - TIME_WAIT_POLL
    return (
        f'{{"version":{TRACE_JSON_VERSION},"type":"change","mode":"exact","time":{at!r},'
        f'"time_iso":"{datetime.fromtimestamp(at, UTC).isoformat()}","since":{since!r},'
        f'"mono_ns":{_opt(t.mono_ns)},"conn":{t.conn},"event":"changed","proto":"tcp",'
        f'"family":{sock.family},{_ends(sock.local, sock.remote)},'
        f'"old":"{_NAMES_OF[t.old]}","new":"{_NAMES_OF[t.new]}","spent":{_opt(t.spent)},'
        f'"spent_complete":{_opt(t.spent is not None)},"exact":{_opt(t.exact)},'
        f'"cause":{_opt(t.cause)},"in_model":{_opt(t.in_model)},'
        f'"model_path":{_path_json(t.path)},"unseen":[],"inode":null,'
        f'"pid":{_opt(t.pid)},"process":{_opt(t.process)}}}'
    )


#: pid -> (process name, when read): a busy client makes thousands of connections a
#: second, and reading /proc/PID/comm for each was a third of the tracer's time
_NAMES: dict[int, tuple[str | None, float]] = {}


def _comm(pid: int) -> str | None:
    now = time.monotonic()
    known = _NAMES.get(pid)
    if known is not None and now - known[1] < 1.0:
        return known[0]
    try:
        with open(f"/proc/{pid}/comm", "rb") as fh:
            name: str | None = fh.read().decode("utf-8", "replace").rstrip("\n")
    except OSError:
        name = None
    if len(_NAMES) > 4096:
        _NAMES.clear()
    _NAMES[pid] = (name, now)
    return name


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


def why_sampled(mode: str, kwargs: dict[str, Any]) -> str | None:
    """None when exact mode runs; else the one line saying why the trace is sampled."""
    if mode == "sampled":
        return "--mode sampled asked for"
    if kwargs.get("source") not in (None, "auto", "netlink") or kwargs.get("proc_root") not in (
        None,
        "/proc",
    ):
        if mode == "exact":
            raise click.UsageError("--mode exact reads the kernel, not --source/--proc-root")
        return "a --source or --proc-root was given: snapshots of it"
    reason = unavailable_reason()
    if reason is not None and mode == "exact":
        raise TraceUnavailable(f"exact mode unavailable: {reason}")
    return reason


class Polls:
    """When the TIME_WAIT table was last asked for (see :func:`read_batch`)."""

    def __init__(self, ports: tuple[int, ...]) -> None:
        self.ports = ports
        self.next_poll = 0.0
        self.next_confirm = 0.0
        self.dumps = 0
        self.lookups = 0


def read_batch(
    session: TraceSession, tracer: ExactTracer, polls: Polls, *, final: bool = False
) -> list[Transition]:
    """The transitions of what the kernel committed since the last call, oldest first.

    Closes that may be handovers to TIME_WAIT are told apart every
    :data:`CONFIRM_EVERY` seconds (every batch when ``final``): by exact
    lookups of their 4-tuples while they are few next to the minisockets
    followed (:data:`LOOKUP_COST`), else by one TIME_WAIT dump; minisockets
    followed are looked for in a dump every :data:`TIME_WAIT_POLL` seconds.
    """
    now = time.monotonic()
    found = tracer.feed(session.read(flush=final))
    confirm = tracer.pending and (final or now >= polls.next_confirm)
    poll = tracer.in_time_wait and (final or now >= polls.next_poll)
    if confirm and not poll and tracer.pending * LOOKUP_COST < tracer.in_time_wait:
        # the closes alone, asked one by one, cost less than the whole table
        table = time_wait_of(tracer.held_keys())
        found += tracer.settle(table, time.time(), partial=True)
        found.sort(key=lambda t: t.at)
        polls.next_confirm = now + CONFIRM_EVERY
        polls.lookups += 1
    elif confirm or poll:
        found += tracer.settle(time_wait_table(polls.ports), time.time())
        found.sort(key=lambda t: t.at)
        polls.next_confirm, polls.next_poll = now + CONFIRM_EVERY, now + TIME_WAIT_POLL
        polls.dumps += 1
    return found


def kernel_ports(selection: SocketFilter) -> tuple[int, ...]:
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
    ports = kernel_ports(selection)
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
        polls = Polls(ports)
        stop: KeyboardInterrupt | None = None

        next_owners = 0.0

        def step(final: bool) -> None:
            nonlocal shown, off_model, lost_seen, next_owners
            found = read_batch(session, tracer, polls, final=final)
            now = time.monotonic()
            if processes and now >= next_owners:
                unowned = tracer.unowned()
                if unowned:  # a /proc scan: at most every OWNER_EVERY seconds
                    tracer.own(owners_by_tuple(unowned, ports))
                    next_owners = now + OWNER_EVERY
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

        # The buffers are read at least every READ_EVERY seconds whatever --interval says:
        # a second's worth of a busy host's events would overflow them; --count counts
        # intervals, as it counts snapshots in sampled mode.
        tick = min(interval, READ_EVERY)
        if count is not None:
            duration = count * interval if duration is None else min(duration, count * interval)
        try:
            while True:
                reads += 1
                now = time.monotonic()
                done = duration is not None and now - start >= duration
                step(done)
                if done:
                    break
                due = start + reads * tick
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

    def secs(value: float | None) -> str:
        return "-" if value is None else span(value)

    head = (
        f"Time in state, measured by the kernel (mode: exact, {plural(tracer.events, 'event')}, "
        f"{plural(changes, 'change')}, {off_model} outside the state model, "
        f"{plural(lost, 'event')} lost)"
    )
    if not times:
        out.write(f"\n{head}\n  no TCP connections seen\n")
        out.flush()
        return
    lines = state_time_lines(
        head,
        times,
        secs,
        "Stays: entered and left while tracing, timed by the kernel; Partial: began before "
        "tracing, so not timed; Now: still in the state; Longest now: since entering it.",
    )
    out.write("\n" + "\n".join(lines) + "\n")
    out.flush()
