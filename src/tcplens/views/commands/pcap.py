"""``tcplens pcap FILE``: per-connection state reconstruction from a capture.

The command only wires things together: ``packets.pcap`` reads, the tracker
reconstructs, and this module renders a table, JSON, a Zeek conn.log, state
timelines or the ladder chart of one connection.  JSON and conn.log are
streamed as connections finish, so a capture larger than memory can be
turned into a conn.log in bounded memory.  So is the table when its order is
the capture's own (``--sort start``, the default) and stdout is not a
terminal: a row is written as plain text as soon as every earlier connection
has been (a connection that stays open holds back the rows after it, which
then wait in memory).  The table is formatted by hand, not by rich: measuring
and laying out a rich table of 8,000 rows cost more than reconstructing them
(see benchmarks/README.md, "The pcap table").  On the engine route the piped
table's rows, like JSON and conn.log, are written in Rust from the layout this
module hands over (``_TABLE``), so no Python object is built per connection.
"""

from __future__ import annotations

import gc
import heapq
import json
import os
import sys
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, BinaryIO, TypeVar

import click

from tcplens.errors import InputError, TcplensError
from tcplens.model.states import State
from tcplens.model.words import plural
from tcplens.packets.encap import chain_text
from tcplens.packets.engine import Rendering, TableLayout, reconstruct_capture, render_capture
from tcplens.packets.tracker import CaptureSummary, Connection, Timeouts, Tracker
from tcplens.packets.zeek import conn_log_header
from tcplens.sources.records import Addr
from tcplens.views.options import tracker_options

if TYPE_CHECKING:
    from tcplens.views.ladder import LadderRow

JSON_VERSION = 1
SORT_KEYS = ("start", "duration", "bytes", "state")
_PROGRESS_MIN_BYTES = 16 << 20


class _Counting:
    """A read-through wrapper that reports how far into the file we are."""

    def __init__(self, raw: BinaryIO, advance: Any) -> None:
        self.raw = raw
        self.advance = advance
        self.name = getattr(raw, "name", None)

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        self.advance(len(data))
        return data


T = TypeVar("T")


def _open(path: str) -> BinaryIO:
    if path == "-":
        return sys.stdin.buffer
    try:
        return open(path, "rb")
    except OSError as exc:
        raise InputError(f"cannot open: {exc.strerror}", path=path) from None


def _connections(
    path: str, tracker: Tracker, summary: CaptureSummary, progress: bool
) -> Iterator[Connection]:
    return _from_capture(path, progress, lambda fh: reconstruct_capture(fh, tracker, summary, path))


def _rows(
    path: str, tracker: Tracker, summary: CaptureSummary, rendering: Rendering
) -> Iterator[str]:
    """The connections already written as --json objects, conn.log rows or table rows, in
    blocks of rows joined as they are written (``engine.ROW_SEPARATORS``)."""
    return _from_capture(
        path,
        False,
        lambda fh: render_capture(fh, tracker, summary, path, rendering, _TABLE),
    )


def _from_capture(path: str, progress: bool, produce: Callable[[Any], Iterator[T]]) -> Iterator[T]:
    fh = _open(path)
    # The tracker's objects form no reference cycles, so reference counting frees them;
    # the cyclic collector would only rescan every live connection, again and again
    # (22% of the run on a 10k-connection capture).
    collecting = gc.isenabled()
    gc.disable()
    try:
        size = os.fstat(fh.fileno()).st_size if path != "-" else 0
        if progress and size >= _PROGRESS_MIN_BYTES and sys.stderr.isatty():
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                TimeRemainingColumn,
                TransferSpeedColumn,
            )

            with Progress(
                "[progress.description]{task.description}",
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
                transient=True,
            ) as bar:
                task = bar.add_task(Path(path).name, total=size)
                counted = _Counting(fh, lambda n: bar.advance(task, n))
                yield from produce(counted)
        else:
            yield from produce(fh)
    finally:
        if collecting:
            gc.enable()
        if fh is not sys.stdin.buffer:
            fh.close()


