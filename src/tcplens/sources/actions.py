"""Act on live sockets: close the selected TCP connections (``tcplens kill``), as ``ss -K`` does.

Theory of operation.  :func:`plan` dumps the TCP sockets the selection can
match over sock_diag, keeping each one's exact kernel id (cookie included,
see :mod:`tcplens.sources.netlink`), fills in the owning processes, applies
the same selection ``ls`` applies and holds LISTEN sockets back unless the
caller allows them.  :func:`execute` sends one ``SOCK_DESTROY`` per planned
socket and sorts the answers into closed and failed, each failure with the
kernel's reason.  Planning and executing are separate so a person can read
the plan and confirm it; because the ids carry cookies, a socket that went
away between the two is reported as gone, never mistaken for a newer one on
the same ports.

What the kernel does (measured on Linux 6.18, net/ipv4/tcp.c ``tcp_abort``):
a full socket is closed at once, the peer receives an RST where the state
calls for one (ESTABLISHED, CLOSE_WAIT, FIN_WAIT1/2, SYN_RECV) and sees
ECONNRESET; the owner's descriptor stays open until it closes it, its next
write fails with ECONNABORTED, and so does a read unless the peer's FIN had
arrived (CLOSE_WAIT: what was received is still read, then end-of-file); a
TIME_WAIT or NEW_SYN_RECV entry is simply
removed (older kernels answered EOPNOTSUPP for TIME_WAIT); a listener stops
listening.  Needs CAP_NET_ADMIN (EPERM otherwise) and a kernel built with
CONFIG_INET_DIAG_DESTROY (EOPNOTSUPP otherwise).

Only Linux has such an interface here: psutil (macOS, Windows) can list
connections but not close them; Windows' ``SetTcpEntry`` is a later step.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import sys
from dataclasses import dataclass, field
from typing import Final, Protocol

from tcplens.errors import ActionError
from tcplens.model.states import State
from tcplens.sources import netlink, processes
from tcplens.sources.records import Proto, Socket

__all__ = [
    "Failure",
    "KillResult",
    "Plan",
    "Selection",
    "check_platform",
    "execute",
    "kill",
    "narrows",
    "plan",
    "require_net_admin",
]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

#: states whose kernel entry is a minisocket: an older kernel's EOPNOTSUPP for one of them
#: says nothing about full sockets (SYN_RECV is both: NEW_SYN_RECV or a full socket)
_MINISOCKET_STATES: Final = frozenset({State.TIME_WAIT})


class Selection(Protocol):
    """Which sockets: :class:`tcplens.analysis.filters.SocketFilter` is one.

    Declared here, by shape, because sources sit below analysis and may not
    import it; any object with these fields and ``matches`` will do.
    """

    @property
    def states(self) -> frozenset[State]: ...
    @property
    def protos(self) -> frozenset[str]: ...
    @property
    def families(self) -> frozenset[int]: ...
    @property
    def listening(self) -> bool: ...
    @property
    def sports(self) -> frozenset[int]: ...
    @property
    def dports(self) -> frozenset[int]: ...
    @property
    def ports(self) -> frozenset[int]: ...
    @property
    def src(self) -> tuple[Network, ...]: ...
    @property
    def dst(self) -> tuple[Network, ...]: ...
    @property
    def pids(self) -> frozenset[int]: ...
    @property
    def process(self) -> str | None: ...
    def matches(self, sock: Socket) -> bool: ...


@dataclass(frozen=True, slots=True)
class Failure:
    """A socket the kernel would not close, and its answer."""

    socket: Socket
    errno: int

    @property
    def reason(self) -> str:
        """The kernel's answer as ``strerror`` words (``No such file or directory``)."""
        return os.strerror(self.errno)

    @property
    def code(self) -> str:
        """The errno's symbolic name (``ENOENT``), as the kernel source spells it."""
        return _ERRNO_NAMES.get(self.errno) or errno.errorcode.get(self.errno, str(self.errno))


