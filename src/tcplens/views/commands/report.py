"""``tcplens report``: one self-contained HTML page for a capture, a saved dump or this machine.

The command gathers what the other verbs compute (the capture's connections
as ``tcplens pcap`` reconstructs them, the snapshot, summary and findings as
``tcplens status``/``doctor`` compute them) and hands plain data to
:mod:`tcplens.views.report`, which writes the page.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

import click

from tcplens.errors import InputError, TcplensError
from tcplens.model.words import plural
from tcplens.views.options import tracker_options

#: First four bytes of a pcap (either byte order, micro- or nanosecond) or a pcapng
#: section header block (the magics ``tcplens.packets.pcap`` reads).
_CAPTURE_MAGICS = frozenset(
    bytes.fromhex(h) for h in ("a1b2c3d4", "d4c3b2a1", "a1b23c4d", "4d3cb2a1", "0a0d0d0a")
)


def _is_capture(path: str) -> bool:
    try:
        with open(path, "rb") as fh:
            return fh.read(4) in _CAPTURE_MAGICS
    except OSError as exc:
        raise InputError(f"cannot open: {exc.strerror}", path=path) from None


def _capture_report(
    path: str, ladders: int, msl: float, idle_timeout: float, close_timeout: float
) -> tuple[str, TcplensError | None, str]:
    from tcplens.packets.engine import reconstruct_capture
    from tcplens.packets.tracker import CaptureSummary, Connection, Timeouts, Tracker
    from tcplens.views.commands.pcap import _ladder_rows, _ladder_title
    from tcplens.views.ladder_svg import ladder_svg
    from tcplens.views.report import CaptureReport, render_capture

    timeouts = Timeouts(
        attempt=close_timeout, closed=close_timeout, reset=close_timeout, inactivity=idle_timeout
    )
    tracker = Tracker(msl=msl, timeouts=timeouts, keep_segments=ladders > 0)
    summary = CaptureSummary()
    conns: list[Connection] = []
    failure: TcplensError | None = None
    try:
        with open(path, "rb") as fh:
            conns.extend(reconstruct_capture(fh, tracker, summary, path))
    except OSError as exc:
        raise InputError(f"cannot open: {exc.strerror}", path=path) from None
    except TcplensError as exc:
        if not conns and summary.frames == 0:
            raise
        failure = exc
    conns.sort(key=lambda c: c.index)
    base = conns[0].start if conns else 0.0
    rows: list[dict[str, Any]] = []
    pictures: dict[int, str] = {}
    for conn in conns:
        o, r = conn.orig_stats, conn.resp_stats
        rows.append(
            {
                "index": conn.index,
                "start": conn.start - base,
                "duration": conn.duration,
                "orig": str(conn.orig),
                "resp": str(conn.resp),
                "packets": [o.packets, r.packets],
                "bytes": [o.payload_bytes, r.payload_bytes],
                "orig_state": str(conn.orig_state),
                "resp_state": str(conn.resp_state),
                "cannot_tell": sorted(conn.cannot_tell),
                "conn_state": conn.conn_state,
                "history": conn.history or "-",
                "retransmissions": o.retransmissions + r.retransmissions,
                "tunnel": list(conn.tunnel),
            }
        )
        if len(pictures) < ladders:
            pictures[conn.index] = ladder_svg(
                _ladder_rows(conn),
                left_title=f"{conn.orig} (orig)",
                right_title=f"{conn.resp} (resp)",
                title=_ladder_title(conn),
                time_format="{:.6f}",
            )
    d = summary.decode
    facts = {
        "frames": summary.frames,
        "tcp_segments": d.tcp,
        "fragments": d.fragments,
        "non_tcp": d.non_tcp,
        "non_ip": d.non_ip,
        "malformed": d.malformed,
        "connections": len(conns),
        "truncated": str(failure) if failure is not None else None,
    }
    report = CaptureReport(path, facts, rows, pictures, ladders)
    said = f"{plural(len(conns), 'connection')}, {plural(len(pictures), 'ladder')}"
    return render_capture(report), failure, said


def _sockets_report(from_file: str | None, from_format: str | None) -> tuple[str, str]:
    from tcplens.model.diagram import figure, to_dot
    from tcplens.views.commands.diagram import svg_from_dot
    from tcplens.views.live_map import MARKS, live_map, snapshot_for
    from tcplens.views.report import SocketsReport, render_sockets

    snapshot = snapshot_for(from_file, from_format)
    placed = live_map(snapshot, live=from_file is None)
    overlay = placed.overlay
    marks = {s: MARKS[level] for s, level in overlay.severity.items() if level in MARKS}
    text = figure(overlay.counts, marks).text
    svg = svg_from_dot(to_dot(overlay=overlay)) if shutil.which("dot") else None
    s = placed.summary
    findings = [
        {
            "severity": f.severity.value,
            "rule": f.rule,
            "state": str(f.state) if f.state is not None else None,
            "title": f.title.get("en"),
            "explanation": f.explanation.get("en"),
            "advice": f.advice.get("en"),
            "count": f.evidence.count,
        }
        for f in placed.findings
    ]
    busy = [
        {
            "state": str(b.state),
            "count": b.count,
            "ports": [list(p) for p in b.top_local_ports],
            "processes": [list(p) for p in b.top_processes],
            "peers": [list(p) for p in b.top_peers],
            "estimated": b.estimated,
        }
        for b in s.busy
    ]
    from tcplens.model.states import State

    report = SocketsReport(
        source=s.source,
        host=s.host,
        taken_at=s.taken_at,
        total=s.total,
        tcp_states={str(state): n for state, n in s.tcp_states.items()},
        udp={
            "unconnected": s.udp_states.get(State.CLOSED, 0),
            "connected": s.udp_states.get(State.ESTABLISHED, 0),
        },
        findings=findings,
        busy=busy,
        diagram_svg=svg,
        diagram_text=text,
        severity={str(state): level for state, level in overlay.severity.items()},
        missing=list(s.missing),
    )
    said = f"{plural(s.total, 'socket')}, {plural(len(findings), 'finding')}"
    return render_sockets(report), said


@click.command(name="report")
@click.argument("file", required=False)
@click.option(
    "-o",
    "--output",
    required=True,
    metavar="OUT.html",
    help="Where to write the page ('-' = stdout).",
)
@click.option(
    "--ladders",
    type=click.IntRange(min=0),
    default=200,
    show_default=True,
    help="Capture: include the ladder of the first N connections (each a few KB).",
)
@click.option(
    "--from-format",
    default=None,
    metavar="NAME",
    help="Format of a saved dump FILE (default: detect; the names 'tcplens ls --format' takes).",
)
@tracker_options(idle=True)
def command(
    file: str | None,
    output: str,
    ladders: int,
    from_format: str | None,
    msl: float,
    idle_timeout: float,
    close_timeout: float,
) -> int:
    """Write one self-contained HTML page (no network needed to open it).

    For a pcap/pcapng FILE: the capture's summary, connections by final state
    and by Zeek conn_state, a sortable table, and each connection's ladder on
    click.  For a saved netstat, ss or /proc/net dump FILE, or this machine
    without FILE: the state diagram with each state's socket count, coloured
    by the doctor's findings, the findings themselves, and the busiest ports
    and processes.  Exit 1 for a truncated capture (the page shows what was
    readable).

    \b
    Example: tcplens report capture.pcapng -o report.html
    Example: tcplens report netstat.txt -o dump.html
    Example: tcplens report -o now.html
    """
    failure: TcplensError | None = None
    if file is not None and file != "-" and _is_capture(file):
        if from_format is not None:
            raise click.UsageError("--from-format describes a saved dump; FILE is a capture")
        page, failure, said = _capture_report(file, ladders, msl, idle_timeout, close_timeout)
    elif from_format is not None and file is None:
        raise click.UsageError("--from-format describes a saved dump FILE; give one or drop it")
    else:
        page, said = _sockets_report(file, from_format)
    if output == "-":
        sys.stdout.write(page)
    else:
        try:
            Path(output).write_text(page, encoding="utf-8")
        except OSError as exc:
            raise InputError(f"cannot write: {exc.strerror}", path=output) from None
        click.echo(f"wrote {output} ({said}, {len(page.encode()) // 1024} KB)", err=True)
    if failure is not None:
        click.echo(f"tcplens: warning: {failure}", err=True)
        return 1
    return 0
