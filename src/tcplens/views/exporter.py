"""Prometheus metrics for a fleet: a custom collector over one socket snapshot.

Why a custom collector rather than long-lived ``Gauge`` objects: a socket
table is a fresh picture each time, and label values (ports, process names)
come and go.  Rebuilding metric families from one snapshot per scrape means a
port that stopped listening simply stops being exported, with no stale
series to remember to delete.

Protecting busy hosts: a snapshot of 100k sockets with process attribution is
not free, and several Prometheus servers may scrape one host.  The collector
therefore takes at most one snapshot per ``min_interval`` seconds; scrapes in
between (and concurrent scrapes, which wait on a lock) reuse the families
built from the last one.

Bounded label sets: ports and process names are user-controlled, so only the
top-K of each (by socket count) get their own label value and the rest are
summed under ``"other"``.  States, protocols and families come from closed
sets (:class:`~tcplens.model.State`), doctor rules from the doctor's rule
table.

Failure: the snapshot function may raise (a source that cannot be read, a
race the source did not absorb).  The scrape still answers: the error
counter goes up, ``tcplens_snapshot_success`` is 0, and the socket series are
left out of that scrape so Prometheus marks them stale rather than showing
old numbers as current.  Every metric is documented in ``docs/exporter.md``;
:data:`METRICS` is the list the tests compare the dashboard and alert rules
against.

This module only renders: it turns a snapshot into metric families.  How
they are served (web config, TLS, basic auth, the HTTP server) is the
service in :mod:`tcplens.exporter`; the transition counters fed by the
kernel's tracepoints are in :mod:`tcplens.views.exporter_transitions`;
``tcplens exporter`` (:mod:`tcplens.views.commands.exporter`) wires them.
"""

from __future__ import annotations

import logging
import os
import platform
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Final, Protocol

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import CollectorRegistry

from tcplens.analysis.summary import NO_PROCESS, OTHER, UNKNOWN_PROCESS, Fold, Folded, summarize
from tcplens.model import State
from tcplens.sources.kernel import KernelSettings
from tcplens.sources.records import Snapshot

if TYPE_CHECKING:
    from tcplens.views.exporter_transitions import TransitionCollector

__all__ = [
    "METRICS",
    "NO_PROCESS",
    "OTHER",
    "UNKNOWN_PROCESS",
    "DiagnoseFn",
    "FindingLike",
    "KernelFn",
    "SnapshotFn",
    "TcplensCollector",
    "make_registry",
]

log = logging.getLogger(__name__)

