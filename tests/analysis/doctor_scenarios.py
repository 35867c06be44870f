"""Real troubled situations for the doctor's live tests, run inside a network namespace.

Run as ``ip netns exec NS python3 doctor_scenarios.py NAME`` by
``test_doctor_live.py``: the driver builds the situation with real sockets
on the namespace's loopback (starting a separate server process where the
test must tell two pids apart), prints one JSON line of facts (pids, ports),
then holds everything until its stdin closes.  Everything it starts dies
with it; the namespace (with any nftables rules) is deleted by the test.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

#: a separate process that accepts ``n`` connections and never closes or reads them
NEVER_CLOSE = """
import socket, sys
srv = socket.socket()
srv.bind(("127.0.0.1", 0))
srv.listen(64)
print(srv.getsockname()[1], flush=True)
held = [srv.accept()[0] for _ in range(int(sys.argv[1]))]
print("accepted", flush=True)
sys.stdin.read()
"""

HELD: list[Any] = []


def _sh(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True, text=True)


def _sysctl(name: str, value: str) -> None:
    with open("/proc/sys/" + name.replace(".", "/"), "w") as fh:
        fh.write(value)


def _lo_up() -> None:
    _sh("ip", "link", "set", "lo", "up")


def _wait(predicate: Callable[[], bool], timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("scenario did not settle")
        time.sleep(0.02)


def _ss_count(state: str, port: int) -> int:
    out = subprocess.run(
        ["ss", "-tanH", "state", state, f"( sport = :{port} or dport = :{port} )"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return len([line for line in out.splitlines() if line.strip()])


def close_wait(n: int = 8) -> dict[str, Any]:
    """A server process that never closes accepted sockets after its clients leave."""
    server = subprocess.Popen(
        [sys.executable, "-c", NEVER_CLOSE, str(n)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    HELD.append(server)
    assert server.stdout is not None
    port = int(server.stdout.readline())
    clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(n)]
    assert server.stdout.readline().strip() == "accepted"
    for c in clients:
        c.close()
    _wait(lambda: _ss_count("close-wait", port) == n)
    return {"server_pid": server.pid, "port": port, "n": n}


def time_wait(n: int = 24) -> dict[str, Any]:
    """Many short client connections that the client closes first, in a 40-port range."""
    _sysctl("net.ipv4.ip_local_port_range", "40000 40039")
    _sysctl("net.ipv4.tcp_tw_reuse", "0")
    srv = socket.socket()
    srv.bind(("127.0.0.1", 8080))
    srv.listen(64)
    HELD.append(srv)
    for _ in range(n):
        c = socket.create_connection(("127.0.0.1", 8080))
        conn, _addr = srv.accept()
        c.close()  # the client is the active closer ...
        assert conn.recv(1) == b""
        conn.close()  # ... and the server follows once it reads EOF
    _wait(lambda: _ss_count("time-wait", 8080) == n)
    HELD.append(socket.create_connection(("127.0.0.1", 8080)))  # the dialler is still at it
    HELD.append(srv.accept()[0])
    return {"port": 8080, "n": n, "pid": os.getpid()}


def backlog(n: int = 8) -> dict[str, Any]:
    """A listener with backlog 1 that never accepts, and clients that keep trying."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    HELD.append(srv)
    port = srv.getsockname()[1]
    for _ in range(n):
        c = socket.socket()
        c.setblocking(False)
        c.connect_ex(("127.0.0.1", port))
        HELD.append(c)
        time.sleep(0.02)
    _wait(lambda: _ss_count("syn-sent", port) >= n - 2)
    return {"port": port, "pid": os.getpid(), "n": n}


