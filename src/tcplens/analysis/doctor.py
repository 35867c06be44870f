"""The doctor: findings with evidence and advice from one snapshot of sockets.

Counting states is what every tool does; a finding says what the counts mean
for this machine: *process 4242 (java) holds 3,180 CLOSE_WAIT sockets on port
8080, idle for 2 h: it never calls close()*.

Theory of operation
-------------------
Each rule is a small documented function ``(snapshot, settings, thresholds)
-> list[Finding]`` registered in :data:`RULES` with the rule id users pass to
``--threshold``.  A rule groups the sockets of one state the way a person
would act on them (by owning process and port for a leak, by peer for a
destination that does not answer, by listener for a handshake problem),
compares each group with the kernel limit it eats into (from
:class:`~tcplens.sources.kernel.KernelSettings`, which says when a limit is
an assumed default) and grades it:

* ``critical`` - a limit is reached or nearly so; users are already failing;
* ``warning``  - a leak or a stuck peer that will hurt if it goes on;
* ``info``     - worth knowing, normal in small numbers.

Timers give ages when the source has them (a TIME_WAIT socket's age is 60 s
minus its remaining time; an orphaned FIN_WAIT2's is ``tcp_fin_timeout``
minus it) and TCP info gives idle times; saved dumps have neither, so those
rules fall back to counts.  Nothing here prints or reads files: the CLI
reads the config file and renders findings.
"""

from __future__ import annotations

import ipaddress
import tomllib
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Final

from tcplens.analysis.doctor_texts import (
    LINUX_FIGURES,
    OS_FACTS,
    OS_TEXTS,
    PHRASES,
    TEXTS,
    Localized,
    render,
)
from tcplens.analysis.platforms import LINUX_ONLY_KINDS, Platform, platform_of
from tcplens.errors import InputError, TcplensError
from tcplens.model.linux import TIME_WAIT_SECONDS as LINUX_TIME_WAIT_SECONDS
from tcplens.model.linux import syn_schedule
from tcplens.model.states import State
from tcplens.model.words import plural
from tcplens.sources.kernel import KernelSettings
from tcplens.sources.records import Addr, Snapshot, Socket

__all__ = [
    "RULES",
    "THRESHOLDS",
    "Evidence",
    "Finding",
    "Limit",
    "ProcessRef",
    "Rule",
    "RuleContext",
    "Severity",
    "Threshold",
    "ThresholdError",
    "diagnose",
    "parse_threshold",
    "resolve_thresholds",
    "thresholds_from_toml",
]

#: Linux keeps TIME_WAIT for exactly this long (``TCP_TIMEWAIT_LEN``).
TIME_WAIT_SECONDS: Final = float(LINUX_TIME_WAIT_SECONDS)


class Severity(StrEnum):
    """How urgent a finding is; ordered info < warning < critical."""

    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK: Final = {Severity.INFO: 0, Severity.WARNING: 1, Severity.CRITICAL: 2}


@dataclass(frozen=True, slots=True)
class ProcessRef:
    """A process that owns some of a finding's sockets, and how many."""

    pid: int | None
    name: str | None
    count: int

    def describe(self) -> Localized:
        if self.pid is not None and self.name:
            return render(PHRASES["pid_name"], pid=self.pid, name=self.name)
        if self.pid is not None:
            return render(PHRASES["pid"], pid=self.pid)
        if self.name:
            return render(PHRASES["name"], name=self.name)
        return PHRASES["unknown_process"]


@dataclass(frozen=True, slots=True)
class Limit:
    """A kernel setting a finding was measured against."""

    name: str
    value: int | str
    assumed: bool = False


@dataclass(frozen=True, slots=True)
class Evidence:
    """What the finding is based on, in numbers a user can check with ``ss``."""

    #: sockets in the group
    count: int
    #: local endpoint or listener the group is about (``*:8080``)
    local: str | None = None
    #: remote endpoint the group is about (``10.0.0.5:5432``)
    remote: str | None = None
    processes: tuple[ProcessRef, ...] = ()
    #: processes on this machine holding the other end (FIN_WAIT2 <-> CLOSE_WAIT)
    peer_processes: tuple[ProcessRef, ...] = ()
    #: busiest local ports as (port, sockets)
    local_ports: tuple[tuple[int, int], ...] = ()
    #: busiest peers as (address, sockets)
    peers: tuple[tuple[str, int], ...] = ()
    #: distinct peer addresses in the group
    distinct_peers: int | None = None
    #: age of the oldest socket in seconds, derived from its timer
    oldest_s: float | None = None
    #: longest time without receiving data, seconds (TCP info)
    idle_s: float | None = None
    #: most retransmissions or probes seen on one socket (timers)
    retransmits: int | None = None
    #: bytes queued over the group (Recv-Q or Send-Q, per rule); pending accepts for LISTEN
    queue: int | None = None
    #: the limit the group is compared with, and the share of it used
    share: float | None = None
    limits: tuple[Limit, ...] = ()
    #: kernel counters since boot, when read live
    counters: tuple[tuple[str, int], ...] = ()
    #: a few sockets of the group, ``local -> remote``
    examples: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing the doctor found, with evidence, explanation and advice in two languages."""

    rule: str
    severity: Severity
    title: Localized
    explanation: Localized
    advice: Localized
    evidence: Evidence
    #: the state ``tcplens explain`` should be pointed at, if one
    state: State | None = None
    #: which text of the rule was used (``time-wait-server``)
    kind: str = ""


class ThresholdError(TcplensError):
    """An unknown threshold name or an unusable value (a usage error)."""


# --------------------------------------------------------------------------- thresholds


@dataclass(frozen=True, slots=True)
class Threshold:
    """A documented, overridable number a rule grades with."""

    key: str
    default: float
    unit: str
    meaning: str


def _t(key: str, default: float, unit: str, meaning: str) -> Threshold:
    return Threshold(key, default, unit, meaning)


#: every threshold, documented in docs/doctor.md (a test keeps the two in step); each rule
#: declares its own with :func:`rule`, and this table gathers them in the order rules run
THRESHOLDS: Final[dict[str, Threshold]] = {}


def resolve_thresholds(overrides: Mapping[str, float] | None = None) -> dict[str, float]:
    """Defaults with ``overrides`` applied; unknown names, negative values and NaN are errors."""
    values = {key: t.default for key, t in THRESHOLDS.items()}
    for key, value in (overrides or {}).items():
        if key not in THRESHOLDS:
            raise ThresholdError(
                f"unknown threshold {key!r}; known: {', '.join(sorted(THRESHOLDS))}"
            )
        # `not value >= 0` also refuses NaN, which would silently switch a rule off
        if not isinstance(value, int | float) or isinstance(value, bool) or not value >= 0:
            raise ThresholdError(f"threshold {key} must be a number >= 0, got {value!r}")
        values[key] = float(value)
    return values


def parse_threshold(text: str) -> tuple[str, float]:
    """Parse one ``--threshold rule=value`` argument (``close-wait=5``, ``recv-q=64k``)."""
    key, sep, raw = text.partition("=")
    key, raw = key.strip(), raw.strip().lower()
    if not sep or not key or not raw:
        raise ThresholdError(f"expected RULE=VALUE, got {text!r}")
    scale = 1.0
    for suffix, factor in (("k", 1024.0), ("m", 1024.0**2), ("g", 1024.0**3), ("%", 0.01)):
        if raw.endswith(suffix):
            raw, scale = raw[: -len(suffix)], factor
            break
    try:
        value = float(raw) * scale
    except ValueError:
        raise ThresholdError(
            f"threshold {key}: {text.partition('=')[2]!r} is not a number"
        ) from None
    resolve_thresholds({key: value})
    return key, value


def thresholds_from_toml(text: str, *, path: str = "config") -> dict[str, float]:
    """Read ``[thresholds]`` from a TOML config; nested tables join with dots.

    ``[thresholds] close-wait = 5`` and ``[thresholds.time-wait] critical = 0.8``
    both work; any other table is ignored so one file can configure several verbs.
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(str(exc), path=path) from None
    table = data.get("thresholds", {})
    if not isinstance(table, dict):
        raise InputError("[thresholds] must be a table", path=path)
    out: dict[str, float] = {}

    def walk(prefix: str, node: Mapping[str, object]) -> None:
        for name, value in node.items():
            key = f"{prefix}.{name}" if prefix else name
            if isinstance(value, dict):
                walk(key, value)
            elif isinstance(value, int | float) and not isinstance(value, bool):
                out[key] = float(value)
            else:
                raise InputError(f"threshold {key} must be a number, got {value!r}", path=path)

    walk("", table)
    try:
        resolve_thresholds(out)
    except ThresholdError as exc:
        raise InputError(str(exc), path=path) from None
    return out


