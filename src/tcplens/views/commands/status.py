"""``tcplens status`` (and ``tcplens`` alone): this machine at a glance.

The command takes a snapshot, summarises it (``tcplens.analysis.summary``)
and renders the :class:`Summary` with :func:`render_status`.  Extra lines
(for example the doctor's top finding) are passed in as ``extra`` so this
view never computes findings itself.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import click
from rich.text import Text

from tcplens.analysis.summary import ORPHAN, Summary, summarize
from tcplens.model.states import State
from tcplens.views.console import Console
from tcplens.views.options import snapshot_from, source_options
from tcplens.views.sockets import STATE_STYLES

__all__ = ["DOCTOR_POINTER", "command", "render_status"]

DOCTOR_POINTER = "Next: `tcplens doctor` explains what is unusual here and what to do about it."
_BAR_WIDTH = 32


def _bar(count: int, biggest: int) -> str:
    """A bar of eighth-blocks, at least a sliver for any non-zero count."""
    if biggest <= 0 or count <= 0:
        return ""
    eighths = max(1, round(count / biggest * _BAR_WIDTH * 8))
    full, rest = divmod(eighths, 8)
    return "█" * full + ("", "▏", "▎", "▍", "▌", "▋", "▊", "▉")[rest]


def _seconds(value: float) -> str:
    return f"{value:.0f}s" if value >= 10 else f"{value:.1f}s"


def render_status(summary: Summary, extra: Sequence[str | Text] = ()) -> list[Text]:
    """The status screen as lines; ``extra`` lines go just before the doctor pointer."""
    lines: list[Text] = []
    when = datetime.fromtimestamp(summary.taken_at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    lines.append(Text(f"{summary.host or 'this host'} · {summary.source} · {when}", style="bold"))
    tcp = summary.by_proto.get("tcp", 0)
    udp = summary.by_proto.get("udp", 0)
    v4, v6 = summary.by_family.get(4, 0), summary.by_family.get(6, 0)
    lines.append(Text(f"{summary.total} sockets: TCP {tcp}, UDP {udp} (IPv4 {v4}, IPv6 {v6})"))
    lines.append(Text(""))
    if summary.tcp_states:
        lines.append(Text("TCP sockets per state", style="bold"))
        biggest = max(summary.tcp_states.values())
        width = max(len(s.value) for s in summary.tcp_states)
        digits = len(str(biggest))
        for state, count in summary.tcp_states.items():
            line = Text(f"  {state.value:<{width}} {count:>{digits}} ")
            line.append(_bar(count, biggest), style=STATE_STYLES.get(state, ""))
            lines.append(line)
    else:
        lines.append(Text("No TCP sockets."))
    if summary.udp_states:
        unconnected = summary.udp_states.get(State.CLOSED, 0)
        connected = summary.udp_states.get(State.ESTABLISHED, 0)
        lines.append(Text(f"  UDP: {unconnected} unconnected, {connected} connected"))
    if summary.busy:
        lines.append(Text(""))
        lines.append(Text("Busiest states", style="bold"))
        for detail in summary.busy:
            ports = ", ".join(f"{p} ({n})" for p, n in detail.top_local_ports)
            procs = ", ".join(
                f"{name}[{pid}] ({n})" if pid is not None else f"{_OWNER.get(name, name)} ({n})"
                for name, pid, n in detail.top_processes
            )
            line = Text(f"  {detail.state.value} {detail.count}: ")
            line.stylize(STATE_STYLES.get(detail.state, ""), 2, 2 + len(detail.state.value))
            line.append(f"local ports {ports}")
            lines.append(line)
            if procs:
                # Own line: names and pids must not wrap mid-word at 80 columns.
                lines.append(Text(f"    processes {procs}"))
    if summary.oldest or summary.untimed:
        lines.append(Text(""))
        lines.append(Text("Oldest", style="bold"))
        for state in (State.TIME_WAIT, State.FIN_WAIT2):
            entry = summary.oldest.get(state)
            untimed = summary.untimed.get(state, 0)
            if entry is not None:
                sock = entry.socket
                text = (
                    f"  {state.value}: {_seconds(entry.age)} of {_seconds(entry.lifetime)}"
                    f" ({_seconds(entry.remaining)} left), {sock.local} -> {sock.remote}"
                )
                lines.append(Text(text))
            if untimed:
                lines.append(
                    Text(
                        f"  {state.value}: {untimed} without a timer "
                        "(still held open by their application; they can stay forever)"
                    )
                )
    lines.append(Text(""))
    for note in summary.missing:
        lines.append(Text(f"({note})", style="dim"))
    for item in extra:
        lines.append(item if isinstance(item, Text) else Text(item))
    lines.append(Text(DOCTOR_POINTER))
    return lines


_OWNER = {ORPHAN: "none (closed, kernel-held)", "?": "unknown"}


@click.command("status")
@source_options
def command(**kwargs: Any) -> int:
    """This machine at a glance: sockets per state, busiest ports and processes.

    Works unprivileged: sockets of other users' processes are counted, only
    their process names are unknown.

    Example: tcplens status --source procfs
    """
    from tcplens.sources.procfs import read_fin_timeout
    from tcplens.views.commands.doctor import top_finding

    gc.disable()  # short-lived and acyclic: see tcplens.sources.netlink._no_gc
    proc_root = kwargs.get("proc_root", "/proc")
    live = kwargs.get("from_file") is None
    snap = snapshot_from(kwargs, processes=True)
    # a saved dump's kernel is unknown: assume the default tcp_fin_timeout there
    summary = summarize(snap, fin_timeout=read_fin_timeout(proc_root) if live else 60.0)
    console = Console(highlight=False, soft_wrap=True)
    for line in render_status(summary, top_finding(snap, live=live, proc_root=proc_root)):
        console.print(line)
    if not os.isatty(1):
        console.file.flush()
    return 0
