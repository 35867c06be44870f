"""``tcplens pcap FILE``: per-connection state reconstruction from a capture.

The command only wires things together: ``packets.pcap`` reads, the tracker
reconstructs, and this module renders a table, JSON, a Zeek conn.log, state
timelines or the ladder chart of one connection.  JSON and conn.log are
streamed as connections finish, so a capture larger than memory can be
turned into a conn.log in bounded memory; the table needs every row to sort.
"""

from __future__ import annotations

import gc
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, BinaryIO

import click

from tcplens.errors import InputError, TcplensError
from tcplens.model.states import State
from tcplens.packets.pcap import read_frames
from tcplens.packets.tracker import CaptureSummary, Connection, Timeouts, Tracker, reconstruct
from tcplens.packets.zeek import conn_log_header
from tcplens.sources.records import Addr
from tcplens.views.options import tracker_options

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


def _open(path: str) -> BinaryIO:
    if path == "-":
        return sys.stdin.buffer
    try:
        return open(path, "rb")
    except OSError as exc:
        raise InputError(f"cannot open: {exc.strerror}", path=path) from None


def _vectorisable(fh: BinaryIO) -> bool:
    """Peek at the magic of a seekable file: pcap and pcapng take the vectorised path."""
    try:
        if not fh.seekable():
            # a pipe (`tcplens pcap <(tcpdump -w -)`): reading the magic here would lose it
            return False
        head = fh.read(4)
        fh.seek(0)
    except (OSError, ValueError):
        return False
    return head in (
        b"\xd4\xc3\xb2\xa1",
        b"\xa1\xb2\xc3\xd4",
        b"\x4d\x3c\xb2\xa1",
        b"\xa1\xb2\x3c\x4d",
        b"\x0a\x0d\x0d\x0a",
    )


def _frames_to_connections(
    fh: Any, path: str, tracker: Tracker, summary: CaptureSummary, fast: bool
) -> Iterator[Connection]:
    if fast:
        from tcplens.packets.fastpath import reconstruct_pcap_fast

        return reconstruct_pcap_fast(fh, tracker, summary, path)
    return reconstruct(read_frames(fh, path), tracker, summary, path)


def _connections(
    path: str, tracker: Tracker, summary: CaptureSummary, progress: bool
) -> Iterator[Connection]:
    fh = _open(path)
    fast = path != "-" and not tracker.keep_segments and _vectorisable(fh)
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
                yield from _frames_to_connections(counted, path, tracker, summary, fast)
        else:
            yield from _frames_to_connections(fh, path, tracker, summary, fast)
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
    return sorted(conns, key=lambda c: (c.start, c.index))


def _table(conns: list[Connection], summary: CaptureSummary, out: IO[str]) -> None:
    from rich.table import Table

    from tcplens.views.console import Console

    width = None if out.isatty() else 250  # a pipe gets whole lines, not a squeezed table
    console = Console(file=out, highlight=False, soft_wrap=False, width=width)
    base = min((c.start for c in conns), default=0.0)
    table = Table(box=None, pad_edge=False, header_style="bold")
    for name, justify in (
        ("#", "right"),
        ("start", "right"),
        ("duration", "right"),
        ("originator", "left"),
        ("responder", "left"),
        ("pkts >/<", "right"),
        ("bytes >/<", "right"),
        ("orig state", "left"),
        ("resp state", "left"),
        ("zeek", "left"),
        ("history", "left"),
        ("rexmit", "right"),
        ("zwin", "right"),
    ):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for c in conns:
        table.add_row(
            str(c.index),
            f"{c.start - base:.3f}",
            f"{c.duration:.3f}",
            _fmt_addr(c.orig),
            _fmt_addr(c.resp),
            f"{c.orig_stats.packets}/{c.resp_stats.packets}",
            f"{c.orig_stats.payload_bytes}/{c.resp_stats.payload_bytes}",
            _state_text(c, "orig"),
            _state_text(c, "resp"),
            c.conn_state,
            c.history or "-",
            str(c.retransmissions),
            str(c.zero_windows),
        )
    console.print(table)
    d = summary.decode
    skipped = []
    if d.fragments:
        skipped.append(f"{d.fragments} IP fragments (counted, not reassembled)")
    if d.non_tcp:
        skipped.append(f"{d.non_tcp} non-TCP")
    if d.non_ip:
        skipped.append(f"{d.non_ip} non-IP")
    if d.malformed:
        skipped.append(f"{d.malformed} malformed")
    console.print(
        f"{len(conns)} connections from {summary.frames} frames ({d.tcp} TCP segments"
        + (f"; skipped {', '.join(skipped)}" if skipped else "")
        + "). A state ending in ? cannot be told from the wire: see --states."
    )


