"""The status screen (``tcplens status``, and ``tcplens`` alone), and the command's work.

Why apart from the click command (:mod:`tcplens.views.commands.status`):
``tcplens`` and ``tcplens status`` with no options are read by
:mod:`tcplens.cli` without loading click or the CLI's option groups
(~10 ms of every run, against a goal of 0.8x ``ss -tan``), and both routes
must build the one screen (:func:`lines_for_status`).  :func:`render_status` turns a
:class:`Summary` into lines; extra lines (the doctor's top finding) are
passed in as ``extra`` so this view never computes findings itself.
"""

from __future__ import annotations

import gc
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from tcplens.model.states import State
from tcplens.model.words import plural
from tcplens.views.styles import STATE_STYLES, Line, emit

if TYPE_CHECKING:
    from rich.text import Text

    from tcplens.analysis.summary import Summary

__all__ = ["DOCTOR_POINTER", "FULL_LIMIT", "lines_for_status", "render_status", "run"]

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


def render_status(summary: Summary, extra: Sequence[str | Line | Text] = ()) -> list[Line | Text]:
    """The status screen as lines; ``extra`` lines go just before the doctor pointer."""
    from tcplens.analysis.summary import ORPHAN  # imported by then: it made ``summary``

    owner_words = {ORPHAN: "none (closed, kernel-held)", "?": "unknown"}
    lines: list[Line | Text] = []
    when = datetime.fromtimestamp(summary.taken_at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    lines.append(Line(f"{summary.host or 'this host'} · {summary.source} · {when}", style="bold"))
    tcp = summary.by_proto.get("tcp", 0)
    udp = summary.by_proto.get("udp", 0)
    v4, v6 = summary.by_family.get(4, 0), summary.by_family.get(6, 0)
    total = plural(summary.total, "socket")
    lines.append(Line(f"{total}: TCP {tcp}, UDP {udp} (IPv4 {v4}, IPv6 {v6})"))
    lines.append(Line(""))
    if summary.tcp_states:
        lines.append(Line("TCP sockets per state", style="bold"))
        biggest = max(summary.tcp_states.values())
        width = max(len(s.value) for s in summary.tcp_states)
        digits = len(str(biggest))
        for state, count in summary.tcp_states.items():
            line = Line(f"  {state.value:<{width}} {count:>{digits}} ")
            line.append(_bar(count, biggest), style=STATE_STYLES.get(state, ""))
            lines.append(line)
    else:
        lines.append(Line("No TCP sockets."))
    if summary.udp_states:
        unconnected = summary.udp_states.get(State.CLOSED, 0)
        connected = summary.udp_states.get(State.ESTABLISHED, 0)
        lines.append(Line(f"  UDP: {unconnected} unconnected, {connected} connected"))
    if summary.busy:
        lines.append(Line(""))
        lines.append(Line("Busiest states", style="bold"))
        for detail in summary.busy:
            ports = ", ".join(f"{p} ({n})" for p, n in detail.top_local_ports)
            about = "~" if detail.estimated else ""
            procs = ", ".join(
                f"{name}[{pid}] ({about}{n})"
                if pid is not None
                else f"{owner_words.get(name, name)} ({n})"
                for name, pid, n in detail.top_processes
            )
            line = Line(f"  {detail.state.value} {detail.count}: ")
            line.stylize(STATE_STYLES.get(detail.state, ""), 2, 2 + len(detail.state.value))
            # closing states pile up towards peers; their ephemeral local ports mean nothing
            where = [(n, f"local ports {ports}") for _p, n in detail.top_local_ports[:1]]
            if detail.top_peers:
                peers = ", ".join(f"{peer} ({n})" for peer, n in detail.top_peers)
                where.append((detail.top_peers[0][1], f"peers {peers}"))
            line.append("; ".join(text for _n, text in sorted(where, key=lambda w: -w[0])))
            lines.append(line)
            if procs:
                # Own line: names and pids must not wrap mid-word at 80 columns.
                lines.append(Line(f"    processes {procs}"))
    if summary.oldest or summary.untimed:
        lines.append(Line(""))
        lines.append(Line("Oldest", style="bold"))
        for state in (State.TIME_WAIT, State.FIN_WAIT2):
            entry = summary.oldest.get(state)
            untimed = summary.untimed.get(state, 0)
            if entry is not None:
                sock = entry.socket
                text = (
                    f"  {state.value}: {_seconds(entry.age)} of {_seconds(entry.lifetime)}"
                    f" ({_seconds(entry.remaining)} left), {sock.local} -> {sock.remote}"
                )
                lines.append(Line(text))
            if untimed:
                lines.append(
                    Line(
                        f"  {state.value}: {untimed} without a timer "
                        "(still held open by their application; they can stay forever)"
                    )
                )
    lines.append(Line(""))
    for note in summary.missing:
        lines.append(Line(f"({note})", style="dim"))
    for item in extra:
        lines.append(Line(item) if isinstance(item, str) else item)
    lines.append(Line(DOCTOR_POINTER))
    return lines


#: above this many sockets, ``status`` counts from columns and samples processes
FULL_LIMIT = 20_000


def _estimate_note(summary: Summary, read: int, held: int) -> list[str | Line | Text]:
    if not any(detail.estimated for detail in summary.busy):
        return []
    return [
        Line(
            f"(~: process counts estimated from {read:,} of {held:,} file descriptors; "
            "`tcplens status --full` or `tcplens ls` count every one)",
            style="dim",
        )
    ]


def run(**options: Any) -> int:
    """The status command: read, summarise, print (:func:`lines_for_status`); the exit code."""
    emit(lines_for_status(**options))
    return 0


def lines_for_status(
    *,
    full: bool | None = None,
    lang: str | None = None,
    source: str | None = None,
    from_file: str | None = None,
    fmt: str | None = None,
    strict: bool = False,
    proc_root: str = "/proc",
) -> list[Line | Text]:
    """The status screen of this machine (or of saved text), read and summarised.

    ``full``: None decides by the number of sockets (:data:`FULL_LIMIT`);
    the others are the source options (:func:`tcplens.views.options.source_options`).
    """
    gc.disable()  # short-lived and acyclic: see tcplens.sources.netlink._no_gc
    from tcplens.sources.select import columns_unavailable, open_listing

    live = from_file is None
    if full is False and not live:
        from click import UsageError

        raise UsageError("--fast counts this machine's kernel dump; it cannot read --from")
    if full is False and (reason := columns_unavailable(source, proc_root)):
        from click import UsageError

        raise UsageError(
            f"--fast counts from the netlink dump, which {reason} cannot give (drop --fast)"
        )
    fast = full is False or (live and full is None and many_sockets())
    listing = open_listing(
        "columns" if fast else "records",
        source,
        from_file=from_file,
        fmt=fmt,
        strict=strict,
        processes="sample" if fast else True,
        proc_root=proc_root,
        fallback=full is not False,
    )
    from tcplens.analysis.summary import summarize
    from tcplens.sources.procfs import read_fin_timeout
    from tcplens.sources.records import Snapshot

    # a saved dump's kernel is unknown: assume the default tcp_fin_timeout there
    fin_timeout = read_fin_timeout(proc_root) if live else 60.0
    if isinstance(listing, Snapshot):
        from tcplens.views.commands.doctor import top_finding

        summary = summarize(listing, fin_timeout=fin_timeout)
        top = top_finding(listing, live=live, proc_root=proc_root, lang=lang and lang.lower())
        lines = render_status(summary, top)
    else:
        tally = listing.tally
        summary = summarize(listing, fin_timeout=fin_timeout)
        note = _estimate_note(summary, tally.read, tally.held) if tally is not None else []
        lines = render_status(summary, note)
    return lines


def many_sockets() -> bool:
    """More than :data:`FULL_LIMIT` sockets, by the kernel's counters (``sockstat``: µs)."""
    from tcplens.sources.netlink import sockstat

    counts = sockstat()
    total = sum(counts.get(k, 0) for k in ("TCP.inuse", "TCP.tw", "UDP.inuse", "UDP6.inuse"))
    return total + counts.get("TCP6.inuse", 0) > FULL_LIMIT
