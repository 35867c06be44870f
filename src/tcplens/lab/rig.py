"""Where a lab scenario runs, the real sockets it drives, and how the kernel is read.

A :class:`Rig` is the place: plain loopback in this process's namespace
(unprivileged), or two fresh network namespaces joined by a veth pair (root),
which isolates the run from every other socket on the machine, lets
nftables drop chosen segments, lets sysctls be changed for the run only,
and lets AF_PACKET see each segment once on the wire.

A :class:`Lab` is the actor: it makes the calls a program would make
(``listen``, ``connect``, ``shutdown``, ``close``, SO_LINGER 0 aborts), fills
a peer's receive window until it is zero, and starts and interrupts real
peer processes (:mod:`tcplens.lab.peer`).  :meth:`Lab.observe` reads both
endpoints through tcplens's own live source (netlink sock_diag), inside each
namespace.

How a kernel socket table becomes one state per endpoint (the model has one
endpoint per side, Linux has a listener *and* a connection socket):

* client: the socket whose local and remote addresses are the connection's;
  none means CLOSED.
* server: the connection's socket (a ``NEW_SYN_RECV`` request counts, as
  SYN_RECV); none means LISTEN while the listener is open, else CLOSED.  The
  lab's in-process servers close their listener once they have accepted the
  connection, and the peer server process (which keeps listening, like the
  seeds' demo) loses it when it is killed, so "no connection socket, listener
  open" only happens before the handshake completes or after an RST sent a
  half-open connection away: exactly when the model's server is in LISTEN.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal

from tcplens.errors import ScenarioError
from tcplens.lab.netns import Namespace, inside, namespace_problem, veth_pair
from tcplens.model.states import State
from tcplens.sources.records import Addr, Snapshot, Socket

__all__ = ["Lab", "Place", "Rig", "Side", "View"]

Side = Literal["client", "server"]

#: unsent bytes in a TCP send queue (linux/sockios.h)
SIOCOUTQNSD: Final = 0x894B
#: the server port inside the lab's namespaces (nothing else lives there)
NETNS_PORT: Final = 8000
CLIENT_IP: Final = "192.0.2.1"  # TEST-NET-1 (RFC 5737), only ever inside our namespaces
SERVER_IP: Final = "192.0.2.2"
PEER: Final = str(Path(__file__).with_name("peer.py"))


@dataclass
class Place:
    """One side's namespace (``None``: this process's own) and address."""

    ns: Namespace | None
    ip: str


@dataclass
class Rig:
    """The network a scenario runs on; :meth:`close` removes everything it made."""

    kind: Literal["loopback", "netns"]
    client: Place
    server: Place
    server_port: int = 0
    #: (place, interface) where AF_PACKET sees the connection's segments, or None
    capture_at: tuple[Place, str] | None = None
    namespaces: list[Namespace] = field(default_factory=list)

    @classmethod
    def loopback(cls) -> Rig:
        """127.0.0.1 in this namespace, ports picked by the kernel: no privileges needed."""
        here = Place(None, "127.0.0.1")
        return cls("loopback", here, Place(None, "127.0.0.1"))

    @classmethod
    def netns(cls) -> Rig:
        """Two namespaces joined by veth; the capture point is the client's end."""
        problem = namespace_problem()
        if problem is not None:
            raise ScenarioError(problem)
        rig = cls("netns", Place(None, CLIENT_IP), Place(None, SERVER_IP), NETNS_PORT)
        try:
            cns = Namespace.create("c")
            rig.namespaces.append(cns)
            sns = Namespace.create("s")
            rig.namespaces.append(sns)
            cdev, _ = veth_pair(cns, sns, CLIENT_IP, SERVER_IP)
            rig.client.ns, rig.server.ns = cns, sns
            rig.capture_at = (rig.client, cdev)
        except BaseException:
            rig.close()
            raise
        return rig

    def place(self, side: Side) -> Place:
        return self.client if side == "client" else self.server

    def describe(self) -> str:
        if self.kind == "loopback":
            return "loopback 127.0.0.1 in this namespace"
        assert self.capture_at is not None
        names = " and ".join(ns.name for ns in self.namespaces)
        return f"namespaces {names} joined by veth, captured on {self.capture_at[1]}"

    def sysctl(self, side: Side, key: str, value: int | str) -> None:
        ns = self.place(side).ns
        if ns is None:
            raise ScenarioError(f"{key}: changing sysctls needs --rig netns (root)")
        ns.sysctl(key, value)

    def nft(self, side: Side, ruleset: str) -> None:
        ns = self.place(side).ns
        if ns is None:
            raise ScenarioError("nftables rules need --rig netns (root)")
        ns.nft(ruleset.replace("{PORT}", str(self.server_port)))

    def snapshot(self, side: Side) -> Snapshot:
        """Read one side's namespace through tcplens's live netlink source."""
        from tcplens.sources.select import take_snapshot

        with inside(self.place(side).ns):
            return take_snapshot(source="netlink", processes=False)

    def close(self) -> None:
        errors = []
        for ns in reversed(self.namespaces):
            try:
                ns.delete()
            except ScenarioError as exc:
                errors.append(str(exc))
        self.namespaces.clear()
        if errors:
            raise ScenarioError("; ".join(errors))