#: name -> (type, HELP text).  The one list of what the exporter exports:
#: docs/exporter.md, the Grafana dashboard and the alert rules are checked against it.
METRICS: Final[dict[str, tuple[str, str]]] = {
    "tcplens_build_info": (
        "gauge",
        "Always 1; labels say which tcplens and Python versions are running.",
    ),
    "tcplens_sockets": (
        "gauge",
        "Sockets by protocol, address family and state (every TCP state is present, 0 if none).",
    ),
    "tcplens_listen_port_sockets": (
        "gauge",
        "TCP sockets whose local port is a listening port, by port (top K by socket count, "
        'the rest summed as port="other") and state; LISTEN counts the listeners themselves.',
    ),
    "tcplens_listen_port_accept_queue": (
        "gauge",
        "Connections waiting in the accept queue of the listeners on a port (Recv-Q of LISTEN).",
    ),
    "tcplens_listen_port_backlog": (
        "gauge",
        "Accept queue limit of the listeners on a port "
        "(Send-Q of LISTEN: min(backlog, somaxconn)); absent when the source does not "
        "know it (procfs).",
    ),
    "tcplens_listen_port_queue_bytes": (
        "gauge",
        "Bytes queued on the non-listening TCP sockets of a listening port, by queue "
        "(receive: not yet read by the application; send: not yet acknowledged by the peer).",
    ),
    "tcplens_process_sockets": (
        "gauge",
        "Sockets by owning process name (top K by socket count, the rest summed as "
        'process="other", owners that could not be identified as process="unknown", sockets '
        'no process owns such as TIME_WAIT as process="none"), protocol and state '
        '(proto="udp", state="CLOSED" is a bound, unconnected UDP socket: ss shows UNCONN).',
    ),
    "tcplens_queue_bytes": (
        "gauge",
        "Bytes queued on non-listening sockets, by protocol and queue (receive or send).",
    ),
    "tcplens_unattributed_sockets": (
        "gauge",
        "Sockets owned by a process that could not be identified (other users' sockets when "
        "not root, processes that exited mid-scrape); TIME_WAIT and orphaned sockets have no "
        "owner and are not counted.",
    ),
    "tcplens_snapshot_info": (
        "gauge",
        "Always 1; labels name the source that produced the snapshot and whether the exporter "
        'runs privileged (privileged="false" means other users\' processes are not visible).',
    ),
    "tcplens_findings": (
        "gauge",
        "Doctor findings in the last snapshot, by rule and severity.",
    ),
    "tcplens_kernel_setting": (
        "gauge",
        "A kernel TCP limit read from /proc/sys (somaxconn, tcp_max_syn_backlog, "
        "tcp_max_tw_buckets, tcp_max_orphans, tcp_fin_timeout, tcp_syncookies, tcp_tw_reuse), "
        "by sysctl name; settings that could not be read are left out.",
    ),
    "tcplens_kernel_tcp_events_total": (
        "counter",
        "TcpExt counters from /proc/net/netstat since boot, by kernel counter name "
        "(ListenOverflows, TCPReqQFullDrop, SyncookiesSent, TCPTimeWaitOverflow, ...); "
        "each name counts a different event, so never sum across names.",
    ),
    "tcplens_ephemeral_port_range_first": (
        "gauge",
        "First port of the kernel's ephemeral range (net.ipv4.ip_local_port_range).",
    ),
    "tcplens_ephemeral_port_range_last": (
        "gauge",
        "Last port of the kernel's ephemeral range (net.ipv4.ip_local_port_range).",
    ),
    "tcplens_ephemeral_ports": (
        "gauge",
        "Number of ports in the kernel's ephemeral range; TIME_WAIT is compared against it.",
    ),
    "tcplens_scrape_duration_seconds": (
        "gauge",
        "Time this scrape spent in the tcplens collector, including a new snapshot if one was due.",
    ),
    "tcplens_snapshot_duration_seconds": (
        "gauge",
        "Time the last snapshot and its analysis took.",
    ),
    "tcplens_snapshot_age_seconds": (
        "gauge",
        "Age of the snapshot this scrape reports (reused within --min-interval).",
    ),
    "tcplens_snapshot_timestamp_seconds": (
        "gauge",
        "Unix time at which the reported snapshot was taken.",
    ),
    "tcplens_snapshot_success": (
        "gauge",
        "1 if the last snapshot attempt succeeded, 0 if it failed (socket series are then absent).",
    ),
    "tcplens_snapshots_total": (
        "counter",
        "Snapshots taken since the exporter started (scrapes within --min-interval reuse one).",
    ),
    "tcplens_snapshot_errors_total": (
        "counter",
        "Snapshot attempts that failed since the exporter started.",
    ),
    "tcplens_doctor_errors_total": (
        "counter",
        "Doctor runs that failed since the exporter started (findings are then absent).",
    ),
    # from the kernel's tracepoints (TransitionCollector), while exact tracing runs
    "tcplens_transitions_total": (
        "counter",
        "TCP state transitions the kernel reported since the exporter started "
        "(TIME_WAIT confirmed through sock_diag).",
    ),
    "tcplens_state_duration_seconds": (
        "histogram",
        "How long connections stayed in each TCP state before leaving it, measured by the "
        "kernel's event timestamps (TIME_WAIT's end by polling, to about 1 s).",
    ),
    "tcplens_transitions_lost_events_total": (
        "counter",
        "Tracepoint events the kernel dropped because the exporter's ring buffer was full.",
    ),
    "tcplens_transitions_exact": (
        "gauge",
        "1 while transitions are traced from the kernel's tracepoints; 0 when they cannot be "
        "(not root, no tracefs), and the transition metrics then stay at 0.",
    ),
}