# --------------------------------------------------------------------------- registry

RuleFunc = Callable[["RuleContext"], list[Finding]]


@dataclass(frozen=True, slots=True)
class Rule:
    """A registered rule: id (the ``--threshold`` prefix), state it is about, function,
    and the thresholds it grades with."""

    id: str
    state: State | None
    func: RuleFunc = field(repr=False)
    thresholds: tuple[Threshold, ...] = ()

    @property
    def summary(self) -> str:
        return (self.func.__doc__ or "").strip().splitlines()[0]


#: rule id -> rule, in the order they run
RULES: dict[str, Rule] = {}


def rule(
    rule_id: str, state: State | None, thresholds: tuple[Threshold, ...] = ()
) -> Callable[[RuleFunc], RuleFunc]:
    """Register a rule with the thresholds it reads (keys ``rule_id`` or ``rule_id.<name>``).

    A new rule is this decorator on a function of a :class:`RuleContext`;
    ``--threshold``, the TOML config and docs/doctor.md's table pick its
    thresholds up from here.
    """

    def register(func: RuleFunc) -> RuleFunc:
        for threshold in thresholds:
            if threshold.key != rule_id and not threshold.key.startswith(rule_id + "."):
                raise ValueError(f"threshold {threshold.key!r} is not rule {rule_id!r}'s")
            THRESHOLDS[threshold.key] = threshold
        RULES[rule_id] = Rule(rule_id, state, func, thresholds)
        return func

    return register


def diagnose(
    snapshot: Snapshot,
    settings: KernelSettings,
    thresholds: Mapping[str, float] | None = None,
) -> list[Finding]:
    """Run every rule; findings come most severe first, then largest first.

    ``thresholds`` holds overrides only; defaults fill the rest.
    """
    ctx = RuleContext.of(snapshot, settings, thresholds)
    findings: list[Finding] = []
    for registered in RULES.values():
        findings.extend(registered.func(ctx))
    if ctx.platform.key != "linux":
        # Linux sysctls are no evidence about another system; its port range is
        findings = [
            replace(f, evidence=replace(f.evidence, limits=_ports_only(f.evidence.limits)))
            for f in findings
            if f.kind not in LINUX_ONLY_KINDS
        ]
    findings.sort(key=lambda f: (-f.severity.rank, -f.evidence.count, f.rule))
    return findings


# --------------------------------------------------------------------------- helpers


def _distinct(snapshot: Snapshot) -> Snapshot:
    """The snapshot without repeated rows (a dump pasted twice counts each socket once).

    A live table never holds the same socket twice, and TCP cannot have two
    connections with one 4-tuple in one state; saved text often repeats rows
    (the seeds paste one ``netstat`` listing again at each step).
    """
    seen: set[tuple[object, ...]] = set()
    unique: list[Socket] = []
    for s in snapshot.sockets:
        key = (s.proto, s.family, s.local, s.remote, s.state, s.pid, s.process, s.inode)
        if key not in seen:
            seen.add(key)
            unique.append(s)
    if len(unique) == len(snapshot.sockets):
        return snapshot
    return replace(snapshot, sockets=unique)


class _Index:
    """TCP sockets by state and the listening ports, computed in one pass.

    :func:`diagnose` builds it once for all rules (eleven passes over 100k
    sockets would cost more than the rules themselves); a rule called on its
    own builds its own.
    """

    __slots__ = ("_pairs", "by_state", "listening")

    def __init__(self, snapshot: Snapshot) -> None:
        self.by_state: dict[State, list[Socket]] = defaultdict(list)
        for sock in snapshot.sockets:
            if sock.proto == "tcp":
                self.by_state[sock.state].append(sock)
        self.listening = {
            s.local.port for s in self.by_state[State.LISTEN] if s.local.port is not None
        }
        self._pairs: dict[tuple[Addr, Addr], Socket] | None = None

    def other_end(self, sock: Socket) -> Socket | None:
        """The socket on this machine at the other end of ``sock``'s connection, if any."""
        if self._pairs is None:
            self._pairs = {
                (s.local, s.remote): s
                for state, socks in self.by_state.items()
                if state is not State.LISTEN
                for s in socks
            }
        return self._pairs.get((sock.remote, sock.local))


