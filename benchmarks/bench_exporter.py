"""Exporter under load: ~100k sockets, 20 scrapes per second for 30 seconds.

Runs in a private network namespace (``unshare -n``, needs root) so that the
100k sockets neither disturb nor are disturbed by anything else on the
machine; process attribution still scans every process in /proc, as it would
on a real host.  The socket population is held by worker processes because
one process may not hold more than ``ulimit -n`` descriptors:

* ``est-N`` workers: a listener each, ESTABLISHED pairs, and server-side
  CLOSE_WAIT sockets (whose clients linger in FIN_WAIT2);
* one ``tw`` worker: connections closed client-first, left in TIME_WAIT
  (no descriptor needed; they last 60 s, longer than the run).

Then ``tcplens exporter`` is started in the namespace and scraped at a fixed
rate from a thread pool while its RSS is sampled every second.  Reported:
scrapes, errors (non-200 or ``tcplens_snapshot_success`` not 1), latency
percentiles, snapshots taken and how long one takes at this size, and RSS over
time.  Every loop is bounded; workers and the exporter are stopped in
``finally``.

    sudo python3 benchmarks/bench_exporter.py [--sockets 100000] [--rate 20] [--duration 30]

``--auth-flood N`` measures something else instead: good-scrape latency while N
clients send bad basic-auth passwords back to back (issue 20's goal: p95 under
50 ms with 128 clients)::

    sudo python3 benchmarks/bench_exporter.py --auth-flood 128 --rate 20 --duration 20
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import ctypes
import json
import os
import re
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
#: destination addresses connections are spread over, so no 4-tuple space runs out
ADDRESSES = [f"127.0.0.{i}" for i in range(1, 9)]
FDS_PER_WORKER = 16000  # under the usual 20000 hard limit


def set_name(name: str) -> None:
    """Give the worker its own comm name so the per-process metric has distinct names."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(15, name.encode()[:15], 0, 0, 0)  # PR_SET_NAME


def raise_fd_limit() -> None:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def worker_established(name: str, pairs: int, close_wait: int) -> None:
    set_name(name)
    raise_fd_limit()
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("0.0.0.0", 0))
    listener.listen(1024)
    port = listener.getsockname()[1]
    keep: list[socket.socket] = [listener]
    for i in range(pairs):
        client = socket.create_connection((ADDRESSES[i % len(ADDRESSES)], port))
        server, _ = listener.accept()
        keep += [client, server]
    for i in range(close_wait):
        client = socket.create_connection((ADDRESSES[i % len(ADDRESSES)], port))
        server, _ = listener.accept()
        client.close()  # FIN from the client; the server side waits in CLOSE_WAIT
        keep.append(server)
    print(f"ready {port}", flush=True)
    sys.stdin.read()  # hold everything until the parent closes our stdin
    for sock in keep:
        sock.close()


def worker_time_wait(name: str, count: int) -> None:
    set_name(name)
    listener = socket.socket()
    listener.bind(("0.0.0.0", 0))
    listener.listen(1024)
    port = listener.getsockname()[1]
    for i in range(count):
        client = socket.create_connection((ADDRESSES[i % len(ADDRESSES)], port))
        server, _ = listener.accept()
        client.close()  # the active closer ends in TIME_WAIT
        server.close()
    print(f"ready {port}", flush=True)
    sys.stdin.read()
    listener.close()


def count_sockets() -> dict[str, int]:
    from tcplens.sources.select import take_snapshot

    counts: dict[str, int] = {}
    for sock in take_snapshot("netlink", processes=False).sockets:
        if sock.proto == "tcp":
            counts[sock.state.value] = counts.get(sock.state.value, 0) + 1
    return counts


def start_worker(args: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, __file__, "--worker", *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(ROOT / "src")),
    )


