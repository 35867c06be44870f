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


@dataclass
class Population:
    """The sockets held for the run; TIME_WAIT ones expire after 60 s and are re-made."""

    counts: dict[str, int]
    listeners: list[socket.socket]
    time_wait: int
    made_at: float = 0.0

    def make_time_wait(self) -> None:
        """Wait until the previous batch has expired, then make a fresh one."""
        if self.made_at:
            time.sleep(max(0.0, self.made_at + TIME_WAIT_LEN + 1 - time.monotonic()))
        for i in range(self.time_wait):
            client, server = _connect(self.listeners, i)
            client.close()
            server.close()
        self.made_at = time.monotonic()
        time.sleep(0.5)


TIME_WAIT_LEN = 60.0


@contextmanager
def sockets(n: int) -> Iterator[Population]:
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
        counts["TIME_WAIT"] = mix.time_wait
        counts["workers"] = workers
        population = Population(counts, listeners, mix.time_wait)
        population.make_time_wait()
        yield population
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


def run(name: str, argv: list[str], scratch: str) -> Timing:
    """One run: wall time, and peak RSS from GNU time when it is installed.

    The child is started by ``/usr/bin/time`` rather than by this (large)
    process, because Linux charges a vforked child's peak RSS with its
    parent's until ``exec``.
    """
    gnu_time = os.path.exists("/usr/bin/time")
    prefix = ["/usr/bin/time", "-f", "%M", "-o", scratch] if gnu_time else []
    start = time.perf_counter()
    proc = subprocess.run(
        [*prefix, *argv], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=CHILD_ENV
    )
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{name}: exit {proc.returncode}")
    peak = 0.0
    if gnu_time:
        with open(scratch) as fh:
            peak = int(fh.read().split()[-1]) / 1024  # KiB
    return Timing(name, elapsed, peak, len(proc.stdout))


def best(timings: list[Timing]) -> Timing:
    fastest = min(timings, key=lambda t: t.seconds)
    return Timing(
        fastest.name, fastest.seconds, max(t.peak_mib for t in timings), fastest.output_bytes
    )


#: the children's environment: with bytecode caches, as after ``pip install`` (which
#: byte-compiles); a sandbox that sets PYTHONDONTWRITEBYTECODE would otherwise make
#: every run recompile every module it imports (~20-40 ms a command here)
CHILD_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def byte_compile() -> None:
    """Write the .pyc files of the tcplens the entry script imports, before anything is timed."""
    code = (
        "import compileall, os, tcplens; "
        "compileall.compile_dir(os.path.dirname(tcplens.__file__), quiet=1)"
    )
    subprocess.run([sys.executable, "-c", code], check=True, env=CHILD_ENV)


def entry_script(name: str) -> str:
    """The console script pip installed beside this interpreter.

    Not the first ``name`` on PATH: under pyenv that is a bash shim that
    re-resolves the interpreter on every call (~0.1 s here), a cost of the
    developer's setup that a pip or pipx install does not have.
    """
    beside = os.path.join(os.path.dirname(sys.executable), name)
    if os.access(beside, os.X_OK):
        return beside
    found = shutil.which(name)
    if found is None:
        sys.exit(f"{name} is not installed (pip install -e .)")
    return found


def enter_private_netns(argv: list[str]) -> None:
    """Re-run in a fresh network namespace so only our sockets are measured (root)."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return
    os.execvp("unshare", ["unshare", "-n", "--", sys.executable, __file__, "--in-netns", *argv])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--sockets", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3, help="rounds (best is kept)")
    parser.add_argument("--no-netns", action="store_true", help="measure in this network namespace")
    parser.add_argument("--in-netns", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not args.in_netns and not args.no_netns:
        enter_private_netns(sys.argv[1:])
    if args.in_netns:
        subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    n = min(args.sockets, MAX_SOCKETS)
    tcplens = entry_script("tcplens")
    byte_compile()
    py = sys.executable
    psutil_code = "import psutil; print(len(psutil.net_connections(kind='tcp')))"
    commands = [
        ("ss -tan", ["ss", "-tan"]),
        ("tcplens ls --json -P", [tcplens, "ls", "-t", "--json", "--no-processes"]),
        ("tcplens ls -P", [tcplens, "ls", "-t", "--no-processes"]),
        ("tcplens status", [tcplens, "status"]),
        ("tcplens ls --state close-wait", [tcplens, "ls", "--state", "close-wait"]),
        ("tcplens ls --json", [tcplens, "ls", "-t", "--json"]),
        ("tcplens ls", [tcplens, "ls", "-t"]),
        ("ss -tanp", ["ss", "-tanp"]),
        ("netstat -tanp", ["netstat", "-tanp"]),
        ("psutil.net_connections()", [py, "-c", psutil_code]),
    ]
    commands = [(name, argv) for name, argv in commands if shutil.which(argv[0])]
    print(f"creating {n} sockets …", file=sys.stderr)
    t0 = time.perf_counter()
    runs: dict[str, list[Timing]] = {name: [] for name, _ in commands}
    seen: list[tuple[int, int]] = []
    scratch = os.path.join(tempfile.mkdtemp(prefix="bench-live-"), "rss")
    with sockets(n) as population:
        counts = population.counts
        made = time.perf_counter() - t0
        for round_ in range(args.repeat):
            if round_:  # the previous TIME_WAIT batch must not expire mid-round
                population.make_time_wait()
            before = count_sockets()
            for name, argv in commands:
                runs[name].append(run(name, argv, scratch))
            seen.append((before, count_sockets()))
            print(f"round {round_ + 1}: {before} -> {seen[-1][1]} sockets", file=sys.stderr)
    results = [best(runs[name]) for name, _ in commands]
    by = {r.name: r for r in results}
    print(f"\n{platform.node()}: {os.cpu_count()} CPUs, Linux {platform.release()}, Python "
          f"{platform.python_version()}")  # fmt: skip
    where = "a private network namespace" if args.in_netns else "the host network namespace"
    print(f"sockets made: {counts} in {made:.1f}s, in {where}")
    print(f"kernel sockets at the start/end of each round: {seen}")
    print(f"best of {args.repeat} rounds, output to a pipe\n")
    print("| command | wall s | peak MiB | output KiB |\n|---|---:|---:|---:|")
    for r in results:
        print(f"| `{r.name}` | {r.seconds:.3f} | {r.peak_mib:.0f} | {r.output_bytes / 1024:.0f} |")
    print()
    goals = [
        ("tcplens ls --json", "ss -tanp", 0.3),
        ("tcplens ls --json -P", "ss -tan", 1.0),
        ("tcplens ls -P", "ss -tan", 1.0),
        ("tcplens ls", "ss -tanp", 0.3),
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