@dataclass(frozen=True, slots=True)
class RuleContext:
    """What every rule is given: the snapshot, the kernel settings, the thresholds in force,
    the platform the snapshot comes from, and the shared index of its TCP sockets.

    One object per :func:`diagnose` call, passed down explicitly: concurrent
    diagnoses (the exporter's scrape threads) share nothing.
    """

    snapshot: Snapshot
    settings: KernelSettings
    #: every threshold's value (defaults with the overrides applied)
    thresholds: Mapping[str, float]
    platform: Platform
    index: _Index = field(repr=False)

    @classmethod
    def of(
        cls,
        snapshot: Snapshot,
        settings: KernelSettings,
        thresholds: Mapping[str, float] | None = None,
    ) -> RuleContext:
        """The context :func:`diagnose` gives its rules (also to run one rule on its own).

        ``thresholds`` holds overrides only; defaults fill the rest.  Saved
        text loses repeated rows; another system's dump gets its own
        ephemeral port range unless the settings name one.
        """
        values = resolve_thresholds(thresholds)
        if snapshot.source.startswith("text"):
            snapshot = _distinct(snapshot)
        platform = platform_of(snapshot.source)
        if platform.key != "linux" and settings.is_assumed("ip_local_port_range"):
            settings = replace(settings, ip_local_port_range=platform.ephemeral)
        return cls(snapshot, settings, values, platform, _Index(snapshot))


def _tcp(ctx: RuleContext, state: State) -> list[Socket]:
    return ctx.index.by_state.get(state, [])


def _listening_ports(ctx: RuleContext) -> set[int]:
    return ctx.index.listening


def _knows_processes(snapshot: Snapshot) -> bool:
    """Whether "no process" on a row means orphaned rather than not visible."""
    return _has_process_column(snapshot) and not any(
        "process" in m.lower() for m in snapshot.missing
    )


def _server_side(sock: Socket, listening: set[int], settings: KernelSettings) -> bool:
    """Whether this end of the connection is the server (its port is a listener's)."""
    if sock.local.port in listening:
        return True
    if settings.in_ephemeral_range(sock.local.port):
        return False
    return settings.in_ephemeral_range(sock.remote.port)


def _is_loopback(ip: str) -> bool:
    try:
        return ipaddress.ip_address(ip.split("%")[0]).is_loopback
    except ValueError:
        return ip in ("localhost",)


def _endpoint(addr: Addr) -> str:
    return str(addr)


def _processes(socks: Iterable[Socket], top: int = 5) -> tuple[ProcessRef, ...]:
    counts = Counter((s.pid, s.process) for s in socks)
    return tuple(ProcessRef(pid, name, n) for (pid, name), n in counts.most_common(top))


def _owner(snapshot: Snapshot, ref: ProcessRef) -> Localized:
    """The owner of a group for a title: the process, or "the application" in a dump without any."""
    if ref.pid is None and not ref.name and not _has_process_column(snapshot):
        return PHRASES["the_application"]
    return ref.describe()


def _has_process_column(snapshot: Snapshot) -> bool:
    return any(s.pid is not None or s.process is not None for s in snapshot.sockets)


def _who(refs: tuple[ProcessRef, ...]) -> Localized:
    if not refs:
        return PHRASES["unknown_process"]
    who = refs[0].describe()
    others = len(refs) - 1
    if others > 0:
        who = who + render(PHRASES["more_processes"], n=others)
    return who


def _peers(
    socks: Iterable[Socket], *, with_port: bool, top: int = 5
) -> tuple[tuple[str, int], ...]:
    counts = Counter(_endpoint(s.remote) if with_port else s.remote.ip for s in socks)
    return tuple(counts.most_common(top))


def _ports(socks: Iterable[Socket], top: int = 5) -> tuple[tuple[int, int], ...]:
    counts = Counter(s.local.port for s in socks if s.local.port is not None)
    return tuple(counts.most_common(top))


def _examples(socks: list[Socket], top: int = 3) -> tuple[str, ...]:
    return tuple(f"{s.local} -> {s.remote}" for s in socks[:top])


def _max_retrans(socks: Iterable[Socket]) -> int | None:
    values = [s.timer.retransmits for s in socks if s.timer is not None]
    return max(values) if values else None


def _has_timers(socks: Iterable[Socket]) -> bool:
    return any(s.timer is not None for s in socks)


def _idle(socks: Iterable[Socket]) -> float | None:
    values = [s.info.last_recv_ms for s in socks if s.info and s.info.last_recv_ms is not None]
    return max(values) / 1000.0 if values else None


def _grade(value: float, warning: float, critical: float | None = None) -> Severity:
    if critical is not None and value >= critical:
        return Severity.CRITICAL
    if value >= warning:
        return Severity.WARNING
    return Severity.INFO


def _share(value: float) -> str:
    percent = value * 100
    return f"{percent:.0f}%" if percent >= 1 else f"{percent:.2g}%"


def _bytes(n: int) -> Localized:
    if n < 1024:
        return Localized(plural(n, "byte"), f"{n} 字节")
    if n < 1024**2:
        return Localized(f"{n / 1024:.1f} KiB", f"{n / 1024:.1f} KiB")
    return Localized(f"{n / 1024**2:.1f} MiB", f"{n / 1024**2:.1f} MiB")


def _age(seconds: float) -> Localized:
    s = int(seconds)
    if s < 120:
        return Localized(f"{s} s", f"{s} 秒")
    if s < 7200:
        return Localized(f"{s // 60} min", f"{s // 60} 分钟")
    if s < 172800:
        return Localized(
            f"{s // 3600} h {s % 3600 // 60} min", f"{s // 3600} 小时 {s % 3600 // 60} 分钟"
        )
    return Localized(f"{s // 86400} days", f"{s // 86400} 天")


def _limit(settings: KernelSettings, name: str) -> Limit:
    value = getattr(settings, name)
    if isinstance(value, tuple):
        value = f"{value[0]}-{value[1]}"
    return Limit(name, value, settings.is_assumed(name))


def _counters(settings: KernelSettings, *names: str) -> tuple[tuple[str, int], ...]:
    return tuple((n, settings.counters[n]) for n in names if n in settings.counters)


def _assumed(settings: KernelSettings, name: str) -> Localized:
    return PHRASES["assumed"] if settings.is_assumed(name) else PHRASES["empty"]


def _ports_only(limits: tuple[Limit, ...]) -> tuple[Limit, ...]:
    return tuple(lim for lim in limits if lim.name == "ip_local_port_range")


#: kinds whose texts quote no system's limits or tools
_GENERIC_KINDS: Final = frozenset({"last-ack", "send-q", "recv-q"})