def _fmt_addr(addr: Addr) -> str:
    return str(addr)


def _state_text(conn: Connection, side: str) -> str:
    state = conn.orig_state if side == "orig" else conn.resp_state
    return f"{state}?" if side in conn.cannot_tell else str(state)


def _choose(conns: list[Connection], flow: str) -> list[Connection]:
    """Connections selected by ``--flow``: a number, or an endpoint either side matches."""
    text = flow.strip()
    if text.isdigit() and ":" not in text:
        number = int(text)
        by_index = [c for c in conns if c.index == number]
        # a bare number is a connection number when one exists, else a port
        if by_index or number > 65535:
            return by_index
        return sorted(
            (c for c in conns if number in (c.orig.port, c.resp.port)), key=lambda c: c.index
        )
    wanted = text.replace("[", "").replace("]", "")
    return sorted(
        (
            c
            for c in conns
            if wanted in (f"{c.orig.ip}:{c.orig.port}", f"{c.resp.ip}:{c.resp.port}")
        ),
        key=lambda c: c.index,
    )


def _sort(conns: list[Connection], key: str) -> list[Connection]:
    if key == "duration":
        return sorted(conns, key=lambda c: (-c.duration, c.index))
    if key == "bytes":
        return sorted(
            conns,
            key=lambda c: (-(c.orig_stats.payload_bytes + c.resp_stats.payload_bytes), c.index),
        )
    if key == "state":
        return sorted(conns, key=lambda c: (c.conn_state, str(c.orig_state), c.index))
    # "start": the order connections were first seen in the capture, which is start-time
    # order whenever the capture's timestamps never go back; the only order a table can
    # be streamed in, so the terminal and a pipe show the same rows in the same order
    return sorted(conns, key=lambda c: c.index)


def _in_capture_order(conns: Iterable[Connection]) -> Iterator[Connection]:
    """Connections by number as soon as every lower number has gone out.

    The tracker finishes connections out of order (a long one outlives many
    short ones); numbers follow first appearance, with no gaps, so a
    connection can be written once all lower numbers have been.  Anything
    still waiting when the input stops goes out in order, also when an error
    stopped it (before the error is passed on).
    """
    waiting: list[tuple[int, Connection]] = []
    following = 1
    try:
        for conn in conns:
            if conn.index != following:
                heapq.heappush(waiting, (conn.index, conn))
                continue
            yield conn
            following += 1
            while waiting and waiting[0][0] == following:
                yield heapq.heappop(waiting)[1]
                following += 1
    except TcplensError:
        while waiting:
            yield heapq.heappop(waiting)[1]
        raise
    while waiting:
        yield heapq.heappop(waiting)[1]


#: (header, right-aligned?, narrowest width a streamed table starts with)
_COLUMNS: tuple[tuple[str, bool, int], ...] = (
    ("#", True, 5),
    ("start", True, 8),
    ("duration", True, 8),
    ("originator", False, 21),  # 255.255.255.255:65535
    ("responder", False, 21),
    ("pkts >/<", True, 9),
    ("bytes >/<", True, 13),
    ("orig state", False, 11),  # ESTABLISHED
    ("resp state", False, 11),
    ("zeek", False, 6),  # RSTOS0
    ("history", False, 9),
    ("rexmit", True, 6),
    ("zwin", True, 4),
)


def _cells(c: Connection, base: float) -> tuple[str, ...]:
    o, r = c.orig_stats, c.resp_stats
    return (
        str(c.index),
        f"{c.start - base:.3f}",
        f"{c.duration:.3f}",
        _fmt_addr(c.orig),
        _fmt_addr(c.resp),
        f"{o.packets}/{r.packets}",
        f"{o.payload_bytes}/{r.payload_bytes}",
        _state_text(c, "orig"),
        _state_text(c, "resp"),
        c.conn_state,
        c.history or "-",
        str(o.retransmissions + r.retransmissions),
        str(o.zero_windows + r.zero_windows),
    )


