"""Live socket listing, side by side: tcplens against ss, netstat and psutil on N real sockets.

Creates N loopback sockets in this process (ESTABLISHED pairs, FIN_WAIT2 /
CLOSE_WAIT pairs, TIME_WAIT, a few LISTEN) spread over 127.0.0.1-127.0.0.8
listeners so ephemeral ports do not run out, then times each command in one
run: wall time (best of ``--repeat``) and the child's peak RSS.  The
TIME_WAIT sockets live 60 s, so they are created last and the socket count
is reported before and after the timings.

    python3 benchmarks/bench_live.py              # 10k sockets
    python3 benchmarks/bench_live.py -n 100000    # 100k

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
import tempfile
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


#: sockets one worker process holds open (the hard RLIMIT_NOFILE may be low and,
#: without CAP_SYS_RESOURCE, cannot be raised, so the load is spread over processes)
FDS_PER_WORKER = 15_000


def raise_fd_limit() -> int:
    """Raise the soft fd limit to the hard one; return what a worker may use."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return min(FDS_PER_WORKER, hard - 200)


def _listeners() -> list[socket.socket]:
    out = []
    for addr in ADDRESSES:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((addr, 0))
        listener.listen(4096)
        out.append(listener)
    return out


def _connect(listeners: list[socket.socket], i: int) -> tuple[socket.socket, socket.socket]:
    lst = listeners[i % len(listeners)]
    client = socket.socket()
    client.connect(lst.getsockname())
    server, _ = lst.accept()
    return client, server


def _worker(established_pairs: int, half_closed_pairs: int, ready: int, stop: int) -> None:
    """In a forked child: hold ESTABLISHED and FIN_WAIT2/CLOSE_WAIT pairs until told to stop."""
    held = _listeners()
    for i in range(established_pairs):
        held.extend(_connect(held[:8], i))
    for i in range(half_closed_pairs):
        client, server = _connect(held[:8], i)
        client.shutdown(socket.SHUT_WR)
        held.extend((client, server))
    os.write(ready, b"ready\n")
    os.read(stop, 1)  # returns b"" when the parent closes its end (or dies)
    for s in held:
        s.close()


@contextmanager
def sockets(n: int) -> Iterator[dict[str, int]]:
    """N sockets in the mix, held by worker processes; TIME_WAIT made last by this process."""
    mix = Mix.for_total(n)
    budget = raise_fd_limit()
    pairs_per_worker = max(1, (budget - 16) // 2)
    total_pairs = mix.established_pairs + mix.half_closed_pairs
    workers = max(1, -(-total_pairs // pairs_per_worker))
    counts = {"LISTEN": 0, "ESTABLISHED": 0, "FIN_WAIT2": 0, "CLOSE_WAIT": 0, "TIME_WAIT": 0}
    children: list[tuple[int, int]] = []  # (pid, stop pipe write end)
    listeners: list[socket.socket] = []
    try:
        for w in range(workers):
            est = mix.established_pairs // workers + (w < mix.established_pairs % workers)
            half = mix.half_closed_pairs // workers + (w < mix.half_closed_pairs % workers)
            ready_r, ready_w = os.pipe()
            stop_r, stop_w = os.pipe()
            pid = os.fork()
            if pid == 0:  # child
                try:
                    os.close(ready_r)
                    os.close(stop_w)
                    for _, fd in children:
                        os.close(fd)
                    _worker(est, half, ready_w, stop_r)
                finally:
                    os._exit(0)
            os.close(ready_w)
            os.close(stop_r)
            children.append((pid, stop_w))
            with os.fdopen(ready_r) as fh:
                if fh.readline().strip() != "ready":
                    raise SystemExit(f"worker {pid} failed to create its sockets")
            counts["LISTEN"] += len(ADDRESSES)
            counts["ESTABLISHED"] += 2 * est
            counts["FIN_WAIT2"] += half
            counts["CLOSE_WAIT"] += half
        listeners = _listeners()
        counts["LISTEN"] += len(listeners)
        for i in range(mix.time_wait):
            client, server = _connect(listeners, i)
            client.close()
            server.close()
        counts["TIME_WAIT"] = mix.time_wait
        counts["workers"] = workers
        time.sleep(0.5)
        yield counts
    finally:
        for s in listeners:
            s.close()
        for _pid, stop_w in children:
            os.close(stop_w)
        for pid, _ in children:
            os.waitpid(pid, 0)


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


def run(name: str, argv: list[str], repeat: int, scratch: str) -> Timing:
    """Best wall time of ``repeat`` runs; peak RSS from GNU time when it is installed.

    The child is started by ``/usr/bin/time`` rather than by this (large)
    process, because Linux charges a vforked child's peak RSS with its
    parent's until ``exec``.
    """
    best = float("inf")
    peak = 0.0
    size = 0
    gnu_time = shutil.which("time") if os.path.exists("/usr/bin/time") else None
    for _ in range(repeat):
        prefix = ["/usr/bin/time", "-f", "%M", "-o", scratch] if gnu_time else []
        start = time.perf_counter()
        proc = subprocess.run([*prefix, *argv], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        elapsed = time.perf_counter() - start
        if proc.returncode != 0:
            raise SystemExit(f"{name}: exit {proc.returncode}")
        best = min(best, elapsed)
        if gnu_time:
            with open(scratch) as fh:
                peak = max(peak, int(fh.read().split()[-1]) / 1024)  # KiB
        size = len(proc.stdout)
    return Timing(name, best, peak, size)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--sockets", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    n = min(args.sockets, MAX_SOCKETS)
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
        scratch = os.path.join(tempfile.mkdtemp(prefix="bench-live-"), "rss")
        results = [run(name, argv, args.repeat, scratch) for name, argv in commands]
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
