"""Kernel TCP settings and counters the doctor compares socket counts against.

A count of sockets only means something next to the limit it eats into:
TIME_WAIT towards one peer against the ephemeral port range, SYN_RECV
against the SYN backlog, orphans against ``tcp_max_orphans``.  This module
reads those limits (``/proc/sys/net``) and the counters that prove a limit
was hit (``/proc/net/netstat`` ``TcpExt``, ``/proc/net/sockstat``).

Parse is pure, read is thin: :func:`parse_netstat` and :func:`parse_sockstat`
take text; :func:`read_kernel` opens files under a proc root that tests
point at recorded copies.  Everything is per network namespace except
``tcp_max_orphans`` and the sockstat orphan count, which Linux keeps for the
whole machine (inside a namespace the sysctl file does not exist at all).

For a saved dump nothing about the machine's kernel is known, so
:meth:`KernelSettings.defaults` states what a stock Linux kernel uses and
marks the result ``assumed``; the doctor says "assumed default" next to every
limit it quotes from it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Final

from tcplens.errors import InputError

__all__ = [
    "COUNTERS",
    "KernelSettings",
    "parse_netstat",
    "parse_sockstat",
    "read_kernel",
]

#: ``TcpExt`` counters (``/proc/net/netstat``) the doctor quotes as evidence.
#: All count events since boot (per network namespace).
COUNTERS: Final = (
    "ListenOverflows",  # SYN or final ACK dropped because the accept queue was full
    "ListenDrops",  # every drop at a listener, overflows included
    "TCPReqQFullDrop",  # SYN dropped because the SYN queue was full and no cookies
    "TCPReqQFullDoCookies",  # SYN queue full, answered with a syncookie instead
    "SyncookiesSent",
    "SyncookiesRecv",
    "SyncookiesFailed",
    "TCPTimeWaitOverflow",  # tcp_max_tw_buckets hit: TIME_WAIT destroyed early
    "TCPAbortOnMemory",  # too many orphans or out of socket memory: connection reset
    "TCPAbortOnTimeout",
    "TCPAbortOnClose",  # close() with unread data: RST sent
    "TCPAbortOnData",
    "TCPAbortOnLinger",
    "TW",  # TIME_WAIT sockets that expired normally
)


@dataclass(frozen=True, slots=True)
class KernelSettings:
    """The limits and counters rules compare against, with where they came from.

    Field defaults are Linux's defaults.  Three of them scale with memory in
    the kernel (``tcp_max_tw_buckets`` and ``tcp_max_orphans`` are half the
    established hash size, ``tcp_max_syn_backlog`` a fraction of it); the
    values here are those of a machine with a few GiB of memory.
    """

    ip_local_port_range: tuple[int, int] = (32768, 60999)
    tcp_tw_reuse: int = 2
    tcp_max_tw_buckets: int = 131072
    tcp_max_syn_backlog: int = 1024
    tcp_syncookies: int = 1
    tcp_fin_timeout: int = 60
    tcp_max_orphans: int = 131072
    tcp_synack_retries: int = 5
    tcp_syn_retries: int = 6
    #: Linux 6.5+; None where the kernel has no such sysctl (older kernels behave as 0)
    tcp_syn_linear_timeouts: int | None = 4
    somaxconn: int = 4096
    #: ``TcpExt`` counters since boot; empty when not read (saved dumps).
    counters: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    #: ``/proc/net/sockstat`` TCP line (``inuse``, ``orphan``, ``tw``, ``alloc``, ``mem``).
    sockstat: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    #: True when the values are Linux defaults, not read from the machine.
    assumed: bool = False
    #: settings that could not be read and kept their default, by sysctl name.
    defaulted: tuple[str, ...] = ()
    #: where the values came from: a proc root, or "assumed Linux defaults".
    origin: str = "assumed Linux defaults"

    @classmethod
    def defaults(cls) -> KernelSettings:
        """Stock Linux values, marked ``assumed`` (for saved dumps)."""
        return cls(assumed=True, origin="assumed Linux defaults")

    @property
    def ephemeral_ports(self) -> int:
        """How many local ports ``connect()`` can pick from."""
        low, high = self.ip_local_port_range
        return max(high - low + 1, 1)

    def is_assumed(self, name: str) -> bool:
        """Whether the value of setting ``name`` is a default rather than read."""
        return self.assumed or name in self.defaulted

    def in_ephemeral_range(self, port: int | None) -> bool:
        low, high = self.ip_local_port_range
        return port is not None and low <= port <= high

    @property
    def orphans(self) -> int | None:
        """Orphaned TCP sockets right now (whole machine), when read live."""
        return self.sockstat.get("orphan")


#: sysctl file (relative to the proc root) -> field name
_SYSCTLS: Final = {
    "sys/net/ipv4/ip_local_port_range": "ip_local_port_range",
    "sys/net/ipv4/tcp_tw_reuse": "tcp_tw_reuse",
    "sys/net/ipv4/tcp_max_tw_buckets": "tcp_max_tw_buckets",
    "sys/net/ipv4/tcp_max_syn_backlog": "tcp_max_syn_backlog",
    "sys/net/ipv4/tcp_syncookies": "tcp_syncookies",
    "sys/net/ipv4/tcp_fin_timeout": "tcp_fin_timeout",
    "sys/net/ipv4/tcp_max_orphans": "tcp_max_orphans",
    "sys/net/ipv4/tcp_synack_retries": "tcp_synack_retries",
    "sys/net/ipv4/tcp_syn_retries": "tcp_syn_retries",
    "sys/net/ipv4/tcp_syn_linear_timeouts": "tcp_syn_linear_timeouts",
    "sys/net/core/somaxconn": "somaxconn",
}


def parse_netstat(text: str, *, path: str = "netstat") -> dict[str, dict[str, int]]:
    """Parse ``/proc/net/netstat`` (or ``/proc/net/snmp``): header/value line pairs.

    >>> parse_netstat("TcpExt: ListenOverflows ListenDrops\\nTcpExt: 3 4\\n")
    {'TcpExt': {'ListenOverflows': 3, 'ListenDrops': 4}}
    """
    lines = [line for line in text.splitlines() if line.strip()]
    out: dict[str, dict[str, int]] = {}
    if len(lines) % 2:
        raise InputError("header line without a value line", path=path, line=len(lines))
    for index in range(0, len(lines), 2):
        head, values = lines[index], lines[index + 1]
        prefix, _, names = head.partition(":")
        vprefix, _, numbers = values.partition(":")
        if prefix != vprefix or not prefix:
            raise InputError(
                f"expected a {prefix or '?'}: value line, found {vprefix!r}",
                path=path,
                line=index + 2,
            )
        keys, nums = names.split(), numbers.split()
        if len(keys) != len(nums):
            raise InputError(f"{len(keys)} names but {len(nums)} values", path=path, line=index + 2)
        try:
            out[prefix] = {key: int(num) for key, num in zip(keys, nums, strict=True)}
        except ValueError as exc:
            raise InputError(f"not a number: {exc}", path=path, line=index + 2) from None
    return out


def parse_sockstat(text: str, *, path: str = "sockstat") -> dict[str, int]:
    """Parse the ``TCP:`` line of ``/proc/net/sockstat`` into name -> count.

    >>> parse_sockstat("sockets: used 14\\nTCP: inuse 1 orphan 0 tw 3 alloc 1 mem 2\\n")
    {'inuse': 1, 'orphan': 0, 'tw': 3, 'alloc': 1, 'mem': 2}
    """
    for number, line in enumerate(text.splitlines(), start=1):
        label, _, rest = line.partition(":")
        if label != "TCP":
            continue
        words = rest.split()
        if len(words) % 2:
            raise InputError("expected name/value pairs", path=path, line=number)
        try:
            return {words[i]: int(words[i + 1]) for i in range(0, len(words), 2)}
        except ValueError as exc:
            raise InputError(f"not a number: {exc}", path=path, line=number) from None
    return {}


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except (FileNotFoundError, PermissionError, NotADirectoryError):
        return None


def read_kernel(proc_root: str | Path = "/proc") -> KernelSettings:
    """Read the settings and counters of the current network namespace.

    A setting that cannot be read keeps its Linux default and is listed in
    ``defaulted`` (``tcp_max_orphans`` inside a network namespace, a
    hardened /proc); the counters are simply left empty.
    """
    root = Path(proc_root)
    base = KernelSettings()
    ints: dict[str, int] = {}
    port_range = base.ip_local_port_range
    defaulted: list[str] = []
    linear: int | None = None
    for rel, name in _SYSCTLS.items():
        text = _read(root / rel)
        if name == "tcp_syn_linear_timeouts":
            # absent before Linux 6.5: the kernel then behaves as 0, not as the default
            if text is not None and text.strip().isdigit():
                linear = int(text)
            elif (root / rel).exists():
                linear = base.tcp_syn_linear_timeouts
                defaulted.append(name)
            continue
        numbers = text.split() if text is not None else []
        try:
            if name == "ip_local_port_range" and len(numbers) == 2:
                port_range = (int(numbers[0]), int(numbers[1]))
            elif name != "ip_local_port_range" and len(numbers) == 1:
                ints[name] = int(numbers[0])
            else:
                defaulted.append(name)
        except ValueError:
            defaulted.append(name)
    counters: dict[str, int] = {}
    netstat = _read(root / "net/netstat")
    if netstat is not None:
        tcpext = parse_netstat(netstat, path=str(root / "net/netstat")).get("TcpExt", {})
        counters = {key: tcpext[key] for key in COUNTERS if key in tcpext}
    sockstat_text = _read(root / "net/sockstat")
    sockstat = (
        parse_sockstat(sockstat_text, path=str(root / "net/sockstat"))
        if sockstat_text is not None
        else {}
    )

    def get(name: str) -> int:
        value: int = ints.get(name, getattr(base, name))
        return value

    return KernelSettings(
        ip_local_port_range=port_range,
        tcp_tw_reuse=get("tcp_tw_reuse"),
        tcp_max_tw_buckets=get("tcp_max_tw_buckets"),
        tcp_max_syn_backlog=get("tcp_max_syn_backlog"),
        tcp_syncookies=get("tcp_syncookies"),
        tcp_fin_timeout=get("tcp_fin_timeout"),
        tcp_max_orphans=get("tcp_max_orphans"),
        tcp_synack_retries=get("tcp_synack_retries"),
        tcp_syn_retries=get("tcp_syn_retries"),
        tcp_syn_linear_timeouts=linear,
        somaxconn=get("somaxconn"),
        counters=MappingProxyType(counters),
        sockstat=MappingProxyType(sockstat),
        assumed=False,
        defaulted=tuple(defaulted),
        origin=str(root),
    )