def _via(c: Connection) -> str:
    """What follows a tunnelled connection's row: "  via" and its encapsulation chain,
    outermost first.  Nothing for a connection without one, so a capture without
    tunnels prints what it did before the chain was shown (issue 15); after the
    last column, so no column moves and no header changes."""
    return f"  via {chain_text(c.tunnel)}" if c.tunnel else ""


def _line(cells: Sequence[str], widths: list[int]) -> str:
    """One row, two spaces between columns; a cell is never cut, a wide one pushes the rest."""
    parts = [
        cell.rjust(width) if right else cell.ljust(width)
        for cell, width, (_, right, _) in zip(cells, widths, _COLUMNS, strict=True)
    ]
    return "  ".join(parts).rstrip()


def _header(widths: list[int], out: IO[str]) -> None:
    text = _line([name for name, _, _ in _COLUMNS], widths)
    if out.isatty():
        from tcplens.views.console import Console

        Console(file=out).print(text, style="bold", soft_wrap=True, highlight=False, markup=False)
    else:
        out.write(text + "\n")


def _footer(count: int, summary: CaptureSummary, out: IO[str]) -> None:
    d = summary.decode
    skipped = []
    if d.fragments:
        skipped.append(f"{d.fragments} IP fragments (counted, not reassembled)")
    if d.non_tcp:
        skipped.append(f"{d.non_tcp} non-TCP")
    if d.non_ip:
        # per type, most frequent first: "1,204 frames in an unsupported encapsulation: ..."
        kinds = sorted(d.unsupported.items(), key=lambda kv: (-kv[1], kv[0]))
        skipped.append(
            f"{d.non_ip:,} non-IP or in an unsupported encapsulation: "
            + ", ".join(f"{what} ({n:,})" for what, n in kinds)
        )
    if d.malformed:
        skipped.append(f"{d.malformed} malformed")
    if d.bad_checksums:
        skipped.append(
            f"{d.bad_checksums} with a bad checksum (IPv4 and tunnel UDP dropped, TCP as Zeek's C)"
        )
    out.write(
        f"{plural(count, 'connection')} from {plural(summary.frames, 'frame')} "
        f"({plural(d.tcp, 'TCP segment')}"
        + (f"; skipped {', '.join(skipped)}" if skipped else "")
        + "). A state ending in ? cannot be told from the wire: see --states.\n"
    )


def _table(conns: Sequence[Connection], summary: CaptureSummary, out: IO[str]) -> None:
    """Every row at once, each column as wide as its widest cell."""
    base = min(conns, key=lambda c: c.index).start if conns else 0.0
    rows = [_cells(c, base) for c in conns]
    widths = [len(name) for name, _, _ in _COLUMNS]
    for cells in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, cells, strict=True)]
    _header(widths, out)
    out.writelines(
        _line(cells, widths) + _via(c) + "\n" for cells, c in zip(rows, conns, strict=True)
    )
    _footer(len(rows), summary, out)


#: every column's starting width in a streamed table
_START_WIDTHS = tuple(max(len(name), least) for name, _, least in _COLUMNS)


def _table_rows(conns: Iterable[Connection]) -> Iterator[str]:
    """The rows of a streamed table, in capture order as connections finish.

    Column widths cannot be known in advance: each starts wide enough for an
    IPv4 connection and only grows, so a wider cell (an IPv6 address) shifts
    its own row and widens the column for the rows after it.  The engine
    writes these same rows itself (``_TABLE``), held equal by the differential
    tests.
    """
    widths = list(_START_WIDTHS)
    base: float | None = None
    for conn in _in_capture_order(conns):
        if base is None:
            base = conn.start  # connection 1 starts with the capture's first TCP segment
        cells = _cells(conn, base)
        yield _line(cells, widths) + _via(conn)
        widths = [max(w, len(cell)) for w, cell in zip(widths, cells, strict=True)]


