"""``tcplens doctor``: findings with evidence and advice, as text or versioned JSON.

The command only wires things together: the snapshot comes from the shared
source options, kernel settings from :mod:`tcplens.sources.kernel` (Linux
defaults, said to be assumed, for a saved dump), findings from
:func:`tcplens.analysis.doctor.diagnose`; this module renders them and picks
the exit code.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import click
from rich.padding import Padding
from rich.text import Text

from tcplens.analysis.doctor import (
    THRESHOLDS,
    Evidence,
    Finding,
    Severity,
    ThresholdError,
    diagnose,
    parse_threshold,
    thresholds_from_toml,
)
from tcplens.analysis.doctor_texts import Localized
from tcplens.analysis.platforms import platform_of
from tcplens.errors import InputError
from tcplens.model.words import fill
from tcplens.sources.kernel import KernelSettings, read_kernel
from tcplens.sources.records import Snapshot
from tcplens.views.console import Console
from tcplens.views.options import snapshot_from, source_options

__all__ = ["JSON_VERSION", "command", "doctor_json", "render_findings", "top_finding"]

#: version of the ``--json`` document; bump on any incompatible change (docs/doctor.md)
JSON_VERSION: Final = 1

_SEVERITY_STYLE: Final = {
    Severity.CRITICAL: "bold red",
    Severity.WARNING: "bold yellow",
    Severity.INFO: "cyan",
}

_LABELS: Final = {
    "evidence": Localized("Evidence", "证据"),
    "why": Localized("Why", "原因"),
    "advice": Localized("Advice", "建议"),
    "more": Localized("More", "延伸阅读"),
    "sockets": Localized("{n} socket{n:|s}", "{n} 个连接"),
    "pending": Localized("{n} pending", "{n} 个待 accept"),
    "processes": Localized("processes", "进程"),
    "peer_processes": Localized("peer processes here", "本机上的对端进程"),
    "local": Localized("local", "本端"),
    "remote": Localized("peer", "对端"),
    "ports": Localized("local ports", "本地端口"),
    "peers": Localized("peers", "对端"),
    "distinct": Localized("{n} distinct", "共 {n} 个不同地址"),
    "oldest": Localized("oldest {age} (from its timer)", "最老的已存在 {age}（据计时器推算）"),
    "idle": Localized("idle up to {age}", "最长空闲 {age}"),
    "retransmits": Localized("retransmissions/probes {n}", "重传/探测 {n} 次"),
    "queue": Localized("queued {q}", "排队 {q}"),
    "share": Localized("{p} of the limit", "占上限的 {p}"),
    "limits": Localized("limits", "内核参数"),
    "assumed": Localized("assumed default", "假定默认值"),
    "counters": Localized("counters since boot", "开机以来计数"),
    "examples": Localized("e.g.", "例如"),
    "none": Localized(
        "No findings: nothing unusual in {n} socket{n:|s}.",
        "没有发现问题：{n} 个 socket 一切正常。",
    ),
    "none_shown": Localized(
        "No findings at {sev} or above ({n} below it; --min-severity info shows them).",
        "没有 {sev} 及以上级别的结论（低于该级别的有 {n} 条，用 --min-severity info 查看）。",
    ),
    "total": Localized(
        "{n} finding{n:|s}: {critical} critical, {warning} warning, {info} info.",
        "共 {n} 条结论：严重 {critical}，警告 {warning}，提示 {info}。",
    ),
    "kernel_live": Localized("Kernel settings read from {origin}.", "内核参数读取自 {origin}。"),
    "kernel_assumed": Localized(
        "Kernel settings: assumed Linux defaults (a saved dump does not say what its machine "
        "used).",
        "内核参数：假定为 Linux 默认值（保存的输出里没有那台机器的实际设置）。",
    ),
    "kernel_other_os": Localized(
        "Sockets of a {os} system: the doctor quotes that system's defaults where it knows "
        "them and says when a figure is Linux's.",
        "这是 {os} 系统的连接：已知 {os} 默认值的地方按 {os} 说明，其余沿用 Linux 的数值并注明。",
    ),
    "kernel_defaulted": Localized(
        "Not readable here, assumed default: {names}.", "此处无法读取，假定为默认值：{names}。"
    ),
    "top": Localized("Top finding", "首要问题"),
}
_SEVERITY_NAMES: Final = {
    Severity.CRITICAL: Localized("CRITICAL", "严重"),
    Severity.WARNING: Localized("WARNING", "警告"),
    Severity.INFO: Localized("INFO", "提示"),
}


def _pick_lang(flag: str | None) -> str:
    """``--lang``, else the locale, else English (the same rule as ``tcplens explain``)."""
    try:
        from tcplens.model.explain import pick_lang
    except ImportError:  # pragma: no cover - explain ships with the model
        return flag or "en"
    try:
        return pick_lang(flag, os.environ)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--lang") from None


def _settings_for(snapshot_is_live: bool, proc_root: str) -> KernelSettings:
    return read_kernel(proc_root) if snapshot_is_live else KernelSettings.defaults()


def _age(seconds: float) -> Localized:
    s = int(seconds)
    if s < 120:
        return Localized(f"{s} s", f"{s} 秒")
    if s < 7200:
        return Localized(f"{s // 60} min", f"{s // 60} 分钟")
    return Localized(
        f"{s // 3600} h {s % 3600 // 60} min", f"{s // 3600} 小时 {s % 3600 // 60} 分钟"
    )


def _size(n: int, lang: str = "en") -> str:
    if n < 1024:
        return f"{n} 字节" if lang == "zh" else f"{n} byte{'' if n == 1 else 's'}"
    if n < 1024**2:
        return f"{n / 1024:.1f} KiB"
    return f"{n / 1024**2:.1f} MiB"


def evidence_lines(ev: Evidence, lang: str, *, listener: bool = False) -> list[str]:
    """The evidence as short ``label: value`` phrases in ``lang``."""

    def t(key: str, **values: object) -> str:
        return fill(_LABELS[key].get(lang), **values)

    # Chinese lists take the enumeration comma; the items themselves are data
    sep, semi = ("、", "；") if lang == "zh" else (", ", "; ")
    parts = [t("pending" if listener else "sockets", n=ev.count)]
    if ev.local:
        parts.append(f"{t('local')} {ev.local}")
    if ev.remote:
        parts.append(f"{t('remote')} {ev.remote}")
    known = [p for p in ev.processes if p.pid is not None or p.name]
    if known:
        procs = sep.join(
            f"{p.pid if p.pid is not None else '?'} ({p.name or '?'}) x{p.count}" for p in known
        )
        parts.append(f"{t('processes')} {procs}")
    if ev.peer_processes:
        procs = sep.join(
            f"{p.pid if p.pid is not None else '?'} ({p.name or '?'}) x{p.count}"
            for p in ev.peer_processes
            if p.pid is not None or p.name
        )
        parts.append(f"{t('peer_processes')} {procs}")
    if ev.local_ports:
        parts.append(f"{t('ports')} " + sep.join(f"{p} ({n})" for p, n in ev.local_ports))
    if ev.peers:
        peers = sep.join(f"{p} ({n})" for p, n in ev.peers)
        if ev.distinct_peers and ev.distinct_peers > len(ev.peers):
            peers += semi + t("distinct", n=ev.distinct_peers)
        parts.append(f"{t('peers')} {peers}")
    if ev.oldest_s is not None:
        parts.append(t("oldest", age=_age(ev.oldest_s).get(lang)))
    if ev.idle_s is not None:
        parts.append(t("idle", age=_age(ev.idle_s).get(lang)))
    if ev.retransmits:
        parts.append(t("retransmits", n=ev.retransmits))
    if ev.queue and not listener:
        parts.append(t("queue", q=_size(ev.queue, lang)))
    if ev.share is not None:
        percent = ev.share * 100
        parts.append(t("share", p=f"{percent:.0f}%" if percent >= 1 else f"{percent:.2g}%"))
    if ev.limits:
        limits = sep.join(
            f"{lim.name}={lim.value}"
            + (
                (f"（{t('assumed')}）" if lang == "zh" else f" ({t('assumed')})")
                if lim.assumed
                else ""
            )
            for lim in ev.limits
        )
        parts.append(f"{t('limits')} {limits}")
    if ev.counters:
        parts.append(f"{t('counters')} " + sep.join(f"{k}={v}" for k, v in ev.counters))
    if ev.examples:
        parts.append(f"{t('examples')} " + semi.join(ev.examples))
    return parts


def render_findings(
    findings: Sequence[Finding],
    snapshot: Snapshot,
    settings: KernelSettings,
    lang: str,
    *,
    hidden: int = 0,
    min_severity: Severity = Severity.INFO,
) -> list[Text]:
    """The report as lines of rich text (plain when piped)."""

    def t(key: str, **values: object) -> str:
        return fill(_LABELS[key].get(lang), **values)

    when = datetime.fromtimestamp(snapshot.taken_at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    lines = [
        Text(
            f"tcplens doctor · {snapshot.host or 'this host'} · {snapshot.source} · {when}",
            style="bold",
        )
    ]
    platform = platform_of(snapshot.source)
    if platform.key != "linux":
        lines.append(Text(t("kernel_other_os", os=platform.name), style="dim"))
    elif settings.assumed:
        lines.append(Text(t("kernel_assumed"), style="dim"))
    else:
        lines.append(Text(t("kernel_live", origin=settings.origin), style="dim"))
        if settings.defaulted:
            lines.append(Text(t("kernel_defaulted", names=", ".join(settings.defaulted)), "dim"))
    for note in snapshot.missing:
        lines.append(Text(f"({note})", style="dim"))
    lines.append(Text(""))
    if not findings:
        if hidden:
            lines.append(Text(t("none_shown", sev=min_severity.value, n=hidden)))
        else:
            lines.append(Text(t("none", n=len(snapshot.sockets)), style="green"))
        return lines
    for finding in findings:
        head = Text()
        name = _SEVERITY_NAMES[finding.severity].get(lang)
        # pad to 8 columns; a Chinese character takes two
        pad = 8 - len(name) * (2 if lang == "zh" else 1)
        head.append(name + " " * max(pad, 1), style=_SEVERITY_STYLE[finding.severity])
        head.append(f" [{finding.rule}] ", style="dim")
        head.append(finding.title.get(lang), style="bold")
        lines.append(head)
        evidence = evidence_lines(finding.evidence, lang, listener=finding.rule == "accept-queue")
        joiner = "；" if lang == "zh" else "; "
        colon = "：" if lang == "zh" else ": "
        lines.append(Text(f"  {t('evidence')}{colon}" + joiner.join(evidence)))
        lines.append(Text(f"  {t('why')}{colon}{finding.explanation.get(lang)}"))
        lines.append(Text(f"  {t('advice')}{colon}{finding.advice.get(lang)}"))
        if finding.state is not None:
            more = f"tcplens explain {finding.state.value}" + (" --lang zh" if lang == "zh" else "")
            lines.append(Text(f"  {t('more')}{colon}{more}", style="dim"))
        lines.append(Text(""))
    counts = {sev: sum(1 for f in findings if f.severity is sev) for sev in Severity}
    lines.append(
        Text(
            t(
                "total",
                n=len(findings),
                critical=counts[Severity.CRITICAL],
                warning=counts[Severity.WARNING],
                info=counts[Severity.INFO],
            )
        )
    )
    return lines


def _evidence_json(ev: Evidence) -> dict[str, Any]:
    return {
        "count": ev.count,
        "local": ev.local,
        "remote": ev.remote,
        "processes": [{"pid": p.pid, "name": p.name, "count": p.count} for p in ev.processes],
        "peer_processes": [
            {"pid": p.pid, "name": p.name, "count": p.count} for p in ev.peer_processes
        ],
        "local_ports": [{"port": p, "count": n} for p, n in ev.local_ports],
        "peers": [{"address": a, "count": n} for a, n in ev.peers],
        "distinct_peers": ev.distinct_peers,
        "oldest_seconds": ev.oldest_s,
        "idle_seconds": ev.idle_s,
        "retransmits": ev.retransmits,
        "queue": ev.queue,
        "share": ev.share,
        "limits": [{"name": x.name, "value": x.value, "assumed": x.assumed} for x in ev.limits],
        "counters": dict(ev.counters),
        "examples": list(ev.examples),
    }


def doctor_json(
    findings: Iterable[Finding],
    snapshot: Snapshot,
    settings: KernelSettings,
    thresholds: dict[str, float],
    lang: str,
    exit_code: int,
) -> dict[str, Any]:
    """The ``--json`` document (version :data:`JSON_VERSION`, documented in docs/doctor.md)."""
    shown = list(findings)
    return {
        "version": JSON_VERSION,
        "kind": "tcplens.doctor",
        "lang": lang,
        "snapshot": {
            "source": snapshot.source,
            "host": snapshot.host,
            "taken_at": snapshot.taken_at,
            "sockets": len(snapshot.sockets),
            "missing": list(snapshot.missing),
        },
        "kernel": {
            "origin": settings.origin,
            "assumed": settings.assumed,
            "defaulted": list(settings.defaulted),
            "settings": {
                "ip_local_port_range": list(settings.ip_local_port_range),
                "tcp_tw_reuse": settings.tcp_tw_reuse,
                "tcp_max_tw_buckets": settings.tcp_max_tw_buckets,
                "tcp_max_syn_backlog": settings.tcp_max_syn_backlog,
                "tcp_syncookies": settings.tcp_syncookies,
                "tcp_fin_timeout": settings.tcp_fin_timeout,
                "tcp_max_orphans": settings.tcp_max_orphans,
                "tcp_synack_retries": settings.tcp_synack_retries,
                "tcp_syn_retries": settings.tcp_syn_retries,
                "tcp_syn_linear_timeouts": settings.tcp_syn_linear_timeouts,
                "somaxconn": settings.somaxconn,
            },
            "counters": dict(settings.counters),
            "sockstat": dict(settings.sockstat),
        },
        "thresholds": thresholds,
        "summary": {sev.value: sum(1 for f in shown if f.severity is sev) for sev in Severity}
        | {"exit_code": exit_code},
        "findings": [
            {
                "rule": f.rule,
                "kind": f.kind,
                "severity": f.severity.value,
                "state": f.state.value if f.state is not None else None,
                "title": f.title.get(lang),
                "explanation": f.explanation.get(lang),
                "advice": f.advice.get(lang),
                "evidence": _evidence_json(f.evidence),
            }
            for f in shown
        ],
    }


def top_finding(
    snapshot: Snapshot, *, live: bool, proc_root: str = "/proc", lang: str | None = None
) -> list[Text]:
    """One line for the status view: the most severe finding at warning or above, if any."""
    settings = _settings_for(live, proc_root)
    findings = [f for f in diagnose(snapshot, settings) if f.severity.rank >= 1]
    if not findings:
        return []
    lang = lang or _pick_lang(None)
    top = findings[0]
    line = Text(f"{_LABELS['top'].get(lang)}{'：' if lang == 'zh' else ': '}", style="bold")
    line.append(_SEVERITY_NAMES[top.severity].get(lang), style=_SEVERITY_STYLE[top.severity])
    line.append(f" {top.title.get(lang)}")
    return [line]


def _thresholds(config: str | None, overrides: Sequence[str]) -> dict[str, float]:
    values: dict[str, float] = {}
    if config is not None:
        try:
            text = Path(config).read_text(encoding="utf-8")
        except OSError as exc:
            raise InputError(exc.strerror or str(exc), path=config) from None
        except UnicodeDecodeError as exc:
            raise InputError("not UTF-8 text", path=config, offset=exc.start) from None
        values.update(thresholds_from_toml(text, path=config))
    for item in overrides:
        try:
            key, value = parse_threshold(item)
        except ThresholdError as exc:
            raise click.BadParameter(str(exc), param_hint="--threshold") from None
        values[key] = value
    return values


_EPILOG = (
    "Exit codes: 0 nothing at warning or above among the findings shown, 1 at least one "
    "warning or critical finding, 2 usage or input error (bad option, unreadable or "
    "malformed --from/--config file). Thresholds: "
    + ", ".join(sorted(THRESHOLDS))
    + " (docs/doctor.md)."
)


@click.command("doctor", epilog=_EPILOG)
@source_options
@click.option("--json", "as_json", is_flag=True, help="JSON (versioned; see docs/doctor.md).")
@click.option(
    "--lang",
    type=click.Choice(["en", "zh"], case_sensitive=False),
    default=None,
    help="Language of the texts (default: from the locale, else English).",
)
@click.option(
    "--min-severity",
    type=click.Choice([s.value for s in Severity], case_sensitive=False),
    default="info",
    show_default=True,
    help="Hide findings below this severity.",
)
@click.option(
    "--threshold",
    "threshold_args",
    multiple=True,
    metavar="RULE=VALUE",
    help="Override a threshold, e.g. close-wait=5, recv-q=64k, time-wait=20%; repeatable.",
)
@click.option(
    "--config",
    type=click.Path(dir_okay=False),
    default=None,
    help="TOML file with a [thresholds] table (command-line --threshold wins).",
)
def command(
    as_json: bool,
    lang: str | None,
    min_severity: str,
    threshold_args: tuple[str, ...],
    config: str | None,
    **kwargs: Any,
) -> int:
    """Findings with evidence and advice: what the socket states mean for this machine.

    Each finding names the processes, ports and peers involved, how long the
    sockets have been stuck (from their timers), the kernel limit they eat
    into, why it happens and what to do, in English or Chinese. Works on
    this machine (kernel settings read from /proc) and on saved netstat/ss
    output with --from (Linux defaults assumed, and said so).

    Example: tcplens doctor --from netstat.txt --lang zh --min-severity warning
    """
    chosen = _pick_lang(lang)
    overrides = _thresholds(config, threshold_args)
    live = kwargs.get("from_file") is None
    proc_root = str(kwargs.get("proc_root", "/proc"))
    snapshot = snapshot_from(kwargs, processes=True, info=True)
    settings = _settings_for(live, proc_root)
    findings = diagnose(snapshot, settings, overrides)
    floor = Severity(min_severity.lower())
    shown = [f for f in findings if f.severity.rank >= floor.rank]
    exit_code = 1 if any(f.severity.rank >= Severity.WARNING.rank for f in shown) else 0
    if as_json:
        from tcplens.analysis.doctor import resolve_thresholds

        document = doctor_json(
            shown, snapshot, settings, resolve_thresholds(overrides), chosen, exit_code
        )
        click.echo(json.dumps(document, ensure_ascii=False))
        return exit_code
    console = Console(highlight=False)
    # a terminal gets paragraphs wrapped under their label; a pipe gets one line each (grep)
    console.soft_wrap = not console.is_terminal
    for line in render_findings(
        shown,
        snapshot,
        settings,
        chosen,
        hidden=len(findings) - len(shown),
        min_severity=floor,
    ):
        if console.is_terminal and line.plain.startswith("  "):
            console.print(Padding(line[2:], (0, 0, 0, 2)))
        else:
            console.print(line)
    return exit_code
