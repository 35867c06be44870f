"""Captures: `tcplens pcap` side by side with tshark, a dpkt loop and scapy.

Generates a synthetic capture (default ~2M packets, ~50k connections: handshakes,
data both ways, FIN closes from either side, RST closes, refused and half-open
attempts, retransmissions, zero windows), then times, in one run:

* ``tcplens pcap --zeek`` (full reconstruction: states, conn_state, history, counters),
  then ``--json`` and the plain table (piped),
* ``tshark -q -z conv,tcp`` (conversation table only),
* a dpkt loop decoding every packet to 4-tuple and flags,
* a plain ``struct`` loop doing the same,
* scapy's ``PcapReader`` on a 200k-packet subset (extrapolated),

each as a separate process whose peak RSS is read from ``wait4``.  Memory
independence is checked by running ``tcplens pcap`` on a half-size capture too.
Then issue 14's floor: ``cat F > /dev/null`` and ``tcplens pcap --json``/``--zeek``
to /dev/null, alternating ``--repeat`` times, medians and the ratio.

    python3 benchmarks/bench_pcap.py [--packets 2000000] [--connections 50000] \
        [--full-segments] [--repeat 7] [--dir /tmp/tcplens-bench] [--keep] [--json out.json]

Never run by pytest.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10

# Ethernet + IPv4 (no options) + TCP (20 bytes), all big-endian on the wire.
_ETH_IP_TCP = struct.Struct("!6s6sHBBHHHBBHIIHHIIBBHHH")
_REC = struct.Struct("<IIII")
_MAC_A = b"\x02\x00\x00\x00\x00\x01"
_MAC_B = b"\x02\x00\x00\x00\x00\x02"


#: sizes of a data segment: mixed by default; ``--full-segments`` makes every one full
#: size, for a capture of issue 14's shape (2M packets in ~1.5 GB rather than ~0.7 GB)
_SIZES = (0, 100, 536, 1448, 1448, 1448)
_FULL_SIZES = (1448,)


def _conversation(
    rng: random.Random, cid: int, start: float, mean_pkts: int, sizes: tuple[int, ...] = _SIZES
) -> list[tuple]:
    """One connection as (time, from_client, flags, seq, ack, length, window) rows."""
    cseq = rng.getrandbits(32)
    sseq = rng.getrandbits(32)
    rtt = rng.uniform(0.0002, 0.05)
    rows: list[tuple] = []
    t = start
    kind = rng.random()

    def add(from_client: bool, flags: int, length: int = 0, window: int = 64240) -> None:
        nonlocal cseq, sseq, t
        seq, ack = (cseq, sseq) if from_client else (sseq, cseq)
        rows.append((t, from_client, flags, seq % 2**32, ack % 2**32, length, window))
        used = length + (1 if flags & (SYN | FIN) else 0)
        if from_client:
            cseq += used
        else:
            sseq += used
        t += rng.uniform(0.00001, rtt)

    if kind < 0.06:  # half-open: SYN and retransmissions, never answered
        for _ in range(rng.randint(1, 3)):
            rows.append((t, True, SYN, cseq % 2**32, 0, 0, 64240))
            t += 1.0
        return rows
    if kind < 0.10:  # refused
        add(True, SYN)
        rows.append((t, False, RST | ACK, 0, cseq % 2**32, 0, 0))
        return rows
    add(True, SYN)
    add(False, SYN | ACK)
    add(True, ACK)
    n = max(2, int(rng.expovariate(1 / mean_pkts)))
    for i in range(n // 2):
        size = rng.choice(sizes)
        if i % 2:
            add(False, PSH | ACK if size else ACK, size)
            add(True, ACK)
        else:
            add(True, PSH | ACK if size else ACK, size)
            if rng.random() < 0.02:  # retransmission of the same segment
                rows.append((t, True, PSH | ACK, (cseq - size) % 2**32, sseq % 2**32, size, 64240))
                t += rtt
            add(False, ACK, 0, 0 if rng.random() < 0.01 else 64240)
    end = rng.random()
    if end < 0.15:
        add(rng.random() < 0.5, RST | ACK)
    elif end < 0.57:
        add(True, FIN | ACK)
        add(False, FIN | ACK)
        add(True, ACK)
    else:
        add(False, FIN | ACK)
        add(True, ACK)
        add(True, FIN | ACK)
        add(False, ACK)
    return rows


def generate(
    path: Path, packets: int, connections: int, seed: int = 1, sizes: tuple[int, ...] = _SIZES
) -> int:
    """Write the synthetic capture; returns the number of packets written."""
    rng = random.Random(seed)
    mean = max(4, packets // connections - 6)
    span = max(60.0, connections / 400)
    meta = []
    for cid in range(connections):
        start = rng.uniform(0, span)
        client = (0x0A000000 | (cid % 60000 + 2), 1024 + (cid * 7919) % 60000)
        server = (0xC0A80000 | (cid % 50 + 1), rng.choice((80, 443, 8080, 22)))
        for row in _conversation(rng, cid, start, mean, sizes):
            meta.append((row[0], cid, client, server, row))
    meta.sort(key=lambda m: m[0])
    payload = bytes(range(256)) * 8
    count = 0
    with path.open("wb", buffering=1 << 22) as out:
        out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for ts, _cid, client, server, (_, from_client, flags, seq, ack, length, window) in meta:
            src, dst = (client, server) if from_client else (server, client)
            total = 40 + length
            frame = _ETH_IP_TCP.pack(
                _MAC_A,
                _MAC_B,
                0x0800,
                0x45,
                0,
                total,
                0,
                0x4000,
                64,
                6,
                0,
                src[0],
                dst[0],
                src[1],
                dst[1],
                seq,
                ack,
                0x50,
                flags,
                window,
                0,
                0,
            )
            sec = int(ts)
            out.write(
                _REC.pack(1_600_000_000 + sec, int((ts - sec) * 1e6), 54 + length, 54 + length)
            )
            out.write(frame)
            out.write(payload[:length])
            count += 1
    return count


def generate_flood(path: Path, syns: int, seed: int = 3) -> int:
    """A half-open SYN flood: ``syns`` SYNs from random sources to one port, none answered."""
    rng = random.Random(seed)
    with path.open("wb", buffering=1 << 22) as out:
        out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for i in range(syns):
            ts = i * 10  # microseconds: 100k SYNs per second of capture time
            src = (0x0B000000 | rng.getrandbits(24), 1024 + rng.getrandbits(15))
            frame = _ETH_IP_TCP.pack(
                _MAC_A, _MAC_B, 0x0800, 0x45, 0, 40, 0, 0x4000, 64, 6, 0,
                src[0], 0xC0A80001, src[1], 80, rng.getrandbits(32), 0, 0x50, SYN, 64240, 0, 0,
            )  # fmt: skip
            out.write(_REC.pack(1_600_000_000 + ts // 1_000_000, ts % 1_000_000, 54, 54))
            out.write(frame)
    return syns


def generate_concurrent(path: Path, connections: int, data_packets: int = 6) -> int:
    """``connections`` connections open at once: every handshake, then data, then every close."""
    count = 0
    with path.open("wb", buffering=1 << 22) as out:
        out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))

        def put(ts_us: int, cid: int, from_client: bool, flags: int, seq: int, ack: int) -> None:
            nonlocal count
            client = (0x0A000000 | (cid >> 8), 1024 + (cid & 0xFF) * 200)
            server = (0xC0A80001, 443)
            src, dst = (client, server) if from_client else (server, client)
            frame = _ETH_IP_TCP.pack(
                _MAC_A, _MAC_B, 0x0800, 0x45, 0, 40, 0, 0x4000, 64, 6, 0,
                src[0], dst[0], src[1], dst[1], seq, ack, 0x50, flags, 64240, 0, 0,
            )  # fmt: skip
            out.write(_REC.pack(1_600_000_000 + ts_us // 1_000_000, ts_us % 1_000_000, 54, 54))
            out.write(frame)
            count += 1

        t = 0
        for cid in range(connections):  # handshakes: 3 packets each
            put(t, cid, True, SYN, 1000, 0)
            put(t + 1, cid, False, SYN | ACK, 5000, 1001)
            put(t + 2, cid, True, ACK, 1001, 5001)
            t += 3
        for i in range(data_packets):  # empty ACKs both ways keep every connection busy
            for cid in range(connections):
                put(
                    t,
                    cid,
                    i % 2 == 0,
                    ACK,
                    1001 if i % 2 == 0 else 5001,
                    5001 if i % 2 == 0 else 1001,
                )
                t += 1
        for cid in range(connections):  # client-first closes
            put(t, cid, True, FIN | ACK, 1001, 5001)
            put(t + 1, cid, False, FIN | ACK, 5001, 1002)
            put(t + 2, cid, True, ACK, 1002, 5002)
            t += 3
    return count


def generate_replays(path: Path, pairs: int) -> int:
    """One handshake, then ``pairs`` times "the client's ACK, the SYN+ACK again": each
    retransmission proves the ACK lost and asks for a replay of the server's inputs,
    whose number grows with the capture (quadratic without the tracker's replay limit)."""
    client, server = (0x0A000001, 40000), (0xC0A80001, 443)
    count = 0
    with path.open("wb", buffering=1 << 22) as out:
        out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))

        def put(from_client: bool, flags: int, seq: int, ack: int) -> None:
            nonlocal count
            src, dst = (client, server) if from_client else (server, client)
            frame = _ETH_IP_TCP.pack(
                _MAC_A, _MAC_B, 0x0800, 0x45, 0, 40, 0, 0x4000, 64, 6, 0,
                src[0], dst[0], src[1], dst[1], seq, ack, 0x50, flags, 64240, 0, 0,
            )  # fmt: skip
            out.write(_REC.pack(1_600_000_000 + count // 1000, count % 1000 * 1000, 54, 54))
            out.write(frame)
            count += 1

        put(True, SYN, 1000, 0)
        put(False, SYN | ACK, 5000, 1001)
        for _ in range(pairs):
            put(True, ACK, 1001, 5001)
            put(False, SYN | ACK, 5000, 1001)
    return count


def _peak_rss(cmd: list[str], *, to_null: bool = False) -> tuple[float, float, float, bytes]:
    """Wall seconds, CPU seconds (user+sys), peak RSS (MiB) of one process, and its output.

    Started with ``posix_spawn``: with a shared address space until exec, the
    child's peak RSS starts at this parent's high-water mark, so the parent
    keeps only the first 4 KiB of output and stays small.  ``to_null``: the
    output goes to ``/dev/null`` as in ``cat F > /dev/null`` (issue 14's floor),
    not through a pipe this parent reads (which made ``cat`` of 717 MiB take 0.6 s).
    """
    read_fd, write_fd = os.pipe()
    out: tuple[int, int, int] | tuple[int, int, str, int, int] = (
        (os.POSIX_SPAWN_OPEN, 1, "/dev/null", os.O_WRONLY, 0)
        if to_null
        else (os.POSIX_SPAWN_DUP2, write_fd, 1)
    )
    actions = [
        out,
        (os.POSIX_SPAWN_OPEN, 2, "/dev/null", os.O_WRONLY, 0),
        (os.POSIX_SPAWN_CLOSE, read_fd),
    ]
    exe = shutil.which(cmd[0]) or cmd[0]
    start = time.perf_counter()
    pid = os.posix_spawn(exe, cmd, dict(os.environ), file_actions=actions)
    os.close(write_fd)
    head = b""
    with os.fdopen(read_fd, "rb") as pipe:
        # Keep only the start: this parent must stay small (see above).
        for chunk in iter(lambda: pipe.read(1 << 16), b""):
            if len(head) < 4096:
                head += chunk[:4096]
    _pid, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - start
    if status != 0:
        raise SystemExit(f"{' '.join(cmd[:3])} failed with status {status}")
    cpu = usage.ru_utime + usage.ru_stime
    return wall, cpu, usage.ru_maxrss / 1024, head


_DPKT_LOOP = """
import sys, dpkt
n = 0
flows = {}
with open(sys.argv[1], 'rb') as f:
    for ts, buf in dpkt.pcap.Reader(f):
        eth = dpkt.ethernet.Ethernet(buf)
        ip = eth.data
        if not isinstance(ip, dpkt.ip.IP) or not isinstance(ip.data, dpkt.tcp.TCP):
            continue
        tcp = ip.data
        key = (ip.src, tcp.sport, ip.dst, tcp.dport)
        flows[key] = flows.get(key, 0) | tcp.flags
        n += 1
print(n, len(flows))
"""

_STRUCT_LOOP = """
import sys, struct
rec = struct.Struct('<IIII'); hdr = struct.Struct('!H')
ip4 = struct.Struct('!BBHHHBBH4s4s'); tcp = struct.Struct('!HHIIBB')
n = 0
flows = {}
with open(sys.argv[1], 'rb') as f:
    data = f.read()
off = 24
end = len(data)
while off + 16 <= end:
    _s, _u, caplen, _l = rec.unpack_from(data, off)
    p = off + 16
    off = p + caplen
    if hdr.unpack_from(data, p + 12)[0] != 0x0800:
        continue
    vihl, _t, _tl, _i, _f, _ttl, proto, _c, src, dst = ip4.unpack_from(data, p + 14)
    if proto != 6:
        continue
    sport, dport, _seq, _ack, _o, flags = tcp.unpack_from(data, p + 14 + (vihl & 15) * 4)
    key = (src, sport, dst, dport)
    flows[key] = flows.get(key, 0) | flags
    n += 1
print(n, len(flows))
"""

_SCAPY_LOOP = """
import sys
from scapy.all import PcapReader, TCP, IP
limit = int(sys.argv[2])
n = 0
flows = {}
for i, pkt in enumerate(PcapReader(sys.argv[1])):
    if i >= limit:
        break
    if TCP in pkt and IP in pkt:
        key = (pkt[IP].src, pkt[TCP].sport, pkt[IP].dst, pkt[TCP].dport)
        flows[key] = flows.get(key, 0) | int(pkt[TCP].flags)
        n += 1
print(n, len(flows))
"""


def _ratios(ours: dict[str, float], theirs: dict[str, float]) -> str:
    """Throughput ratios by wall time and by CPU time (tcplens may use two processes:
    its CPU time counts both, as wait4 reports a process and its waited-for children)."""
    wall = ours["pps"] / theirs["pps"]
    cpu = ours["cpu_pps"] / theirs["cpu_pps"]
    return f"{wall:.2f}x by wall time, {cpu:.2f}x by CPU time"


def _floor(py: str, capture: Path, repeat: int) -> dict[str, float]:
    """Issue 14's "<= 6x ``cat F > /dev/null``": both write to /dev/null, alternating
    ``repeat`` times (a single run of either varies by 10-20 % on a shared machine);
    the medians and their ratio."""
    modes = {"cat": ["cat"], "--json": [py, "-m", "tcplens", "pcap", "--json"]}
    modes["--zeek"] = [py, "-m", "tcplens", "pcap", "--zeek"]
    walls: dict[str, list[float]] = {name: [] for name in modes}
    for _ in range(repeat):
        for name, cmd in modes.items():
            walls[name].append(_peak_rss([*cmd, str(capture)], to_null=True)[0])
    med = {name: statistics.median(times) for name, times in walls.items()}
    for name in ("--json", "--zeek"):
        print(
            f"  tcplens pcap {name} > /dev/null: median {med[name]:.3f} s of {repeat}, "
            f"cat {med['cat']:.3f} s: {med[name] / med['cat']:.1f}x cat",
            flush=True,
        )
    return med


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--packets", type=int, default=2_000_000)
    ap.add_argument("--connections", type=int, default=50_000)
    ap.add_argument("--scapy-packets", type=int, default=200_000)
    ap.add_argument("--dir", type=Path, default=None)
    ap.add_argument("--keep", action="store_true", help="Keep the generated captures.")
    ap.add_argument("--skip", action="append", default=[], help="tshark, dpkt, struct or scapy")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument(
        "--flood", type=int, default=0, help="Also time a half-open SYN flood of this many SYNs."
    )
    ap.add_argument(
        "--concurrent",
        type=int,
        default=0,
        help="Also time this many connections open at once (12 packets each).",
    )
    ap.add_argument(
        "--replays",
        type=int,
        default=0,
        help="Also time a crafted capture: this many (ACK, SYN+ACK retransmitted) pairs.",
    )
    ap.add_argument(
        "--full-segments",
        action="store_true",
        help="Every data segment 1448 bytes (issue 14's capture: 2M packets, ~1.5 GB).",
    )
    ap.add_argument(
        "--repeat",
        type=int,
        default=7,
        help="Alternating runs of cat and tcplens for the ratio to cat (medians).",
    )
    ap.add_argument("--generate-only", type=Path, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--seed", type=int, default=1, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.generate_only is not None:
        sizes = _FULL_SIZES if args.full_segments else _SIZES
        print(generate(args.generate_only, args.packets, args.connections, args.seed, sizes))
        return
    workdir = args.dir or Path(tempfile.mkdtemp(prefix="tcplens-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    results: dict[str, object] = {}
    py = sys.executable
    try:
        big = workdir / "synthetic.pcap"
        half = workdir / "synthetic-half.pcap"
        t0 = time.perf_counter()
        # Generated in child processes, so this parent stays small: a forked child's
        # peak RSS counts the parent's pages until it execs.
        counts = []
        for path, packets, conns, seed in (
            (big, args.packets, args.connections, 1),
            (half, args.packets // 2, args.connections // 2, 2),
        ):
            cmd = [py, __file__, "--generate-only", str(path), "--seed", str(seed)]
            cmd += ["--packets", str(packets), "--connections", str(conns)]
            cmd += ["--full-segments"] if args.full_segments else []
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
            counts.append(int(out.split()[-1]))
        n, nh = counts
        size = big.stat().st_size / 2**20
        print(f"generated {n} packets ({size:.0f} MiB) and {nh} packets", end=" ")
        print(f"in {time.perf_counter() - t0:.1f} s", flush=True)
        os.sync()  # written back now, not while the runs below read the captures
        subprocess.run(["cat", str(big), str(half)], stdout=subprocess.DEVNULL, check=True)
        rows = []

        def record(name: str, cmd: list[str], packets: int) -> dict[str, float]:
            wall, cpu, rss, out = _peak_rss(cmd)
            row = {
                "name": name,
                "seconds": wall,
                "cpu_seconds": cpu,
                "packets": packets,
                "pps": packets / wall,
                "cpu_pps": packets / cpu,
                "rss_mib": rss,
            }
            rows.append(row)
            print(
                f"{name:<40} {wall:7.2f} s wall {cpu:7.2f} s cpu "
                f"{packets / cpu / 1e3:7.0f} kpps/cpu {rss:6.0f} MiB",
                flush=True,
            )
            results[name] = row | {"output_head": out[:300].decode(errors="replace")}
            return row

        wall, _cpu, _rss, _ = _peak_rss(["cat", str(big)], to_null=True)
        print(f"{'cat > /dev/null':<40} {wall:7.2f} s wall", flush=True)
        tcplens = [py, "-m", "tcplens", "pcap", "--zeek"]
        ours = record("tcplens pcap --zeek", [*tcplens, str(big)], n)
        ours_half = record("tcplens pcap --zeek (half-size file)", [*tcplens, str(half)], nh)
        record("tcplens pcap --json", [py, "-m", "tcplens", "pcap", "--json", str(big)], n)
        record("tcplens pcap (table, piped)", [py, "-m", "tcplens", "pcap", str(big)], n)
        if "tshark" not in args.skip and shutil.which("tshark"):
            cmd = ["tshark", "-r", str(big), "-q", "-z", "conv,tcp"]
            ts = record("tshark -q -z conv,tcp", cmd, n)
            print(f"  tcplens / tshark throughput: {_ratios(ours, ts)}")
        if "dpkt" not in args.skip:
            dp = record("dpkt loop (4-tuple + flags)", [py, "-c", _DPKT_LOOP, str(big)], n)
            print(f"  tcplens / dpkt throughput: {_ratios(ours, dp)}")
        if "struct" not in args.skip:
            record("plain struct loop (4-tuple + flags)", [py, "-c", _STRUCT_LOOP, str(big)], n)
        if "scapy" not in args.skip:
            k = min(args.scapy_packets, n)
            cmd = [py, "-c", _SCAPY_LOOP, str(big), str(k)]
            record(f"scapy PcapReader ({k} packets)", cmd, k)
        print(f"  tcplens peak RSS: {ours_half['rss_mib']:.0f} MiB for {nh} packets,", end=" ")
        print(f"{ours['rss_mib']:.0f} MiB for {n} packets")
        results["floor"] = _floor(py, big, args.repeat)
        if args.flood:
            flood = workdir / "flood.pcap"
            generate_flood(flood, args.flood)
            subprocess.run(["cat", str(flood)], stdout=subprocess.DEVNULL, check=True)
            for mode in ("--json", "--zeek", "(table)"):
                cmd = [py, "-m", "tcplens", "pcap", *([] if mode == "(table)" else [mode])]
                record(f"flood: tcplens pcap {mode}", [*cmd, str(flood)], args.flood)
            if "tshark" not in args.skip and shutil.which("tshark"):
                cmd = ["tshark", "-r", str(flood), "-q", "-z", "conv,tcp"]
                record("flood: tshark -q -z conv,tcp", cmd, args.flood)
        if args.concurrent:
            many = workdir / "concurrent.pcap"
            k = generate_concurrent(many, args.concurrent)
            subprocess.run(["cat", str(many)], stdout=subprocess.DEVNULL, check=True)
            for mode in ("--json", "--zeek", "(table)"):
                cmd = [py, "-m", "tcplens", "pcap", *([] if mode == "(table)" else [mode])]
                record(f"concurrent: tcplens pcap {mode}", [*cmd, str(many)], k)
            if "tshark" not in args.skip and shutil.which("tshark"):
                cmd = ["tshark", "-r", str(many), "-q", "-z", "conv,tcp"]
                record("concurrent: tshark -q -z conv,tcp", cmd, k)
        if args.replays:
            crafted = workdir / "replays.pcap"
            k = generate_replays(crafted, args.replays)
            cmd = [py, "-m", "tcplens", "pcap", "--zeek", str(crafted)]
            record(f"replays: tcplens pcap --zeek ({args.replays} pairs)", cmd, k)
            if args.replays <= 20_000:  # the reference is ~20x slower per packet
                ref = ["env", "TCPLENS_PACKETS=python", *cmd]
                record(f"replays: the Python reference ({args.replays} pairs)", ref, k)
        results["rows"] = rows
        if args.json:
            args.json.write_text(json.dumps(results, indent=2))
    finally:
        if not args.keep and args.dir is None:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
