"""``tcplens trace`` under load: exact mode (tracepoints) against sampled mode at 0.1 s.

A load process opens and closes short loopback connections (the client
closes first) as fast as it can up to ``--rate`` per second for
``--seconds`` (bounded: at most 60 s), spread over listeners on
127.0.0.1-127.0.0.8 that share one port, so ``--port`` selects exactly the
load.  Each tracer is measured in its own run, as a child process writing to
a file: its user+system CPU seconds (from ``wait4``), the lines it wrote, the
connections the load achieved meanwhile (the load's own rate falls when
tracing slows the kernel), and in exact mode the events read and the events
the kernel reports lost (the summary line).  The tracers:

* ``none``: no tracer, the load's baseline rate;
* ``exact``: ``tcplens trace --mode exact --json`` (tracepoints through tracefs);
* ``sampled``: ``tcplens trace --mode sampled --interval 0.1 --json -P`` (sock_diag polls);
* ``text``: ``tcplens trace --mode exact`` (the text lines);
* ``bpftrace``: benchmarks/tcpstates.bt, bcc's tcpstates as a bpftrace script (when
  bpftrace is installed; without tracefs on /sys/kernel/tracing, where it looks, it runs
  in a mount namespace of its own with tracefs mounted there).

CPU spent in the kernel writing events (ring buffer or BPF) is charged to the
load's processes, not to the tracer.

    python3 benchmarks/bench_trace.py                  # 20,000/s for 10 s
    python3 benchmarks/bench_trace.py --rate 5000 --seconds 5

Root only (tracefs).  Never run from pytest.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

ADDRESSES = [f"127.0.0.{i}" for i in range(1, 9)]

_LOAD = r"""
import socket, sys, time
addrs, port = sys.argv[1].split(","), int(sys.argv[2])
rate, seconds = float(sys.argv[3]), float(sys.argv[4])
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


HERE = os.path.dirname(os.path.abspath(__file__))


def tracer_argv(
    mode: str, port: int, seconds: float, profile: str | None = None, buffer_kb: int | None = None
) -> list[str] | None:
    if mode == "none":
        return None
    if mode == "bpftrace":
        argv = ["bpftrace", os.path.join(HERE, "tcpstates.bt"), str(port)]
        if not os.path.isdir("/sys/kernel/tracing/events"):
            # tracefs where bpftrace looks, mounted in a mount namespace of its own: no
            # other program sees the mount (sh execs bpftrace: the pid stays the tracer's)
            script = 'mount -t tracefs nodev /sys/kernel/tracing && exec "$@"'
            argv = ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh"]
            argv += ["bpftrace", os.path.join(HERE, "tcpstates.bt"), str(port)]
        return argv
    args = ["trace", "--port", str(port), "--mode", "exact" if mode == "text" else mode]
    args += ["--interval", "0.1", "--duration", str(seconds + 3)]
    if buffer_kb is not None and mode != "sampled":
        args += ["--buffer-kb", str(buffer_kb)]
    if mode != "text":
        args.append("--json")
    if mode == "sampled":
        args.append("-P")
    if profile:  # cProfile of the tracer process, written when it exits
        return [sys.executable, "-m", "cProfile", "-o", profile, "-m", "tcplens", *args]
    return [sys.executable, "-m", "tcplens", *args]