class FindingLike(Protocol):
    """What the exporter needs from a doctor finding (``tcplens.analysis.doctor.Finding``)."""

    @property
    def rule(self) -> str: ...

    @property
    def severity(self) -> Any: ...


SnapshotFn = Callable[[], Snapshot]
DiagnoseFn = Callable[[Snapshot, KernelSettings], Sequence[FindingLike]]
KernelFn = Callable[[], KernelSettings]

#: KernelSettings fields exported as tcplens_kernel_setting{name=...}
KERNEL_SETTINGS: Final = (
    "somaxconn",
    "tcp_max_syn_backlog",
    "tcp_max_tw_buckets",
    "tcp_max_orphans",
    "tcp_fin_timeout",
    "tcp_syncookies",
    "tcp_tw_reuse",
)


def _severity_label(value: Any) -> str:
    """Severities may be an enum or a string; the label is its lower-case name."""
    raw = getattr(value, "value", value)
    if isinstance(raw, int) and hasattr(value, "name"):
        raw = value.name
    return str(raw).lower()


def _gauge(name: str, labels: Sequence[str] = ()) -> GaugeMetricFamily:
    kind, doc = METRICS[name]
    assert kind == "gauge", name
    return GaugeMetricFamily(name, doc, labels=list(labels))


def _counter(
    name: str, value: float | None = None, labels: Sequence[str] = ()
) -> CounterMetricFamily:
    kind, doc = METRICS[name]
    assert kind == "counter", name
    if labels:
        return CounterMetricFamily(name.removesuffix("_total"), doc, labels=list(labels))
    return CounterMetricFamily(name.removesuffix("_total"), doc, value=value)


def _kernel_families(kernel: KernelSettings) -> list[Metric]:
    """Limits and counters actually read from this machine; defaults are not exported."""
    out: list[Metric] = []
    if not kernel.is_assumed("ip_local_port_range"):
        first, last = kernel.ip_local_port_range
        for name, value in (
            ("tcplens_ephemeral_port_range_first", first),
            ("tcplens_ephemeral_port_range_last", last),
            ("tcplens_ephemeral_ports", kernel.ephemeral_ports),
        ):
            gauge = _gauge(name)
            gauge.add_metric([], value)
            out.append(gauge)
    setting = _gauge("tcplens_kernel_setting", ["name"])
    for name in KERNEL_SETTINGS:
        if not kernel.is_assumed(name):
            setting.add_metric([name], getattr(kernel, name))
    out.append(setting)
    if kernel.counters:
        events = _counter("tcplens_kernel_tcp_events_total", labels=["name"])
        for name, value in sorted(kernel.counters.items()):
            events.add_metric([name], value)
        out.append(events)
    return out


