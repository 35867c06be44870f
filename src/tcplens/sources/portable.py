"""The portable source: ``psutil.net_connections()`` (macOS, Windows, BSD; a cross-check on Linux).

psutil knows less than sock_diag: no queues, uid, inode or timers, and UDP
sockets carry no state (``NONE``).  We map UDP the way the Linux kernel
reports it (connected -> ESTABLISHED, otherwise CLOSED) so views do not
depend on the source, and leave the rest ``None``.  On macOS listing other
users' sockets needs root: psutil raises AccessDenied, which we turn into a
note in ``Snapshot.missing`` plus this process's own sockets.
"""

from __future__ import annotations

import socket
from typing import Any

import psutil

from tcplens.errors import SourceError
from tcplens.model.states import State
from tcplens.sources.processes import NOT_ALL_IDENTIFIED
from tcplens.sources.records import Addr, Proto, Snapshot, Socket

__all__ = ["from_psutil", "snapshot"]


def _addr(value: Any, family: int) -> Addr:
    if not value:
        return Addr("0.0.0.0" if family == 4 else "::", 0)
    ip, port = value[0], value[1]
    return Addr(str(ip).split("%")[0] if family == 6 else str(ip), int(port))


def from_psutil(conn: Any) -> Socket:
    """One psutil ``sconn`` named tuple -> a :class:`Socket`."""
    family = 6 if conn.family == socket.AF_INET6 else 4
    proto: Proto = "udp" if conn.type == socket.SOCK_DGRAM else "tcp"
    remote = _addr(conn.raddr, family)
    if proto == "udp":
        state = State.ESTABLISHED if conn.raddr else State.CLOSED
    else:
        state = State.parse(conn.status)
    fd = conn.fd if isinstance(conn.fd, int) and conn.fd >= 0 else None
    return Socket(
        proto, family, _addr(conn.laddr, family), remote, state, pid=conn.pid or None, fd=fd
    )


def snapshot(*, processes: bool = True) -> Snapshot:
    """Every inet socket psutil can see, with pids where the OS tells them."""
    missing: list[str] = ["the psutil source has no queues, uid, inode or timers"]
    conns: list[Any]
    try:
        conns = list(psutil.net_connections(kind="inet"))
    except psutil.AccessDenied:
        missing.append(NOT_ALL_IDENTIFIED)
        try:
            conns = list(psutil.Process().net_connections(kind="inet"))
        except psutil.Error as exc:  # pragma: no cover - depends on the OS
            raise SourceError(f"psutil cannot list sockets: {exc}") from exc
    sockets = [from_psutil(c) for c in conns]
    names: dict[int, str | None] = {}
    for sock in sockets:
        if not processes:
            sock.pid = sock.fd = None
            continue
        if sock.pid is None:
            continue
        if sock.pid not in names:
            try:
                names[sock.pid] = psutil.Process(sock.pid).name()
            except psutil.Error:
                names[sock.pid] = None
        sock.process = names[sock.pid]
    return Snapshot(
        sockets, source="psutil", host=socket.gethostname(), missing=missing, timers=False
    )
