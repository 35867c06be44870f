"""``tcplens capture -i IFACE``: live AF_PACKET capture through the same tracker.

Each state change of either side is printed as it happens, each connection
again when it finishes (closed, reset or idle past the timeouts), then the
table of every connection seen when the capture stops
(``--count``, ``--duration`` or Ctrl-C).  ``-w FILE`` also writes every frame
to a pcap file that ``tcplens pcap``, tshark or tcpdump can read back.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from typing import BinaryIO

import click

from tcplens.errors import InputError
from tcplens.model.words import plural
from tcplens.packets.capture import link_type, live_frames, open_interface
from tcplens.packets.engine import reconstruct_frames
from tcplens.packets.pcap import Frame, PcapWriter
from tcplens.packets.tracker import (
    CaptureSummary,
    Change,
    Connection,
    Timeouts,
    Tracker,
)
from tcplens.views.commands.pcap import _table
from tcplens.views.options import FiniteFloat, tracker_options


def _tee(frames: Iterator[Frame], writer: PcapWriter | None) -> Iterator[Frame]:
    for frame in frames:
        if writer is not None:
            writer.write(frame.ts_ns, frame.data, frame.wire_len)
        yield frame


def _line(conn: Connection) -> str:
    return (
        f"#{conn.index} {conn.orig} -> {conn.resp}  {conn.orig_state}/{conn.resp_state}  "
        f"{conn.conn_state} {conn.history}  "
        f"{conn.orig_stats.packets}/{conn.resp_stats.packets} pkts  {conn.duration:.3f}s"
    )


@click.command(name="capture")
@click.option(
    "-i",
    "--interface",
    required=True,
    help="Interface to capture on (e.g. lo, eth0), or 'any' for all (Linux cooked v2 frames, "
    "as tcpdump -i any).",
)
@click.option("--count", type=click.IntRange(min=1), default=None, help="Stop after N IP packets.")
@click.option(
    "--duration",
    type=FiniteFloat(min=0, min_open=True),
    default=None,
    help="Stop after S seconds.",
)
@click.option(
    "-w",
    "--write",
    "write",
    type=click.Path(dir_okay=False),
    default=None,
    help="Also write every frame to this pcap file (raw IP link type; SLL2 with -i any).",
)
@click.option("--zeek", is_flag=True, help="Print Zeek conn.log rows instead of lines and a table.")
@tracker_options(idle=False)
def command(
    interface: str,
    count: int | None,
    duration: float | None,
    write: str | None,
    zeek: bool,
    msl: float,
    close_timeout: float,
) -> int:
    """Capture live on an interface (root) and reconstruct connection states as they happen.

    Every state change of either side is printed as it happens, each connection
    when it finishes; when the capture stops
    (--count, --duration or Ctrl-C) every connection seen is shown with both
    sides' final states, as 'tcplens pcap' shows them for a file.

    Example: tcplens capture -i lo --duration 10 -w out.pcap   (as root)
    """
    sock = open_interface(interface)
    out_file: BinaryIO | None = None
    writer = None
    if write is not None:
        try:
            out_file = open(write, "wb")  # noqa: SIM115 - closed below
        except OSError as exc:
            sock.close()
            raise InputError(f"cannot write: {exc.strerror}", path=write) from None
        writer = PcapWriter(out_file, link_type(interface))
    timeouts = Timeouts(attempt=close_timeout, closed=close_timeout, reset=close_timeout)
    stdout = sys.stdout  # click 8.5 deprecates get_text_stream

    def changed(change: Change) -> None:
        clock = time.strftime("%H:%M:%S", time.localtime(change.time))
        frac = f"{change.time % 1:.6f}"[1:]
        stdout.write(
            f"{clock}{frac} #{change.index} {change.orig} -> {change.resp}  "
            f"{change.side} {change.state}  ({change.cause})\n"
        )
        stdout.flush()

    tracker = Tracker(msl=msl, timeouts=timeouts, on_change=None if zeek else changed)
    summary = CaptureSummary()
    frames = _tee(live_frames(interface, count=count, duration=duration, sock=sock), writer)
    seen: list[Connection] = []
    try:
        if zeek:
            from tcplens.packets.zeek import conn_log_header

            for line in conn_log_header():
                stdout.write(line + "\n")
        for conn in reconstruct_frames(frames, tracker, summary, interface):
            if zeek:
                stdout.write("\t".join(conn.zeek.values()) + "\n")
            else:
                seen.append(conn)
                stdout.write("finished " + _line(conn) + "\n")
            stdout.flush()
    finally:
        sock.close()
        if out_file is not None:
            out_file.close()
    if zeek:
        stdout.write("#close\t-\n")
    else:
        stdout.write("\n")
        _table(sorted(seen, key=lambda c: c.index), summary, stdout)
    if writer is not None:
        print(f"wrote {plural(writer.count, 'frame')} to {write}", file=sys.stderr)
    return 0