def _finding(
    ctx: RuleContext,
    rule_id: str,
    severity: Severity,
    evidence: Evidence,
    state: State | None,
    kind: str = "",
    **values: object,
) -> Finding:
    texts = TEXTS[kind or rule_id]
    platform = ctx.platform
    note = PHRASES["empty"]
    if platform.key != "linux":
        # another system's dump: its own facts where we have them, else say whose figures
        texts = OS_TEXTS[platform.key].get(kind or rule_id, texts)
        values = {**OS_FACTS[platform.key], **values}
        if texts is TEXTS[kind or rule_id] and (kind or rule_id) not in _GENERIC_KINDS:
            note = render(LINUX_FIGURES, os=platform.name)
    advice = render(texts.advice, **values)
    if values.get("who") is PHRASES["the_application"]:
        advice = advice + PHRASES.get(f"no_processes_{platform.key}", PHRASES["no_processes"])
    return Finding(
        rule=rule_id,
        severity=severity,
        title=render(texts.title, **values),
        explanation=render(texts.explanation, **values) + note,
        advice=advice,
        evidence=evidence,
        state=state,
        kind=kind or rule_id,
    )


def _group_by_side(socks: list[Socket], ctx: RuleContext) -> dict[tuple[str, str], list[Socket]]:
    """Group closing sockets by server port (this end serves) or by peer (this end dialled)."""
    merged: dict[tuple[str, str], list[Socket]] = defaultdict(list)
    for (_pid, _name, side, value), group in _sides(socks, ctx).items():
        merged[(side, value)].extend(group)
    return merged


def _sides(
    socks: list[Socket], ctx: RuleContext
) -> dict[tuple[int | None, str | None, str, str], list[Socket]]:
    """Group by owning process, then server port (this end serves) or peer (it dialled).

    The hot loop of the doctor on big tables: it keys on the raw port and
    ``Addr`` and turns a key into text once per group, not once per socket.
    """
    listening = _listening_ports(ctx)
    low, high = ctx.settings.ip_local_port_range
    raw: dict[tuple[int | None, str | None, bool, object], list[Socket]] = defaultdict(list)
    for sock in socks:
        lport, rport = sock.local.port, sock.remote.port
        server = lport in listening or (
            not (lport is not None and low <= lport <= high)
            and rport is not None
            and low <= rport <= high
        )
        raw[(sock.pid, sock.process, server, lport if server else sock.remote)].append(sock)
    out: dict[tuple[int | None, str | None, str, str], list[Socket]] = defaultdict(list)
    for (pid, name, is_server, where), group in raw.items():
        out[(pid, name, "port" if is_server else "peer", str(where))].extend(group)
    return out


def _peer_label(key: tuple[str, str]) -> Localized:
    side, value = key
    if side == "port":
        return Localized(f"the clients of port {value}", f"端口 {value} 的客户端")
    return Localized(value, value)


# --------------------------------------------------------------------------- rules


@rule(
    "close-wait",
    State.CLOSE_WAIT,
    (
        _t("close-wait", 10, "sockets", "CLOSE_WAIT in one process+port group: warning"),
        _t("close-wait.critical", 200, "sockets", "CLOSE_WAIT in one group: critical"),
    ),
)
def close_wait(ctx: RuleContext) -> list[Finding]:
    """CLOSE_WAIT accumulating in one process: the peer closed, the application never did.

    Grouped by owning process and by local port when that process is the
    server, or by peer when it dialled out (a client pool); any CLOSE_WAIT
    is reported (info), a group of ``close-wait`` or more is a leak.
    """
    snapshot, thresholds = ctx.snapshot, ctx.thresholds
    findings = []
    groups = _sides(_tcp(ctx, State.CLOSE_WAIT), ctx)
    for (pid, name, kind, value), socks in groups.items():
        count = len(socks)
        side: str = kind
        refs = (ProcessRef(pid, name, count),)
        unread = sum(1 for s in socks if s.recv_q)
        idle = _idle(socks)
        where = (
            render(PHRASES["on_port"], port=value)
            if side == "port"
            else render(PHRASES["to_peer"], peer=value)
        )
        evidence = Evidence(
            count=count,
            local=f"*:{value}" if side == "port" else None,
            remote=value if side == "peer" else None,
            processes=refs,
            local_ports=_ports(socks),
            peers=_peers(socks, with_port=side == "port"),
            distinct_peers=len({s.remote.ip for s in socks}),
            idle_s=idle,
            queue=sum(s.recv_q or 0 for s in socks),
            examples=_examples(socks),
        )
        severity = _grade(count, thresholds["close-wait"], thresholds["close-wait.critical"])
        findings.append(
            _finding(
                ctx,
                "close-wait",
                severity,
                evidence,
                State.CLOSE_WAIT,
                who=_owner(snapshot, refs[0]),
                count=count,
                where=where,
                unread=render(PHRASES["unread"], n=unread) if unread else PHRASES["empty"],
                idle=render(PHRASES["idle"], age=_age(idle)) if idle else PHRASES["empty"],
                idle_title=render(PHRASES["idle_title"], age=_age(idle))
                if idle is not None and idle >= 60
                else PHRASES["empty"],
            )
        )
    return findings


