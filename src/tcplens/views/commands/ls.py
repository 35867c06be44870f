"""``tcplens ls``: list sockets like ss/netstat, filtered, sorted, in the format asked."""

from __future__ import annotations

import gc
import os
import sys
from typing import TYPE_CHECKING, Any

import click

from tcplens.analysis.filters import SORT_KEYS, SocketFilter, sort_sockets
from tcplens.sources.records import Snapshot
from tcplens.views.options import (
    filter_from,
    filter_options,
    listing_from,
    output_format,
    output_options,
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

if TYPE_CHECKING:
    from tcplens.sources.select import ColumnListing

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
    snap = listing_from(
        kwargs,
        kind="columns" if columnar else "records",
        processes=processes,
        info=info,
        cmdline=cmdline,
        narrow=selection,
    )
    if not isinstance(snap, Snapshot):
        _write_columns(snap, fmt)
        return 0
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


def _write_columns(listing: ColumnListing, fmt: str) -> None:
    """The listing from the columnar dump: no record per socket at 100k.

    The text comes from the dump's fields
    (:func:`tcplens.views.sockets.write_plain_columns`,
    :func:`~tcplens.views.sockets.write_json_columns`); the address texts
    are made while the ``/proc/*/fd`` scan started beside the dump finishes.
    """
    from tcplens.views.sockets import column_text, write_json_columns, write_plain_columns

    columns = listing.columns
    text = column_text(columns) if fmt != "json" else None  # while the scan finishes
    owners = listing.owners()
    print_notes(listing.missing)
    if fmt == "json":
        write_json_columns(sys.stdout, columns, listing.header(), owners)
    else:
        write_plain_columns(sys.stdout, columns, owners=owners, text=text)
    sys.stdout.flush()
