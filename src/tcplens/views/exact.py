"""``tcplens trace`` in exact mode: the kernel's transition events, as lines and JSON.

The loop reads the tracepoint session every ``interval`` seconds, feeds the
:class:`~tcplens.analysis.transitions.ExactTracer`, asks sock_diag about the
4-tuples of closes that may have been handovers to a minisocket and of
minisockets whose timer has fired (one exact lookup each), looks at the
whole TIME_WAIT table only while that is cheap (see :func:`read_batch`), and
prints what the filters select.  Lost events are read from the kernel's
per-CPU counters after each read and reported as soon as they grow.

JSON lines keep the ``trace --json`` contract (docs/watch.md): a first line
of type ``"mode"``, then ``"change"`` lines with every sampled-mode key
(``since`` equals ``time`` for an event, and is the last look that still
found the minisocket for a TIME_WAIT end found by looking; ``unseen`` is
always empty) plus ``mode``, ``cause``, ``exact`` and ``mono_ns``,
``"lost"`` lines when the kernel dropped events, and the ``"summary"`` line
with ``mode`` and ``lost``.
"""

from __future__ import annotations

import functools
import gc
import json
import math
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

from tcplens.analysis.exact_reads import Polls, read_batch
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
    unavailable_reason,
)
from tcplens.views.sockets import show_addr
from tcplens.views.watch import TRACE_JSON_VERSION, state_time_lines

__all__ = [
    "exact_json",
    "exact_line",
    "kernel_ports",
    "run_exact",
    "span",
    "why_sampled",
]

#: longest time between two reads of the ring buffers, whatever --interval is
READ_EVERY: Final = 0.1
#: seconds between looks for the owners of connections no event named (a /proc scan)
OWNER_EVERY: Final = 2.0
#: lines written at a time: one string per batch of a saturated read (tens of MB) cost
#: fresh pages from the kernel for every read
WRITE_LINES: Final = 512
#: seconds between two passes of the cyclic collector while tracing (see _fewer_collections)
GC_EVERY: Final = 30.0


def span(seconds: float) -> str:
    """``37µs``, ``1.17ms``, ``2.50s``: kernel-measured times keep their precision."""
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f}µs"
    if seconds < 1:
        return f"{seconds * 1e3:.2f}ms"
    return f"{seconds:.2f}s"


@functools.lru_cache(maxsize=8)
def _local_second(second: int) -> str:
    return datetime.fromtimestamp(second).strftime("%H:%M:%S")


@functools.lru_cache(maxsize=8)
def _utc_second(second: int) -> str:
    return datetime.fromtimestamp(second, UTC).isoformat()[: -len("+00:00")]


def _split(at: float) -> tuple[int, int]:
    """(whole seconds, microseconds) as ``datetime.fromtimestamp`` rounds them.

    CPython takes the fraction with ``modf`` (exact), scales it by 1e6 and
    rounds half to even (``_PyTime_DoubleToDenominator``); so does this, so
    the texts below equal datetime's to the microsecond (a test holds them
    to it) at a fraction of its cost: the lines are written per event.
    """
    frac, whole = math.modf(at)
    micro = round(frac * 1e6)
    second = int(whole)
    if micro >= 1_000_000:
        second, micro = second + 1, micro - 1_000_000
    return second, micro


def _clock(at: float) -> str:
    """``HH:MM:SS.ffffff`` local time: ``datetime.fromtimestamp(at).strftime(...)``."""
    if at < 0:
        return datetime.fromtimestamp(at).strftime("%H:%M:%S.%f")
    second, micro = _split(at)
    return f"{_local_second(second)}.{micro:06d}"


def _iso(at: float) -> str:
    """``datetime.fromtimestamp(at, UTC).isoformat()``, one second's prefix made once."""
    if at < 0:
        return datetime.fromtimestamp(at, UTC).isoformat()
    second, micro = _split(at)
    if micro:
        return f"{_utc_second(second)}.{micro:06d}+00:00"
    return f"{_utc_second(second)}+00:00"


def _process(t: Transition) -> str:
    if t.pid is None:
        return "unknown"
    return f"{t.pid}/{t.process or '?'}"


@functools.lru_cache(maxsize=1 << 16)
def _conn_text(conn: int, family: int, local: Addr, remote: Addr) -> str:
    proto = "tcp" if family == 4 else "tcp6"
    return f"#{conn} {proto} {show_addr(local, 'tcp')} <-> {show_addr(remote, 'tcp')}"


def exact_line(t: Transition) -> str:
    """One kernel transition: time (µs), connection, OLD -> NEW, time in OLD, cause, process."""
    sock = t.sock
    text = (
        f"{_clock(t.at)}  {_conn_text(t.conn, sock.family, sock.local, sock.remote)}  "
        f"{t.old.value} -> {t.new.value}"
    )
    if t.spent is None and t.old is State.CLOSED:
        pass  # a new socket: nothing to time
    elif t.spent is None and t.old is State.LISTEN and t.new is State.SYN_RECV:
        text += "  (a new child of the listener)"
    elif t.spent is None:
        text += f"  ({t.old.value} began before tracing)"
    elif t.exact:
        text += f"  after {span(t.spent)}"
    elif t.since is not None:
        text += f"  after ~{span(t.spent)} (last seen {span(max(0.0, t.at - t.since))} before)"
    else:
        text += f"  after ~{span(t.spent)} (not timed by the kernel)"
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


