"""Exact mode's per-event CPU, stage by stage, on recorded ring-buffer pages (root).

Records the ``trace_pipe_raw`` pages of ``--connections`` loopback connections
(client closes first) through a private tracefs instance, then runs them
``--rounds`` times through the three stages ``tcplens trace --mode exact``
runs per event, each timed with ``time.process_time``: decoding the pages
into events (the compiled decoder when built), the exact tracer, and the
JSON (or text) lines.  The best round of each stage is printed, in µs per
event.  No load and no I/O in the timed part: this isolates the Python and
engine cost per event from what a saturated machine adds (scheduling, cache
misses, sock_diag, writes); ``bench_trace.py`` measures that whole.

    python3 benchmarks/trace_stages.py                 # 5,000 connections, JSON
    python3 benchmarks/trace_stages.py --text --rounds 9

Compare two versions of tcplens with ``PYTHONPATH=<other tree>/src``.
"""

from __future__ import annotations

import argparse
import gc
import socket
import time

from tcplens.analysis.transitions import ExactTracer
from tcplens.sources import tracepoints as tp
from tcplens.views import exact


def record(connections: int) -> tuple[list[tuple[int, bytes]], tp.TraceSession]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4096)
    port = listener.getsockname()[1]
    pages: list[tuple[int, bytes]] = []
    session = tp.TraceSession(ports=[port])
    with session:
        for i in range(connections):
            client = socket.create_connection(("127.0.0.1", port))
            server, _ = listener.accept()
            client.close()
            server.recv(1)
            server.close()
            if i % 500 == 499:  # read as the tracer does, before the buffer fills
                pages += list(session._pages())
        time.sleep(0.1)
        pages += list(session._pages())
        lost = session.lost().total
    listener.close()
    if lost:
        raise SystemExit(f"{lost} events lost while recording: record fewer connections")
    return pages, session


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--text", action="store_true", help="text lines instead of JSON")
    args = parser.parse_args()
    pages, session = record(min(args.connections, 50_000))
    decoder, engine, layout = session._decoder, session._engine, session._layout
    assert decoder is not None and layout is not None
    line = exact.exact_line if args.text else exact.exact_json
    best = [float("inf")] * 3
    events = lines = 0
    for _ in range(args.rounds):
        gc.collect()
        t0 = time.process_time()
        if engine is not None:
            decoded, _ = tp.decode_events_engine(iter(pages), engine, decoder, wall_offset=1.7e9)
        else:
            decoded, _ = tp.decode_events(iter(pages), layout, decoder, wall_offset=1.7e9)
        t1 = time.process_time()
        found = ExactTracer(name_of=lambda pid: "x").feed(decoded)
        t2 = time.process_time()
        text = "\n".join(line(t) for t in found)
        t3 = time.process_time()
        events, lines = len(decoded), len(found)
        for i, spent in enumerate((t1 - t0, t2 - t1, t3 - t2)):
            best[i] = min(best[i], spent / max(1, events) * 1e6)
        del text
    decode, feed, fmt = best
    print(
        f"{events} events, {lines} lines ({'text' if args.text else 'JSON'}), "
        f"engine {'on' if engine is not None else 'off'}; µs/event, best of {args.rounds}: "
        f"decode {decode:.2f}  tracer {feed:.2f}  lines {fmt:.2f}  total {sum(best):.2f}"
    )


if __name__ == "__main__":
    main()