def run(
    mode: str,
    port: int,
    rate: float,
    seconds: float,
    workers: int,
    profile: str | None = None,
    buffer_kb: int | None = None,
) -> dict[str, float | int | None]:
    loads = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                _LOAD,
                ",".join(ADDRESSES[i::workers]),
                str(port),
                str(rate / workers),
                str(seconds),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for i in range(workers)
    ]
    for load in loads:
        assert load.stdout is not None and load.stdin is not None
        assert load.stdout.readline().strip() == "ready"
    out = tempfile.TemporaryFile("w+")  # noqa: SIM115 - read back after the child ends
    err = tempfile.TemporaryFile("w+")  # noqa: SIM115
    argv = tracer_argv(mode, port, seconds, f"{profile}.{mode}" if profile else None, buffer_kb)
    tracer = None
    if argv is not None:
        tracer = subprocess.Popen(argv, stdout=out, stderr=err, text=True)
    time.sleep(2.0)  # past start-up
    started = time.monotonic()
    for load in loads:
        assert load.stdin is not None
        load.stdin.write("go\n")
        load.stdin.flush()
    made = took = 0.0
    for load in loads:
        assert load.stdout is not None
        n, t = load.stdout.readline().split()
        made, took = made + int(n), max(took, float(t))
        load.wait(timeout=30)
    cpu = None
    sched = (0.0, 0.0)
    if tracer is not None:
        if mode == "bpftrace":  # runs until told: give it the same span as the others
            time.sleep(max(0.0, seconds + 1 - (time.monotonic() - started)))
            tracer.send_signal(signal.SIGINT)
        asked = time.monotonic()
        while True:  # what it ran, and waited to run, until it ended (wait4 reaps it)
            sched = _schedstat(tracer.pid) or sched
            pid, status, usage = os.wait4(tracer.pid, os.WNOHANG)
            if pid:
                break
            if mode == "bpftrace" and time.monotonic() - asked > 5:
                # seen once under load: a SIGINT that bpftrace did not act on
                tracer.send_signal(signal.SIGINT)
                asked = time.monotonic()
            time.sleep(0.2)
        tracer.returncode = os.waitstatus_to_exitcode(status)
        cpu = usage.ru_utime + usage.ru_stime
    out.seek(0)
    summary: dict[str, object] = {}
    lines = 0
    for line in out:
        if '"type":"summary"' in line:
            summary = json.loads(line)
        elif line.startswith("Time in state, measured by the kernel"):
            found = re.search(r"([\d,]+) events?, .* (\d+) events? lost", line)
            if found:
                summary = {"events": int(found[1].replace(",", "")), "lost": int(found[2])}
        elif line[:1].isdigit() or '"type":"change"' in line:
            lines += 1
    err.seek(0)
    for line in err:  # bpftrace: "Lost 1234 events"
        found = re.match(r"Lost (\d+) events", line.strip())
        if found:
            summary["lost"] = int(str(summary.get("lost") or 0)) + int(found[1])
    return {
        "connections": int(made),
        "conn_per_s": round(made / took),
        "tracer_cpu_s": None if cpu is None else round(cpu, 2),
        "tracer_cores": None if cpu is None else round(cpu / (seconds + 3), 3),
        # /proc/PID/schedstat: seconds on a CPU, and runnable but waiting for one
        "tracer_ran_s": round(sched[0], 2),
        "tracer_waited_s": round(sched[1], 2),
        "lines": lines,
        "events": summary.get("events"),  # type: ignore[dict-item]
        "lost": summary.get("lost"),  # type: ignore[dict-item]
        "rc": None if tracer is None else tracer.returncode,
    }


def _schedstat(pid: int) -> tuple[float, float] | None:
    try:
        with open(f"/proc/{pid}/schedstat") as fh:
            ran, waited = fh.read().split()[:2]
    except (OSError, ValueError):
        return None
    return int(ran) / 1e9, int(waited) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=20_000)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--workers", type=int, default=2, help="load processes")
    parser.add_argument(
        "--modes", default="none,exact,text,sampled,bpftrace", help="comma-separated tracers"
    )
    parser.add_argument(
        "--profile", metavar="PREFIX", help="run tcplens under cProfile, into PREFIX.MODE"
    )
    parser.add_argument("--buffer-kb", type=int, help="exact mode's per-CPU ring buffer")
    args = parser.parse_args()
    seconds = min(args.seconds, 60.0)
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    print(f"load: up to {args.rate:g} connections/s for {seconds:g} s, port {port}")
    for mode in args.modes.split(","):
        if mode == "bpftrace" and not (shutil.which("bpftrace") and shutil.which("unshare")):
            print("bpftrace: not installed (or no unshare to mount tracefs for it)")
            continue
        workers = max(1, min(args.workers, 8))
        result = run(mode, port, args.rate, seconds, workers, args.profile, args.buffer_kb)
        print(mode, json.dumps(result))
        time.sleep(2)


if __name__ == "__main__":
    main()
