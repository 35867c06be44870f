"""``tcplens ls``: list sockets like ss/netstat, filtered, sorted, in the format asked."""

from __future__ import annotations

import gc
import os
import sys
from typing import Any

import click

from tcplens.analysis.filters import SORT_KEYS, SocketFilter, sort_sockets
from tcplens.views.options import (
    filter_from,
    filter_options,
    output_format,
    output_options,
    snapshot_from,
    source_options,
)
from tcplens.views.sockets import (
    Columns,
    Resolver,
    render_csv,
    render_netstat,
    render_table,
    write_json,
    write_plain,
)

__all__ = ["TABLE_ROWS", "command", "print_notes"]

#: up to this many rows a terminal gets a rich table fitted to its width; a
#: bigger listing is aligned plain text with coloured states (rich would take
#: seconds per 10k rows, and nobody reads that table without a pager anyway)
TABLE_ROWS = 500


def print_notes(missing: list[str], warnings: list[Any] | None = None) -> None:
    """What the snapshot could not see goes to stderr, in parentheses as netstat does."""
    for note in missing:
        click.echo(f"({note})", err=True)
    for warning in warnings or []:
        click.echo(f"warning: {warning}", err=True)


@click.command("ls")
@filter_options
@source_options
@output_options
@click.option("-o", "--timers", is_flag=True, help="Timer column (kind, time left, retransmits).")
@click.option("-i", "--info", is_flag=True, help="TCP info: rtt, cwnd, retransmits, bytes.")
@click.option("-e", "--extended", is_flag=True, help="User and inode columns.")
@click.option("--cmdline", is_flag=True, help="Full command line of the owning process.")
@click.option(
    "--resolve/--numeric",
    "-r/-n",
    default=False,
    help="Show host and service names (default: numeric).",
)
@click.option(
    "--sort",
    "sort_key",
    type=click.Choice(sorted(SORT_KEYS)),
    default=None,
    help="Order rows (queues largest first); default: as the kernel lists them.",
)
@click.option(
    "-P",
    "--no-processes",
    is_flag=True,
    help="Skip process attribution (faster on very busy hosts).",
)
def command(
    timers: bool,
    info: bool,
    extended: bool,
    cmdline: bool,
    resolve: bool,
    sort_key: str | None,
    no_processes: bool,
    **kwargs: Any,
) -> int:
    """List TCP and UDP sockets with state, queues and owning process.

    Numeric by default. Recv-Q/Send-Q of a LISTEN socket are the accept queue
    length and the backlog limit (- where the source cannot see the backlog:
    --source procfs, netstat dumps); for other states, unread and
    unacknowledged bytes. A socket shared after fork() lists every process.

    Example: tcplens ls --state close-wait --sport 8080
    """
    gc.disable()  # short-lived and acyclic: see tcplens.sources.netlink._no_gc
    fmt = output_format(kwargs)
    selection = filter_from(kwargs)
    processes = not no_processes or selection.needs_processes
    # Without records where nothing needs one: piped plain text (default
    # columns) or JSON, no TCP info, names or sort, only kernel-side filters.
    plain = fmt == "table" and not sys.stdout.isatty() and not (timers or extended)
    needs_records = info or cmdline or resolve or sort_key is not None
    columnar = (plain or fmt == "json") and not needs_records and _kernel_filters_only(selection)
    if columnar and _list_columns(kwargs, selection, fmt, processes=processes):
        return 0
    snap = snapshot_from(kwargs, processes=processes, info=info, cmdline=cmdline, narrow=selection)
    sockets = selection.apply(snap.sockets)
    if sort_key is not None:
        sockets = sort_sockets(sockets, sort_key)
    resolver = Resolver() if resolve else None
    print_notes(snap.missing, snap.warnings)
    out = sys.stdout
    if fmt == "json":
        write_json(out, snap, sockets, resolver)
    elif fmt == "csv":
        out.write(render_csv(sockets))
    elif fmt == "netstat":
        out.write(render_netstat(snap, sockets, resolver))
    else:
        cols = Columns(
            timers=timers, info=info, extended=extended, cmdline=cmdline, processes=processes
        )
        if out.isatty() and len(sockets) <= TABLE_ROWS:
            from tcplens.views.console import Console

            console = Console()
            # crop=False: a table wider than the terminal wraps like ss's lines
            # instead of losing the end of an address or a pid/program
            table = render_table(sockets, cols, resolver, width=console.width)
            console.print(table, crop=False)
        else:
            colour = out.isatty() and not os.environ.get("NO_COLOR")
            write_plain(out, sockets, cols, resolver, colour=colour)
    out.flush()
    return 0


def _kernel_filters_only(selection: SocketFilter) -> bool:
    """True when the kernel can apply the whole selection (protocol, family, state)."""
    return selection == SocketFilter(
        states=selection.states, protos=selection.protos, families=selection.families
    )


def _list_columns(
    kwargs: dict[str, Any], selection: SocketFilter, fmt: str, *, processes: bool
) -> bool:
    """The listing from the columnar dump; False when the source is not netlink.

    A 100k-socket ``ls | ...`` needs no record per socket: the text comes
    from the dump's fields (:func:`tcplens.views.sockets.write_plain_columns`,
    :func:`~tcplens.views.sockets.write_json_columns`), and the owners from
    the ``/proc/*/fd`` scan, run in a child meanwhile.
    """
    import socket
    import time

    from tcplens.errors import SourceError
    from tcplens.sources import processes as proc
    from tcplens.sources.records import Snapshot
    from tcplens.sources.select import choose_source, start_columns
    from tcplens.views.sockets import column_text, write_json_columns, write_plain_columns

    if kwargs.get("from_file") is not None:
        return False
    source = kwargs.get("source")
    proc_root = kwargs.get("proc_root", "/proc")
    if choose_source(source) not in ("auto", "netlink") or proc_root != "/proc":
        return False
    # fork before the receiving thread starts: a child of a threaded process is unsafe
    scanning = proc.start_scan(proc_root) if processes else None
    pending = start_columns(
        source,
        proc_root=proc_root,
        protos=selection.protos or None,
        families=selection.families or None,
        states=selection.states or None,
    )
    if pending is None:
        if scanning is not None:
            scanning.cancel()
        return False
    taken_at = time.time()
    missing: list[str] = []
    try:
        columns = pending.result(missing)
    except BaseException as exc:
        if scanning is not None:
            scanning.cancel()
        if isinstance(exc, SourceError) and choose_source(source) != "netlink":
            return False  # auto: the record path reads /proc/net instead
        raise
    text = column_text(columns) if fmt != "json" else None  # while the scan finishes
    owners = None
    if processes:
        found = scanning.result() if scanning is not None else proc.scan(None, proc_root)
        owners = proc.owners_of(columns.inode, columns.uids(), found, proc_root)
        missing += owners.notes
    print_notes(missing)
    if fmt == "json":
        meta = Snapshot([], source="netlink", host=socket.gethostname(), taken_at=taken_at)
        meta.missing = missing
        write_json_columns(sys.stdout, columns, meta, owners)
    else:
        write_plain_columns(sys.stdout, columns, owners=owners, text=text)
    sys.stdout.flush()
    return True
