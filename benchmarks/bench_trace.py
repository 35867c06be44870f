"""``tcplens trace`` under load: exact mode (tracepoints) against sampled mode at 0.1 s.

A load process opens and closes short loopback connections (the client
closes first) as fast as it can up to ``--rate`` per second for
``--seconds`` (bounded: at most 60 s), spread over listeners on
127.0.0.1-127.0.0.8 that share one port, so ``--port`` selects exactly the
load.  Each mode is measured in its own run, with the tracer as a child
process writing JSON lines to /dev/null: its user+system CPU seconds (from
``wait4``), the connections the load achieved, and in exact mode the events
read and the events the kernel reports lost (the summary line).

    python3 benchmarks/bench_trace.py                  # 20,000/s for 10 s
    python3 benchmarks/bench_trace.py --rate 5000 --seconds 5

Root only (tracefs).  Never run from pytest.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

ADDRESSES = [f"127.0.0.{i}" for i in range(1, 9)]

_LOAD = r"""
import socket, sys, time
addrs, port, rate, seconds = sys.argv[1].split(","), int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
listeners = []
for a in addrs:
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((a, port)); s.listen(4096); listeners.append(s)
print("ready", flush=True)
sys.stdin.readline()
start = time.monotonic(); done = 0; i = 0
while True:
    now = time.monotonic()
    if now - start >= seconds:
        break
    if done >= rate * (now - start) + 100:
        time.sleep(0.001); continue
    ls = listeners[i % len(listeners)]; i += 1
    try:
        c = socket.create_connection(ls.getsockname())
    except OSError:
        continue
    a, _ = ls.accept()
    c.close(); a.recv(1); a.close(); done += 1
print(done, time.monotonic() - start, flush=True)
"""


def run(mode: str, port: int, rate: float, seconds: float) -> dict[str, float | int | None]:
    load = subprocess.Popen(
        [sys.executable, "-c", _LOAD, ",".join(ADDRESSES), str(port), str(rate), str(seconds)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert load.stdout is not None and load.stdin is not None
    assert load.stdout.readline().strip() == "ready"
    out = tempfile.TemporaryFile("w+")
    args = ["trace", "--port", str(port), "--json", "--mode", mode]
    if mode == "sampled":
        args += ["--interval", "0.1", "-P"]
    else:
        args += ["--interval", "0.1"]
    tracer = subprocess.Popen(
        [sys.executable, "-m", "tcplens", *args, "--duration", str(seconds + 3)],
        stdout=out, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    time.sleep(2.0)  # past start-up
    load.stdin.write("go\n")
    load.stdin.flush()
    made, took = load.stdout.readline().split()
    load.wait(timeout=30)
    _, status, usage = os.wait4(tracer.pid, 0)
    tracer.returncode = os.waitstatus_to_exitcode(status)
    out.seek(0)
    summary: dict[str, object] = {}
    changes = 0
    for line in out:
        if '"type":"summary"' in line:
            summary = json.loads(line)
        elif '"type":"change"' in line:
            changes += 1
    return {
        "connections": int(made),
        "conn_per_s": int(made) / float(took),
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "cpu_per_wall_s": (usage.ru_utime + usage.ru_stime) / (seconds + 3),
        "changes": changes,
        "events": summary.get("events"),  # type: ignore[dict-item]
        "lost": summary.get("lost"),  # type: ignore[dict-item]
        "rc": tracer.returncode,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=20_000)
    parser.add_argument("--seconds", type=float, default=10)
    args = parser.parse_args()
    seconds = min(args.seconds, 60.0)
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    print(f"load: up to {args.rate:g} connections/s for {seconds:g} s, port {port}")
    for mode in ("exact", "sampled"):
        result = run(mode, port, args.rate, seconds)
        print(mode, json.dumps(result))
        time.sleep(2)


if __name__ == "__main__":
    main()