@rule(
    "time-wait",
    State.TIME_WAIT,
    (
        _t(
            "time-wait", 0.5, "share", "ephemeral ports held in TIME_WAIT towards one peer: warning"
        ),
        _t("time-wait.critical", 0.9, "share", "the same share: critical"),
        _t("time-wait.info", 0.1, "share", "the same share: info"),
        _t("time-wait.server", 1000, "sockets", "TIME_WAIT on one server port: info"),
        _t("time-wait.buckets", 0.5, "share", "all TIME_WAIT / tcp_max_tw_buckets: warning"),
        _t("time-wait.buckets-critical", 0.9, "share", "the same share: critical"),
    ),
)
def time_wait(ctx: RuleContext) -> list[Finding]:
    """TIME_WAIT piling up: ephemeral ports towards one peer, or the machine's bucket limit.

    TIME_WAIT sits on the active closer.  When this machine dialled out, each
    one pins a local port for the same peer, so the group is measured against
    ``ip_local_port_range`` (one notch milder when ``tcp_tw_reuse`` lets new
    connections reuse them); when this machine is the server, ports are not
    at risk and only large counts are reported.  All of them together are
    measured against ``tcp_max_tw_buckets``.
    """
    settings, thresholds = ctx.settings, ctx.thresholds
    socks = _tcp(ctx, State.TIME_WAIT)
    if not socks:
        return []
    listening = _listening_ports(ctx)
    raw: dict[tuple[str, Addr], list[Socket]] = defaultdict(list)
    servers: dict[int | None, list[Socket]] = defaultdict(list)
    for sock in socks:
        if _server_side(sock, listening, settings):
            servers[sock.local.port].append(sock)
        else:
            raw[(sock.local.ip, sock.remote)].append(sock)
    findings = []
    ports = settings.ephemeral_ports
    low, high = settings.ip_local_port_range
    limits = (
        _limit(settings, "ip_local_port_range"),
        _limit(settings, "tcp_tw_reuse"),
        _limit(settings, "tcp_max_tw_buckets"),
    )
    crowded = {
        key: group
        for key, group in raw.items()
        if len(group) / ports >= thresholds["time-wait.info"]
    }
    dialers = _dialers(ctx, {remote for _ip, remote in crowded})
    for (_local_ip, remote), group in crowded.items():
        count = len(group)
        share = count / ports
        peer = _endpoint(remote)
        refs = _processes(dialers.get(remote, []))
        severity = _grade(share, thresholds["time-wait"], thresholds["time-wait.critical"])
        loopback = _is_loopback(group[0].remote.ip)
        reuse = settings.tcp_tw_reuse
        if reuse == 1 or (reuse == 2 and loopback):
            severity = Severity(("info", "info", "warning")[severity.rank])
        note = {0: "reuse_0", 1: "reuse_1"}.get(
            reuse, "reuse_2_local" if loopback else "reuse_2_remote"
        )
        evidence = Evidence(
            count=count,
            remote=peer,
            processes=refs,
            oldest_s=_tw_oldest(group),
            share=share,
            limits=limits,
            counters=_counters(settings, "TCPTimeWaitOverflow"),
            examples=_examples(group),
        )
        findings.append(
            _finding(
                ctx,
                "time-wait",
                severity,
                evidence,
                State.TIME_WAIT,
                count=count,
                peer=peer,
                share=_share(share),
                ports=ports,
                range=f"{low}-{high}",
                reuse=reuse,
                reuse_note=PHRASES[note],
                closer=render(PHRASES["tw_dialers"], peer=peer, who=_who(refs))
                if refs
                else PHRASES["empty"],
            )
        )
    for port, group in servers.items():
        if len(group) < thresholds["time-wait.server"]:
            continue
        owners = _processes(
            s for s in _tcp(ctx, State.LISTEN) if s.local.port == port and s.pid is not None
        )
        evidence = Evidence(
            count=len(group),
            local=f"*:{port}",
            processes=owners,
            peers=_peers(group, with_port=False),
            distinct_peers=len({s.remote.ip for s in group}),
            oldest_s=_tw_oldest(group),
            limits=limits[2:],
            examples=_examples(group),
        )
        findings.append(
            _finding(
                ctx,
                "time-wait",
                Severity.INFO,
                evidence,
                State.TIME_WAIT,
                kind="time-wait-server",
                count=len(group),
                port=port,
                server=render(PHRASES["server_is"], who=_who(owners))
                if owners
                else PHRASES["empty"],
                buckets=settings.tcp_max_tw_buckets,
            )
        )
    share = len(socks) / max(settings.tcp_max_tw_buckets, 1)
    if share >= thresholds["time-wait.buckets"]:
        overflows = settings.counters.get("TCPTimeWaitOverflow")
        evidence = Evidence(
            count=len(socks),
            share=share,
            peers=_peers(socks, with_port=True),
            limits=limits[2:],
            counters=_counters(settings, "TCPTimeWaitOverflow"),
        )
        findings.append(
            _finding(
                ctx,
                "time-wait",
                _grade(
                    share, thresholds["time-wait.buckets"], thresholds["time-wait.buckets-critical"]
                ),
                evidence,
                State.TIME_WAIT,
                kind="time-wait-buckets",
                count=len(socks),
                share=_share(share),
                buckets=settings.tcp_max_tw_buckets,
                overflows="?" if overflows is None else overflows,
            )
        )
    return findings


def _other_ends(ctx: RuleContext, socks: Iterable[Socket]) -> tuple[ProcessRef, ...]:
    """Processes on this machine holding the other end of these connections (loopback peers)."""
    index = ctx.index
    ends = [end for s in socks if (end := index.other_end(s)) is not None]
    return _processes(e for e in ends if e.pid is not None or e.process)


def _dialers(ctx: RuleContext, remotes: set[Addr]) -> dict[Addr, list[Socket]]:
    """Open connections of known processes to the given peers (TIME_WAIT has no owner left).

    The sockets in TIME_WAIT no longer belong to a process; the process that
    keeps dialling the same peer usually still has a connection to it open.
    """
    found: dict[Addr, list[Socket]] = defaultdict(list)
    if not remotes:
        return found
    for state in (State.ESTABLISHED, State.SYN_SENT, State.FIN_WAIT1, State.FIN_WAIT2):
        for sock in _tcp(ctx, state):
            if sock.remote in remotes and (sock.pid is not None or sock.process):
                found[sock.remote].append(sock)
    return found


def _tw_oldest(socks: list[Socket]) -> float | None:
    remaining = [s.timer.remaining for s in socks if s.timer and s.timer.kind == "timewait"]
    return max(TIME_WAIT_SECONDS - min(remaining), 0.0) if remaining else None


def _listener_for(ctx: RuleContext, sock: Socket, *, remote: bool = False) -> Socket | None:
    """The LISTEN socket on this machine a connection's local (or ``remote``) end belongs to."""
    end = sock.remote if remote else sock.local
    best = None
    for cand in _tcp(ctx, State.LISTEN):
        if cand.local.port != end.port:
            continue
        if cand.family != sock.family and cand.local.ip != "::":  # "::" is dual-stack
            continue
        if cand.local.ip == end.ip:
            return cand
        if cand.local.ip in ("0.0.0.0", "::", "*") and (best is None or cand.family == sock.family):
            best = cand
    return best


