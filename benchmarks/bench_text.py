"""Parse speed of saved netstat/ss//proc text, side by side with jc (if installed).

Builds one dump per format with ``--rows`` sockets (mixed states, IPv4 and
IPv6, process columns), parses each with ``tcplens.parse_text`` (format
detection included) and, when the ``jc`` package is importable, with jc's
parser for the same format; prints rows per second of CPU time, best of
``--repeat`` runs, and checks both found every row.

    python3 benchmarks/bench_text.py --rows 100000 [--repeat 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import importlib
import json
import time
from collections.abc import Callable
from typing import Any

from tcplens import parse_text
from tcplens.model import State
from tcplens.sources.records import Addr, Snapshot, Socket
from tcplens.views.sockets import render_netstat

STATES = [State.ESTABLISHED] * 6 + [State.TIME_WAIT] * 3 + [State.CLOSE_WAIT, State.LISTEN]
SS_NAMES = {
    State.ESTABLISHED: "ESTAB",
    State.TIME_WAIT: "TIME-WAIT",
    State.CLOSE_WAIT: "CLOSE-WAIT",
    State.LISTEN: "LISTEN",
}
WIN_NAMES = {State.LISTEN: "LISTENING"}


def sockets(rows: int) -> list[Socket]:
    out = []
    for i in range(rows):
        state = STATES[i % len(STATES)]
        v6 = i % 5 == 0
        local_ip = (
            f"2001:db8::{i % 65536:x}"
            if v6
            else f"10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}"
        )
        remote_ip = "2001:db8:1::1" if v6 else "192.0.2.1"
        remote_port = None if state is State.LISTEN else 443
        out.append(
            Socket(
                "tcp",
                6 if v6 else 4,
                Addr(local_ip, 1024 + i % 60000),
                Addr("::" if v6 and remote_port is None else remote_ip, remote_port),
                state,
                recv_q=0,
                send_q=i % 7,
                pid=1000 + i % 97,
                process="nginx",
            )
        )
    return out


def ss_text(socks: list[Socket]) -> str:
    lines = ["Netid State      Recv-Q Send-Q Local Address:Port Peer Address:Port Process"]
    for s in socks:
        local = (
            f"[{s.local.ip}]:{s.local.port}" if s.family == 6 else f"{s.local.ip}:{s.local.port}"
        )
        port = "*" if s.remote.port is None else s.remote.port
        remote = f"[{s.remote.ip}]:{port}" if s.family == 6 else f"{s.remote.ip}:{port}"
        lines.append(
            f"tcp   {SS_NAMES[s.state]:<10} {s.recv_q:<6} {s.send_q:<6} {local} {remote} "
            f'users:(("{s.process}",pid={s.pid},fd=9))'
        )
    return "\n".join(lines) + "\n"


def windows_text(socks: list[Socket]) -> str:
    lines = [
        "",
        "Active Connections",
        "",
        "  Proto  Local Address          Foreign Address        State           PID",
    ]
    for s in socks:
        local = (
            f"[{s.local.ip}]:{s.local.port}" if s.family == 6 else f"{s.local.ip}:{s.local.port}"
        )
        port = s.remote.port or 0
        remote = f"[{s.remote.ip}]:{port}" if s.family == 6 else f"{s.remote.ip}:{port}"
        state = WIN_NAMES.get(s.state, s.state.value)
        lines.append(f"  TCP    {local:<22} {remote:<22} {state:<15} {s.pid}")
    return "\r\n".join(lines) + "\r\n"


def bsd_text(socks: list[Socket]) -> str:
    lines = [
        "Active Internet connections (including servers)",
        "Proto Recv-Q Send-Q  Local Address          Foreign Address        (state)",
    ]
    names = {State.TIME_WAIT: "TIME_WAIT", State.CLOSE_WAIT: "CLOSE_WAIT"}
    for s in socks:
        remote = f"{s.remote.ip}.{s.remote.port}" if s.remote.port else "*.*"
        state = names.get(s.state, s.state.value)
        lines.append(
            f"tcp{s.family}   {s.recv_q:>6} {s.send_q:>6}  {s.local.ip}.{s.local.port:<8} "
            f"{remote:<22} {state}"
        )
    return "\n".join(lines) + "\n"


def proc_text(socks: list[Socket]) -> str:
    lines = [
        "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  "
        "timeout inode"
    ]
    for n, s in enumerate(socks):
        if s.family == 6:
            continue
        local = bytes(int(p) for p in s.local.ip.split("."))[::-1].hex().upper()
        remote = bytes(int(p) for p in s.remote.ip.split("."))[::-1].hex().upper()
        code = s.state.kernel_code or 7
        lines.append(
            f"{n:4d}: {local}:{s.local.port:04X} {remote}:{s.remote.port or 0:04X} {code:02X} "
            f"{s.send_q:08X}:{s.recv_q or 0:08X} 00:00000000 00000000  1000        0 {n + 1000} "
            "1 0000000000000000 100 0 0 10 0"
        )
    return "\n".join(lines) + "\n"


def best_cpu(fn: Callable[[], int], repeat: int) -> tuple[float, int]:
    best, count = float("inf"), 0
    for _ in range(repeat):
        start = time.process_time()
        count = fn()
        best = min(best, time.process_time() - start)
    return best, count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", dest="json_out")
    args = parser.parse_args()
    socks = sockets(args.rows)
    dumps = {
        "linux-netstat": (render_netstat(Snapshot(socks, source="bench")), "netstat"),
        "ss": (ss_text(socks), "ss"),
        "windows-netstat": (windows_text(socks), "netstat"),
        "bsd-netstat": (bsd_text(socks), "netstat"),
        "proc": (proc_text(socks), "proc_net_tcp"),
    }
    try:
        jc: Any = importlib.import_module("jc")
    except ImportError:
        jc = None
    results = []
    head = ("format", "rows", "tcplens CPU s", "rows/s", "jc CPU s", "rows/s")
    print(f"{head[0]:<16} {head[1]:>8} {head[2]:>14} {head[3]:>9} {head[4]:>9} {head[5]:>9}")
    for name, (text, jc_parser) in dumps.items():
        expected = sum(s.family == 4 for s in socks) if name == "proc" else len(socks)
        seconds, found = best_cpu(lambda t=text: len(parse_text(t).sockets), args.repeat)
        assert found == expected, (name, found, expected)
        row: dict[str, Any] = {"format": name, "rows": found, "tcplens_s": round(seconds, 3)}
        line = f"{name:<16} {found:>8} {seconds:>14.2f} {found / seconds:>9.0f}"
        if jc is not None:
            try:
                jc_seconds, jc_found = best_cpu(
                    lambda t=text, p=jc_parser: len(jc.parse(p, t, quiet=True)), args.repeat
                )
            except Exception as exc:  # a comparison, not ours to fix: report and go on
                line += f"  (jc {jc_parser} failed: {type(exc).__name__}: {exc})"
            else:
                row.update(jc_s=round(jc_seconds, 3), jc_rows=jc_found)
                line += f" {jc_seconds:>9.2f} {jc_found / jc_seconds:>9.0f}"
                if jc_found != found:
                    line += f"  (jc found {jc_found})"
        print(line)
        results.append(row)
    if args.json_out:
        with open(args.json_out, "w") as fh:
            json.dump({"rows": args.rows, "results": results}, fh, indent=2)


if __name__ == "__main__":
    main()
