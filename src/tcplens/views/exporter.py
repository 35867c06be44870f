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
"""

from __future__ import annotations

import base64
import concurrent.futures
import contextlib
import hmac
import ipaddress
import logging
import os
import platform
import socket
import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from queue import SimpleQueue
from socketserver import ThreadingMixIn
from typing import Any, Final, Protocol
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer
from wsgiref.types import StartResponse
from wsgiref.types import WSGIApplication as WSGIApp

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import CollectorRegistry

from tcplens.errors import InputError, SourceError
from tcplens.model import State
from tcplens.sources.kernel import KernelSettings
from tcplens.sources.records import Snapshot, Socket

__all__ = [
    "METRICS",
    "NO_PROCESS",
    "OTHER",
    "UNKNOWN_PROCESS",
    "BasicAuth",
    "DiagnoseFn",
    "ExportSummary",
    "FindingLike",
    "KernelFn",
    "MetricsServer",
    "SnapshotFn",
    "TcplensCollector",
    "TransitionCollector",
    "TransitionCounts",
    "WebConfig",
    "is_loopback",
    "load_web_config",
    "make_app",
    "make_registry",
    "make_server",
    "parse_listen",
    "summarize",
    "trace_transitions",
]

log = logging.getLogger(__name__)

#: label value that collects every port or process outside the top K
OTHER: Final = "other"
#: process label for sockets whose owner could not be identified (not root, vanished)
UNKNOWN_PROCESS: Final = "unknown"
#: process label for sockets no process owns: TIME_WAIT, and sockets orphaned by close()
NO_PROCESS: Final = "none"
#: live sources that report a socket's inode; there, no inode means no owner at all
_INODE_SOURCES: Final = frozenset({"netlink", "procfs"})

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

_FAMILY_LABEL: Final = {4: "ipv4", 6: "ipv6"}


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


@dataclass(slots=True)
class ExportSummary:
    """Everything one snapshot contributes to a scrape, already reduced to bounded keys."""

    sockets: Counter[tuple[str, str, State]] = field(default_factory=Counter)
    port_sockets: Counter[tuple[str, State]] = field(default_factory=Counter)
    port_accept_queue: Counter[str] = field(default_factory=Counter)
    port_backlog: Counter[str] = field(default_factory=Counter)
    port_queue_bytes: Counter[tuple[str, str]] = field(default_factory=Counter)
    #: (process, proto, state): UDP's CLOSED (unconnected) is not TCP's
    process_sockets: Counter[tuple[str, str, State]] = field(default_factory=Counter)
    queue_bytes: Counter[tuple[str, str]] = field(default_factory=Counter)
    unattributed: Counter[str] = field(default_factory=Counter)
    source: str = ""
    taken_at: float = 0.0


def _top(counts: Counter[Any], k: int) -> set[Any]:
    """The K keys with most sockets; ties broken by key so the choice is stable."""
    if k <= 0:
        return set()
    ranked = sorted(counts.items(), key=lambda item: (-item[1], str(item[0])))
    return {key for key, _ in ranked[:k]}


def summarize(snapshot: Snapshot, *, top_ports: int = 10, top_processes: int = 10) -> ExportSummary:
    """Reduce a snapshot to bounded label sets, in one pass over the sockets plus a fold.

    A socket belongs to a listening port when a TCP LISTEN socket (any
    address) has the same local port: that is the server side of accepted
    connections, which is what users mean by "connections on port 8080".
    Outgoing connections (ephemeral local ports) only show up in the
    per-state and per-process totals.
    """
    summary = ExportSummary(source=snapshot.source, taken_at=snapshot.taken_at)
    sockets = snapshot.sockets
    listening: set[int] = {
        s.local.port
        for s in sockets
        if s.proto == "tcp" and s.state is State.LISTEN and s.local.port is not None
    }
    by_port: Counter[tuple[int, State]] = Counter()
    port_totals: Counter[int] = Counter()
    accept_queue: Counter[int] = Counter()
    backlog: Counter[int] = Counter()
    #: ports with a listener whose backlog the source does not know (/proc/net)
    unknown_backlog: set[int] = set()
    port_qbytes: Counter[tuple[int, str]] = Counter()
    by_process: Counter[tuple[str, str, State]] = Counter()
    process_totals: Counter[str] = Counter()
    inodes_known = snapshot.source in _INODE_SOURCES
    for sock in sockets:
        family = _FAMILY_LABEL.get(sock.family, str(sock.family))
        summary.sockets[(sock.proto, family, sock.state)] += 1
        listener = sock.state is State.LISTEN
        if not listener:
            if sock.recv_q:
                summary.queue_bytes[(sock.proto, "receive")] += sock.recv_q
            if sock.send_q:
                summary.queue_bytes[(sock.proto, "send")] += sock.send_q
        name = _process_name(sock, inodes_known)
        if name is UNKNOWN_PROCESS:
            summary.unattributed[sock.proto] += 1
        by_process[(name, sock.proto, sock.state)] += 1
        process_totals[name] += 1
        port = sock.local.port
        if sock.proto == "tcp" and port is not None and port in listening:
            by_port[(port, sock.state)] += 1
            port_totals[port] += 1
            if listener:
                accept_queue[port] += sock.recv_q or 0
                if sock.send_q is None:
                    unknown_backlog.add(port)
                else:
                    backlog[port] += sock.send_q
            else:
                port_qbytes[(port, "receive")] += sock.recv_q or 0
                port_qbytes[(port, "send")] += sock.send_q or 0

    kept_ports = _top(port_totals, top_ports)

    def port_label(port: int) -> str:
        return str(port) if port in kept_ports else OTHER

    for (port, state), n in by_port.items():
        summary.port_sockets[(port_label(port), state)] += n
    for port, n in accept_queue.items():
        summary.port_accept_queue[port_label(port)] += n
    # A sum that misses a listener's backlog would be too small and the fill
    # ratio too high: a label with any unknown backlog gets no sample at all.
    unknown_labels = {port_label(port) for port in unknown_backlog}
    for port, n in backlog.items():
        if port_label(port) not in unknown_labels:
            summary.port_backlog[port_label(port)] += n
    for (port, queue), n in port_qbytes.items():
        summary.port_queue_bytes[(port_label(port), queue)] += n

    special = (UNKNOWN_PROCESS, NO_PROCESS)
    known = Counter({k: v for k, v in process_totals.items() if k not in special})
    kept_processes = _top(known, top_processes)
    for (name, proto, state), n in by_process.items():
        label = name if name in special or name in kept_processes else OTHER
        summary.process_sockets[(label, proto, state)] += n
    return summary


def _process_name(sock: Socket, inodes_known: bool) -> str:
    """The process label; "none" (nobody owns it) is kept apart from "unknown" (cannot see)."""
    if sock.process:
        return sock.process
    if sock.state is State.TIME_WAIT or (inodes_known and sock.inode is None):
        return NO_PROCESS
    return UNKNOWN_PROCESS


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
    summary: ExportSummary, findings: Counter[tuple[str, str]] | None, privileged: bool
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
            summary = summarize(snap, top_ports=self.top_ports, top_processes=self.top_processes)
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


# --- serving: web config (TLS, basic auth), HTTP server -----------------------------------------
#
# The web-config file follows the Prometheus exporter-toolkit conventions
# (https://github.com/prometheus/exporter-toolkit/blob/master/docs/web-configuration.md) so the
# same file works for node_exporter and tcplens.  The subset supported is documented in
# docs/exporter.md; any other key is an error rather than silently ignored, as in the toolkit.

_TLS_KEYS: Final = frozenset(
    {"cert_file", "key_file", "client_ca_file", "client_auth_type", "min_version", "max_version"}
)
_TLS_VERSIONS: Final = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}
_CLIENT_AUTH: Final = {
    "NoClientCert": ssl.CERT_NONE,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}


@dataclass(frozen=True, slots=True)
class WebConfig:
    """TLS and basic-auth settings of the metrics endpoint (exporter-toolkit names)."""

    cert_file: str | None = None
    key_file: str | None = None
    client_ca_file: str | None = None
    client_auth_type: str = "NoClientCert"
    min_version: str = "TLS12"
    max_version: str | None = None
    #: user -> bcrypt hash
    basic_auth_users: dict[str, bytes] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def tls(self) -> bool:
        return self.cert_file is not None

    def ssl_context(self) -> ssl.SSLContext:
        """The server context; loading it here surfaces bad cert/key files at start-up."""
        assert self.cert_file is not None and self.key_file is not None
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = _TLS_VERSIONS[self.min_version]
        if self.max_version is not None:
            ctx.maximum_version = _TLS_VERSIONS[self.max_version]
        try:
            ctx.load_cert_chain(self.cert_file, self.key_file)
        except (OSError, ssl.SSLError) as exc:
            raise InputError(f"cannot load certificate/key: {exc}", path=self.cert_file) from None
        ctx.verify_mode = _CLIENT_AUTH[self.client_auth_type]
        if self.client_ca_file is not None:
            try:
                ctx.load_verify_locations(self.client_ca_file)
            except (OSError, ssl.SSLError) as exc:
                raise InputError(
                    f"cannot load client CA: {exc}", path=self.client_ca_file
                ) from None
        return ctx


def load_web_config(path: str | os.PathLike[str]) -> WebConfig:
    """Read an exporter-toolkit web-config YAML file; relative paths are relative to it."""
    import yaml

    where = str(path)
    try:
        with open(path, "rb") as handle:
            # decoded whole, so a decode error's offset is the file's byte offset
            data = yaml.safe_load(handle.read().decode("utf-8"))
    except OSError as exc:
        raise InputError(f"cannot read web config: {exc.strerror}", path=where) from None
    except UnicodeDecodeError as exc:
        raise InputError("not UTF-8 text", path=where, offset=exc.start) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or "not valid YAML"
        raise InputError(f"not valid YAML: {problem}", path=where, line=line) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise InputError("expected a mapping at the top level", path=where)
    unknown = set(data) - {"tls_server_config", "basic_auth_users", "http_server_config"}
    if unknown:
        keys = "key" if len(unknown) == 1 else "keys"
        raise InputError(f"unsupported {keys}: {', '.join(sorted(map(str, unknown)))}", path=where)
    base = os.path.dirname(os.path.abspath(where))

    def resolve(value: Any, key: str) -> str:
        if not isinstance(value, str) or not value:
            raise InputError(f"{key} must be a file name", path=where)
        return value if os.path.isabs(value) else os.path.join(base, value)

    tls = data.get("tls_server_config") or {}
    if not isinstance(tls, dict):
        raise InputError("tls_server_config must be a mapping", path=where)
    unknown = set(tls) - _TLS_KEYS
    if unknown:
        raise InputError(
            f"unsupported tls_server_config {'key' if len(unknown) == 1 else 'keys'}: "
            f"{', '.join(sorted(map(str, unknown)))}",
            path=where,
        )
    kwargs: dict[str, Any] = {}
    if tls:
        if "cert_file" not in tls or "key_file" not in tls:
            raise InputError("tls_server_config needs both cert_file and key_file", path=where)
        kwargs["cert_file"] = resolve(tls["cert_file"], "cert_file")
        kwargs["key_file"] = resolve(tls["key_file"], "key_file")
        if "client_ca_file" in tls:
            kwargs["client_ca_file"] = resolve(tls["client_ca_file"], "client_ca_file")
        auth = tls.get("client_auth_type", "NoClientCert")
        if auth not in _CLIENT_AUTH:
            raise InputError(
                f"client_auth_type {auth!r} is not one of {', '.join(_CLIENT_AUTH)}", path=where
            )
        if auth != "NoClientCert" and "client_ca_file" not in tls:
            raise InputError(f"client_auth_type {auth} needs client_ca_file", path=where)
        kwargs["client_auth_type"] = auth
        for key in ("min_version", "max_version"):
            if key in tls:
                if tls[key] not in _TLS_VERSIONS:
                    raise InputError(
                        f"{key} {tls[key]!r} is not one of {', '.join(_TLS_VERSIONS)}", path=where
                    )
                kwargs[key] = tls[key]
    users = data.get("basic_auth_users") or {}
    if not isinstance(users, dict):
        raise InputError("basic_auth_users must map user names to bcrypt hashes", path=where)
    hashes: dict[str, bytes] = {}
    for user, hashed in users.items():
        if not isinstance(hashed, str) or not hashed.startswith(("$2a$", "$2b$", "$2y$")):
            raise InputError(f"basic_auth_users: {user!r} needs a bcrypt hash", path=where)
        hashes[str(user)] = hashed.encode()
    http = data.get("http_server_config") or {}
    if not isinstance(http, dict) or set(http) - {"headers", "http2"}:
        raise InputError("http_server_config supports only headers (and http2)", path=where)
    headers = http.get("headers") or {}
    if not isinstance(headers, dict):
        raise InputError("http_server_config.headers must be a mapping", path=where)
    return WebConfig(
        basic_auth_users=hashes, headers={str(k): str(v) for k, v in headers.items()}, **kwargs
    )


#: bcrypt checks allowed to run at once.  Each takes a core for tens of
#: milliseconds; a flood of bad passwords otherwise starves the scrapes (and
#: the rest of the host) of CPU.  Verified credentials skip the queue (cache).
BCRYPT_WORKERS: Final = max(1, min(2, (os.cpu_count() or 2) // 2))


class _Workers:
    """A fixed pool of daemon threads running bcrypt checks from one queue.

    Not a ThreadPoolExecutor: its threads are joined at interpreter exit after
    the whole queue has run, so an exporter stopped during a flood would
    first finish every queued check (seconds); these threads just stop.
    (Nor are they niced: the systemd unit's ``SystemCallFilter=~@resources``
    kills a process that calls setpriority(2).)
    """

    def __init__(self, count: int) -> None:
        self._jobs: SimpleQueue[
            tuple[concurrent.futures.Future[Any], Callable[..., Any], tuple[Any, ...]]
        ] = SimpleQueue()
        for n in range(count):
            threading.Thread(target=self._run, name=f"tcplens-bcrypt-{n}", daemon=True).start()

    def submit(self, fn: Callable[..., Any], *args: Any) -> concurrent.futures.Future[Any]:
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._jobs.put((future, fn, args))
        return future

    def _run(self) -> None:
        while True:
            future, fn, args = self._jobs.get()
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn(*args))
            except BaseException as exc:  # handed to the waiting request
                future.set_exception(exc)


def bcrypt_cost(hashed: bytes) -> int:
    """The cost (log2 rounds) of a ``$2?$NN$…`` hash; load_web_config checked the prefix."""
    try:
        return int(hashed[4:6])
    except ValueError:
        return 10


class BasicAuth:
    """Check ``Authorization: Basic`` against bcrypt hashes, in bounded, user-blind work.

    Three properties, after Prometheus' exporter-toolkit (``web/users.go``):

    * **No user enumeration by timing.**  An unknown user's password is checked
      against a dummy hash made at start-up with the same cost (and variant) as
      the configured ones, so it costs what a known user's wrong password
      costs.  With users of different costs the dummy has the highest; the
      cheaper users are then told apart by timing (a warning says so).
    * **Bounded bcrypt work.**  Checks run in a pool of :data:`BCRYPT_WORKERS`
      threads; other requests wait their turn without spending CPU, so a
      flood of bad passwords costs the host at most that many cores.
    * **Scrapes skip bcrypt.**  Prometheus sends the same credentials every
      scrape; a verified pair is remembered under an HMAC with a key drawn at
      start-up (the cache never holds anything that could be attacked offline
      after the process ends), so authorised scrapes never queue behind the
      flood.  Failed pairs are remembered too (a separate, bounded table a
      flood cannot use to push good pairs out), so a client retrying one bad
      password costs one check.

    The scheme name is matched case-insensitively (RFC 9110, section 11.1).
    """

    #: remembered pairs per table; when full, the oldest half is dropped
    CACHE_SIZE: Final = 1024

    def __init__(self, users: dict[str, bytes]) -> None:
        import bcrypt

        self.users = users
        self._key = os.urandom(32)
        self._good: dict[bytes, None] = {}
        self._bad: dict[bytes, None] = {}
        self._lock = threading.Lock()
        self._pool = _Workers(BCRYPT_WORKERS)
        model = max(users.values(), key=bcrypt_cost, default=b"$2b$10$")
        costs = {bcrypt_cost(h) for h in users.values()}
        if len(costs) > 1:
            log.warning(
                "basic_auth_users have different bcrypt costs (%s): users with a lower cost "
                "answer faster, which tells an observer they exist; give every user the same cost",
                ", ".join(map(str, sorted(costs))),
            )
        salt = bcrypt.gensalt(rounds=bcrypt_cost(model), prefix=b"2b")
        self._dummy = bcrypt.hashpw(os.urandom(16).hex().encode(), salt)
        # the variant ($2a/$2b/$2y) of the model, for equal work (they cost the same)
        self._dummy = model[:4] + self._dummy[4:]

    def _remember(self, table: dict[bytes, None], key: bytes) -> None:
        with self._lock:
            if len(table) >= self.CACHE_SIZE:
                for old in list(table)[: self.CACHE_SIZE // 2]:
                    del table[old]
            table[key] = None

    def check(self, header: str | None) -> bool:
        import bcrypt

        if not header:
            return False
        scheme, _, token = header.strip().partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            decoded = base64.b64decode(token.strip(), validate=True).decode()
        except (ValueError, UnicodeDecodeError):
            return False
        user, _, password = decoded.partition(":")
        hashed = self.users.get(user)
        reference = hashed if hashed is not None else self._dummy
        key = hmac.digest(
            self._key,
            b"\0".join(base64.b64encode(p) for p in (user.encode(), password.encode(), reference)),
            "sha256",
        )
        with self._lock:
            if key in self._good:
                return True
            if key in self._bad:
                return False
        try:
            ok = self._pool.submit(bcrypt.checkpw, password.encode(), reference).result()
        except ValueError:
            ok = False
        ok = ok and hashed is not None
        self._remember(self._good if ok else self._bad, key)
        return ok


LANDING: Final = b"""<!doctype html>
<html><head><title>tcplens exporter</title></head>
<body><h1>tcplens exporter</h1>
<p><a href="metrics">Metrics</a> &middot; TCP sockets by state, port and process.</p>
</body></html>
"""


def make_app(registry: CollectorRegistry, web: WebConfig | None = None) -> WSGIApp:
    """The WSGI app: /metrics, a landing page at /, basic auth when configured."""
    from prometheus_client import make_wsgi_app

    metrics = make_wsgi_app(registry)
    web = web or WebConfig()
    auth = BasicAuth(web.basic_auth_users) if web.basic_auth_users else None
    extra = list(web.headers.items())

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        def respond(status: str, headers: list[tuple[str, str]]) -> Any:
            return start_response(status, headers + extra)

        if auth is not None and not auth.check(environ.get("HTTP_AUTHORIZATION")):
            respond(
                "401 Unauthorized",
                [
                    ("WWW-Authenticate", 'Basic realm="tcplens"'),
                    ("Content-Type", "text/plain; charset=utf-8"),
                ],
            )
            return [b"Unauthorized\n"]
        path = environ.get("PATH_INFO", "/")
        if environ.get("REQUEST_METHOD") == "HEAD":
            # GET's status and headers without its body (RFC 9110 §9.3.2);
            # prometheus_client alone answers HEAD with 405
            got: list[Any] = []

            def keep(status: str, headers: list[tuple[str, str]], *exc: Any) -> Any:
                got[:] = [status, headers]
                return lambda data: None

            body = b"".join(app({**environ, "REQUEST_METHOD": "GET"}, keep))
            headers = [(k, v) for k, v in got[1] if k.lower() != "content-length"]
            start_response(got[0], [*headers, ("Content-Length", str(len(body)))])
            return []
        if path == "/metrics":
            result: Iterable[bytes] = metrics(environ, respond)
            return result
        if path == "/":
            respond("200 OK", [("Content-Type", "text/html; charset=utf-8")])
            return [LANDING]
        respond("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
        return [b"Not Found: metrics are at /metrics\n"]

    return app


class _QuietHandler(WSGIRequestHandler):
    """No access log on stderr: Prometheus scrapes every few seconds forever."""

    def log_message(self, format: str, *args: Any) -> None:
        pass


class MetricsServer(ThreadingMixIn, WSGIServer):
    """Thread-per-request WSGI server; TLS handshakes happen in the request thread.

    Wrapping the listening socket instead would run every handshake in the
    accept loop, so one client that connects and says nothing would stall
    every scrape.  ``timeout`` bounds how long a silent client holds a thread.
    """

    daemon_threads = True
    allow_reuse_address = True
    request_timeout: float = 30.0
    ssl_context: ssl.SSLContext | None = None

    def finish_request(self, request: Any, client_address: Any) -> None:
        request.settimeout(self.request_timeout)
        if self.ssl_context is None:
            super().finish_request(request, client_address)
            return
        try:
            wrapped = self.ssl_context.wrap_socket(request, server_side=True)
        except (OSError, ssl.SSLError) as exc:
            log.debug("TLS handshake with %s failed: %s", client_address, exc)
            return
        try:
            super().finish_request(wrapped, client_address)
        finally:
            wrapped.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client hanging up mid-response is routine; log it quietly, never a traceback.
        log.debug("error serving %s", client_address, exc_info=True)


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT``, ``[v6]:PORT`` or ``:PORT`` (every address, as Prometheus exporters do)."""
    host, sep, port = text.rpartition(":")
    if not sep:
        raise InputError(f"--listen {text!r}: expected HOST:PORT, e.g. 127.0.0.1:9977")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        number = int(port)
    except ValueError:
        raise InputError(f"--listen {text!r}: port {port!r} is not a number") from None
    if not 0 <= number <= 65535:
        raise InputError(f"--listen {text!r}: port {number} is out of range")
    return host or "::", number


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def make_server(
    registry: CollectorRegistry, host: str, port: int, web: WebConfig | None = None
) -> MetricsServer:
    """Bind (raising :class:`SourceError` with the address on failure) but do not serve yet."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise SourceError(f"cannot resolve listen address {host!r}: {exc.strerror}") from None
    family, _, _, _, sockaddr = infos[0]

    class Server(MetricsServer):
        address_family = family

    try:
        server = Server((str(sockaddr[0]), port), _QuietHandler)
    except OSError as exc:
        raise SourceError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    if family == socket.AF_INET6 and sockaddr[0] == "::":
        # ":PORT" means every address, IPv4 included (dual-stack), as Go's net.Listen does.
        with contextlib.suppress(OSError):
            server.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    server.set_app(make_app(registry, web))
    if web is not None and web.tls:
        server.ssl_context = web.ssl_context()
    return server


# --- transitions from the kernel's tracepoints (exact mode) ---------------------------------------
#
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
    from tcplens.analysis.transitions import ExactTracer
    from tcplens.views.exact import Polls, read_batch

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