@functools.lru_cache(maxsize=1 << 16)
def _ends(local: Addr, remote: Addr) -> str:
    """``"local":{…},"remote":{…}`` of a connection, encoded once per connection."""
    return (
        f'"local":{{"ip":{_string(local.ip)},"port":{_opt(local.port)}}},'
        f'"remote":{{"ip":{_string(remote.ip)},"port":{_opt(remote.port)}}}'
    )


# Each line is cut into parts that repeat (per connection, per pair of states, per
# owner, per cause) and are encoded once: a busy host writes 100,000 lines a second.


@functools.lru_cache(maxsize=1 << 16)
def _conn_json(conn: int, family: int, local: Addr, remote: Addr) -> str:
    return (
        f'"conn":{conn},"event":"changed","proto":"tcp","family":{family},{_ends(local, remote)},'
    )


@functools.cache
def _move_json(old: State, new: State) -> str:
    return f'"old":{_string(old.value)},"new":{_string(new.value)},'


@functools.cache
def _path_json(path: tuple[State, ...] | None) -> str:
    """From ``in_model`` to ``inode``: all follow from the model's path."""
    in_model = path is not None and len(path) == 2
    chain = "null" if path is None else _string([s.value for s in path])
    return f'"in_model":{_opt(in_model)},"model_path":{chain},"unseen":[],"inode":null,'


@functools.lru_cache(maxsize=4096)
def _owner_json(pid: int | None, process: str | None) -> str:
    return f'"pid":{_opt(pid)},"process":{_opt(process)}}}'


@functools.lru_cache(maxsize=4096)
def _cause_json(cause: str | None) -> str:
    return _opt(cause)


def exact_json(t: Transition) -> str:
    """One ``"type": "change"`` line in exact mode (see the module docstring).

    Written out from cached parts rather than through a dict and json.dumps:
    this runs once per kernel transition and was half the tracer's time.  A
    test holds every line equal to what json.dumps of the documented dict gives.
    """
    at = repr(t.at)
    since = at if t.exact or t.since is None else repr(t.since)
    spent, mono, sock = t.spent, t.mono_ns, t.sock
    return (
        f'{{"version":{TRACE_JSON_VERSION},"type":"change","mode":"exact","time":{at},'
        f'"time_iso":"{_iso(t.at)}","since":{since},'
        f'"mono_ns":{"null" if mono is None else mono},'
        f"{_conn_json(t.conn, sock.family, sock.local, sock.remote)}{_move_json(t.old, t.new)}"
        f'"spent":{"null" if spent is None else repr(spent)},'
        f'"spent_complete":{"false" if spent is None else "true"},'
        f'"exact":{"true" if t.exact else "false"},"cause":{_cause_json(t.cause)},'
        f"{_path_json(t.path)}{_owner_json(t.pid, t.process)}"
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


@contextmanager
def _fewer_collections() -> Iterator[None]:
    """The cyclic collector off while tracing, but for one pass every :data:`GC_EVERY` s.

    Every event makes a few objects (the event, its transition, its line),
    none in a cycle; at the default threshold (700) the collector ran every
    few hundred events and walked the tracer's tables and caches each time:
    16 % of a saturated run's CPU in ``perf`` (gc_collect_main, visit_*), and
    still 10 % at a threshold of 50,000.  What start-up made is frozen out of
    the periodic passes, which only bound what an unforeseen cycle could hold.
    """
    enabled = gc.isenabled()
    gc.freeze()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
        gc.unfreeze()


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
    line_of = exact_json if as_json else exact_line
    # the kernel filter already kept only the traced ports (either end): with no other
    # filter there is nothing left to test line by line
    select = None if replace(narrow, ports=frozenset()) == SocketFilter() else narrow.matches
    session = TraceSession(ports=ports, buffer_kb=buffer_kb)
    with _sigterm_unwinds(), _fewer_collections(), session:
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
        next_gc = time.monotonic() + GC_EVERY

        def step(final: bool) -> None:
            nonlocal shown, off_model, lost_seen, next_owners, next_gc
            found = read_batch(session, tracer, polls, final=final)
            now = time.monotonic()
            if now >= next_gc:
                gc.collect()
                next_gc = now + GC_EVERY
            if processes and now >= next_owners:
                unowned = tracer.unowned()
                if unowned:  # a /proc scan: at most every OWNER_EVERY seconds
                    tracer.own(owners_by_tuple(unowned, ports))
                    next_owners = now + OWNER_EVERY
            lines: list[str] = []
            for t in found:
                if (select is None or select(t.sock)) and (
                    not states or t.old in states or t.new in states
                ):
                    shown += 1
                    off_model += not t.in_model
                    lines.append(line_of(t))
                    if len(lines) >= WRITE_LINES:
                        out.write("\n".join(lines) + "\n")
                        lines = []
            if lines:
                out.write("\n".join(lines) + "\n")
            if found:
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
