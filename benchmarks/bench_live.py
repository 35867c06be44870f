"""Live socket listing, side by side: tcplens against ss, netstat and psutil on N real sockets.

Creates N loopback sockets in this process (ESTABLISHED pairs, FIN_WAIT2 /
CLOSE_WAIT pairs, TIME_WAIT, a few LISTEN) spread over 127.0.0.1-127.0.0.8
listeners so ephemeral ports do not run out, then times each command in one
run: wall time (best of ``--repeat``) and the child's peak RSS.  The
TIME_WAIT sockets live 60 s, so they are created last and the socket count
is reported before and after the timings.

    python3 benchmarks/bench_live.py              # 10k sockets
    python3 benchmarks/bench_live.py -n 100000    # 100k (root: raises RLIMIT_NOFILE)

Never run from pytest.  Everything is closed on exit, also on errors.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

ADDRESSES = [f"127.0.0.{i}" for i in range(1, 9)]
MAX_SOCKETS = 200_000  # bound: never more than this, whatever -n says


@dataclass
class Mix:
    established_pairs: int
    half_closed_pairs: int
    time_wait: int

    @classmethod
    def for_total(cls, n: int) -> Mix:
        # ~50% ESTABLISHED, 10% FIN_WAIT2, 10% CLOSE_WAIT, 30% TIME_WAIT
        return cls(n // 4, n // 10, n * 3 // 10)


def raise_fd_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = needed + 1000
    if soft >= want:
        return
    if hard < want:
        if os.geteuid() != 0:
            sys.exit(f"need {want} file descriptors, hard limit is {hard}: run as root")
        hard = want
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


@contextmanager
def sockets(n: int) -> Iterator[dict[str, int]]:
    mix = Mix.for_total(n)
    held: list[socket.socket] = []
    listeners: list[socket.socket] = []
    counts = {"LISTEN": 0, "ESTABLISHED": 0, "FIN_WAIT2": 0, "CLOSE_WAIT": 0, "TIME_WAIT": 0}
    try:
        for addr in ADDRESSES:
            listener = socket.socket()
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((addr, 0))
            listener.listen(4096)
            listeners.append(listener)
        counts["LISTEN"] = len(listeners)
        targets = [lst.getsockname() for lst in listeners]

        def connect(i: int) -> tuple[socket.socket, socket.socket]:
            lst = listeners[i % len(listeners)]
            client = socket.socket()
            client.connect(targets[i % len(targets)])
            server, _ = lst.accept()
            return client, server

        i = 0
        for _ in range(mix.established_pairs):
            held.extend(connect(i))
            i += 1
        counts["ESTABLISHED"] = 2 * mix.established_pairs
        for _ in range(mix.half_closed_pairs):
            client, server = connect(i)
            i += 1
            client.shutdown(socket.SHUT_WR)
            held.extend((client, server))
        counts["FIN_WAIT2"] = counts["CLOSE_WAIT"] = mix.half_closed_pairs
        for _ in range(mix.time_wait):
            client, server = connect(i)
            i += 1
            client.close()
            server.close()
        counts["TIME_WAIT"] = mix.time_wait
        time.sleep(0.5)
        yield counts
    finally:
        for s in held + listeners:
            s.close()


def count_sockets() -> int:
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))
    from tcplens.sources import netlink

    return len(netlink.dump())


@dataclass
class Timing:
    name: str
    seconds: float
    peak_mib: float
    output_bytes: int


def run(name: str, argv: list[str], repeat: int) -> Timing:
    best = float("inf")
    peak = 0.0
    size = 0
    for _ in range(repeat):
        with open(os.devnull, "wb") as sink:
            start = time.perf_counter()
            proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=sink)
            assert proc.stdout is not None
            out = proc.stdout.read()
            _, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
            elapsed = time.perf_counter() - start
        if proc.returncode != 0:
            raise SystemExit(f"{name}: exit {proc.returncode}")
        best = min(best, elapsed)
        peak = max(peak, usage.ru_maxrss / 1024)  # KiB on Linux
        size = len(out)
    return Timing(name, best, peak, size)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--sockets", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    n = min(args.sockets, MAX_SOCKETS)
    raise_fd_limit(n)
    tcplens = shutil.which("tcplens") or sys.exit("tcplens is not installed (pip install -e .)")
    py = sys.executable
    psutil_code = "import psutil; print(len(psutil.net_connections(kind='tcp')))"
    commands = [
        ("ss -tan", ["ss", "-tan"]),
        ("ss -tanp", ["ss", "-tanp"]),
        ("netstat -tanp", ["netstat", "-tanp"]),
        ("psutil.net_connections()", [py, "-c", psutil_code]),
        ("tcplens ls --json", [tcplens, "ls", "-t", "--json"]),
        ("tcplens ls --json -P", [tcplens, "ls", "-t", "--json", "--no-processes"]),
        ("tcplens ls --state close-wait", [tcplens, "ls", "--state", "close-wait"]),
        ("tcplens ls", [tcplens, "ls", "-t"]),
        ("tcplens status", [tcplens, "status"]),
    ]
    commands = [(name, argv) for name, argv in commands if shutil.which(argv[0])]
    print(f"creating {n} sockets …", file=sys.stderr)
    t0 = time.perf_counter()
    with sockets(n) as counts:
        made = time.perf_counter() - t0
        before = count_sockets()
        results = [run(name, argv, args.repeat) for name, argv in commands]
        after = count_sockets()
    by = {r.name: r for r in results}
    print(f"\n{platform.node()}: {os.cpu_count()} CPUs, Linux {platform.release()}, Python "
          f"{platform.python_version()}")  # fmt: skip
    print(f"sockets made: {counts} in {made:.1f}s; kernel sockets before/after: {before}/{after}")
    print(f"best of {args.repeat}, output to a pipe\n")
    print("| command | wall s | peak MiB | output KiB |\n|---|---:|---:|---:|")
    for r in results:
        print(f"| `{r.name}` | {r.seconds:.3f} | {r.peak_mib:.0f} | {r.output_bytes / 1024:.0f} |")
    print()
    goals = [
        ("tcplens ls --json", "ss -tanp", 0.3),
        ("tcplens ls --json -P", "ss -tan", 1.0),
        ("tcplens status", "ss -tan", 0.8),
    ]
    for ours, theirs, goal in goals:
        if ours in by and theirs in by:
            ratio = by[ours].seconds / by[theirs].seconds
            verdict = "meets" if ratio <= goal else "misses"
            print(f"- `{ours}` / `{theirs}` = {ratio:.2f}x ({verdict} the {goal}x goal)")
    tl = [r for r in results if r.name.startswith("tcplens")]
    worst = max(tl, key=lambda r: r.peak_mib)
    print(f"- peak memory of tcplens: {worst.peak_mib:.0f} MiB (`{worst.name}`; goal <= 100 MiB)")


if __name__ == "__main__":
    main()