@rule(
    "syn-recv",
    State.SYN_RECV,
    (
        _t("syn-recv", 0.5, "share", "SYN_RECV on one listener / its backlog: warning"),
        _t("syn-recv.critical", 1.0, "share", "the same share: critical (queue full)"),
        _t("syn-recv.info", 5, "sockets", "SYN_RECV on one listener: info"),
    ),
)
def syn_recv(ctx: RuleContext) -> list[Finding]:
    """Half-open connections (SYN_RECV) filling a listener's SYN queue: flood or lost SYN-ACKs.

    Measured per listener against its backlog (``send_q`` of the LISTEN row,
    already capped by ``somaxconn``) or, without one, against
    ``min(somaxconn, tcp_max_syn_backlog)``; the advice depends on
    ``tcp_syncookies``.
    """
    settings, thresholds = ctx.settings, ctx.thresholds
    groups: dict[tuple[int, int | None], list[Socket]] = defaultdict(list)
    for sock in _tcp(ctx, State.SYN_RECV):
        groups[(sock.family, sock.local.port)].append(sock)
    findings = []
    for (_family, port), socks in groups.items():
        listener = _listener_for(ctx, socks[0])
        known = listener is not None and bool(listener.send_q)
        if listener is not None and listener.send_q:
            limit = listener.send_q
        else:  # no listener, or a source without backlogs (/proc/net, netstat)
            limit = min(settings.somaxconn, settings.tcp_max_syn_backlog)
        count = len(socks)
        share = count / max(limit, 1)
        if share < thresholds["syn-recv"] and count < thresholds["syn-recv.info"]:
            continue
        severity = _grade(share, thresholds["syn-recv"], thresholds["syn-recv.critical"])
        retrans = _max_retrans(socks)
        cookies = settings.tcp_syncookies
        sent = settings.counters.get("SyncookiesSent")
        label = _endpoint(listener.local) if listener is not None else f"*:{port}"
        refs = _processes([listener]) if listener is not None else ()
        evidence = Evidence(
            count=count,
            local=label,
            processes=refs,
            peers=_peers(socks, with_port=False),
            distinct_peers=len({s.remote.ip for s in socks}),
            retransmits=retrans,
            share=share,
            limits=(
                Limit("backlog", limit, not known),
                _limit(settings, "somaxconn"),
                _limit(settings, "tcp_max_syn_backlog"),
                _limit(settings, "tcp_syncookies"),
                _limit(settings, "tcp_synack_retries"),
            ),
            counters=_counters(
                settings,
                "SyncookiesSent",
                "TCPReqQFullDoCookies",
                "TCPReqQFullDrop",
                "ListenDrops",
            ),
            examples=_examples(socks),
        )
        findings.append(
            _finding(
                ctx,
                "syn-recv",
                severity,
                evidence,
                State.SYN_RECV,
                count=count,
                listener=label,
                share=_share(share),
                limit=limit,
                peers=evidence.distinct_peers,
                synack=settings.tcp_synack_retries,
                retrans=render(PHRASES["synrecv_retrans"], n=retrans)
                if retrans
                else PHRASES["empty"],
                cookies=render(
                    PHRASES[f"cookies_{min(max(cookies, 0), 2)}"],
                    sent="?" if sent is None else sent,
                ),
                somaxconn=settings.somaxconn,
                max_syn=settings.tcp_max_syn_backlog,
            )
        )
    return findings


@rule(
    "accept-queue",
    State.LISTEN,
    (_t("accept-queue", 0.8, "share", "pending accepts / listen backlog: warning"),),
)
def accept_queue(ctx: RuleContext) -> list[Finding]:
    """A listener whose accept queue is (nearly) full: the server does not call accept().

    For LISTEN rows Linux reports pending connections in Recv-Q and the
    backlog in Send-Q; the queue overflows once pending exceeds the backlog.
    Only a known backlog is judged: ``/proc/net/tcp`` and net-tools netstat
    print Send-Q 0 for every listener, which sources read as unknown (None).
    Live, the ListenOverflows/ListenDrops counters back the finding, and on
    their own (no queue full right now) they are reported as info.
    """
    settings, thresholds = ctx.settings, ctx.thresholds
    findings = []
    live_counters = _counters(settings, "ListenOverflows", "ListenDrops")
    overflows = settings.counters.get("ListenOverflows", 0)
    drops = settings.counters.get("ListenDrops", 0)
    counter_text = (
        render(PHRASES["counters"], overflows=overflows, drops=drops)
        if live_counters
        else PHRASES["empty"]
    )
    for sock in _tcp(ctx, State.LISTEN):
        pending, backlog = sock.recv_q, sock.send_q
        if not pending or backlog is None:
            continue
        if pending > backlog:
            severity, fullness = Severity.CRITICAL, PHRASES["full"]
        elif pending >= max(thresholds["accept-queue"] * backlog, 1):
            severity, fullness = Severity.WARNING, PHRASES["nearly_full"]
        else:
            continue
        refs = _processes([sock])
        evidence = Evidence(
            count=pending,
            local=_endpoint(sock.local),
            processes=refs,
            queue=pending,
            share=pending / max(backlog, 1),
            limits=(Limit("backlog", backlog), _limit(settings, "somaxconn")),
            counters=live_counters,
        )
        findings.append(
            _finding(
                ctx,
                "accept-queue",
                severity,
                evidence,
                State.LISTEN,
                listener=_endpoint(sock.local),
                fullness=fullness,
                pending=pending,
                backlog=backlog,
                who=_who(refs),
                counters=counter_text,
                somaxconn=settings.somaxconn,
            )
        )
    if not findings and overflows > 0 and not settings.assumed:
        findings.append(
            _finding(
                ctx,
                "accept-queue",
                Severity.INFO,
                Evidence(count=overflows, counters=live_counters),
                State.LISTEN,
                kind="listen-overflows",
                overflows=overflows,
                drops=drops,
            )
        )
    return findings


@rule(
    "fin-wait2",
    State.FIN_WAIT2,
    (
        _t("fin-wait2", 100, "sockets", "FIN_WAIT2 towards one peer or port: warning"),
        _t("fin-wait2.critical", 5000, "sockets", "the same count: critical"),
    ),
)
def fin_wait2(ctx: RuleContext) -> list[Finding]:
    """FIN_WAIT2 lingering: this side closed, the peer never does (often its CLOSE_WAIT leak).

    Orphaned ones (no process; a ``timewait`` timer) go away after
    ``tcp_fin_timeout``; ones still held by a process after ``shutdown()``
    wait forever.  When the peer is on this machine, the finding names the
    process holding the matching CLOSE_WAIT.
    """
    snapshot, settings, thresholds = ctx.snapshot, ctx.settings, ctx.thresholds
    socks = _tcp(ctx, State.FIN_WAIT2)
    if not socks:
        return []
    close_wait_by_tuple: dict[tuple[Addr, Addr], Socket] = {
        (s.local, s.remote): s for s in _tcp(ctx, State.CLOSE_WAIT)
    }
    knows = _knows_processes(snapshot)
    fin_timeout = settings.tcp_fin_timeout
    findings = []
    for key, group in _group_by_side(socks, ctx).items():
        count = len(group)
        held = [s for s in group if s.pid is not None or s.process is not None]
        peers_cw = [
            close_wait_by_tuple[(s.remote, s.local)]
            for s in group
            if (s.remote, s.local) in close_wait_by_tuple
        ]
        assumed = _assumed(settings, "tcp_fin_timeout")
        if held:
            refs = _processes(held)
            owner = render(PHRASES["owner_held"], who=_who(refs))
        else:
            refs = ()
            owner = render(
                PHRASES["owner_orphan" if knows else "owner_unknown"],
                fin_timeout=fin_timeout,
                assumed=assumed,
            )
        if peers_cw:
            peer_refs = _processes(s for s in peers_cw if s.pid is not None or s.process)
            peer_link = (
                render(PHRASES["peer_link"], who=_who(peer_refs))
                if peer_refs
                else PHRASES["peer_link_unknown"]
            )
        else:
            peer_refs, peer_link = (), PHRASES["empty"]
        timers = [s.timer.remaining for s in group if s.timer and s.timer.kind == "timewait"]
        oldest = max(fin_timeout - min(timers), 0.0) if timers else None
        evidence = Evidence(
            count=count,
            local=f"*:{key[1]}" if key[0] == "port" else None,
            remote=key[1] if key[0] == "peer" else None,
            processes=refs,
            peer_processes=peer_refs,
            peers=_peers(group, with_port=key[0] == "port"),
            distinct_peers=len({s.remote.ip for s in group}),
            oldest_s=oldest,
            limits=(_limit(settings, "tcp_fin_timeout"),),
            examples=_examples(group),
        )
        severity = _grade(count, thresholds["fin-wait2"], thresholds["fin-wait2.critical"])
        findings.append(
            _finding(
                ctx,
                "fin-wait2",
                severity,
                evidence,
                State.FIN_WAIT2,
                count=count,
                peer=_peer_label(key),
                owner=owner,
                peer_link=peer_link,
                fin_timeout=fin_timeout,
                assumed=assumed,
            )
        )
    return findings