#: the streamed table's layout, handed to the engine, which writes its rows in Rust
_TABLE = TableLayout(
    columns=tuple(
        (right, width) for (_, right, _), width in zip(_COLUMNS, _START_WIDTHS, strict=True)
    ),
    rows=_table_rows,
)


def _streamed_table(
    rows: Iterable[str], summary: CaptureSummary, out: IO[str]
) -> TcplensError | None:
    """Rows in capture order as connections finish (for a pipe: nothing waits for the end).

    An input error after the first frame is returned once every row before it
    is written (a file that is not a capture at all prints nothing and raises).
    """
    count = 0
    failure: TcplensError | None = None
    try:
        for block in rows:  # one or more rows, joined by newlines
            if not count:
                _header(list(_START_WIDTHS), out)
            out.write(block + "\n")
            count += block.count("\n") + 1
    except TcplensError as exc:
        if summary.frames == 0 and not count:
            raise
        failure = exc
    if not count:
        _header(list(_START_WIDTHS), out)
    _footer(count, summary, out)
    return failure


def _timelines(conns: list[Connection], end: float, out: IO[str]) -> None:
    for c in conns:
        out.write(
            f"#{c.index} {c.orig} -> {c.resp}  {c.conn_state} {c.history}  "
            f"completeness {c.completeness} ({c.completeness_text})\n"
        )
        if c.tunnel:
            out.write(f"  via {chain_text(c.tunnel)}\n")
        for name, addr, hist in (
            ("orig", c.orig, c.orig_history),
            ("resp", c.resp, c.resp_history),
        ):
            out.write(f"  {name} {addr}\n")
            for i, (t, state, cause) in enumerate(hist):
                nxt = hist[i + 1][0] if i + 1 < len(hist) else end
                spent = f"{max(0.0, nxt - t):10.6f}s" + ("+" if i + 1 == len(hist) else " ")
                out.write(f"    {t - c.start:12.6f}  {state!s:<12} {spent} {cause}\n")
            if name in c.cannot_tell:
                out.write(f"    cannot tell: {c.cannot_tell[name]}\n")
        for note in c.notes:
            out.write(f"  note: {note}\n")
        out.write("\n")


def _ladder_rows(conn: Connection) -> list[LadderRow]:
    """One row per kept segment, plus one for each change that came after a later frame."""
    from tcplens.model.machine import Flags, format_flags
    from tcplens.views.ladder import LadderRow

    # Each side's state changes in the order it went through them, with the frame that
    # caused each.  That order is not always capture order: when FINs cross, a side
    # sends its FIN (FIN_WAIT1) before the peer's FIN, captured earlier, reaches it
    # (CLOSING).  A change is drawn on its frame's row while the side's earlier changes
    # have been drawn; one whose frame is already behind is drawn on a row of its own
    # ("arrives"), so a column never shows an order the side did not go through.
    queues: list[deque[tuple[int, float, State]]] = [
        deque(
            (frame, when, state)
            for (when, state, _cause), frame in zip(hist, frames, strict=False)
            if frame
        )
        for hist, frames in (
            (conn.orig_history, conn.history_frames[0]),
            (conn.resp_history, conn.history_frames[1]),
        )
    ]
    rows = [
        LadderRow(
            0.0,
            str(conn.orig_history[0][1]),
            str(conn.resp_history[0][1]),
            note="start: " + conn.orig_history[0][2],
            left_changed=True,
            right_changed=True,
        )
    ]
    now = [str(conn.orig_history[0][1]), str(conn.resp_history[0][1])]
    for seg in conn.segments:
        record = seg.record
        changed = [False, False]
        late: list[tuple[int, int, float, State]] = []  # (side, frame, time, state)
        for side, queue in enumerate(queues):
            while queue and queue[0][0] <= record:
                frame, when, state = queue.popleft()
                if frame == record:
                    now[side] = str(state)
                    changed[side] = True
                else:
                    late.append((side, frame, when, state))
        label = format_flags(Flags(seg.flags & 0x3F)) + f" seq={seg.seq}"
        if seg.flags & 0x10:
            label += f" ack={seg.ack}"
        if seg.length:
            label += f" len={seg.length}"
        rows.append(
            LadderRow(
                seg.time - conn.start,
                now[0],
                now[1],
                direction="->" if seg.from_orig else "<-",
                label=label,
                note=f"frame {record}",
                left_changed=changed[0],
                right_changed=changed[1],
            )
        )
        for side, frame, when, state in late:
            now[side] = str(state)
            name = "orig" if side == 0 else "resp"
            rows.append(
                LadderRow(
                    when - conn.start,
                    now[0],
                    now[1],
                    note=f"frame {frame} reaches {name} only now: it crossed frame {record}",
                    left_changed=side == 0,
                    right_changed=side == 1,
                )
            )
    return rows