def _timelines(conns: list[Connection], end: float, out: IO[str]) -> None:
    for c in conns:
        out.write(
            f"#{c.index} {c.orig} -> {c.resp}  {c.conn_state} {c.history}  "
            f"completeness {c.completeness} ({c.completeness_text})\n"
        )
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


def _ladder(conn: Connection, out: IO[str]) -> None:
    try:
        from tcplens.views.ladder import LadderRow, render_ladder
    except ImportError:  # pragma: no cover - the ladder module ships with tcplens
        raise TcplensError("the ladder renderer is not available") from None
    from tcplens.model.machine import Flags, format_flags

    def changes(hist: list[tuple[float, State, str]], frames: list[int]) -> dict[int, State]:
        out: dict[int, State] = {}
        for (_, state, _cause), frame in zip(hist, frames, strict=False):
            if frame:
                out[frame] = state
        return out

    left = changes(conn.orig_history, conn.history_frames[0])
    right = changes(conn.resp_history, conn.history_frames[1])
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
    lstate, rstate = str(conn.orig_history[0][1]), str(conn.resp_history[0][1])
    for seg in conn.segments:
        lchg = seg.record in left
        rchg = seg.record in right
        if lchg:
            lstate = str(left[seg.record])
        if rchg:
            rstate = str(right[seg.record])
        label = format_flags(Flags(seg.flags & 0x3F)) + f" seq={seg.seq}"
        if seg.flags & 0x10:
            label += f" ack={seg.ack}"
        if seg.length:
            label += f" len={seg.length}"
        rows.append(
            LadderRow(
                seg.time - conn.start,
                lstate,
                rstate,
                direction="->" if seg.from_orig else "<-",
                label=label,
                note=f"frame {seg.record}",
                left_changed=lchg,
                right_changed=rchg,
            )
        )
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


@click.command(name="pcap")
@click.argument("file", type=str)
@click.option("--json", "as_json", is_flag=True, help="JSON (versioned), streamed.")
@click.option("--zeek", is_flag=True, help="Zeek conn.log TSV with #fields header, streamed.")
@click.option(
    "--sort",
    type=click.Choice(SORT_KEYS),
    default="start",
    show_default=True,
    help="Table order.",
)
@click.option(
    "--flow",
    metavar="N|ADDR:PORT|PORT",
    help="Ladder chart of connection number N, or of the first connection with that "
    "endpoint (e.g. 10.0.0.1:5000, [::1]:80 or 443).",
)
@click.option("--states", is_flag=True, help="State timeline of each side, time in each state.")
@tracker_options(idle=True)
def command(
    file: str,
    as_json: bool,
    zeek: bool,
    sort: str,
    flow: str | None,
    states: bool,
    msl: float,
    idle_timeout: float,
    close_timeout: float,
) -> int:
    """Reconstruct every TCP connection's states from a pcap or pcapng capture.

    Both sides of each connection are driven through the model from the
    segments on the wire: state history with causes, Zeek conn_state and
    history, Wireshark completeness, packets, bytes, retransmissions and zero
    windows.  A state shown with "?" cannot be told from the wire (--states
    says why).  Exit 1 for a truncated capture (connections so far are still
    shown), 2 for a file that is not a capture.

    Example: tcplens pcap capture.pcapng --sort duration
    """
    timeouts = Timeouts(
        attempt=close_timeout, closed=close_timeout, reset=close_timeout, inactivity=idle_timeout
    )
    tracker = Tracker(msl=msl, timeouts=timeouts, keep_segments=flow is not None)
    summary = CaptureSummary()
    out = sys.stdout  # click 8.5 deprecates get_text_stream; the CLI already set stdout up
    progress = not (as_json or zeek)
    conns = _connections(file, tracker, summary, progress)
    failure: TcplensError | None = None
    if zeek:
        for line in conn_log_header():
            out.write(line + "\n")
        try:
            for conn in conns:
                out.write("\t".join(conn.zeek.values()) + "\n")
        except TcplensError as exc:
            failure = exc
        out.write("#close\t-\n")
    elif as_json:
        out.write(f'{{"version": {JSON_VERSION}, "file": {json.dumps(file)}, "connections": [')
        first = True
        try:
            for conn in conns:
                out.write(("\n" if first else ",\n") + json.dumps(conn.as_dict()))
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
            "malformed": d.malformed,
            "connections": summary.connections,
            "truncated": str(failure) if failure is not None else None,
        }
        out.write(f'\n], "summary": {json.dumps(tail)}}}\n')
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
            _ladder(chosen[0], out)
            if len(chosen) > 1:
                others = ", ".join(str(c.index) for c in chosen[1:6])
                out.write(f"({len(chosen) - 1} more match {flow}: {others}; pick one by number)\n")
        elif states:
            _timelines(_sort(collected, sort), tracker.now, out)
        else:
            _table(_sort(collected, sort), summary, out)
    out.flush()
    if failure is not None:
        raise failure
    return 0