#: Linux gives ENOTSUP and EOPNOTSUPP one number; Python names it ENOTSUP, the kernel EOPNOTSUPP
_ERRNO_NAMES: Final = {errno.EOPNOTSUPP: "EOPNOTSUPP"}


@dataclass(slots=True)
class Plan:
    """What :func:`execute` would close, and what the selection matched but holds back."""

    targets: list[tuple[Socket, netlink.SockId]]
    #: LISTEN sockets the selection matched; closed only when listeners were allowed
    held_listeners: list[Socket] = field(default_factory=list)
    #: what could not be seen (process names of other users, …)
    missing: list[str] = field(default_factory=list)

    @property
    def sockets(self) -> list[Socket]:
        return [sock for sock, _ in self.targets]


@dataclass(slots=True)
class KillResult:
    """What ``kill`` closed and what it could not, with the kernel's reason for each."""

    #: the sockets planned: closed, failed, or (``dry_run``) only listed
    planned: list[Socket]
    closed: list[Socket] = field(default_factory=list)
    failed: list[Failure] = field(default_factory=list)
    held_listeners: list[Socket] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    dry_run: bool = False


def check_platform(platform: str | None = None) -> None:
    """Raise :class:`ActionError` where closing sockets is not possible (yet)."""
    platform = sys.platform if platform is None else platform
    if platform.startswith("linux"):
        return
    if platform.startswith(("win32", "cygwin")):
        raise ActionError(
            "closing connections is unsupported on Windows for now (SetTcpEntry is a later step)",
            cause="unsupported",
        )
    name = "macOS" if platform == "darwin" else platform
    raise ActionError(
        f"closing connections is not possible on {name}: only Linux's sock_diag SOCK_DESTROY "
        "can close another process's TCP connection, and psutil can only list them",
        cause="unsupported",
    )


#: capability number of CAP_NET_ADMIN (include/uapi/linux/capability.h)
CAP_NET_ADMIN: Final = 12
_NOT_PERMITTED: Final = (
    "closing sockets needs root (CAP_NET_ADMIN): the kernel answers "
    f"'{os.strerror(errno.EPERM)}' (EPERM) without it"
)


def require_net_admin(status: str = "/proc/self/status") -> None:
    """Raise :class:`ActionError` before asking anything of a process that lacks CAP_NET_ADMIN.

    The kernel checks that capability (in the socket's network namespace)
    before closing anything, so asking for a confirmation first would waste
    the user's answer.  ``CapEff`` is the effective set as a hex mask; an
    unreadable file means "don't know" and the kernel's answer decides.
    """
    try:
        with open(status, encoding="ascii", errors="replace") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return
    for line in lines:
        name, _, value = line.partition(":")
        if name == "CapEff":
            try:
                effective = int(value.strip(), 16)
            except ValueError:
                return
            if not (effective >> CAP_NET_ADMIN) & 1:
                raise ActionError(_NOT_PERMITTED, cause="not-permitted")
            return


def narrows(selection: Selection) -> bool:
    """True when the selection names something more than a protocol or family.

    ``-t`` or ``-4`` alone would close every TCP connection of the machine;
    that is refused, however it is spelled.
    """
    return bool(
        selection.states
        or selection.listening
        or selection.sports
        or selection.dports
        or selection.ports
        or selection.src
        or selection.dst
        or selection.pids
        or selection.process is not None
    )