def _socket_families(
    summary: Folded, findings: Counter[tuple[str, str]] | None, privileged: bool
) -> list[Metric]:
    """Build the socket-describing families of one snapshot (reused until the next one)."""
    out: list[Metric] = []
    sockets = _gauge("tcplens_sockets", ["proto", "family", "state"])
    counts = Counter(summary.sockets)
    # Every TCP state is exported even at 0, so alerts see 0 instead of "no data".
    for family in ("ipv4", "ipv6"):
        for state in State:
            counts.setdefault(("tcp", family, state), 0)
    for (proto, family, state), n in sorted(counts.items(), key=_sort_key):
        sockets.add_metric([proto, family, state.value], n)
    out.append(sockets)

    port_sockets = _gauge("tcplens_listen_port_sockets", ["port", "state"])
    for (port, state), n in sorted(summary.port_sockets.items(), key=_sort_key):
        port_sockets.add_metric([port, state.value], n)
    out.append(port_sockets)
    accept = _gauge("tcplens_listen_port_accept_queue", ["port"])
    for port, n in sorted(summary.port_accept_queue.items()):
        accept.add_metric([port], n)
    out.append(accept)
    backlog = _gauge("tcplens_listen_port_backlog", ["port"])
    for port, n in sorted(summary.port_backlog.items()):
        backlog.add_metric([port], n)
    out.append(backlog)
    port_bytes = _gauge("tcplens_listen_port_queue_bytes", ["port", "queue"])
    for (port, which), n in sorted(summary.port_queue_bytes.items()):
        port_bytes.add_metric([port, which], n)
    out.append(port_bytes)

    process = _gauge("tcplens_process_sockets", ["process", "proto", "state"])
    for (name, proto, state), n in sorted(summary.process_sockets.items(), key=_sort_key):
        process.add_metric([name, proto, state.value], n)
    out.append(process)

    queue = _gauge("tcplens_queue_bytes", ["proto", "queue"])
    qcounts = Counter(summary.queue_bytes)
    for key in (("tcp", "receive"), ("tcp", "send")):
        qcounts.setdefault(key, 0)
    for (proto, which), n in sorted(qcounts.items()):
        queue.add_metric([proto, which], n)
    out.append(queue)

    unattributed = _gauge("tcplens_unattributed_sockets", ["proto"])
    ucounts = Counter(summary.unattributed)
    ucounts.setdefault("tcp", 0)
    for proto, n in sorted(ucounts.items()):
        unattributed.add_metric([proto], n)
    out.append(unattributed)

    info = _gauge("tcplens_snapshot_info", ["source", "privileged"])
    info.add_metric([summary.source, "true" if privileged else "false"], 1)
    out.append(info)

    if findings is not None:
        found = _gauge("tcplens_findings", ["rule", "severity"])
        for (rule, severity), n in sorted(findings.items()):
            found.add_metric([rule, severity], n)
        out.append(found)
    return out


def _sort_key(item: tuple[tuple[Any, ...], int]) -> tuple[str, ...]:
    return tuple(str(part) for part in item[0])


