"""Record the ``lab_*.pcap`` fixtures in a network namespace of their own (root, tcpdump).

    unshare -n python3 tests/packets/record_lab_captures.py OUTDIR [NAME ...]

NAME is any of ``syn_blackhole``, ``synack_rexmit``, ``midstream`` (default: these
three, the fixtures) or ``syn_closed`` (a SYN answered by RST, for the live test);
files are written as ``OUTDIR/lab_NAME.pcap``.  ``--connect-timeout S`` stops
the blackholed ``connect()`` after S seconds (the live test uses it to keep
short).  Not collected by pytest (no ``test_`` prefix); the live test in
``test_rexmit_live.py`` runs it.

No tc qdisc is needed (the test machines lack netem and tc actions): a
blackhole is a veth whose peer receives frames for a MAC address nobody has,
and an unanswered SYN+ACK goes to a source address nobody owns.
"""

from __future__ import annotations

import socket
import struct
import subprocess
import sys
import time
from pathlib import Path


def sh(cmd: str) -> None:
    subprocess.run(cmd, shell=True, check=True)


def setup() -> None:
    sh("ip link set lo up")
    sh("ip link add d0 type veth peer name d1")
    sh("ip link set d1 up && ip link set d0 up && ip addr add 10.9.0.1/24 dev d0")
    # 10.9.0.2 "lives" behind d0 at a MAC address no interface has: frames go out, never back
    sh("ip neigh add 10.9.0.2 lladdr 02:00:00:00:00:99 dev d0 nud permanent")
    sh("sysctl -qw net.ipv4.tcp_syn_retries=2 net.ipv4.tcp_synack_retries=2")


def dump(path: Path, *args: str) -> subprocess.Popen[bytes]:
    cmd = ["tcpdump", "-q", "--immediate-mode", "-U", "-w", str(path), *args]
    proc = subprocess.Popen(cmd, stderr=subprocess.DEVNULL)
    time.sleep(1.0)
    return proc


def stop(proc: subprocess.Popen[bytes]) -> None:
    time.sleep(1.0)
    proc.terminate()
    proc.wait()


def syn_blackhole(out: Path, timeout: float) -> None:
    proc = dump(out / "lab_syn_blackhole.pcap", "-i", "d0", "tcp")
    conn = socket.socket()
    conn.settimeout(timeout)
    try:
        conn.connect(("10.9.0.2", 9))
    except OSError as exc:
        print("syn_blackhole:", exc)
    conn.close()
    stop(proc)


def syn_closed(out: Path) -> None:
    proc = dump(out / "lab_syn_closed.pcap", "-i", "lo", "tcp")
    conn = socket.socket()
    try:
        conn.connect(("127.0.0.1", 9))
    except OSError as exc:
        print("syn_closed:", exc)
    conn.close()
    stop(proc)


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def _syn(src: str, dst: str, sport: int, dport: int, seq: int) -> bytes:
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq, 0, 5 << 4, 0x02, 64240, 0, 0)
    pseudo = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!BBH", 0, 6, len(tcp))
    tcp = tcp[:16] + struct.pack("!H", _checksum(pseudo + tcp)) + tcp[18:]
    ip = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 40, 1, 0, 64, 6, 0, socket.inet_aton(src), socket.inet_aton(dst)
    )
    return ip + tcp


def synack_rexmit(out: Path) -> None:
    server = socket.socket()
    server.bind(("10.9.0.1", 8000))
    server.listen(8)
    # -i any sees the SYN+ACK leave d0 and arrive at d1: inbound copies only, each once
    proc = dump(out / "lab_synack_rexmit.pcap", "-i", "any", "-Q", "in", "tcp", "port", "8000")
    raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    raw.sendto(_syn("10.9.0.2", "10.9.0.1", 40000, 8000, 1000), ("10.9.0.1", 0))
    time.sleep(4.5)  # SYN+ACK at 0, 1 and 3 s
    stop(proc)
    raw.close()
    server.close()


def midstream(out: Path) -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 8001))
    server.listen(1)
    client = socket.create_connection(("127.0.0.1", 8001))
    peer, _ = server.accept()
    client.sendall(b"x" * 1000)
    peer.recv(1000)
    peer.sendall(b"y" * 300)
    client.recv(300)
    proc = dump(out / "lab_midstream.pcap", "-i", "lo", "tcp", "port", "8001")
    client.sendall(b"a" * 100)
    peer.recv(100)
    time.sleep(0.05)
    peer.sendall(b"b" * 200)
    client.recv(200)
    time.sleep(0.05)
    client.close()
    time.sleep(0.05)
    peer.recv(1)
    peer.close()
    stop(proc)
    server.close()


def main(argv: list[str]) -> int:
    timeout = 20.0
    if "--connect-timeout" in argv:
        at = argv.index("--connect-timeout")
        timeout = float(argv[at + 1])
        del argv[at : at + 2]
    out = Path(argv[0])
    names = argv[1:] or ["syn_blackhole", "synack_rexmit", "midstream"]
    setup()
    for name in names:
        if name == "syn_blackhole":
            syn_blackhole(out, timeout)
        elif name == "synack_rexmit":
            synack_rexmit(out)
        elif name == "midstream":
            midstream(out)
        elif name == "syn_closed":
            syn_closed(out)
        else:
            print(f"unknown capture {name}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
