"""Reading the kernel's transitions with the closes confirmed: what ``trace``, ``watch``,
the exporter and ``diagram --live --duration`` share in exact mode.

Why here, between the sources and the views: one batch joins two sources (the
tracepoint session and sock_diag's TIME_WAIT answers) through the tracer of
:mod:`tcplens.analysis.transitions`, and decides how often each source is asked
and at what cost (exact lookups, or a whole-table read while that is cheap).
Views only render what :func:`read_batch` returns.
"""

from __future__ import annotations

import operator
import time
from typing import Final

from tcplens.analysis.transitions import ExactTracer, Transition
from tcplens.sources.tracepoints import (
    TraceSession,
    time_wait_count,
    time_wait_table,
    time_wait_timers,
)

__all__ = [
    "CONFIRM_EVERY",
    "DUMP_ENTRY_COST",
    "DUMP_SHARE",
    "DUMP_STALL",
    "TIME_WAIT_POLL",
    "Polls",
    "dump_spacing",
    "read_batch",
]

#: shortest time between two looks at the whole TIME_WAIT table while minisockets are
#: followed (it finds those ended early without an event: a RST, SOCK_DESTROY)
TIME_WAIT_POLL: Final = 1.0
#: share of the tracer's time the whole-table looks may take: after a look that cost c
#: seconds of CPU the next one waits c / DUMP_SHARE (at least TIME_WAIT_POLL)
DUMP_SHARE: Final = 0.02
#: longest a whole-table look may hold the reading up (seconds, estimated beforehand
#: from the kernel's count of minisockets): the ring buffers fill meanwhile
DUMP_STALL: Final = 0.05
#: CPU seconds per minisocket in a whole-table look until one was measured (6.18:
#: ~14 µs, against ~4.4 µs for an exact lookup; benchmarks/README.md)
DUMP_ENTRY_COST: Final = 14e-6
#: seconds between lookups of the closes waiting to be told TIME_WAIT from CLOSED (one
#: batch of exact requests) and of the minisockets whose timer has fired
CONFIRM_EVERY: Final = 0.25


class Polls:
    """When sock_diag was last asked, and what it cost (see :func:`read_batch`)."""

    def __init__(self, ports: tuple[int, ...]) -> None:
        self.ports = ports
        self.next_poll = 0.0
        self.next_confirm = 0.0
        #: CPU seconds per entry of the last whole-table look
        self.entry_cost = DUMP_ENTRY_COST
        self.dumps = 0
        self.lookups = 0


_AT: Final = operator.attrgetter("at")


def dump_spacing(cost: float) -> float:
    """Seconds until the next whole-table look, after one that cost ``cost`` CPU seconds."""
    return max(TIME_WAIT_POLL, cost / DUMP_SHARE)


def read_batch(
    session: TraceSession, tracer: ExactTracer, polls: Polls, *, final: bool = False
) -> list[Transition]:
    """The transitions of what the kernel committed since the last call, oldest first.

    Every :data:`CONFIRM_EVERY` seconds (every batch when ``final``) the
    closes that may be handovers to TIME_WAIT, and the followed minisockets
    whose timer has fired, are looked up one by one (~4 µs each on 6.18).
    The whole TIME_WAIT table (~14 µs per minisocket, every minisocket on
    the ports: a hundred thousand on a busy host) is read only to find
    minisockets ended early without an event, at most every
    :data:`TIME_WAIT_POLL` seconds, spaced by its measured cost
    (:func:`dump_spacing`), and not while the kernel's count of minisockets
    says it would hold the reading up longer than :data:`DUMP_STALL`.
    """
    now = time.monotonic()
    found = tracer.feed(session.read(flush=final))
    settled: list[Transition] = []
    if tracer.in_time_wait and now >= polls.next_poll:
        polls.next_poll = now + TIME_WAIT_POLL
        held = time_wait_count()
        if held * polls.entry_cost <= DUMP_STALL:
            cpu = time.process_time()
            settled += tracer.settle(time_wait_table(polls.ports), time.time())
            cost = time.process_time() - cpu
            polls.entry_cost = cost / max(1, held)
            polls.next_poll = now + dump_spacing(cost)
            polls.next_confirm = now + CONFIRM_EVERY
            polls.dumps += 1
    if final or now >= polls.next_confirm:
        polls.next_confirm = now + CONFIRM_EVERY
        wall = time.time()
        asked = tracer.due(wall)
        if tracer.pending or asked:
            answers = time_wait_timers([*tracer.held_keys(), *asked])
            table = {key: state for key, (state, _left) in answers.items()}
            timers = {key: left for key, (_state, left) in answers.items()}
            settled += tracer.settle(table, wall, partial=True, asked=asked, timers=timers)
            polls.lookups += 1
    if settled:  # the events' transitions are in time order already
        found += settled
        found.sort(key=_AT)
    return found