class TcplensCollector:
    """The exporter's collector: one snapshot per ``min_interval``, bounded labels.

    ``snapshot`` is any zero-argument function returning a
    :class:`~tcplens.sources.records.Snapshot`, so tests inject recorded or
    failing snapshots and the CLI passes the live source.  ``diagnose`` and
    ``kernel`` (settings and counters read from /proc) are optional for the
    same reason.  ``clock`` is passed in so reuse within the interval is
    tested without sleeping.
    """

    def __init__(
        self,
        snapshot: SnapshotFn,
        *,
        diagnose: DiagnoseFn | None = None,
        kernel: KernelFn | None = None,
        min_interval: float = 5.0,
        top_ports: int = 10,
        top_processes: int = 10,
        privileged: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._snapshot = snapshot
        self._diagnose = diagnose
        self._kernel = kernel
        self.min_interval = min_interval
        self.top_ports = top_ports
        self.top_processes = top_processes
        self._privileged = os.geteuid() == 0 if privileged is None else privileged
        self._clock = clock
        self._refresh_lock = threading.Lock()  # one snapshot at a time
        self._state_lock = threading.Lock()  # guards what scrapes read
        self._attempted = False  # a first snapshot attempt has finished
        self._families: list[Metric] = []
        self._taken_at = 0.0  # wall time of the reported snapshot
        self._refreshed = float("-inf")  # clock() of the last attempt
        self._success = False
        self._snapshot_duration = 0.0
        self.snapshots = 0
        self.snapshot_errors = 0
        self.doctor_errors = 0

    def describe(self) -> Iterable[Metric]:
        """Names only, so registering does not take a snapshot."""
        return [
            GaugeMetricFamily(name, doc)
            if kind == "gauge"
            else CounterMetricFamily(name.removesuffix("_total"), doc)
            for name, (kind, doc) in METRICS.items()
        ]

    def _refresh(self) -> None:
        """Take a snapshot, rebuild the socket families and publish them; never raises.

        Runs under ``_refresh_lock`` (one snapshot at a time) but not under
        ``_state_lock``, so scrapes that arrive meanwhile keep being served.
        """
        started = time.perf_counter()
        with self._state_lock:
            self._refreshed = self._clock()
        try:
            snap = self._snapshot()
            fold = Fold(ports=self.top_ports, processes=self.top_processes)
            summary = summarize(snap, busy_states=0, fold=fold).folded
            assert summary is not None  # asked for with ``fold``
        except Exception as exc:  # any failure is a failed scrape, never a dead server
            log.warning("snapshot failed: %s", exc, exc_info=log.isEnabledFor(logging.DEBUG))
            with self._state_lock:
                self.snapshot_errors += 1
                self._success = False
                self._families = []
                self._snapshot_duration = time.perf_counter() - started
                self._attempted = True
            return
        kernel: KernelSettings | None = None
        if self._kernel is not None:
            try:
                kernel = self._kernel()
            except Exception as exc:  # the counters are extra; the sockets still count
                log.warning("cannot read kernel settings: %s", exc)
        findings: Counter[tuple[str, str]] | None = None
        doctor_failed = False
        if self._diagnose is not None:
            try:
                found = self._diagnose(snap, kernel or KernelSettings.defaults())
                findings = Counter((str(f.rule), _severity_label(f.severity)) for f in found)
            except Exception as exc:
                doctor_failed = True
                log.warning("doctor failed: %s", exc, exc_info=log.isEnabledFor(logging.DEBUG))
        families = _socket_families(summary, findings, self._privileged)
        if kernel is not None:
            families += _kernel_families(kernel)
        taken_at = snap.taken_at
        del snap, summary  # the big part; only the families are kept
        with self._state_lock:
            self.snapshots += 1
            self.doctor_errors += doctor_failed
            self._success = True
            self._taken_at = taken_at
            self._families = families
            self._snapshot_duration = time.perf_counter() - started
            self._attempted = True

    def _due(self) -> bool:
        with self._state_lock:
            return self._clock() - self._refreshed >= self.min_interval

    def collect(self) -> Iterator[Metric]:
        """Serve the families of the latest snapshot, taking a new one when it is due.

        Only one scrape takes a due snapshot; scrapes arriving while it runs
        are answered at once from the previous one (their
        ``tcplens_snapshot_age_seconds`` says so) rather than queueing behind
        a multi-second snapshot of a big host.  Before the very first
        snapshot exists, they wait for it.
        """
        started = time.perf_counter()
        first = not self._attempted
        if (first or self._due()) and self._refresh_lock.acquire(blocking=first):
            try:
                if not self._attempted or self._due():
                    self._refresh()
            finally:
                self._refresh_lock.release()
        with self._state_lock:
            families = list(self._families)
            success = self._success
            taken_at = self._taken_at
            snapshot_duration = self._snapshot_duration
            counters = (self.snapshots, self.snapshot_errors, self.doctor_errors)

        build = _gauge("tcplens_build_info", ["version", "python"])
        build.add_metric([_version(), platform.python_version()], 1)
        yield build
        yield from families
        ok = _gauge("tcplens_snapshot_success")
        ok.add_metric([], 1 if success else 0)
        yield ok
        if success:
            stamp = _gauge("tcplens_snapshot_timestamp_seconds")
            stamp.add_metric([], taken_at)
            yield stamp
            age = _gauge("tcplens_snapshot_age_seconds")
            age.add_metric([], max(0.0, time.time() - taken_at))
            yield age
        took = _gauge("tcplens_snapshot_duration_seconds")
        took.add_metric([], snapshot_duration)
        yield took
        yield _counter("tcplens_snapshots_total", counters[0])
        yield _counter("tcplens_snapshot_errors_total", counters[1])
        yield _counter("tcplens_doctor_errors_total", counters[2])
        scrape = _gauge("tcplens_scrape_duration_seconds")
        scrape.add_metric([], time.perf_counter() - started)
        yield scrape


def _version() -> str:
    from tcplens import __version__

    return __version__


def make_registry(
    collector: TcplensCollector,
    *,
    process_metrics: bool = True,
    transitions: TransitionCollector | None = None,
) -> CollectorRegistry:
    """A registry of our own (not the global one) with the collector and process_* metrics."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    if transitions is not None:
        registry.register(transitions)
    if process_metrics:
        from prometheus_client import ProcessCollector

        ProcessCollector(registry=registry)
    return registry
