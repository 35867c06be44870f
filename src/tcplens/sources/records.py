"""One record type for every source: :class:`Socket` rows inside a :class:`Snapshot`.

Live sources (netlink, /proc/net, psutil) and saved text (netstat, ss of any
OS) all produce the same records, so analysis and views never ask where a row
came from.  Fields a source cannot know stay ``None`` rather than being
guessed; the snapshot's ``missing`` list says why, in words a user can act on
(as netstat's "(Not all processes could be identified…)" does).

Address contract (checked by ``tests/contract.py`` for every source):

* ``Addr.ip`` is a compressed textual IP address (``ipaddress`` round-trips
  it), ``"*"`` when the dump only says "any" without a family, or, for
  saved text only, a host name the dump printed instead of an address.
* ``Addr.port`` is 0..65535, or ``None`` for a wildcard port (``*``).
* ``Addr.service`` keeps a service name a dump printed instead of a number
  (``http``), with ``port`` filled in where the name is well known.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final, Literal, NamedTuple

from tcplens.model.states import State

__all__ = [
    "KERNEL_TIMER_KINDS",
    "MINISOCKET_CODES",
    "Addr",
    "Holder",
    "ParseWarning",
    "Snapshot",
    "Socket",
    "TcpInfo",
    "Timer",
]

Proto = Literal["tcp", "udp"]

#: the kernel's timer codes (``idiag_timer`` in sock_diag, ``tr`` in /proc/net/tcp) as
#: ``ss -o`` names them; 3 is the timer of TIME_WAIT and of an orphaned FIN_WAIT2
KERNEL_TIMER_KINDS: Final = MappingProxyType({1: "on", 2: "keepalive", 3: "timewait", 4: "persist"})
#: kernel state codes of minisockets (TIME_WAIT, NEW_SYN_RECV): not full sockets, so the
#: kernel reports uid, inode and queues as 0, which mean "unknown" here, not root
MINISOCKET_CODES: Final = frozenset({6, 12})


class Addr(NamedTuple):
    """One end of a socket: address and port, as ``ss`` and psutil pair them."""

    ip: str
    port: int | None
    service: str | None = None

    def __str__(self) -> str:
        port = "*" if self.port is None else str(self.port)
        if self.service is not None and self.port is None:
            port = self.service
        if ":" in self.ip:
            return f"[{self.ip}]:{port}"
        return f"{self.ip}:{port}"


class Holder(NamedTuple):
    """A process holding a socket through one of its descriptors, as ``ss -p`` lists each.

    After ``fork()`` parent and children share every socket the parent had
    open (nginx, gunicorn and php-fpm workers share their listeners), so one
    socket can have many.
    """

    pid: int
    fd: int | None
    process: str | None


@dataclass(slots=True)
class Timer:
    """A socket timer as ``ss -o`` and ``netstat -o`` show it.

    ``kind`` is one of ``on`` (retransmit), ``keepalive``, ``timewait``,
    ``persist`` (zero-window probe), ``probe``/``other`` or ``off``;
    ``remaining`` is seconds until expiry; ``retransmits`` counts
    unanswered retransmissions or probes.
    """

    kind: str
    remaining: float
    retransmits: int = 0


@dataclass(slots=True)
class TcpInfo:
    """The subset of ``struct tcp_info`` users read in ``ss -i`` (times in ms)."""

    rtt_ms: float | None = None
    rttvar_ms: float | None = None
    cwnd: int | None = None
    ssthresh: int | None = None
    retransmits: int | None = None
    total_retrans: int | None = None
    bytes_acked: int | None = None
    bytes_received: int | None = None
    last_send_ms: int | None = None
    last_recv_ms: int | None = None
    last_ack_recv_ms: int | None = None
    mss: int | None = None


@dataclass(slots=True)
class Socket:
    """One row of the socket table.

    For LISTEN sockets Linux reports ``recv_q`` = connections waiting in the
    accept queue and ``send_q`` = the backlog limit; for every other state
    they are unread and unacknowledged bytes.
    """

    proto: Proto
    family: int  # 4 or 6
    local: Addr
    remote: Addr
    state: State
    recv_q: int | None = None
    send_q: int | None = None
    uid: int | None = None
    inode: int | None = None
    pid: int | None = None
    fd: int | None = None
    process: str | None = None
    user: str | None = None
    cmdline: str | None = None
    timer: Timer | None = None
    info: TcpInfo | None = None
    interface: str | None = None
    #: every process holding the socket, lowest pid first, when more than one does
    #: (shared after fork()); ``pid``, ``fd`` and ``process`` are the first of them
    holders: tuple[Holder, ...] = ()


@dataclass(slots=True, frozen=True)
class ParseWarning:
    """A line of saved text that could not be understood, kept verbatim."""

    line: int
    text: str
    message: str

    def __str__(self) -> str:
        # one readable line even when the damage is a 5,000-character field
        text = self.text.strip()
        shown = repr(text) if len(text) <= 120 else f"{text[:100]!r}… ({len(text)} characters)"
        return f"line {self.line}: {self.message}: {shown}"


@dataclass(slots=True)
class Snapshot:
    """Sockets plus where and when they were seen and what could not be seen."""

    sockets: list[Socket]
    source: str
    host: str = ""
    taken_at: float = field(default_factory=time.time)
    missing: list[str] = field(default_factory=list)
    warnings: list[ParseWarning] = field(default_factory=list)
    #: counts of rows recognised but not inet (unix, kernel control, …) by section
    skipped: dict[str, int] = field(default_factory=dict)
    #: False when the source reports no timers at all (psutil), so a socket without
    #: one says nothing; None: live kernel sources report every timer, saved text
    #: has them when some row shows one
    timers: bool | None = None