def _ladder(conn: Connection, out: IO[str]) -> None:
    from tcplens.views.ladder import render_ladder

    rows = _ladder_rows(conn)
    if conn.tunnel:
        out.write(f"#{conn.index} via {chain_text(conn.tunnel)}\n")
    out.write(
        render_ladder(
            rows,
            left_title=f"{conn.orig} (orig)",
            right_title=f"{conn.resp} (resp)",
            width=120,
            time_format="{:10.6f}",
        )
    )
    for name in ("orig", "resp"):
        if name in conn.cannot_tell:
            out.write(f"{name}: cannot tell: {conn.cannot_tell[name]}\n")


def _ladder_svg(conn: Connection, out: IO[str]) -> None:
    from tcplens.views.ladder_svg import ladder_svg

    out.write(
        ladder_svg(
            _ladder_rows(conn),
            left_title=f"{conn.orig} (orig)",
            right_title=f"{conn.resp} (resp)",
            title=_ladder_title(conn),
            time_format="{:.6f}",
        )
    )


def _ladder_title(conn: Connection) -> str:
    """An SVG ladder's title (``pcap --flow N --format svg``, ``tcplens report``)."""
    title = f"#{conn.index} {conn.orig} -> {conn.resp}  {conn.conn_state} {conn.history}"
    return title + (f"  via {chain_text(conn.tunnel)}" if conn.tunnel else "")