@dataclass(frozen=True)
class View:
    """Both endpoints as the kernel reports them at one moment."""

    time: float
    client: State
    server: State
    client_socket: Socket | None
    server_socket: Socket | None
    listener: Socket | None

    @property
    def states(self) -> tuple[State, State]:
        return (self.client, self.server)

    def socket(self, side: Side) -> Socket | None:
        return self.client_socket if side == "client" else self.server_socket


def _key(addr: Addr) -> tuple[str, int | None]:
    return (addr.ip.removeprefix("::ffff:"), addr.port)


class Lab:
    """The real sockets and processes of one run, driven step by step."""

    def __init__(self, rig: Rig) -> None:
        self.rig = rig
        self.listener: socket.socket | None = None
        self.socks: dict[Side, socket.socket] = {}
        self.procs: dict[Side, subprocess.Popen[str]] = {}
        self.client_addr: tuple[str, int] | None = None
        self.server_addr: tuple[str, int] | None = None
        self._lines: dict[Side, list[bytes]] = {}

    # -- sockets ----------------------------------------------------------
    def _socket(self, side: Side) -> socket.socket:
        with inside(self.rig.place(side).ns):
            return socket.socket(socket.AF_INET, socket.SOCK_STREAM)

    def listen(self, *, rcvbuf: int | None = None) -> None:
        """Server: listen(); a small ``rcvbuf`` is inherited by the accepted socket."""
        sock = self._socket("server")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if rcvbuf:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.bind((self.rig.server.ip, self.rig.server_port))
        sock.listen(4)
        self.listener = sock
        self.server_addr = sock.getsockname()[:2]

    def connect(
        self, *, rcvbuf: int | None = None, sndbuf: int | None = None, wait: bool = True
    ) -> None:
        """Client: bind (to know the port), then connect(); ``wait=False`` returns at once."""
        if self.server_addr is None:
            self.server_addr = (self.rig.server.ip, self.rig.server_port or 9)
        sock = self._socket("client")
        for opt, value in ((socket.SO_RCVBUF, rcvbuf), (socket.SO_SNDBUF, sndbuf)):
            if value:
                sock.setsockopt(socket.SOL_SOCKET, opt, value)
        sock.bind((self.rig.client.ip, 0))
        self.client_addr = sock.getsockname()[:2]
        self.socks["client"] = sock
        if wait:
            sock.settimeout(5.0)
            with contextlib.suppress(ConnectionRefusedError):
                sock.connect(self.server_addr)
        else:
            sock.setblocking(False)
            err = sock.connect_ex(self.server_addr)
            if err not in (0, 115):  # EINPROGRESS
                raise ScenarioError(f"connect: {os.strerror(err)}")

    def accept(self, *, sndbuf: int | None = None) -> None:
        """Server: accept() the connection, then close the listener (one client only)."""
        if self.listener is None:
            raise ScenarioError("accept() before listen()")
        self.listener.settimeout(5.0)
        conn, _ = self.listener.accept()
        if sndbuf:
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
        self.socks["server"] = conn
        self.close_listener()

    def close_listener(self) -> None:
        if self.listener is not None:
            self.listener.close()
            self.listener = None

    def _sock(self, side: Side) -> socket.socket:
        sock = self.socks.get(side)
        if sock is None:
            raise ScenarioError(f"the {side} has no socket")
        return sock

    def fill(self, side: Side, timeout: float = 5.0) -> int:
        """Send from ``side`` until the peer's window is zero and data waits unsent.

        The peer never reads, so its receive buffer fills and it advertises a
        zero window; whatever the sender writes after that stays in its send
        queue.  Returns the unsent byte count once it has stopped changing.
        """
        sock = self._sock(side)
        sock.setblocking(False)
        chunk = b"x" * 16384
        last, stable = -1, 0
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(BlockingIOError):
                for _ in range(256):
                    sock.send(chunk)
            unsent = _unsent(sock)
            stable = stable + 1 if unsent > 0 and unsent == last else 0
            if stable >= 3:
                return unsent
            last = unsent
            time.sleep(0.02)
        raise ScenarioError(f"the {side}'s peer never closed its window")

    def drain(self, side: Side, timeout: float = 5.0) -> int:
        """Read everything until end of stream (the peer's FIN); returns the byte count."""
        sock = self._sock(side)
        sock.settimeout(timeout)
        total = 0
        while True:
            data = sock.recv(1 << 20)
            if not data:
                return total
            total += len(data)

    def send(self, side: Side, size: int) -> None:
        """send() ``size`` bytes from ``side`` (blocking until the kernel took them)."""
        sock = self._sock(side)
        sock.settimeout(5.0)
        sock.sendall(b"d" * size)

    def receive(self, side: Side, size: int, timeout: float = 5.0) -> None:
        """recv() exactly ``size`` bytes on ``side``: proof that the data was delivered."""
        sock = self._sock(side)
        sock.settimeout(timeout)
        got = 0
        while got < size:
            data = sock.recv(size - got)
            if not data:
                raise ScenarioError(f"the {side} read {got} of {size} bytes, then end of stream")
            got += len(data)

    def shutdown(self, side: Side) -> None:
        """shutdown(SHUT_WR): send FIN (after any queued data), keep the socket."""
        self._sock(side).shutdown(socket.SHUT_WR)

    def close(self, side: Side) -> None:
        """close(): the application lets go; the kernel finishes the connection."""
        self.socks.pop(side).close()

    def abort(self, side: Side) -> None:
        """SO_LINGER with a zero timeout, then close(): the kernel sends RST."""
        sock = self.socks.pop(side)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()

    # -- peer processes ---------------------------------------------------
    def _spawn(self, side: Side, argv: list[str]) -> subprocess.Popen[str]:
        with inside(self.rig.place(side).ns):
            proc = subprocess.Popen(
                [sys.executable, "-I", "-S", PEER, *argv],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        self._lines.pop(side, None)
        self.procs[side] = proc
        return proc

    def _expect(self, side: Side, word: str, timeout: float = 5.0) -> list[str]:
        """Wait for the peer's line starting with ``word``; returns the rest of it.

        Reads the pipe with ``os.read`` and keeps our own line buffer: a
        buffered ``readline`` could swallow two lines at once and leave
        ``select`` waiting for data that already arrived.
        """
        proc = self.procs[side]
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        pending = self._lines.setdefault(side, [])
        deadline = time.monotonic() + timeout
        while True:
            while b"\n" in (joined := b"".join(pending)):
                line, rest = joined.split(b"\n", 1)
                pending[:] = [rest]
                words = line.decode("utf-8", "replace").split()
                if words and words[0] == word:
                    return words[1:]
            left = deadline - time.monotonic()
            ready, _, _ = select.select([fd], [], [], max(left, 0))
            chunk = os.read(fd, 4096) if ready else b""
            if not chunk:
                break
            pending.append(chunk)
        err = ""
        if proc.poll() is not None and proc.stderr is not None:
            err = proc.stderr.read().strip()
        detail = f": {err}" if err else ""
        raise ScenarioError(f"{side} process never said {word!r}{detail}")

    def spawn_server(self) -> None:
        """Start the peer server process and wait until it listens."""
        self._spawn("server", ["server", self.rig.server.ip, str(self.rig.server_port)])
        ip, port = self._expect("server", "listening")
        self.server_addr = (ip, int(port))

    def spawn_client(self) -> None:
        """Start the peer client process; wait until both ends have the connection."""
        if self.server_addr is None:
            raise ScenarioError("start the server first")
        ip, port = self.server_addr
        self._spawn("client", ["client", self.rig.client.ip, ip, str(port)])
        cip, cport = self._expect("client", "bound")
        self.client_addr = (cip, int(cport))
        self._expect("client", "connected")
        if "server" in self.procs:
            self._expect("server", "accepted")

    def interrupt(self, side: Side) -> None:
        """Ctrl+C the peer process (SIGINT) and wait for it to exit."""
        proc = self.procs[side]
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    # -- observing --------------------------------------------------------
    def observe(self) -> View:
        """Both endpoints' kernel states, read through the netlink live source."""
        snaps = {"client": self.rig.snapshot("client")}
        same = self.rig.client.ns is self.rig.server.ns
        snaps["server"] = snaps["client"] if same else self.rig.snapshot("server")
        now = time.time()
        caddr, saddr = self.client_addr, self.server_addr
        csock = ssock = listener = None
        for sock in snaps["client"].sockets:
            if (
                sock.proto == "tcp"
                and caddr is not None
                and saddr is not None
                and _key(sock.local) == caddr
                and _key(sock.remote) == saddr
            ):
                csock = sock
        for sock in snaps["server"].sockets:
            if sock.proto != "tcp" or saddr is None:
                continue
            if _key(sock.local) == saddr and caddr is not None and _key(sock.remote) == caddr:
                ssock = sock
            elif sock.state is State.LISTEN and sock.local.port == saddr[1]:
                listener = sock
        cstate = csock.state if csock is not None else State.CLOSED
        if ssock is not None:
            sstate = ssock.state
        else:
            sstate = State.LISTEN if listener is not None else State.CLOSED
        return View(now, cstate, sstate, csock, ssock, listener)

    def close_all(self) -> None:
        """Close every socket and stop every process this run started."""
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
            for stream in (proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()
        self.procs.clear()
        for sock in self.socks.values():
            sock.close()
        self.socks.clear()
        self.close_listener()


def _unsent(sock: socket.socket) -> int:
    buf = fcntl.ioctl(sock.fileno(), SIOCOUTQNSD, b"\0\0\0\0")
    value: int = struct.unpack("i", buf)[0]
    return value