@rule(
    "fin-wait1",
    State.FIN_WAIT1,
    (
        _t("fin-wait1", 10, "sockets", "FIN_WAIT1 towards one peer: warning"),
        _t("fin-wait1.retransmits", 3, "retransmits", "unanswered FIN retransmissions: warning"),
    ),
)
def fin_wait1(ctx: RuleContext) -> list[Finding]:
    """FIN_WAIT1 stuck: the FIN waits behind data the peer does not take or never acknowledges.

    Live, a FIN_WAIT1 socket is only reported when its timer shows window
    probes (the peer's zero window) or ``fin-wait1.retransmits`` unanswered
    retransmissions, or when ``fin-wait1`` of them pile up towards one peer;
    in a saved dump, which has no timers, any FIN_WAIT1 is worth a note.
    """
    settings, thresholds = ctx.settings, ctx.thresholds
    findings = []
    for key, group in _group_by_side(_tcp(ctx, State.FIN_WAIT1), ctx).items():
        count = len(group)
        retrans = _max_retrans(group) or 0
        probes = [s for s in group if s.timer and s.timer.kind == "persist"]
        stuck = bool(probes) or retrans >= thresholds["fin-wait1.retransmits"]
        if stuck or count >= thresholds["fin-wait1"]:
            severity = Severity.WARNING
        elif not _has_timers(group):
            severity = Severity.INFO
        else:
            continue
        if probes:
            why = render(
                PHRASES["fw1_persist"], n=max(s.timer.retransmits for s in probes if s.timer)
            )
        elif retrans:
            why = render(PHRASES["fw1_retrans"], n=retrans)
        else:
            why = PHRASES["fw1_plain"]
        queued = sum(s.send_q or 0 for s in group)
        readers = _other_ends(ctx, group)
        if readers:
            why = why + render(PHRASES["peer_reader"], who=_who(readers))
        evidence = Evidence(
            count=count,
            local=f"*:{key[1]}" if key[0] == "port" else None,
            remote=key[1] if key[0] == "peer" else None,
            processes=_processes(s for s in group if s.pid is not None or s.process),
            peer_processes=readers,
            peers=_peers(group, with_port=key[0] == "port"),
            retransmits=retrans,
            queue=queued,
            limits=(_limit(settings, "tcp_max_orphans"),),
            examples=_examples(group),
        )
        findings.append(
            _finding(
                ctx,
                "fin-wait1",
                severity,
                evidence,
                State.FIN_WAIT1,
                count=count,
                peer=_peer_label(key),
                bytes=_bytes(queued),
                why=why,
            )
        )
    return findings


@rule(
    "last-ack",
    State.LAST_ACK,
    (
        _t("last-ack", 10, "sockets", "LAST_ACK towards one peer: warning"),
        _t("last-ack.retransmits", 3, "retransmits", "unanswered FIN retransmissions: warning"),
    ),
)
def last_ack(ctx: RuleContext) -> list[Finding]:
    """LAST_ACK lingering: this side's FIN is never acknowledged (peer vanished, state dropped).

    Grouped by peer; reported live when the FIN was retransmitted
    ``last-ack.retransmits`` times or ``last-ack`` sockets pile up, and as
    info in a saved dump.
    """
    thresholds = ctx.thresholds
    findings = []
    for key, group in _group_by_side(_tcp(ctx, State.LAST_ACK), ctx).items():
        count = len(group)
        retrans = _max_retrans(group) or 0
        if retrans >= thresholds["last-ack.retransmits"] or count >= thresholds["last-ack"]:
            severity = Severity.WARNING
        elif not _has_timers(group):
            severity = Severity.INFO
        else:
            continue
        evidence = Evidence(
            count=count,
            local=f"*:{key[1]}" if key[0] == "port" else None,
            remote=key[1] if key[0] == "peer" else None,
            processes=_processes(s for s in group if s.pid is not None or s.process),
            peers=_peers(group, with_port=key[0] == "port"),
            retransmits=retrans,
            examples=_examples(group),
        )
        findings.append(
            _finding(
                ctx,
                "last-ack",
                severity,
                evidence,
                State.LAST_ACK,
                count=count,
                peer=_peer_label(key),
                retrans=render(PHRASES["last_ack_retrans"], n=retrans)
                if retrans
                else PHRASES["empty"],
            )
        )
    return findings