def plan(selection: Selection, *, listeners: bool | None = None, proc_root: str = "/proc") -> Plan:
    """The TCP sockets ``selection`` matches, ready for :func:`execute`.

    ``listeners``: close LISTEN sockets too; ``None`` means only when the
    selection's states name LISTEN.  Raises :class:`ActionError` for a
    selection that narrows nothing, one that selects only UDP, or a
    platform without SOCK_DESTROY.
    """
    check_platform()
    if not narrows(selection):
        raise ActionError(
            "refusing to close every TCP connection: name a state, port, address, pid or process",
            cause="refused",
        )
    if selection.protos and "tcp" not in selection.protos:
        raise ActionError("kill closes TCP connections only; drop -u", cause="refused")
    allow_listen = State.LISTEN in selection.states if listeners is None else listeners
    kinds: list[tuple[int, Proto]] = [
        (int(af), "tcp")
        for fam, af in ((4, socket.AF_INET), (6, socket.AF_INET6))
        if not selection.families or fam in selection.families
    ]
    try:
        bytecode = netlink.port_filter(selection.sports, selection.dports, selection.ports)
    except ValueError:  # more ports than one kernel filter holds: matches() filters them
        bytecode = b""
    states: frozenset[State] | None = selection.states or None
    if states is None and selection.listening:
        states = frozenset({State.LISTEN})
    pairs = netlink.dump_ids(kinds, states=states, bytecode=bytecode)
    missing = processes.attribute([sock for sock, _ in pairs], proc_root=proc_root)
    chosen = [(sock, sid) for sock, sid in pairs if selection.matches(sock)]
    held = [sock for sock, _ in chosen if sock.state is State.LISTEN and not allow_listen]
    targets = [
        (sock, sid) for sock, sid in chosen if sock.state is not State.LISTEN or allow_listen
    ]
    return Plan(targets, held, missing)


def execute(planned: Plan) -> KillResult:
    """Close every planned socket; sort the kernel's answers into closed and failed.

    Raises :class:`ActionError` when nothing can be closed at all: EPERM
    (no CAP_NET_ADMIN) or EOPNOTSUPP for a full socket from a kernel without
    CONFIG_INET_DIAG_DESTROY.  Per-socket refusals (ENOENT: already gone,
    EOPNOTSUPP for TIME_WAIT on an older kernel) are failures in the result.
    """
    result = KillResult(
        planned.sockets, held_listeners=list(planned.held_listeners), missing=planned.missing
    )
    if not planned.targets:
        return result
    require_net_admin()
    answers = netlink.destroy([sid for _, sid in planned.targets])
    if answers and all(code == errno.EPERM for code in answers):
        raise ActionError(_NOT_PERMITTED, cause="not-permitted")
    full_unsupported = any(
        code == errno.EOPNOTSUPP and sock.state not in _MINISOCKET_STATES
        for (sock, _), code in zip(planned.targets, answers, strict=True)
    )
    if full_unsupported and not any(code == 0 for code in answers):
        raise ActionError(
            "this kernel cannot close sockets: SOCK_DESTROY answered "
            f"'{os.strerror(errno.EOPNOTSUPP)}' (it needs CONFIG_INET_DIAG_DESTROY=y, "
            "Linux 4.5 or later)",
            cause="unsupported",
        )
    for (sock, _), code in zip(planned.targets, answers, strict=True):
        if code == 0:
            result.closed.append(sock)
        else:
            result.failed.append(Failure(sock, code))
    return result


def kill(
    selection: Selection,
    *,
    dry_run: bool = False,
    listeners: bool | None = None,
    proc_root: str = "/proc",
) -> KillResult:
    """Close the TCP connections ``selection`` matches (root); what was closed and what failed.

    ``dry_run`` only plans: ``planned`` lists what would be closed, nothing is.
    LISTEN sockets are closed only when the selection's states name LISTEN
    (or ``listeners=True``); the others matched are in ``held_listeners``.

    Example::

        from tcplens import SocketFilter, State, kill
        result = kill(SocketFilter(states=frozenset({State.CLOSE_WAIT}), sports=frozenset({8080})))
        for failure in result.failed:
            print(failure.socket.local, failure.reason)
    """
    planned = plan(selection, listeners=listeners, proc_root=proc_root)
    if dry_run:
        return KillResult(
            planned.sockets,
            held_listeners=planned.held_listeners,
            missing=planned.missing,
            dry_run=True,
        )
    return execute(planned)
