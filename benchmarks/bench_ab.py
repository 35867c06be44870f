"""Two versions of tcplens on the same live sockets, command by command: wall and CPU time.

On a machine shared with other work single timings swing by 2x, so a change is measured
as an A/B: the code before it (a copy of ``src``) and after it run alternately on one
population of sockets (``bench_live.sockets``), and each child's CPU time (user + system,
from ``getrusage``) is reported beside its wall time. Each batch re-makes the TIME_WAIT
sockets (they live 60 s), so keep ``--rounds`` short enough for a batch to end before
they expire.

    cp -r src /tmp/before                          # before the change
    sudo python3 benchmarks/bench_ab.py --before /tmp/before --after src -n 100000

As root it runs in a private network namespace (``unshare -n``). Never run from pytest.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_live  # a sibling script, not a package

#: the console script's entry, ``tcplens.cli`` since issue 19's sixth round (in front of
#: ``tcplens.views.cli``, which the code before it used)
ENTRY = (
    'import sys; sys.argv[0] = "tcplens"\n'
    "try:\n    from tcplens.cli import main\n"
    "except ImportError:\n    from tcplens.views.cli import main\n"
    "main()"
)
COMMANDS: list[tuple[str, list[str]]] = [
    ("status", ["status"]),
    ("ls -P", ["ls", "-t", "-P"]),
    ("ls --json -P", ["ls", "-t", "--json", "-P"]),
    ("ls", ["ls", "-t"]),
    ("ls --state close-wait", ["ls", "--state", "close-wait"]),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True, help="the src directory of the old code")
    parser.add_argument("--after", required=True, help="the src directory of the new code")
    parser.add_argument("-n", "--sockets", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5, help="runs of each command per batch")
    parser.add_argument("--batches", type=int, default=3, help="fresh TIME_WAIT batches")
    parser.add_argument("--in-netns", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not args.in_netns and os.geteuid() == 0 and shutil.which("unshare"):
        argv = [sys.executable, os.path.abspath(__file__), "--in-netns", *sys.argv[1:]]
        os.execvp("unshare", ["unshare", "-n", "--", *argv])
    if args.in_netns:
        subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    env = dict(bench_live.CHILD_ENV)
    runs: dict[str, tuple[list[str], dict[str, str]]] = {"ss -tan": (["ss", "-tan"], env)}
    for name, words in COMMANDS:
        for side, path in (("before", args.before), ("after", args.after)):
            runs[f"{side} {name}"] = (
                [sys.executable, "-c", ENTRY, *words],
                {**env, "PYTHONPATH": os.path.abspath(path)},
            )
    wall: dict[str, list[float]] = {name: [] for name in runs}
    cpu: dict[str, list[float]] = {name: [] for name in runs}
    n = min(args.sockets, bench_live.MAX_SOCKETS)
    with bench_live.sockets(n) as population:
        for batch in range(args.batches):
            if batch:
                population.make_time_wait()
            first = bench_live.count_sockets()
            for _ in range(args.rounds):
                for name, (argv, child_env) in runs.items():
                    before = resource.getrusage(resource.RUSAGE_CHILDREN)
                    start = time.perf_counter()
                    done = subprocess.run(argv, stdout=subprocess.DEVNULL, env=child_env)
                    wall[name].append(time.perf_counter() - start)
                    after = resource.getrusage(resource.RUSAGE_CHILDREN)
                    used = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
                    cpu[name].append(used)
                    if done.returncode != 0:
                        raise SystemExit(f"{name}: exit {done.returncode}")
            print(f"batch {batch + 1}: {first} -> {bench_live.count_sockets()} sockets")
    print(
        "\n| command | wall min | wall median | CPU min | CPU median |\n|---|---:|---:|---:|---:|"
    )
    for name in runs:
        w, c = wall[name], cpu[name]
        print(
            f"| `{name}` | {min(w) * 1000:.0f} ms | {statistics.median(w) * 1000:.0f} ms "
            f"| {min(c) * 1000:.0f} ms | {statistics.median(c) * 1000:.0f} ms |"
        )


if __name__ == "__main__":
    main()