@rule(
    "syn-sent",
    State.SYN_SENT,
    (
        _t("syn-sent", 5, "sockets", "SYN_SENT towards one destination: warning"),
        _t("syn-sent.retransmits", 2, "retransmits", "SYN retransmissions on one socket: warning"),
    ),
)
def syn_sent(ctx: RuleContext) -> list[Finding]:
    """SYN_SENT stuck, grouped by destination: unreachable, filtered, or its accept queue full.

    Live, a connect is stuck once its SYN has been retransmitted (info) or
    ``syn-sent.retransmits`` times (warning), or when ``syn-sent`` attempts
    to one destination are pending; a saved dump gets info for any.
    """
    settings, thresholds = ctx.settings, ctx.thresholds
    groups: dict[str, list[Socket]] = defaultdict(list)
    for sock in _tcp(ctx, State.SYN_SENT):
        groups[_endpoint(sock.remote)].append(sock)
    findings = []
    n = settings.tcp_syn_retries
    linear = settings.tcp_syn_linear_timeouts
    schedule = syn_schedule(n, linear)
    how = PHRASES["syn_how_linear" if linear else "syn_how_doubling"]
    for dest, group in groups.items():
        count = len(group)
        retrans = _max_retrans(group) or 0
        if retrans >= thresholds["syn-sent.retransmits"] or count >= thresholds["syn-sent"]:
            severity = Severity.WARNING
        elif retrans >= 1 or not _has_timers(group):
            severity = Severity.INFO
        else:
            continue
        target = _listener_for(ctx, group[0], remote=True)
        # only a known backlog can be full: /proc/net and net-tools netstat have none
        full = (
            target is not None
            and target.send_q is not None
            and (target.recv_q or 0) > target.send_q
        )
        evidence = Evidence(
            count=count,
            remote=dest,
            processes=_processes(group),
            retransmits=retrans,
            limits=(_limit(settings, "tcp_syn_retries"),)
            + ((_limit(settings, "tcp_syn_linear_timeouts"),) if linear is not None else ()),
            examples=_examples(group),
        )
        findings.append(
            _finding(
                ctx,
                "syn-sent",
                severity,
                evidence,
                State.SYN_SENT,
                count=count,
                dest=dest,
                dest_host=group[0].remote.ip,
                dest_port=group[0].remote.port,
                retrans_title=render(PHRASES["syn_sent_retrans"], n=retrans, total=schedule.count)
                if retrans
                else PHRASES["empty"],
                syn_how=render(
                    how,
                    syn_retries=n,
                    linear=linear,
                    schedule=schedule.spelled(),
                    assumed=_assumed(settings, "tcp_syn_retries"),
                ),
                syn_total=schedule.count,
                timeout=f"{schedule.give_up:g}",
                local=render(PHRASES["syn_sent_local_full"], listener=_endpoint(target.local))
                if full and target is not None
                else PHRASES["empty"],
            )
        )
    return findings


@rule(
    "recv-q",
    State.ESTABLISHED,
    (_t("recv-q", 1048576, "bytes", "unread bytes on one ESTABLISHED socket: warning"),),
)
def recv_q(ctx: RuleContext) -> list[Finding]:
    """Receive queue building up on ESTABLISHED connections: the application is not reading.

    Sockets with at least ``recv-q`` unread bytes, grouped by owning process.
    """
    snapshot, thresholds = ctx.snapshot, ctx.thresholds
    limit = thresholds["recv-q"]
    groups: dict[tuple[int | None, str | None], list[Socket]] = defaultdict(list)
    for sock in _tcp(ctx, State.ESTABLISHED):
        if sock.recv_q is not None and sock.recv_q >= max(limit, 1):
            groups[(sock.pid, sock.process)].append(sock)
    findings = []
    for (pid, name), group in groups.items():
        total = sum(s.recv_q or 0 for s in group)
        refs = (ProcessRef(pid, name, len(group)),)
        evidence = Evidence(
            count=len(group),
            processes=refs,
            local_ports=_ports(group),
            peers=_peers(group, with_port=True),
            queue=total,
            idle_s=None,
            examples=_examples(group),
        )
        findings.append(
            _finding(
                ctx,
                "recv-q",
                Severity.WARNING,
                evidence,
                State.ESTABLISHED,
                who=_owner(snapshot, refs[0]),
                bytes=_bytes(total),
                count=len(group),
            )
        )
    return findings


@rule(
    "send-q",
    State.ESTABLISHED,
    (_t("send-q", 1048576, "bytes", "unacknowledged bytes on one ESTABLISHED socket: warning"),),
)
def send_q(ctx: RuleContext) -> list[Finding]:
    """Send queue building up on ESTABLISHED connections: slow peer (zero window) or lossy path.

    Sockets with at least ``send-q`` unacknowledged bytes, grouped by peer;
    a ``persist`` timer means the peer's window is zero, retransmissions
    mean loss.
    """
    thresholds = ctx.thresholds
    limit = thresholds["send-q"]
    groups: dict[str, list[Socket]] = defaultdict(list)
    for sock in _tcp(ctx, State.ESTABLISHED):
        if sock.send_q is not None and sock.send_q >= max(limit, 1):
            groups[_endpoint(sock.remote)].append(sock)
    findings = []
    for peer, group in groups.items():
        total = sum(s.send_q or 0 for s in group)
        retrans = _max_retrans(group) or 0
        if any(s.timer and s.timer.kind == "persist" for s in group):
            why = PHRASES["sq_persist"]
        elif retrans and any(s.timer and s.timer.kind == "on" for s in group):
            why = render(PHRASES["sq_retrans"], n=retrans)
        else:
            why = PHRASES["sq_plain"]
        readers = _other_ends(ctx, group)
        if readers:
            why = why + render(PHRASES["peer_reader"], who=_who(readers))
        evidence = Evidence(
            count=len(group),
            remote=peer,
            processes=_processes(group),
            peer_processes=readers,
            local_ports=_ports(group),
            retransmits=retrans,
            queue=total,
            examples=_examples(group),
        )
        findings.append(
            _finding(
                ctx,
                "send-q",
                Severity.WARNING,
                evidence,
                State.ESTABLISHED,
                bytes=_bytes(total),
                count=len(group),
                peer=peer,
                why=why,
            )
        )
    return findings


#: states an orphan (closed by its process, not yet gone) can be in
ORPHAN_STATES: Final = frozenset({State.FIN_WAIT1, State.FIN_WAIT2, State.LAST_ACK, State.CLOSING})


@rule(
    "orphans",
    None,
    (
        _t("orphans", 0.5, "share", "orphaned sockets / tcp_max_orphans: warning"),
        _t("orphans.critical", 0.9, "share", "the same share: critical"),
    ),
)
def orphans(ctx: RuleContext) -> list[Finding]:
    """Orphaned sockets approaching ``tcp_max_orphans``, beyond which the kernel resets them.

    Live, the count is the kernel's own (``/proc/net/sockstat``, whole
    machine); for a dump that shows every process, sockets in closing
    states without one are counted.
    """
    snapshot, settings, thresholds = ctx.snapshot, ctx.settings, ctx.thresholds
    count = settings.orphans
    if count is None:
        if not _knows_processes(snapshot):
            return []
        count = sum(
            1
            for s in snapshot.sockets
            if s.proto == "tcp" and s.state in ORPHAN_STATES and s.pid is None and not s.process
        )
    limit = max(settings.tcp_max_orphans, 1)
    share = count / limit
    if share < thresholds["orphans"]:
        return []
    aborts = settings.counters.get("TCPAbortOnMemory")
    evidence = Evidence(
        count=count,
        share=share,
        limits=(_limit(settings, "tcp_max_orphans"),),
        counters=_counters(settings, "TCPAbortOnMemory"),
    )
    return [
        _finding(
            ctx,
            "orphans",
            _grade(share, thresholds["orphans"], thresholds["orphans.critical"]),
            evidence,
            None,
            count=count,
            share=_share(share),
            limit=settings.tcp_max_orphans,
            aborts="?" if aborts is None else aborts,
        )
    ]