def rss(pid: int) -> int:
    with open(f"/proc/{pid}/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def scrape(url: str) -> tuple[bool, float, str]:
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            body = response.read().decode()
            ok = response.status == 200 and "\ntcplens_snapshot_success 1.0\n" in body
            return ok, time.perf_counter() - started, body
    except OSError as exc:
        return False, time.perf_counter() - started, str(exc)


def metric(body: str, name: str) -> float | None:
    match = re.search(rf"^{name} (\S+)$", body, re.MULTILINE)
    return float(match.group(1)) if match else None


def _slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope (units per second) of (time, value) points."""
    if len(points) < 2:
        return 0.0
    mean_t = statistics.fmean(t for t, _ in points)
    mean_v = statistics.fmean(v for _, v in points)
    den = sum((t - mean_t) ** 2 for t, _ in points)
    return sum((t - mean_t) * (v - mean_v) for t, v in points) / den if den else 0.0


def time_stages() -> dict[str, float]:
    """Where a snapshot's time goes at this size, measured in this process."""
    from tcplens.analysis.summary import Fold, summarize
    from tcplens.sources.select import take_snapshot

    out: dict[str, float] = {}
    started = time.perf_counter()
    take_snapshot("netlink", processes=False)
    out["netlink_dump_seconds"] = round(time.perf_counter() - started, 3)
    started = time.perf_counter()
    snap = take_snapshot("netlink", processes=True)
    out["netlink_with_processes_seconds"] = round(time.perf_counter() - started, 3)
    started = time.perf_counter()
    summarize(snap, busy_states=0, fold=Fold())  # what the exporter asks for
    out["summarize_seconds"] = round(time.perf_counter() - started, 3)
    return out


def run(opts: argparse.Namespace) -> dict[str, Any]:
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    # loopback TIME_WAIT reuse (the default 2) would recycle TIME_WAIT ports instead of
    # letting them pile up; this namespace is ours, so turn it off here only
    Path("/proc/sys/net/ipv4/tcp_tw_reuse").write_text("0\n")
    total = opts.sockets
    time_wait = total * 3 // 10
    # per est worker: 2 sockets per pair plus 2 per CLOSE_WAIT (the client lingers in FIN_WAIT2)
    rest = total - time_wait
    fds = min(FDS_PER_WORKER, resource.getrlimit(resource.RLIMIT_NOFILE)[1] - 200)
    per_worker_sockets = fds * 9 // 10  # one descriptor per socket, nearly
    workers_needed = max(1, -(-rest // per_worker_sockets))
    per_worker = rest // workers_needed
    close_wait = per_worker // 20
    pairs = (per_worker - 2 * close_wait) // 2
    workers: list[subprocess.Popen[str]] = []
    exporter: subprocess.Popen[str] | None = None
    result: dict[str, Any] = {}
    try:
        built = time.monotonic()
        for n in range(workers_needed):
            workers.append(start_worker(["est", f"bench-est-{n}", str(pairs), str(close_wait)]))
        workers.append(start_worker(["tw", "bench-tw", str(time_wait)]))
        for proc in workers:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            if not line.startswith("ready"):
                raise SystemExit(f"worker failed: {line!r}")
        result["population_seconds"] = round(time.monotonic() - built, 1)
        result["sockets"] = counts = count_sockets()
        result["sockets_total"] = sum(counts.values())
        print(f"population: {result['sockets_total']} TCP sockets {counts}", file=sys.stderr)
        result["stages"] = time_stages()

        exporter = subprocess.Popen(
            [sys.executable, "-m", "tcplens", "exporter", "--listen", "127.0.0.1:0",
             "--min-interval", str(opts.min_interval), "--top-ports", "10",
             "--top-processes", "10"],
            stderr=subprocess.PIPE, text=True,
            env=dict(os.environ, PYTHONPATH=str(ROOT / "src")),
        )  # fmt: skip
        assert exporter.stderr is not None
        line = exporter.stderr.readline()
        match = re.search(r"serving (http://\S+)", line)
        if not match:
            raise SystemExit(f"exporter did not start: {line!r}")
        url = match.group(1)
        stream = exporter.stderr
        threading.Thread(target=stream.read, daemon=True).start()  # keep its stderr drained

        _, cold, body = scrape(url)  # first scrape takes the first snapshot
        result["first_scrape_seconds"] = round(cold, 3)
        result["snapshot_seconds"] = metric(body, "tcplens_snapshot_duration_seconds")
        result["exported_sockets"] = sum(
            float(v) for v in re.findall(r'^tcplens_sockets\{[^}]*proto="tcp"[^}]*\} (\S+)$',
                                         body, re.MULTILINE)
        )  # fmt: skip
        result["exposition_bytes"] = len(body)
        result["series"] = sum(1 for x in body.splitlines() if x and not x.startswith("#"))

        n = int(opts.rate * opts.duration)
        latencies: list[float] = []
        errors: list[str] = []
        samples: list[tuple[float, int]] = []
        lock = threading.Lock()

        def one() -> None:
            good, took, text = scrape(url)
            with lock:
                latencies.append(took)
                if not good:
                    errors.append(text[:200])

        start = time.monotonic()
        next_sample = start
        with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
            futures = []
            for i in range(n):
                due = start + i / opts.rate
                while True:
                    now = time.monotonic()
                    if now >= next_sample:
                        samples.append((round(now - start, 1), rss(exporter.pid)))
                        next_sample += 1.0
                    if now >= due:
                        break
                    time.sleep(min(due - now, 0.01))
                futures.append(pool.submit(one))
            concurrent.futures.wait(futures, timeout=60)
        elapsed = time.monotonic() - start
        samples.append((round(time.monotonic() - start, 1), rss(exporter.pid)))
        _, _, last = scrape(url)
        latencies.sort()
        mib = [s[1] / 2**20 for s in samples]
        steady = mib[len(mib) // 6 :] or mib  # after the first sixth (warm-up)
        result.update(
            scrapes=len(latencies),
            scrapes_per_second=round(len(latencies) / elapsed, 1),
            errors=len(errors),
            error_examples=errors[:3],
            latency_ms={
                "p50": round(1000 * latencies[len(latencies) // 2], 1),
                "p95": round(1000 * latencies[int(len(latencies) * 0.95)], 1),
                "max": round(1000 * latencies[-1], 1),
            },
            snapshots_taken=metric(last, "tcplens_snapshots_total"),
            snapshot_errors=metric(last, "tcplens_snapshot_errors_total"),
            last_snapshot_seconds=metric(last, "tcplens_snapshot_duration_seconds"),
            rss_mib={
                "first": round(mib[0], 1),
                "steady_min": round(min(steady), 1),
                "steady_max": round(max(steady), 1),
                "last": round(mib[-1], 1),
                "steady_mean": round(statistics.fmean(steady), 1),
            },
            rss_series_mib=[(t, round(b / 2**20, 1)) for t, b in samples],
        )
        # The snapshot is a sawtooth (100k records built, reduced, freed); "flat" means the
        # peaks do not climb: the second half's peak within 10% of the first half's.
        half = len(steady) // 2
        first_peak, second_peak = max(steady[:half] or steady), max(steady[half:])
        slope = _slope([(t, b / 2**20) for t, b in samples][len(samples) // 6 :])
        result["rss_mib"].update(first_half_peak=round(first_peak, 1),
                                 second_half_peak=round(second_peak, 1),
                                 trend_mib_per_minute=round(slope * 60, 2))  # fmt: skip
        result["flat_memory"] = second_peak <= first_peak * 1.10
        return result
    finally:
        if exporter is not None and exporter.poll() is None:
            exporter.terminate()
            try:
                exporter.wait(10)
            except subprocess.TimeoutExpired:
                exporter.kill()
        for proc in workers:
            with contextlib.suppress(OSError):
                if proc.stdin is not None:
                    proc.stdin.close()
        for proc in workers:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def _flood_client(port: int, n: int, deadline: float, answered: list[int]) -> None:
    """One bad-auth client: a new wrong password per request, back to back until ``deadline``."""
    import base64

    i = 0
    while time.monotonic() < deadline:
        i += 1
        token = base64.b64encode(f"prometheus:wrong-{n}-{i}".encode()).decode()
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                sock.sendall(
                    f"GET /metrics HTTP/1.0\r\nAuthorization: Basic {token}\r\n\r\n".encode()
                )
                reply = b""
                while time.monotonic() < deadline:
                    try:
                        chunk = sock.recv(4096)
                    except TimeoutError:
                        continue
                    if not chunk:
                        break
                    reply += chunk
                if reply.startswith(b"HTTP/1.0 401"):
                    answered.append(1)
        except OSError:
            time.sleep(0.05)


def _latency_ms(latencies: list[float]) -> dict[str, float]:
    ordered = sorted(latencies)
    return {
        "p50": round(1000 * ordered[len(ordered) // 2], 1),
        "p95": round(1000 * ordered[int(len(ordered) * 0.95)], 1),
        "max": round(1000 * ordered[-1], 1),
    }


def run_auth_flood(opts: argparse.Namespace) -> dict[str, Any]:
    """Good-scrape latency with and without N concurrent clients sending bad passwords.

    One bcrypt user of cost 10 (the common choice); the good client is
    verified once before the flood, as Prometheus' first scrape would be, then
    scrapes at ``--rate`` for ``--duration`` seconds: first alone, then with
    the flood running.
    """
    import base64
    import tempfile

    import bcrypt

    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    hashed = bcrypt.hashpw(b"hunter2", bcrypt.gensalt(rounds=10)).decode()
    result: dict[str, Any] = {"clients": opts.auth_flood, "bcrypt_cost": 10}
    exporter: subprocess.Popen[str] | None = None
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "web.yml"
        config.write_text(f"basic_auth_users:\n  prometheus: '{hashed}'\n")
        try:
            exporter = subprocess.Popen(
                [sys.executable, "-m", "tcplens", "exporter", "--listen", "127.0.0.1:0",
                 "--web-config", str(config)],
                stderr=subprocess.PIPE, text=True,
                env=dict(os.environ, PYTHONPATH=str(ROOT / "src")),
            )  # fmt: skip
            assert exporter.stderr is not None
            match = re.search(r"serving (http://\S+)", exporter.stderr.readline())
            if not match:
                raise SystemExit("exporter did not start")
            url = match.group(1)
            port = int(url.rsplit(":", 1)[1].split("/")[0])
            threading.Thread(target=exporter.stderr.read, daemon=True).start()
            good = "Basic " + base64.b64encode(b"prometheus:hunter2").decode()

            def scrape_good() -> float:
                request = urllib.request.Request(url, headers={"Authorization": good})
                started = time.perf_counter()
                with urllib.request.urlopen(request, timeout=30) as response:
                    response.read()
                    if response.status != 200:
                        raise SystemExit(f"good scrape answered {response.status}")
                return time.perf_counter() - started

            scrape_good()  # verified once, then remembered

            def measure(seconds: float) -> list[float]:
                out: list[float] = []
                end = time.monotonic() + seconds
                while time.monotonic() < end:
                    out.append(scrape_good())
                    time.sleep(1 / opts.rate)
                return out

            result["idle_latency_ms"] = _latency_ms(measure(min(5.0, opts.duration)))
            answered: list[int] = []
            deadline = time.monotonic() + opts.duration + 1.0
            clients = [
                threading.Thread(target=_flood_client, args=(port, n, deadline, answered),
                                 daemon=True)
                for n in range(opts.auth_flood)
            ]  # fmt: skip
            for thread in clients:
                thread.start()
            time.sleep(1.0)  # the flood's queue fills
            flooded = measure(opts.duration)
            for thread in clients:
                thread.join(5)
            result["flood_latency_ms"] = _latency_ms(flooded)
            result["good_scrapes_during_flood"] = len(flooded)
            result["bad_requests_answered_401"] = len(answered)
        finally:
            if exporter is not None and exporter.poll() is None:
                exporter.terminate()
                try:
                    exporter.wait(10)
                except subprocess.TimeoutExpired:
                    exporter.kill()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sockets", type=int, default=100_000)
    parser.add_argument("--rate", type=float, default=20.0, help="scrapes per second")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of scraping")
    parser.add_argument("--min-interval", type=float, default=5.0)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument(
        "--auth-flood",
        type=int,
        metavar="N",
        help="instead: good-scrape latency while N clients send bad basic-auth passwords",
    )
    parser.add_argument("--in-netns", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    opts = parser.parse_args()
    if opts.worker:
        kind, *rest = opts.worker
        if kind == "est":
            worker_established(rest[0], int(rest[1]), int(rest[2]))
        else:
            worker_time_wait(rest[0], int(rest[1]))
        return
    if opts.sockets > 200_000 or opts.duration > 120 or opts.rate > 200:
        raise SystemExit("refusing: at most 200k sockets, 120 s and 200 scrapes/s")
    if not opts.in_netns:
        if os.geteuid() != 0 or shutil.which("unshare") is None:
            raise SystemExit("needs root and unshare(1) for a private network namespace")
        os.execvp("unshare", ["unshare", "-n", sys.executable, __file__, "--in-netns",
                              *sys.argv[1:]])  # fmt: skip
    sys.path.insert(0, str(ROOT / "src"))
    if opts.auth_flood is not None:
        if not 1 <= opts.auth_flood <= 512:
            raise SystemExit("refusing: --auth-flood takes 1 to 512 clients")
        flood = run_auth_flood(opts)
        flood["settings"] = {"rate": opts.rate, "duration": opts.duration,
                             "cpus": os.cpu_count(), "python": sys.version.split()[0]}  # fmt: skip
        print(json.dumps(flood, indent=2))
        if opts.json:
            opts.json.write_text(json.dumps(flood, indent=2) + "\n")
        sys.exit(0 if flood["flood_latency_ms"]["p95"] < 50 else 1)
    result = run(opts)
    result["settings"] = {
        "sockets": opts.sockets, "rate": opts.rate, "duration": opts.duration,
        "min_interval": opts.min_interval, "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
    }  # fmt: skip
    series = result.pop("rss_series_mib")
    text = json.dumps(result, indent=2)
    text = text[: text.rindex("}")].rstrip() + f',\n  "rss_series_mib": {json.dumps(series)}\n}}'
    json.loads(text)
    print(text)
    if opts.json:
        opts.json.write_text(text + "\n")
    if result["errors"] or not result["flat_memory"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
