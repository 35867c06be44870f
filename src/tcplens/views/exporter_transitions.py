"""The exporter's transition metrics: counts fed by the kernel's tracepoints, as families.

Why apart from :mod:`tcplens.views.exporter`: the socket families are rebuilt
from one snapshot per scrape, while these counters grow for the exporter's
whole life, fed by a tracing thread; they share only the metric list
(:data:`~tcplens.views.exporter.METRICS`) and its family builders.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Any, Final

from prometheus_client.core import Metric

from tcplens.errors import SourceError
from tcplens.model import State
from tcplens.views.exporter import METRICS, _counter, _gauge

__all__ = [
    "DURATION_BUCKETS",
    "EXPORTER_BUFFER_KB",
    "TransitionCollector",
    "TransitionCounts",
    "trace_transitions",
]

log = logging.getLogger(__name__)

# Theory of operation: a thread runs the same tracefs session ``tcplens trace`` uses in exact mode
# (views/exact.py: a private instance, TIME_WAIT confirmed through sock_diag) and adds every
# transition to plain counters under a lock; a scrape only reads them.  Label sets are closed:
# ``from``/``to`` are states, every row of the model's transition table is exported from the
# start (0 until seen) and a kernel transition outside the model gets its own pair when seen.

#: upper bounds of tcplens_state_duration_seconds: microsecond handshakes on loopback, the
#: 60 s of TIME_WAIT, and CLOSE_WAIT or FIN_WAIT2 stays that mean a leak or a dead peer
DURATION_BUCKETS: Final = (1e-5, 1e-4, 1e-3, 0.01, 0.1, 1.0, 10.0, 30.0, 60.0, 120.0, 600.0, 3600.0)


#: the exporter's ring buffer per CPU: kernel memory on every CPU of every host scraped,
#: so smaller than ``tcplens trace``'s; read every 0.5 s, loss is counted if it fills
EXPORTER_BUFFER_KB: Final = 2048


class TransitionCounts:
    """Transitions and stays counted so far; shared by the tracing thread and scrapes."""

    def __init__(self) -> None:
        from tcplens.model.machine import TRANSITIONS

        self._lock = threading.Lock()
        self.transitions: Counter[tuple[State, State]] = Counter(
            {
                (old, row.next): 0
                for old, rows in TRANSITIONS.items()
                for row in rows.values()
                if row.next is not old
            }
        )
        #: state -> (bucket counts, sum, count)
        self.durations: dict[State, tuple[list[int], float, int]] = {
            s: ([0] * len(DURATION_BUCKETS), 0.0, 0) for s in State if s is not State.UNKNOWN
        }
        self.lost = 0
        self.exact = False
        self.why: str | None = None

    def add(self, found: Iterable[Any]) -> None:
        """Count :class:`~tcplens.analysis.transitions.Transition` objects."""
        with self._lock:
            for t in found:
                self.transitions[(t.old, t.new)] += 1
                if t.spent is None or t.old not in self.durations:
                    continue
                buckets, total, count = self.durations[t.old]
                for i, bound in enumerate(DURATION_BUCKETS):
                    if t.spent <= bound:
                        buckets[i] += 1
                        break
                self.durations[t.old] = (buckets, total + t.spent, count + 1)

    def view(
        self,
    ) -> tuple[dict[tuple[State, State], int], dict[State, tuple[list[int], float, int]]]:
        with self._lock:
            return dict(self.transitions), {
                s: (list(b), total, n) for s, (b, total, n) in self.durations.items()
            }


class TransitionCollector:
    """The transition metrics of :class:`TransitionCounts`, for a registry."""

    def __init__(self, counts: TransitionCounts) -> None:
        self.counts = counts

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import HistogramMetricFamily

        transitions, durations = self.counts.view()
        fam = _counter("tcplens_transitions_total", labels=("from", "to"))
        for (old, new), n in sorted(transitions.items(), key=lambda kv: (kv[0][0], kv[0][1])):
            fam.add_metric([old.value, new.value], n)
        yield fam
        _kind, doc = METRICS["tcplens_state_duration_seconds"]
        hist = HistogramMetricFamily("tcplens_state_duration_seconds", doc, labels=["state"])
        for state, (buckets, total, count) in durations.items():
            cumulative, running = [], 0
            for bound, n in zip(DURATION_BUCKETS, buckets, strict=True):
                running += n
                cumulative.append((f"{bound:g}", float(running)))
            cumulative.append(("+Inf", float(count)))
            hist.add_metric([state.value], cumulative, total)
        yield hist
        yield _counter("tcplens_transitions_lost_events_total", self.counts.lost)
        exact = _gauge("tcplens_transitions_exact")
        exact.add_metric([], 1 if self.counts.exact else 0)
        yield exact


def trace_transitions(
    counts: TransitionCounts, stop: threading.Event, *, interval: float = 0.5
) -> threading.Thread | None:
    """Start the tracing thread; None (and ``counts.why`` says why) when exact mode cannot run."""
    from tcplens.sources.tracepoints import TraceSession, TraceUnavailable, unavailable_reason

    counts.why = unavailable_reason()
    if counts.why is not None:
        return None
    from tcplens.analysis.exact_reads import Polls, read_batch
    from tcplens.analysis.transitions import ExactTracer

    session = TraceSession(buffer_kb=EXPORTER_BUFFER_KB)
    try:
        session.open()
    except (TraceUnavailable, SourceError) as exc:
        counts.why = str(exc)
        return None

    def run() -> None:
        tracer = ExactTracer()
        polls = Polls(())
        counts.exact = True
        try:
            while not stop.wait(interval):
                counts.add(read_batch(session, tracer, polls))
                counts.lost = session.lost().total
        except Exception as exc:  # the metrics say tracing stopped; the exporter keeps serving
            counts.why = str(exc)
            log.warning("transition tracing stopped: %s", exc)
        finally:
            counts.exact = False
            session.close()

    thread = threading.Thread(target=run, name="tcplens-transitions", daemon=True)
    thread.start()
    return thread
