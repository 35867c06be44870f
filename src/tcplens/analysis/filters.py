"""Socket selection and ordering shared by ``ls``, ``status``, the doctor and the exporter.

A :class:`SocketFilter` is plain data built from command-line options (see
``tcplens.views.options``); :meth:`SocketFilter.matches` is the predicate and
:func:`sort_sockets` the ordering.  Keeping them here, not in the CLI, lets
every view select sockets the same way.
"""

from __future__ import annotations

import fnmatch
import ipaddress
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final

from tcplens.model.states import State
from tcplens.sources.records import Socket

__all__ = ["SORT_KEYS", "SocketFilter", "sort_sockets"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.split("%")[0])
    except ValueError:
        return None


def _in(text: str, networks: tuple[Network, ...]) -> bool:
    ip = _ip(text)
    if ip is None:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        mapped = ip.ipv4_mapped
        if any(mapped in net for net in networks if net.version == 4):
            return True
    return any(ip in net for net in networks if net.version == ip.version)


@dataclass(frozen=True, slots=True)
class SocketFilter:
    """Which sockets to keep; every empty field means "any"."""

    states: frozenset[State] = frozenset()
    protos: frozenset[str] = frozenset()
    families: frozenset[int] = frozenset()
    listening: bool = False
    sports: frozenset[int] = frozenset()
    dports: frozenset[int] = frozenset()
    ports: frozenset[int] = frozenset()
    src: tuple[Network, ...] = ()
    dst: tuple[Network, ...] = ()
    pids: frozenset[int] = frozenset()
    process: str | None = None

    @property
    def needs_processes(self) -> bool:
        return bool(self.pids) or self.process is not None

    def matches(self, sock: Socket) -> bool:
        if self.protos and sock.proto not in self.protos:
            return False
        if self.families and sock.family not in self.families:
            return False
        if self.listening and not _is_listening(sock):
            return False
        if self.states and sock.state not in self.states:
            return False
        if self.sports and sock.local.port not in self.sports:
            return False
        if self.dports and sock.remote.port not in self.dports:
            return False
        if self.ports and sock.local.port not in self.ports and sock.remote.port not in self.ports:
            return False
        if self.src and not _in(sock.local.ip, self.src):
            return False
        if self.dst and not _in(sock.remote.ip, self.dst):
            return False
        # a socket shared after fork() belongs to each of its holders, as in ss -p
        if (
            self.pids
            and sock.pid not in self.pids
            and not any(holder.pid in self.pids for holder in sock.holders)
        ):
            return False
        if self.process is not None:
            pattern = self.process.lower()
            names = {sock.process} | {holder.process for holder in sock.holders}
            return any(_name_matches((name or "").lower(), pattern) for name in names)
        return True

    def apply(self, sockets: Iterable[Socket]) -> list[Socket]:
        if self == _ANY:
            return list(sockets)
        return [s for s in sockets if self.matches(s)]


_ANY: Final = SocketFilter()


def _name_matches(name: str, pattern: str) -> bool:
    if any(c in pattern for c in "*?["):
        return fnmatch.fnmatchcase(name, pattern)
    return pattern in name


def _is_listening(sock: Socket) -> bool:
    """What ``ss -l`` lists: TCP LISTEN and unconnected UDP."""
    if sock.proto == "tcp":
        return sock.state is State.LISTEN
    return sock.state is State.CLOSED


_STATE_ORDER: Final = {state: i for i, state in enumerate(State)}


def _ip_key(text: str) -> tuple[int, int]:
    ip = _ip(text)
    return (0, 0) if ip is None else (ip.version, int(ip))


#: ``--sort`` names -> key function; ties keep the source's order.
SORT_KEYS: Final[dict[str, Callable[[Socket], Any]]] = {
    "state": lambda s: _STATE_ORDER[s.state],
    "proto": lambda s: (s.proto, s.family),
    "local": lambda s: (_ip_key(s.local.ip), s.local.port or 0),
    "remote": lambda s: (_ip_key(s.remote.ip), s.remote.port or 0),
    "sport": lambda s: s.local.port or 0,
    "dport": lambda s: s.remote.port or 0,
    "recv-q": lambda s: -(s.recv_q or 0),
    "send-q": lambda s: -(s.send_q or 0),
    "pid": lambda s: (s.pid is None, s.pid or 0),
    "process": lambda s: (s.process is None, s.process or ""),
    "timer": lambda s: (s.timer is None, s.timer.remaining if s.timer else 0.0),
}


def sort_sockets(sockets: list[Socket], key: str) -> list[Socket]:
    """Stable sort by a :data:`SORT_KEYS` name (queues sort largest first)."""
    return sorted(sockets, key=SORT_KEYS[key])
