"""Known loopback sockets in every state the live tests look for, cleaned up afterwards.

Other helpers' tests run on the same machine, so tests must only look at the
sockets listed in :attr:`KnownSockets.expected` (keyed by addresses that
include our own ephemeral ports).
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from tcplens.model import State
from tcplens.sources.records import Socket

Key = tuple[str, int, str, str]  # proto, family, local, remote (as str(Addr))


def key_of(sock: Socket) -> Key:
    return (sock.proto, sock.family, str(sock.local), str(sock.remote))


@dataclass
class Expected:
    state: State
    pid: int | None
    inode: int | None = None


@dataclass
class KnownSockets:
    expected: dict[Key, Expected] = field(default_factory=dict)
    held: list[socket.socket] = field(default_factory=list)
    listen_port: int = 0
    udp_port: int = 0

    def ports(self) -> set[int]:
        out: set[int] = set()
        for _, _, local, remote in self.expected:
            for text in (local, remote):
                port = text.rsplit(":", 1)[1]
                if port.isdigit() and port != "0":
                    out.add(int(port))
        return out

    def select(self, sockets: list[Socket]) -> dict[Key, Socket]:
        return {key_of(s): s for s in sockets if key_of(s) in self.expected}


def _addr(sock: socket.socket, *, peer: bool = False) -> str:
    host, port = (sock.getpeername() if peer else sock.getsockname())[:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _wait_for(predicate: object, timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(predicate) and predicate():
            return
        time.sleep(0.01)


@contextlib.contextmanager
def known_sockets() -> Iterator[KnownSockets]:
    """LISTEN, ESTABLISHED, TIME_WAIT, CLOSE_WAIT, FIN_WAIT2, UDP and IPv6, all on loopback."""
    known = KnownSockets()
    held = known.held
    pid = os.getpid()

    def tcp(family: int = socket.AF_INET) -> socket.socket:
        s = socket.socket(family, socket.SOCK_STREAM)
        held.append(s)
        return s

    def ino(s: socket.socket) -> int:
        return os.fstat(s.fileno()).st_ino

    def expect(s: socket.socket, state: State, proto: str = "tcp", peer: bool = True) -> None:
        family = 6 if s.family == socket.AF_INET6 else 4
        remote = _addr(s, peer=True) if peer else ("[::]:0" if family == 6 else "0.0.0.0:0")
        known.expected[(proto, family, _addr(s), remote)] = Expected(state, pid, ino(s))

    try:
        listener = tcp()
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        known.listen_port = listener.getsockname()[1]
        expect(listener, State.LISTEN, peer=False)

        def connect() -> tuple[socket.socket, socket.socket]:
            client = tcp()
            client.connect(("127.0.0.1", known.listen_port))
            server, _ = listener.accept()
            held.append(server)
            return client, server

        client, server = connect()  # ESTABLISHED both ways, 3 unread bytes at the server
        client.sendall(b"abc")
        expect(client, State.ESTABLISHED)
        expect(server, State.ESTABLISHED)

        half, passive = connect()  # FIN_WAIT2 (held by us, has inode) / CLOSE_WAIT
        half.shutdown(socket.SHUT_WR)
        expect(half, State.FIN_WAIT2)
        expect(passive, State.CLOSE_WAIT)

        closer, other = connect()  # active close first -> TIME_WAIT minisocket
        tw_key = ("tcp", 4, _addr(closer), _addr(closer, peer=True))
        closer.close()
        other.close()
        held.remove(closer)
        held.remove(other)
        known.expected[tw_key] = Expected(State.TIME_WAIT, None, None)

        listener6 = tcp(socket.AF_INET6)
        listener6.bind(("::1", 0))
        listener6.listen(4)
        expect(listener6, State.LISTEN, peer=False)
        client6 = tcp(socket.AF_INET6)
        client6.connect(("::1", listener6.getsockname()[1]))
        server6, _ = listener6.accept()
        held.append(server6)
        expect(client6, State.ESTABLISHED)
        expect(server6, State.ESTABLISHED)

        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        held.append(udp)
        udp.bind(("127.0.0.1", 0))
        known.udp_port = udp.getsockname()[1]
        expect(udp, State.CLOSED, "udp", peer=False)
        udp_conn = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        held.append(udp_conn)
        udp_conn.connect(("127.0.0.1", known.udp_port))
        expect(udp_conn, State.ESTABLISHED, "udp")
        udp6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        held.append(udp6)
        udp6.bind(("::1", 0))
        expect(udp6, State.CLOSED, "udp", peer=False)

        def settled() -> bool:
            with open("/proc/net/tcp") as fh:
                text = fh.read()
            return f":{known.listen_port:04X}" in text and " 05 " in text and " 06 " in text

        _wait_for(settled)
        yield known
    finally:
        for s in held:
            s.close()