def syn_flood(n: int = 12, backlog: int = 8) -> dict[str, Any]:
    """Connection attempts whose SYN-ACKs are dropped by nftables: half-open connections."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(backlog)
    HELD.append(srv)
    port = srv.getsockname()[1]
    rules = (
        "table inet doctor_test {\n"
        " chain out { type filter hook output priority 0; policy accept;\n"
        f"  tcp sport {port} tcp flags & (syn | ack) == (syn | ack) drop\n"
        " }\n"
        "}\n"
    )
    subprocess.run(["nft", "-f", "-"], input=rules, text=True, check=True)
    for _ in range(n):
        c = socket.socket()
        c.setblocking(False)
        c.connect_ex(("127.0.0.1", port))
        HELD.append(c)
    _wait(lambda: _ss_count("syn-recv", port) >= backlog)
    return {"port": port, "pid": os.getpid(), "n": n, "backlog": backlog}


def listen(backlog: str = "16") -> dict[str, Any]:
    """A listener on every address that never accepts (the target of ``raw_syns``)."""
    srv = socket.socket()
    srv.bind(("0.0.0.0", 0))
    srv.listen(int(backlog))
    HELD.append(srv)
    return {"port": srv.getsockname()[1], "pid": os.getpid()}


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def raw_syns(dst: str, port: str, count: str, prefix: str) -> dict[str, Any]:
    """Bare SYNs from spoofed sources ``prefix.100...``: nobody will ever answer the SYN-ACKs."""
    raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    HELD.append(raw)
    for i in range(int(count)):
        src = f"{prefix}.{100 + i}"
        tcp = struct.pack(
            "!HHIIBBHHH", 40000 + i, int(port), 1000 + i, 0, 5 << 4, 0x02, 64240, 0, 0
        )
        pseudo = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!BBH", 0, 6, len(tcp))
        tcp = tcp[:16] + struct.pack("!H", _checksum(pseudo + tcp)) + tcp[18:]
        ip = struct.pack(
            "!BBHHHBBH4s4s",
            0x45,
            0,
            20 + len(tcp),
            0,
            0,
            64,
            socket.IPPROTO_TCP,
            0,
            socket.inet_aton(src),
            socket.inet_aton(dst),
        )
        raw.sendto(ip + tcp, (dst, 0))
    return {"sent": int(count)}


def slow_reader() -> dict[str, Any]:
    """A receiver process that stops reading while the sender keeps writing."""
    receiver = subprocess.Popen(
        [sys.executable, "-c", NEVER_CLOSE, "1"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    HELD.append(receiver)
    assert receiver.stdout is not None
    port = int(receiver.stdout.readline())
    sender = socket.create_connection(("127.0.0.1", port))
    HELD.append(sender)
    assert receiver.stdout.readline().strip() == "accepted"
    sender.setblocking(False)
    chunk = b"x" * 65536
    sent = 0
    for _ in range(2000):  # bounded: buffers hold a few MiB at most
        try:
            sent += sender.send(chunk)
        except BlockingIOError:
            time.sleep(0.05)
            try:
                sent += sender.send(chunk)
            except BlockingIOError:
                break
    return {"receiver_pid": receiver.pid, "port": port, "sent": sent}


def last_ack() -> dict[str, Any]:
    """The peer closes, then its packets vanish (nftables): our FIN is never acknowledged."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    HELD.append(srv)
    port = srv.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    conn, _addr = srv.accept()
    HELD.append(conn)
    client.close()
    assert conn.recv(1) == b""  # CLOSE_WAIT now
    rules = (
        "table inet doctor_test {\n"
        " chain out { type filter hook output priority 0; policy accept;\n"
        f"  tcp dport {port} drop\n"
        " }\n"
        "}\n"
    )
    subprocess.run(["nft", "-f", "-"], input=rules, text=True, check=True)
    conn.close()  # FIN to a peer whose ACKs are dropped -> LAST_ACK
    _wait(lambda: _ss_count("last-ack", port) == 1)
    return {"port": port}


def healthy() -> dict[str, Any]:
    """Ordinary traffic: a few request/response exchanges, some kept open, all read."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(64)
    HELD.append(srv)
    port = srv.getsockname()[1]
    for i in range(6):
        c = socket.create_connection(("127.0.0.1", port))
        conn, _addr = srv.accept()
        c.sendall(b"GET / HTTP/1.1\r\n\r\n")
        assert conn.recv(100)
        conn.sendall(b"HTTP/1.1 200 OK\r\n\r\n")
        assert c.recv(100)
        if i % 2:
            c.close()
            assert conn.recv(1) == b""
            conn.close()
        else:
            HELD.extend([c, conn])
    return {"port": port}


SCENARIOS: dict[str, Callable[..., dict[str, Any]]] = {
    "close-wait": close_wait,
    "time-wait": time_wait,
    "backlog": backlog,
    "syn-flood": syn_flood,
    "slow-reader": slow_reader,
    "listen": listen,
    "raw-syns": raw_syns,
    "last-ack": last_ack,
    "healthy": healthy,
}


def main() -> None:
    _lo_up()
    facts = SCENARIOS[sys.argv[1]](*sys.argv[2:])
    print(json.dumps(facts), flush=True)
    command = sys.stdin.readline().strip()
    while command:
        if command == "close-sender":  # slow-reader: close with data still queued
            for item in HELD:
                if isinstance(item, socket.socket) and item.getsockname()[1] != facts["port"]:
                    item.close()
        print("ok", flush=True)
        command = sys.stdin.readline().strip()
    for item in HELD:
        if isinstance(item, subprocess.Popen):
            item.kill()
            item.wait()


if __name__ == "__main__":
    main()
