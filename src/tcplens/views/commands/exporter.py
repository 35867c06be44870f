"""``tcplens exporter``: serve Prometheus /metrics for this machine's sockets.

The command only wires things together: the live source from
``tcplens.sources.select``, the kernel settings, the doctor, the metric view
(:mod:`tcplens.views.exporter` and :mod:`tcplens.views.exporter_transitions`)
and the HTTP service (:mod:`tcplens.exporter`: web config, TLS, basic auth,
server).  It binds loopback
unless told otherwise, because socket tables name internal services and
peers; a wider address must be typed out, and then a warning says if it is
served without TLS or basic auth.
"""

from __future__ import annotations

import importlib
import logging
import signal
import sys
import threading
from types import FrameType

import click

from tcplens.exporter import WebConfig, is_loopback, load_web_config, make_server, parse_listen
from tcplens.sources.kernel import KernelSettings, read_kernel
from tcplens.sources.records import Snapshot
from tcplens.sources.select import choose_source, take_snapshot
from tcplens.views.exporter import DiagnoseFn, TcplensCollector, make_registry
from tcplens.views.exporter_transitions import (
    TransitionCollector,
    TransitionCounts,
    trace_transitions,
)
from tcplens.views.options import FiniteFloat, source_options

DEFAULT_LISTEN = "127.0.0.1:9977"


class _Stop(Exception):
    """Raised from the SIGTERM handler to leave serve_forever cleanly."""


def _doctor() -> DiagnoseFn | None:
    """The doctor's ``diagnose(snapshot, settings)``, or None if this build lacks it."""
    try:
        module = importlib.import_module("tcplens.analysis.doctor")
    except ImportError:
        return None
    diagnose: DiagnoseFn | None = getattr(module, "diagnose", None)
    return diagnose


@click.command(
    "exporter",
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.option(
    "--listen",
    default=DEFAULT_LISTEN,
    show_default=True,
    metavar="HOST:PORT",
    help="Address to serve on; ':9977' means every address (an explicit choice). Port 0 picks "
    "a free port, printed on stderr.",
)
@click.option(
    "--min-interval",
    type=FiniteFloat(min=0),
    default=5.0,
    show_default=True,
    metavar="SECONDS",
    help="Reuse one snapshot for scrapes closer together than this (protects busy hosts).",
)
@click.option(
    "--top-ports",
    type=click.IntRange(min=0),
    default=10,
    show_default=True,
    metavar="K",
    help='Listening ports with their own label value; the rest are summed as port="other".',
)
@click.option(
    "--top-processes",
    type=click.IntRange(min=0),
    default=10,
    show_default=True,
    metavar="K",
    help='Process names with their own label value; the rest are summed as process="other".',
)
@click.option(
    "--web-config",
    type=click.Path(dir_okay=False),
    default=None,
    metavar="FILE",
    help="Prometheus exporter-toolkit web config (YAML): tls_server_config cert_file/key_file, "
    "basic_auth_users with bcrypt hashes. See docs/exporter.md.",
)
@source_options
@click.option(
    "--processes/--no-processes",
    default=True,
    show_default=True,
    help="Attribute sockets to processes (the slowest part of a snapshot on big hosts).",
)
@click.option(
    "--doctor/--no-doctor",
    default=True,
    show_default=True,
    help="Run the doctor on each snapshot and export its findings.",
)
@click.option(
    "--transitions/--no-transitions",
    default=True,
    show_default=True,
    help="Count state transitions from the kernel's tracepoints (root, tracefs; else 0 and "
    "tcplens_transitions_exact 0).",
)
@click.option("-v", "--verbose", is_flag=True, help="Log snapshot failures with tracebacks.")
def command(
    listen: str,
    min_interval: float,
    top_ports: int,
    top_processes: int,
    web_config: str | None,
    processes: bool,
    doctor: bool,
    transitions: bool,
    verbose: bool,
    source: str | None,
    from_file: str | None,
    fmt: str | None,
    strict: bool,
    proc_root: str,
) -> int:
    """Serve Prometheus metrics: sockets by state, port and process, queues, findings.

    Runs unprivileged; without root, other users' processes are unknown and
    tcplens_unattributed_sockets says how many. Stop with Ctrl-C or SIGTERM.

    Example: tcplens exporter --listen 127.0.0.1:9977 --top-ports 20
    """
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="tcplens exporter: %(message)s",
        stream=sys.stderr,
    )
    host, port = parse_listen(listen)
    if from_file == "-":
        raise click.BadParameter("the exporter re-reads --from on every refresh; give a file")
    if from_file is None:
        choose_source(source)  # a bad $TCPLENS_SOURCE fails now, not on every scrape
    web = load_web_config(web_config) if web_config else WebConfig()

    def snapshot() -> Snapshot:
        # --from re-reads the file on every refresh: a saved dump can be served and edited.
        return take_snapshot(
            source,
            from_file=from_file,
            fmt=fmt,
            strict=strict,
            processes=processes,
            proc_root=proc_root,
        )

    def kernel() -> KernelSettings:
        return read_kernel(proc_root)

    if from_file is not None:
        # a missing or unparseable dump fails now, as one line; once serving, a dump
        # that goes bad is a failed scrape (tcplens_snapshot_success 0), not a dead exporter
        snapshot()
    live_linux = from_file is None and sys.platform.startswith("linux")

    collector = TcplensCollector(
        snapshot,
        diagnose=_doctor() if doctor else None,
        kernel=kernel if live_linux else None,
        min_interval=min_interval,
        top_ports=top_ports,
        top_processes=top_processes,
    )
    counts = TransitionCounts()
    stop_tracing = threading.Event()
    tracing = None
    if transitions and live_linux:
        tracing = trace_transitions(counts, stop_tracing)
        if tracing is None:
            click.echo(f"tcplens exporter: transitions not traced: {counts.why}", err=True)
    registry = make_registry(collector, transitions=TransitionCollector(counts))
    server = make_server(registry, host, port, web)
    bound_host, bound_port = str(server.server_address[0]), server.server_address[1]
    scheme = "https" if web.tls else "http"
    shown = f"[{bound_host}]" if ":" in bound_host else bound_host
    click.echo(f"tcplens exporter: serving {scheme}://{shown}:{bound_port}/metrics", err=True)
    if not is_loopback(host) and not (web.tls and web.basic_auth_users):
        click.echo(
            f"tcplens exporter: warning: {listen} is reachable beyond this machine and is served "
            "without both TLS and basic auth (see --web-config)",
            err=True,
        )

    def stop(signum: int, frame: FrameType | None) -> None:
        raise _Stop

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        server.serve_forever(poll_interval=0.5)
    except (_Stop, KeyboardInterrupt):
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        server.server_close()
        stop_tracing.set()
        if tracing is not None:
            tracing.join(timeout=10)  # removes the tracefs instance
    return 0
