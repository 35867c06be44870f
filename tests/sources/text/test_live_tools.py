"""Real ss, netstat and /proc/net output of this machine parse to the sockets we opened.

The test opens its own loopback sockets (a listener, an accepted connection
with keepalive, an IPv6 listener, a UDP socket), runs the real tools with
every column this package reads (-e user/inode, -p process, -o timer, -i
info) and checks each parser finds them with our pid, uid and inode.
Foreign sockets of other tests running at the same time are filtered out by
port.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tcplens import parse_text
from tcplens.model import State
from tcplens.sources.records import Snapshot, Socket
from tests.contract import check_snapshot


@dataclass
class Opened:
    ports: set[int]
    inodes: dict[int, int]  # local port -> inode of the socket bound there
    listen4: int
    client: int
    listen6: int | None
    udp: int


@pytest.fixture
def opened() -> Iterator[Opened]:
    socks: list[socket.socket] = []
    try:
        listener = socket.socket()
        socks.append(listener)
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        client = socket.socket()
        socks.append(client)
        client.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        client.connect(listener.getsockname())
        server, _ = listener.accept()
        socks.append(server)
        client.sendall(b"unread!")
        listen6: int | None = None
        try:
            v6 = socket.socket(socket.AF_INET6)
            socks.append(v6)
            v6.bind(("::1", 0))
            v6.listen(1)
            listen6 = v6.getsockname()[1]
        except OSError:
            pass  # no IPv6 loopback here
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        socks.append(udp)
        udp.bind(("127.0.0.1", 0))
        inodes = {s.getsockname()[1]: os.fstat(s.fileno()).st_ino for s in socks if s is not server}
        yield Opened(
            ports={s.getsockname()[1] for s in socks},
            inodes=inodes,
            listen4=listener.getsockname()[1],
            client=client.getsockname()[1],
            listen6=listen6,
            udp=udp.getsockname()[1],
        )
    finally:
        for s in socks:
            s.close()


def run(*argv: str) -> str:
    if shutil.which(argv[0]) is None:
        pytest.skip(f"{argv[0]} is not installed (scripts/install-system-deps installs it)")
    return subprocess.run(argv, capture_output=True, text=True, check=True, timeout=30).stdout


def ours(snap: Snapshot, opened: Opened) -> dict[tuple[str, int, int | None], Socket]:
    check_snapshot(snap, text_source=True)
    expected = {
        ("tcp", opened.listen4, None),
        ("tcp", opened.client, opened.listen4),
        ("tcp", opened.listen4, opened.client),
        ("udp", opened.udp, None),
        ("tcp", opened.listen6, None),
    }
    found: dict[tuple[str, int, int | None], Socket] = {}
    for sock in snap.sockets:
        key = (sock.proto, sock.local.port or 0, sock.remote.port or None)
        # a TIME_WAIT left by another test may share a port number with ours
        if key in expected and sock.state is not State.TIME_WAIT:
            found[key] = sock
    return found


def check_common(found: dict[tuple[str, int, int | None], Socket], opened: Opened) -> None:
    listener = found[("tcp", opened.listen4, None)]
    assert listener.state is State.LISTEN
    client = found[("tcp", opened.client, opened.listen4)]
    assert client.state is State.ESTABLISHED
    server = found[("tcp", opened.listen4, opened.client)]
    assert server.state is State.ESTABLISHED
    assert server.recv_q == len(b"unread!")
    udp = found[("udp", opened.udp, None)]
    assert udp.state is State.CLOSED
    if opened.listen6 is not None:
        v6 = found[("tcp", opened.listen6, None)]
        assert (v6.family, v6.local.ip, v6.state) == (6, "::1", State.LISTEN)
    for (proto, port, remote), sock in found.items():
        if (proto, port, remote) != ("tcp", opened.listen4, opened.client):
            assert sock.inode == opened.inodes[port], (proto, port, remote)


def test_real_ss_tuanpeoi(opened: Opened) -> None:
    snap = parse_text(run("ss", "-tuanpeoi"))
    assert snap.source == "text:ss"
    assert snap.warnings == []
    found = ours(snap, opened)
    check_common(found, opened)
    for sock in found.values():
        assert sock.pid == os.getpid()
        assert sock.uid == os.getuid()
        assert sock.process
    client = found[("tcp", opened.client, opened.listen4)]
    assert client.timer is not None and client.timer.kind == "keepalive"
    assert client.info is not None and client.info.mss is not None


def test_real_netstat_tuanpeeo(opened: Opened) -> None:
    snap = parse_text(run("netstat", "-tuanpeeo"))
    assert snap.source == "text:linux-netstat"
    assert snap.warnings == []
    found = ours(snap, opened)
    check_common(found, opened)
    for sock in found.values():
        assert sock.pid == os.getpid()
        assert sock.uid == os.getuid()
    client = found[("tcp", opened.client, opened.listen4)]
    assert client.timer is not None and client.timer.kind == "keepalive"
    with open("/proc/sys/net/ipv4/tcp_keepalive_time") as fh:
        keepalive = float(fh.read())
    assert keepalive - 60 < client.timer.remaining <= keepalive
    assert found[("tcp", opened.listen4, None)].timer is not None  # "off (0.00/0/0)"


def test_real_proc_net_files(opened: Opened) -> None:
    parts = []
    for name in ("tcp", "tcp6", "udp", "udp6"):
        path = f"/proc/net/{name}"
        if os.path.exists(path):
            with open(path) as fh:
                parts.append(f"==> {path} <==\n{fh.read()}")
    snap = parse_text("\n".join(parts))
    assert snap.source == "text:proc"
    assert snap.warnings == []
    found = ours(snap, opened)
    check_common(found, opened)
    for sock in found.values():
        assert sock.uid == os.getuid()
