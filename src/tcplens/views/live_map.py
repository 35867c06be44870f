"""Where this machine's (or a saved dump's) sockets are on the state diagram.

Shared by ``tcplens diagram --live/--from`` and ``tcplens report``: counts per
state from the snapshot, the doctor's worst severity per state, and, with
exact tracing, how often each edge was taken.  Computing nothing itself: the
counts come from :func:`tcplens.analysis.summary.summarize`, the severities
from :func:`tcplens.analysis.doctor.diagnose`, the transitions from
:class:`tcplens.analysis.transitions.ExactTracer` over
:class:`tcplens.sources.tracepoints.TraceSession`.
"""

from __future__ import annotations

import itertools
import time
from collections import Counter
from dataclasses import dataclass

from tcplens.analysis.doctor import Finding, diagnose
from tcplens.analysis.summary import Summary, summarize
from tcplens.errors import InputError
from tcplens.model.diagram import Overlay
from tcplens.model.states import State
from tcplens.sources.kernel import KernelSettings, read_kernel
from tcplens.sources.records import Snapshot

__all__ = ["MARKS", "LiveMap", "live_map", "seen_transitions", "snapshot_for"]

#: What a box shows after its count in text, for readers without colour.
MARKS = {"warning": "!", "critical": "!!"}


@dataclass(frozen=True, slots=True)
class LiveMap:
    """A snapshot placed on the diagram, with what it was computed from."""

    overlay: Overlay
    summary: Summary
    findings: list[Finding]
    settings: KernelSettings


def snapshot_for(from_file: str | None, fmt: str | None = None) -> Snapshot:
    """This machine's sockets, or a saved dump's (``fmt`` names its format, else detected).

    ``diagram`` and ``report`` call the dump's format ``--from-format`` (their
    ``--format`` is something else), so the parser's hint is put in their words.
    """
    from tcplens.sources.select import take_snapshot

    try:
        return take_snapshot(None, from_file=from_file, fmt=fmt, processes=True, info=True)
    except InputError as exc:
        if "--format takes" not in exc.reason:
            raise
        raise InputError(
            exc.reason.replace("--format takes", "--from-format takes"),
            path=exc.path,
            line=exc.line,
            offset=exc.offset,
            record=exc.record,
        ) from None


def live_map(snapshot: Snapshot, *, live: bool, proc_root: str = "/proc") -> LiveMap:
    """Counts and severities for ``snapshot`` (kernel settings read only when ``live``)."""
    settings = read_kernel(proc_root) if live else KernelSettings.defaults()
    findings = diagnose(snapshot, settings)
    summary = summarize(snapshot)
    severity: dict[State, str] = {}
    for finding in findings:  # most severe first
        if finding.state is not None and finding.state not in severity:
            severity[finding.state] = finding.severity.value
    return LiveMap(Overlay(dict(summary.tcp_states), severity), summary, findings, settings)


def seen_transitions(duration: float, *, poll: float = 0.25) -> dict[tuple[State, State], int]:
    """Every TCP state change on this machine for ``duration`` seconds, per (from, to).

    Exact (kernel tracepoints; root and tracefs needed, else
    :class:`~tcplens.sources.tracepoints.TraceUnavailable` is raised).  A
    change the kernel makes in one step that the model takes in several (the
    tracer's ``path``) counts once on each of the model's edges, so the
    weights fall on edges the diagram has.
    """
    from tcplens.analysis.exact_reads import Polls, read_batch
    from tcplens.analysis.transitions import ExactTracer
    from tcplens.sources.tracepoints import TraceSession

    tracer = ExactTracer()
    polls = Polls(())
    seen: Counter[tuple[State, State]] = Counter()
    with TraceSession() as session:
        end = time.monotonic() + duration
        while True:
            final = time.monotonic() >= end
            # closes confirmed as `trace` confirms them: by lookups, not by reading
            # every minisocket on the host at every step
            found = read_batch(session, tracer, polls, final=final)
            for t in found:
                path = t.path if t.path is not None and len(t.path) >= 2 else (t.old, t.new)
                for a, b in itertools.pairwise(path):
                    seen[(a, b)] += 1
            if final:
                break
            time.sleep(min(poll, max(0.0, end - time.monotonic())))
    return dict(seen)