@click.command(name="pcap")
@click.argument("file", type=str)
@click.option("--json", "as_json", is_flag=True, help="JSON (versioned), streamed.")
@click.option("--zeek", is_flag=True, help="Zeek conn.log TSV with #fields header, streamed.")
@click.option(
    "--sort",
    type=click.Choice(SORT_KEYS),
    default="start",
    show_default=True,
    help="Table order (start: as first seen in the capture; the only order a piped "
    "table is streamed in).",
)
@click.option(
    "--flow",
    metavar="N|ADDR:PORT|PORT",
    help="Ladder chart of connection number N, or of the first connection with that "
    "endpoint (e.g. 10.0.0.1:5000, [::1]:80 or 443).",
)
@click.option("--states", is_flag=True, help="State timeline of each side, time in each state.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "svg"]),
    default="text",
    show_default=True,
    help="With --flow: svg draws the ladder as an SVG image.",
)
@click.option(
    "--check-checksums",
    is_flag=True,
    help="Validate IPv4 header, UDP and TCP checksums as Zeek does by default: a bad IPv4 "
    "header drops the packet, a bad UDP checksum drops a tunnel's packet undecapsulated "
    "(VXLAN, Geneve, Teredo, AYIYA, GTP-U; zero is none over IPv4, and allowed over IPv6 "
    "for VXLAN only), a bad TCP checksum is Zeek history C/c and changes no state. Off "
    "by default, as in Wireshark: captures taken on the sending host carry checksums the "
    "NIC fills in later (offload).",
)
@tracker_options(idle=True)
def command(
    file: str,
    as_json: bool,
    zeek: bool,
    sort: str,
    flow: str | None,
    states: bool,
    fmt: str,
    check_checksums: bool,
    msl: float,
    idle_timeout: float,
    close_timeout: float,
) -> int:
    """Reconstruct every TCP connection's states from a pcap or pcapng capture.

    Both sides of each connection are driven through the model from the
    segments on the wire: state history with causes, Zeek conn_state and
    history, Wireshark completeness, packets, bytes, retransmissions and zero
    windows.  A state shown with "?" cannot be told from the wire (--states
    says why).  Exit 1 for a truncated or damaged capture (connections before
    the bad record are still shown), 2 for a file that is not a capture.

    Example: tcplens pcap capture.pcapng --sort duration
    Example: tcplens pcap capture.pcapng --flow 3 --format svg > flow3.svg
    """
    if fmt == "svg" and (flow is None or as_json or zeek or states):
        raise click.UsageError(
            "--format svg draws one connection's ladder: give --flow N, without --json, "
            "--zeek or --states"
        )
    timeouts = Timeouts(
        attempt=close_timeout, closed=close_timeout, reset=close_timeout, inactivity=idle_timeout
    )
    tracker = Tracker(
        msl=msl,
        timeouts=timeouts,
        keep_segments=flow is not None,
        check_checksums=check_checksums,
    )
    summary = CaptureSummary()
    out = sys.stdout  # click 8.5 deprecates get_text_stream; the CLI already set stdout up
    progress = not (as_json or zeek)
    conns = _connections(file, tracker, summary, progress)
    failure: TcplensError | None = None
    if zeek:
        for line in conn_log_header():
            out.write(line + "\n")
        try:
            for block in _rows(file, tracker, summary, "zeek"):
                out.write(block + "\n")
        except TcplensError as exc:
            failure = exc
        out.write("#close\t-\n")
    elif as_json:
        out.write(f'{{"version": {JSON_VERSION}, "file": {json.dumps(file)}, "connections": [')
        first = True
        try:
            for block in _rows(file, tracker, summary, "json"):
                out.write(("\n" if first else ",\n") + block)
                first = False
        except TcplensError as exc:
            failure = exc
        d = summary.decode
        tail = {
            "frames": summary.frames,
            "tcp_segments": d.tcp,
            "fragments": d.fragments,
            "non_tcp": d.non_tcp,
            "non_ip": d.non_ip,
            "unsupported": dict(sorted(d.unsupported.items())),
            "malformed": d.malformed,
            "connections": summary.connections,
            "truncated": str(failure) if failure is not None else None,
        }
        if check_checksums:
            tail["bad_checksums"] = d.bad_checksums
        out.write(f'\n], "summary": {json.dumps(tail)}}}\n')
    elif flow is None and not states and sort == "start" and not out.isatty():
        # a pipe: plain rows as connections finish, in capture order
        failure = _streamed_table(_rows(file, tracker, summary, "table"), summary, out)
    else:
        collected: list[Connection] = []
        try:
            for conn in conns:
                collected.append(conn)
        except TcplensError as exc:
            failure = exc
            if not collected and summary.frames == 0:
                raise
        if flow is not None:
            chosen = _choose(collected, flow)
            if not chosen:
                if failure is not None:
                    raise failure
                raise click.UsageError(
                    f"no connection {flow}; this capture has {len(collected)} (1..{len(collected)})"
                )
            if fmt == "svg":
                _ladder_svg(chosen[0], out)
            else:
                _ladder(chosen[0], out)
            if len(chosen) > 1:
                others = ", ".join(str(c.index) for c in chosen[1:6])
                more = f"({len(chosen) - 1} more match {flow}: {others}; pick one by number)"
                # beside an SVG document on stdout, the hint goes to stderr
                click.echo(more, err=fmt == "svg", file=None if fmt == "svg" else out)
        elif states:
            _timelines(_sort(collected, sort), tracker.now, out)
        else:
            _table(_sort(collected, sort), summary, out)
    out.flush()
    if failure is not None:
        raise failure
    return 0
