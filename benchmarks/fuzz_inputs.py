"""Structure-aware fuzzing of captures, sock_diag answers and the exporter's web config.

The binary and configuration inputs of tcplens, each for a bounded time
(``benchmarks/fuzz_text.py`` does the saved-text formats):

``pcap``, ``pcapng``
    The fixture captures (``tests/fixtures/pcap``, ``tests/fixtures/lab``),
    cut to their first records and split into file header and records (pcap)
    or blocks (pcapng), then changed the way damaged and hostile captures
    are: a file-header field (magic, version, snaplen, link type), a record's
    captured or wire length, a pcapng block's type, length or trailer, an
    interface's link type or timestamp resolution, bytes inside a packet
    (IP and TCP header fields), records repeated, dropped, swapped or spliced
    in from another capture, and the file cut anywhere.  Each input goes
    through :func:`tcplens.packets.engine.reconstruct_capture` on both routes,
    the Rust engine and the Python reference, which must give the same
    connections, counters and error; one in :data:`RENDER_EVERY` also through
    :func:`~tcplens.packets.engine.render_capture` (``pcap --json`` and
    ``--zeek``, written in Rust), whose lines must be the reference's.
``netlink``
    sock_diag answers recorded on this machine with tcplens' own request
    (``tests/fixtures/netlink``, ``--record-netlink`` writes them), with
    message lengths, types, families, state codes, timers, attribute lengths
    and errnos changed, messages repeated, dropped or spliced, and the buffer
    cut.  Each goes through :func:`netlink.parse` (with and without
    attributes), :func:`netlink.parse_ids`, :func:`netlink.parse_acks` and
    the column reader (:mod:`tcplens.sources.columns`), which must count the
    sockets the record parser returns.
``webconfig``
    Exporter web configs (TLS and basic auth, exporter-toolkit names) with
    values replaced by other YAML kinds (lists, mappings, huge or malformed
    numbers and dates, aliases, deep nesting, tags), keys repeated or
    misspelt, bcrypt hashes damaged, stray bytes.  Each is loaded with
    :func:`tcplens.exporter.load_web_config`; a config that loads must
    be one the exporter can serve (well-formed bcrypt hashes of a cost bcrypt
    accepts).

A *finding* is an exception outside the :class:`~tcplens.errors.TcplensError`
family (a traceback in the CLI), an error that names no file, or no byte
offset, record or line where the input says where it is, an error or warning
line over 400 characters, the engine and the reference disagreeing, or a hang
(each input is checked in a child process the parent kills when it shows no
progress while using ``--hang`` seconds of CPU).  Every input is drawn from
its own seeded generator, so any one of them can be made again from its
number.  The first input of each kind of finding is written with ``--save``
to ``tests/fixtures/fuzz/<target>/`` (replayed by the test suite).

    python3 benchmarks/fuzz_inputs.py [--seconds 30] [--targets pcap,netlink] \\
        [--seed 1] [--hang 10] [--inputs N] [--start K] [--save] [--markdown]
    python3 benchmarks/fuzz_inputs.py --record-netlink   # as root, refreshes the seeds

Bounded: ``--seconds`` per target (at most 3600), or ``--inputs`` per target;
``--start K`` begins at input K (to resume a run where another stopped).
Exit status 1 on findings.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import multiprocessing
import os
import platform
import queue
import random
import re
import struct
import subprocess
import sys
import tempfile
import time
import traceback
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from fuzz_text import WALL_HANG, child_cpu  # noqa: E402  (this directory: one watchdog)
from fuzz_text import Tally as TextTally  # noqa: E402  (and one tally)

from tcplens.errors import InputError, SourceError, TcplensError  # noqa: E402

CORPUS = ROOT / "tests" / "fixtures" / "fuzz"
NETLINK_SEEDS = ROOT / "tests" / "fixtures" / "netlink"
CAPTURE_SEEDS = (ROOT / "tests" / "fixtures" / "pcap", ROOT / "tests" / "fixtures" / "lab")
#: one capture input in this many is also rendered as `pcap --json` and `--zeek` by the engine
RENDER_EVERY = 8
#: records (pcap) or blocks (pcapng) kept of each seed capture: small inputs, many of them
SEED_RECORDS = 12
#: longest error or warning line that still reads as one line (as fuzz_text.py)
MAX_MESSAGE = 400
U32 = [0, 1, 3, 4, 7, 8, 11, 12, 15, 16, 20, 23, 24, 28, 32, 0x7FFF, 0xFFFF, 65536, 262_144]
U32 += [262_145, 1 << 20, 262_144 * 4 + 1, 1 << 28, (1 << 28) + 1, 2**31 - 1, 2**31, 2**32 - 1]


# ----------------------------------------------------------------------------- captures
def split_pcap(data: bytes) -> tuple[str, bytes, list[bytes]]:
    """(byte order, file header, records) of a well-formed pcap."""
    order = "<" if data[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    records, pos = [], 24
    while pos + 16 <= len(data):
        caplen = struct.unpack_from(order + "I", data, pos + 8)[0]
        records.append(data[pos : pos + 16 + caplen])
        pos += 16 + caplen
    return order, data[:24], records


def split_pcapng(data: bytes) -> tuple[str, list[bytes]]:
    """(byte order of the first section, blocks) of a well-formed pcapng."""
    order = "<" if data[8:12] == b"\x4d\x3c\x2b\x1a" else ">"
    blocks, pos = [], 0
    while pos + 12 <= len(data):
        if data[pos : pos + 4] == b"\x0a\x0d\x0d\x0a":
            order = "<" if data[pos + 8 : pos + 12] == b"\x4d\x3c\x2b\x1a" else ">"
        total = struct.unpack_from(order + "I", data, pos + 4)[0]
        if total < 12:
            break
        blocks.append(data[pos : pos + total])
        pos += total
    return order, blocks


def capture_seeds(fmt: str) -> list[bytes]:
    """Every fixture capture of one format, cut to its first :data:`SEED_RECORDS` records."""
    out = []
    for folder in CAPTURE_SEEDS:
        for path in sorted(folder.glob("*.pcap*")):
            data = path.read_bytes()
            if path.suffix.lstrip(".") != fmt:
                continue
            if fmt == "pcap":
                _, head, records = split_pcap(data)
                out.append(head + b"".join(records[:SEED_RECORDS]))
            else:
                _, blocks = split_pcapng(data)
                out.append(b"".join(blocks[: SEED_RECORDS + 2]))
    return out


def _set(rng: random.Random, blob: bytearray, at: int, width: int, order: str) -> None:
    """Set the ``width``-byte field at ``at`` to a boundary or random value."""
    if at + width > len(blob):
        return
    code = {1: "B", 2: "H", 4: "I"}[width]
    old = struct.unpack_from(order + code, blob, at)[0]
    top = (1 << (8 * width)) - 1
    value = rng.choice(
        [rng.choice(U32), old + rng.choice([-4, -1, 1, 4]), rng.randrange(top + 1), top]
    )
    struct.pack_into(order + code, blob, at, value & top)


def _pack_into(fmt: str, blob: bytearray, at: int, *values: Any) -> None:
    """``struct.pack_into`` that leaves a blob too short for the field alone."""
    if at >= 0 and at + struct.calcsize(fmt) <= len(blob):
        struct.pack_into(fmt, blob, at, *values)


def _poke_packet(rng: random.Random, blob: bytearray, start: int) -> None:
    """A byte inside a packet: mostly the first 60 (link, IP and TCP headers)."""
    if len(blob) <= start:
        return
    span = min(len(blob) - start, 60 if rng.random() < 0.8 else len(blob) - start)
    at = start + rng.randrange(span)
    blob[at] = rng.choice([0, 0xFF, 0x40, 0x45, 0x60, 0x06, 0x11, 0x2C, rng.randrange(256)])


LINKTYPES = [0, 1, 9, 12, 14, 101, 104, 108, 113, 127, 228, 229, 276, 0xFFFF, 147, 0x10001]
BLOCK_TYPES = [1, 2, 3, 4, 5, 6, 0x0A0D0D0A, 0x00000BAD, 0x40000BAD, 0x80000001, 0]


def mutate_pcap(rng: random.Random, seeds: list[bytes]) -> bytes:
    order, head, records = split_pcap(rng.choice(seeds))
    header = bytearray(head)
    recs = [bytearray(r) for r in records]
    for _ in range(rng.randint(1, 4)):
        kind = rng.randrange(12)
        if kind == 0:  # a file-header field: magic, version, zone, sigfigs, snaplen, link type
            at, width = rng.choice([(0, 4), (4, 2), (6, 2), (8, 4), (12, 4), (16, 4), (20, 4)])
            if at == 0:
                header[0:4] = rng.choice(
                    [
                        b"\xd4\xc3\xb2\xa1",
                        b"\xa1\xb2\xc3\xd4",
                        b"\x4d\x3c\xb2\xa1",
                        b"\xa1\xb2\x3c\x4d",
                    ]
                )
            else:
                _set(rng, header, at, width, order)
        elif kind == 1:  # a link type
            _pack_into(order + "I", header, 20, rng.choice(LINKTYPES))
        elif kind in (2, 3) and recs:  # a record's captured or wire length
            rec = rng.choice(recs)
            _set(rng, rec, 8 if kind == 2 else 12, 4, order)
        elif kind == 4 and recs:  # a timestamp
            _set(rng, rng.choice(recs), rng.choice([0, 4]), 4, order)
        elif kind in (5, 6, 7) and recs:  # bytes inside a packet
            _poke_packet(rng, rng.choice(recs), 16)
        elif kind == 8 and recs:  # a record repeated or dropped
            i = rng.randrange(len(recs))
            if rng.random() < 0.5:
                recs.insert(i, bytearray(recs[i]))
            else:
                del recs[i]
        elif kind == 9 and len(recs) > 1:  # two records swapped
            i, j = rng.sample(range(len(recs)), 2)
            recs[i], recs[j] = recs[j], recs[i]
        elif kind == 10:  # a record spliced in from another capture
            _, _, other = split_pcap(rng.choice(seeds))
            if other:
                recs.insert(rng.randrange(len(recs) + 1), bytearray(rng.choice(other)))
        else:  # a record cut (the rest of the file then misframes)
            if recs:
                i = rng.randrange(len(recs))
                recs[i] = recs[i][: rng.randrange(len(recs[i]) + 1)]
    data = bytes(header) + b"".join(recs)
    if rng.random() < 0.15:  # the file cut anywhere
        data = data[: rng.randrange(len(data) + 1)]
    return data


def mutate_pcapng(rng: random.Random, seeds: list[bytes]) -> bytes:
    order, blocks = split_pcapng(rng.choice(seeds))
    blks = [bytearray(b) for b in blocks]
    for _ in range(rng.randint(1, 4)):
        if not blks:
            break
        i = rng.randrange(len(blks))
        blk = blks[i]
        kind = rng.randrange(13)
        btype = struct.unpack_from(order + "I", blk, 0)[0] if len(blk) >= 4 else -1
        if kind == 0:  # a block type
            _pack_into(order + "I", blk, 0, rng.choice(BLOCK_TYPES))
        elif kind == 1:  # the length at the start, the end, or both
            total = rng.choice([*U32, len(blk) + 4, len(blk) - 4, len(blk) + 1])
            where = rng.choice([(4,), (len(blk) - 4,), (4, len(blk) - 4)])
            for at in where:
                if 0 <= at <= len(blk) - 4:
                    _pack_into(order + "I", blk, at, total & 0xFFFFFFFF)
        elif kind == 2 and btype == 1:  # an interface's link type or snaplen
            if rng.random() < 0.5:
                _pack_into(order + "H", blk, 8, rng.choice(LINKTYPES) & 0xFFFF)
            else:
                _set(rng, blk, 12, 4, order)
        elif kind == 3 and btype == 1:  # an interface option: if_tsresol / if_tsoffset
            body = blk[:-4]
            code = rng.choice([9, 14, 2, 0, 0xFFFF])
            value = bytes([rng.choice([0, 3, 6, 9, 18, 19, 63, 0x80, 0x8A, 0xBF, 0xFF])])
            if code == 14:
                value = struct.pack(order + "q", rng.choice([0, -1, 2**62, -(2**62), 1]))
            opt = struct.pack(order + "HH", code, len(value)) + value
            opt += b"\x00" * (-len(opt) % 4)
            body += opt
            blk[:] = body + blk[-4:]
            _pack_into(order + "I", blk, 4, len(blk))
            _pack_into(order + "I", blk, len(blk) - 4, len(blk))
        elif kind == 4 and btype == 6:  # a packet block's interface, timestamp or lengths
            _set(rng, blk, rng.choice([8, 12, 16, 20, 24]), 4, order)
        elif kind in (5, 6):  # bytes inside a block's body (a packet, mostly)
            _poke_packet(rng, blk, 28 if btype == 6 else 8)
        elif kind == 7:  # a block repeated or dropped
            if rng.random() < 0.5:
                blks.insert(i, bytearray(blk))
            else:
                del blks[i]
        elif kind == 8 and len(blks) > 1:  # two blocks swapped
            j = rng.randrange(len(blks))
            blks[i], blks[j] = blks[j], blks[i]
        elif kind == 9:  # a block spliced in from another capture (maybe another byte order)
            _, other = split_pcapng(rng.choice(seeds))
            if other:
                blks.insert(rng.randrange(len(blks) + 1), bytearray(rng.choice(other)))
        elif kind == 10:  # a section header's byte-order magic
            if btype == 0x0A0D0D0A and len(blk) >= 12:
                blk[8:12] = rng.choice([b"\x4d\x3c\x2b\x1a", b"\x1a\x2b\x3c\x4d", b"\x00" * 4])
        elif kind == 11:  # a block cut
            blks[i] = blk[: rng.randrange(len(blk) + 1)]
        else:  # an option appended to a packet block, or a simple packet block
            if rng.random() < 0.5 and blk:
                blks.insert(i, bytearray(_spb(order, rng)))
            else:
                _set(rng, blk, rng.randrange(max(1, len(blk) - 3)), 4, order)
    data = b"".join(blks)
    if rng.random() < 0.15:
        data = data[: rng.randrange(len(data) + 1)]
    return data


def _spb(order: str, rng: random.Random) -> bytes:
    """A simple packet block holding a short frame (or claiming a longer one)."""
    frame = bytes(rng.randrange(256) for _ in range(rng.choice([0, 1, 14, 40, 54])))
    frame += b"\x00" * (-len(frame) % 4)
    wire = rng.choice([len(frame), len(frame) + 100, 0, 2**32 - 1])
    total = 16 + len(frame)
    return struct.pack(order + "III", 3, total, wire) + frame + struct.pack(order + "I", total)


def _located(exc: TcplensError, name: str) -> str | None:
    """Why an error would not read as one located line, or None."""
    text = str(exc)
    if "\n" in text or len(text) > MAX_MESSAGE:
        return f"error over {MAX_MESSAGE} characters or lines"
    if isinstance(exc, InputError) and exc.path != name:
        return "error that names no file"
    where = (exc.offset, exc.record, exc.line) if isinstance(exc, InputError) else (None,)
    if all(w is None for w in where) and not text.endswith("empty file, not a capture"):
        return "error that says not where in the file"
    return None


def run_route(route: str, data: bytes) -> tuple[Any, ...]:
    """Everything a user sees of one capture on one route (as tests/packets/test_engine_diff)."""
    from tcplens.packets.engine import ROUTE_ENV, reconstruct_capture
    from tcplens.packets.tracker import CaptureSummary, Tracker

    os.environ[ROUTE_ENV] = route
    tracker, summary = Tracker(), CaptureSummary()
    conns, error = [], None
    texts: dict[str, list[str]] = {"json": [], "zeek": []}
    try:
        for conn in reconstruct_capture(io.BytesIO(data), tracker, summary, path="fuzz"):
            conns.append(json.dumps(conn.as_dict(), sort_keys=True))
            texts["json"].append(json.dumps(conn.as_dict()))
            texts["zeek"].append("\t".join(conn.zeek.values()))
    except TcplensError as exc:
        error = exc
    counters = (tracker.count, tracker.peak, tracker.evicted, summary.frames, summary.status)
    if route == "engine" and zlib.crc32(data) % RENDER_EVERY == 0:
        # `pcap --json` and `--zeek` are written in Rust on this route; each run costs the
        # engine's set-up (~1 ms, once per capture for a user), so one input in
        # RENDER_EVERY (chosen by content, so a saved input is checked the same way)
        texts = {rendering: render_route(rendering, data) for rendering in ("json", "zeek")}
    elif route == "engine":
        texts = {}
    return conns, error, counters, summary.decode, texts


def render_route(rendering: str, data: bytes) -> list[str]:
    """The lines ``tcplens pcap --json`` or ``--zeek`` writes (up to an error)."""
    from tcplens.packets.engine import ROW_SEPARATORS, render_capture
    from tcplens.packets.tracker import CaptureSummary, Tracker

    lines: list[str] = []
    sep = ROW_SEPARATORS[rendering]  # type: ignore[index]
    try:
        for block in render_capture(
            io.BytesIO(data),
            Tracker(),
            CaptureSummary(),
            "fuzz",
            rendering,  # type: ignore[arg-type]
        ):
            # blocks of rows: a row's own text never holds the separator (json.dumps
            # and conn.log escape newlines)
            lines.extend(block.split(sep))
    except TcplensError:
        pass  # the same error as reconstruct_capture's, compared there
    return lines


def check_capture(data: bytes) -> str | None:
    """None when both routes end as the contract says and agree, else the kind of finding."""
    try:
        engine = run_route("engine", data)
    except Exception as exc:  # the point: anything else is a finding
        return _where("engine", exc)
    try:
        reference = run_route("python", data)
    except Exception as exc:
        return _where("reference", exc)
    for name, got in (("engine", engine), ("reference", reference)):
        if got[1] is not None:
            bad = _located(got[1], "fuzz")
            if bad:
                return f"{name}: {bad}"
    parts = ("connections", "error", "counters", "decode counters", "--json and --zeek lines")
    for part, a, b in zip(parts, engine, reference, strict=True):
        if part.startswith("--json") and not a:
            continue  # not rendered on the engine route this time
        if part == "error":
            a = None if a is None else (type(a).__name__, str(a))
            b = None if b is None else (type(b).__name__, str(b))
        if a != b:
            return f"engine and reference disagree on the {part}"
    return None


def _where(route: str, exc: BaseException) -> str:
    tb = traceback.extract_tb(exc.__traceback__)
    frame = tb[-1] if tb else None
    at = f" at {Path(frame.filename).name}:{frame.lineno}" if frame else ""
    return f"{route}: {type(exc).__name__}{at}"


# ------------------------------------------------------------------------------ netlink
def record_netlink(folder: Path = NETLINK_SEEDS, keep: int = 24) -> list[Path]:
    """Record sock_diag answers with tcplens' own requests (``main`` runs it in a private netns).

    Listening, established, CLOSE_WAIT, FIN_WAIT2 and TIME_WAIT sockets are made on
    loopback first, so every message kind is in the dump; each file keeps the first
    ``keep`` socket messages of one (family, protocol) dump followed by the kernel's
    NLMSG_DONE, exactly as received.
    """
    import socket

    from tcplens.sources import netlink

    made: list[socket.socket] = []
    for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
        server = socket.socket(family, socket.SOCK_STREAM)
        server.bind((host, 0))
        server.listen()
        for _ in range(3):
            client = socket.create_connection(server.getsockname()[:2])
            peer, _ = server.accept()
            made += [client, peer]
        made[-1].close()  # the accepted side closes: FIN_WAIT2 there, CLOSE_WAIT here
        client = socket.create_connection(server.getsockname()[:2])
        peer, _ = server.accept()
        peer.close()
        time.sleep(0.05)
        client.close()  # and one closed by both, the accepted side first: TIME_WAIT there
        udp = socket.socket(family, socket.SOCK_DGRAM)
        udp.bind((host, 0))
        made += [server, udp]
    time.sleep(0.1)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    buf = bytearray(1 << 20)
    view = memoryview(buf)
    kinds = [(socket.AF_INET, "tcp"), (socket.AF_INET6, "tcp")]
    kinds += [(socket.AF_INET, "udp"), (socket.AF_INET6, "udp")]
    for family, proto in kinds:
        for info in (True, False):
            messages, done = [], b""
            with netlink._open() as nl:
                nl.send(netlink.build_request(family, proto, info=info))  # type: ignore[arg-type]
                for chunk in netlink._receive(nl, buf, view):
                    raw = bytes(chunk)
                    pos = 0
                    while pos + 16 <= len(raw):
                        length, mtype = struct.unpack_from("=IH", raw, pos)
                        msg = raw[pos : pos + ((length + 3) & ~3)]
                        if mtype == netlink.NLMSG_DONE:
                            done = msg
                            break
                        messages.append(msg)
                        pos += (length + 3) & ~3
                    if done:
                        break
            name = f"{proto}{4 if family == socket.AF_INET else 6}{'-info' if info else ''}.bin"
            path = folder / name
            path.write_bytes(b"".join(messages[:keep]) + done)
            written.append(path)
    for sock in made:
        sock.close()
    return written


def netlink_seeds() -> list[bytes]:
    return [p.read_bytes() for p in sorted(NETLINK_SEEDS.glob("*.bin"))]


def split_netlink(data: bytes) -> list[bytearray]:
    out, pos = [], 0
    while pos + 16 <= len(data):
        length = struct.unpack_from("=I", data, pos)[0]
        step = (length + 3) & ~3
        if step < 16:
            break
        out.append(bytearray(data[pos : pos + step]))
        pos += step
    return out


def mutate_netlink(rng: random.Random, seeds: list[bytes]) -> bytes:
    msgs = split_netlink(rng.choice(seeds))
    for _ in range(rng.randint(1, 4)):
        if not msgs:
            break
        i = rng.randrange(len(msgs))
        msg = msgs[i]
        kind = rng.randrange(12)
        if kind == 0:  # nlmsg_len
            value = rng.choice(
                [0, 4, 15, 16, 19, 20, 71, 72, 87, 88, 89, len(msg) - 1, len(msg) + 1]
            )
            _pack_into("=I", msg, 0, rng.choice([value, rng.choice(U32)]) & 0xFFFFFFFF)
        elif kind == 1:  # nlmsg_type
            _pack_into("=H", msg, 4, rng.choice([2, 3, 20, 21, 0, 0xFFFF, 1, 16]))
        elif kind == 2 and len(msg) > 16:  # idiag_family
            msg[16] = rng.choice([2, 10, 0, 1, 17, 255])
        elif kind == 3 and len(msg) > 17:  # idiag_state
            msg[17] = rng.choice([0, 1, 6, 10, 11, 12, 13, 14, 255, rng.randrange(256)])
        elif kind == 4 and len(msg) > 19:  # timer and retransmits
            msg[rng.choice([18, 19])] = rng.choice([0, 1, 2, 3, 4, 5, 255])
        elif kind == 5 and len(msg) >= 72:  # if, expires, queues, uid, inode
            _set(rng, msg, rng.choice([52, 64, 68, 72, 76, 80, 84]), 4, "=")
        elif kind == 6 and len(msg) > 92:  # an attribute's length or type
            _set(rng, msg, rng.choice([88, 90]), 2, "=")
        elif kind == 7 and len(msg) >= 20:  # the errno of an error or done message
            _pack_into("=I", msg, 4, rng.choice([2, 3]))
            _pack_into("=i", msg, 16, rng.choice([0, -1, -2, -95, 1, -(2**31), 2**31 - 1]))
        elif kind == 8:  # a message repeated or dropped
            if rng.random() < 0.5:
                msgs.insert(i, bytearray(msg))
            else:
                del msgs[i]
        elif kind == 9:  # a message spliced in from another dump
            other = split_netlink(rng.choice(seeds))
            if other:
                msgs.insert(rng.randrange(len(msgs) + 1), rng.choice(other))
        elif kind == 10:  # a message cut
            msgs[i] = msg[: rng.randrange(len(msg) + 1)]
        else:  # any byte
            if msg:
                msg[rng.randrange(len(msg))] = rng.randrange(256)
    data = b"".join(msgs)
    if rng.random() < 0.1:
        data = data[: rng.randrange(len(data) + 1)]
    return data


def check_netlink(data: bytes) -> str | None:
    from tcplens.sources import columns, netlink

    records: dict[bool, list[Any] | None] = {}
    for info in (True, False):
        for proto in ("tcp", "udp"):
            out: list[Any] = []
            try:
                netlink.parse(data, proto, out, info=info)
                netlink.parse(memoryview(data), proto, [], info=info)
            except InputError as exc:
                if exc.offset is None:
                    return "parse: error without a byte offset"
                out = None  # type: ignore[assignment]
            except SourceError:  # an error reply: documented, not located
                out = None  # type: ignore[assignment]
            except Exception as exc:
                return _where("parse", exc)
            if proto == "tcp":
                records[info] = out
    try:
        netlink.parse_ids(data, "tcp")
    except Exception as exc:
        return _where("parse_ids", exc)
    try:
        netlink.parse_acks(data)
    except InputError as exc:
        if exc.offset is None:
            return "parse_acks: error without a byte offset"
    except Exception as exc:
        return _where("parse_acks", exc)
    table = columns.SocketColumns()
    try:
        columns._take(table, data, "tcp")
    except (InputError, SourceError):
        table = None  # type: ignore[assignment]
    except Exception as exc:
        return _where("columns", exc)
    plain = records[False]
    if (table is None) != (plain is None):
        return "columns and records disagree on whether the buffer is readable"
    if table is not None and plain is not None:
        states = [netlink._STATES[code] for code in table.state]
        ports = list(table.sport)
        if [s.state for s in plain] != states or [s.local.port for s in plain] != ports:
            return "columns and records disagree on the sockets"
    return None


# ---------------------------------------------------------------------------- webconfig
HASH = "$2b$04$" + "N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy"
WEB_SEEDS = [
    "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n",
    "tls_server_config:\n  cert_file: /etc/tcplens/tls.crt\n  key_file: tls.key\n"
    "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n"
    "  min_version: TLS12\n  max_version: TLS13\n",
    f"basic_auth_users:\n  prometheus: {HASH}\n  alice: '{HASH.replace('04', '10', 1)}'\n",
    f"tls_server_config:\n  cert_file: c.pem\n  key_file: k.pem\nbasic_auth_users:\n"
    f"  scraper: {HASH}\nhttp_server_config:\n  http2: true\n  headers:\n"
    "    Strict-Transport-Security: max-age=31536000\n    X-Frame-Options: deny\n",
    "{}\n",
]
YAML_VALUES = [
    "[]", "{}", "[a, b]", "{a: 1}", "~", "null", "true", "0", "-1", "1" * 4301, "9" * 6000,
    "0x" + "f" * 5000, "1e99999", ".nan", "2001-13-45", "2001-02-30 25:61:61", "2001-01-01",
    "!!binary aGVsbG8=", "!!python/object:os.system ls", "!!set {a, b}", "!!omap [a: 1]",
    "&a [*a]", "*undefined", "'" + "x" * 5000 + "'", "\"\\x00\"", "\"\\ud800\"", "|\n  text",
    "[" * 200 + "]" * 200, "[" * 5000 + "]" * 5000, "{" * 3000 + "}" * 3000, "NoClientCert",
    "VerifyClientCertIfGiven", "TLS10", "TLS13", "$2b$31$" + HASH[7:], "$2b$99$" + HASH[7:],
    "$2b$xx$" + HASH[7:], "$2y$", "$2a$04$short", HASH[:-1] + "!", "<<: {a: 1}", "=",
]  # fmt: skip
YAML_KEYS = [
    "tls_server_config", "basic_auth_users", "http_server_config", "cert_file", "key_file",
    "client_ca_file", "client_auth_type", "min_version", "max_version", "headers", "http2",
    "cipher_suites", "? [a, b]", "? {a: 1}", "<<", "1" * 4301, "2001-13-45", "null", "~",
]  # fmt: skip
#: a billion laughs inside one value: nine levels of nine aliases (9**9 items when expanded)
BOMB_VALUE = (
    "[&a [x, x, x, x, x, x, x, x, x]"
    + "".join(
        f", &{c} [{', '.join(['*' + p] * 9)}]" for p, c in zip("abcdefgh", "bcdefghi", strict=True)
    )
    + "]"
)
BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{c}: &{c} [{', '.join(['*' + p] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi", strict=True)
)


def mutate_webconfig(rng: random.Random, seeds: list[str]) -> bytes:
    lines = rng.choice(seeds).split("\n")
    for _ in range(rng.randint(1, 3)):
        i = rng.randrange(len(lines))
        line = lines[i]
        kind = rng.randrange(9)
        key, sep, value = line.partition(":")
        if kind in (0, 1, 2) and sep:  # a value replaced
            lines[i] = f"{key}: {rng.choice([*YAML_VALUES, BOMB_VALUE])}"
        elif kind == 3 and sep:  # a key replaced
            indent = key[: len(key) - len(key.lstrip())]
            lines[i] = f"{indent}{rng.choice(YAML_KEYS)}:{value}"
        elif kind == 4:  # a line repeated or dropped
            if rng.random() < 0.5:
                lines.insert(i, line)
            else:
                del lines[i]
                lines = lines or [""]
        elif kind == 5:  # indentation changed
            lines[i] = rng.choice(["", " ", "\t", "    "]) + line.lstrip()
        elif kind == 6:  # a line cut
            lines[i] = line[: rng.randrange(len(line) + 1)]
        elif kind == 7:  # a billion laughs behind a value
            if sep:
                lines[i] = f"{key}: *i"
                lines.insert(0, BOMB)
        else:  # stray characters
            at = rng.randrange(len(line) + 1)
            junk = rng.choice(["\x00", "\t", "\ufeff", "%", "@", "`", "\x85", "'", '"', "{"])
            lines[i] = line[:at] + junk + line[at:]
    text = "\n".join(lines).encode("utf-8", "surrogatepass")
    if rng.random() < 0.05:
        text = text.replace(b"a", b"\xff", 1)
    return text


_BCRYPT = re.compile(rb"\$2[aby]\$(0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}")


def webconfig_path(pid: int) -> str:
    """The file a worker writes each web config to (its parent removes it if it is killed)."""
    return os.path.join(tempfile.gettempdir(), f"tcplens-fuzz-webconfig-{pid}.yml")


def check_webconfig(data: bytes) -> str | None:
    from tcplens.exporter import load_web_config

    # the loader reads a file (relative names resolve against its folder); one per
    # process, removed again, so a run leaves nothing behind
    path = webconfig_path(os.getpid())
    with open(path, "wb") as fh:
        fh.write(data)
    try:
        web = load_web_config(path)
    except InputError as exc:
        if exc.path != path:
            return "error that names no file"
        if "\n" in str(exc) or len(str(exc)) > MAX_MESSAGE:
            return f"error over {MAX_MESSAGE} characters or lines"
        return None
    except Exception as exc:
        return _where("load_web_config", exc)
    finally:
        os.unlink(path)
    for hashed in web.basic_auth_users.values():
        if not _BCRYPT.fullmatch(hashed):
            return "a config that loads has a hash bcrypt refuses"
    return None


# -------------------------------------------------------------------------------- runner
@dataclass
class Target:
    name: str
    suffix: str
    seeds: Callable[[], list[Any]]
    mutate: Callable[[random.Random, list[Any]], bytes]
    check: Callable[[bytes], str | None]


TARGETS: dict[str, Target] = {
    "pcap": Target("pcap", "pcap", lambda: capture_seeds("pcap"), mutate_pcap, check_capture),
    "pcapng": Target(
        "pcapng", "pcapng", lambda: capture_seeds("pcapng"), mutate_pcapng, check_capture
    ),
    "netlink": Target("netlink", "bin", netlink_seeds, mutate_netlink, check_netlink),
    "webconfig": Target(
        "webconfig", "yml", lambda: list(WEB_SEEDS), mutate_webconfig, check_webconfig
    ),
}


def make_input(target: Target, seeds: list[Any], seed: str, index: int) -> bytes:
    """Input number ``index`` of a run: its own generator, so it can be made again alone."""
    return target.mutate(random.Random(f"{seed}-{target.name}-{index}"), seeds)


@dataclass
class Finding:
    key: str
    data: bytes
    index: int
    count: int = 1


@dataclass
class Tally(TextTally):
    """fuzz_text's tally (counts, merging) of this script's findings: inputs as bytes."""

    def add(self, key: str, data: bytes, index: int) -> None:
        if key in self.findings:
            self.findings[key].count += 1
        else:
            self.findings[key] = Finding(key, data, index)


_index: Any = None


def worker(name: str, seed: str, start: int, stop: int, deadline: float, out: Any) -> None:
    """Check inputs ``start``, ``start + 1``, ... until ``stop`` or ``deadline``."""
    target = TARGETS[name]
    seeds = target.seeds()
    tally = Tally()
    index = start
    while index < stop and time.monotonic() < deadline:
        _index.value = index
        data = make_input(target, seeds, seed, index)
        key = target.check(data)
        if key is not None:
            tally.add(key, data, index)
        index += 1
    tally.tried = index - start
    out.put(tally)


def fuzz(
    name: str, seconds: float, seed: str, hang: float, inputs: int = 1 << 62, start: int = 0
) -> Tally:
    """Check inputs ``start`` to ``start + inputs`` of one target for at most ``seconds``,
    in a child a watchdog kills if one hangs."""
    global _index
    context = multiprocessing.get_context("fork")
    total = Tally()
    started = time.monotonic()
    deadline = started + seconds
    stop = start + inputs
    while start < stop and time.monotonic() < deadline:
        _index = context.Value("q", start)
        out = context.Queue()
        child = context.Process(target=worker, args=(name, seed, start, stop, deadline, out))
        child.start()
        last, moved, spent = -1, time.monotonic(), 0.0
        while True:
            try:
                part: Tally = out.get(timeout=0.2)
            except queue.Empty:
                pass
            else:
                child.join(10)
                total.merge(part)
                total.seconds = time.monotonic() - started
                return total
            if _index.value != last:
                last, moved, spent = _index.value, time.monotonic(), child_cpu(child.pid)
            elif (
                child_cpu(child.pid) - spent > hang
                or time.monotonic() - moved > WALL_HANG * hang
                or not child.is_alive()
            ):
                alive = child.is_alive()
                child.kill()
                child.join(10)
                if child.pid is not None and os.path.exists(webconfig_path(child.pid)):
                    os.unlink(webconfig_path(child.pid))  # killed before its finally
                index = _index.value
                target = TARGETS[name]
                data = make_input(target, target.seeds(), seed, index)
                key = f"hang: no answer within {hang:g} s of CPU" if alive else "worker died"
                total.add(key, data, index)
                total.tried += index - start + 1
                start = index + 1
                break
    total.seconds = time.monotonic() - started
    return total


def save(target: Target, finding: Finding) -> Path:
    """Write a failing input into the corpus, named by content."""
    folder = CORPUS / target.name
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{hashlib.sha1(finding.data).hexdigest()[:12]}.{target.suffix}"
    path.write_bytes(finding.data)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="per target")
    parser.add_argument("--targets", default=",".join(TARGETS))
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--hang", type=float, default=10.0)
    parser.add_argument("--inputs", type=int, default=1 << 62, help="stop after this many")
    parser.add_argument("--start", type=int, default=0, help="first input's number (resume)")
    parser.add_argument("--save", action="store_true", help="write findings to the corpus")
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    parser.add_argument("--record-netlink", action="store_true", help="record the netlink seeds")
    opts = parser.parse_args()
    if opts.record_netlink:
        if os.environ.get("TCPLENS_FUZZ_NETNS") != "1":
            # in a network namespace of its own, so the dumps hold only the sockets made
            # for them, not this machine's (needs root, as `unshare -n` does)
            script = f"ip link set lo up && exec {sys.executable} {Path(__file__)} --record-netlink"
            env = {**os.environ, "TCPLENS_FUZZ_NETNS": "1"}
            raise SystemExit(
                subprocess.run(["unshare", "-n", "sh", "-c", script], env=env).returncode
            )
        for path in record_netlink():
            print(path.relative_to(ROOT))
        return
    if not 0 < opts.seconds <= 3600:
        raise SystemExit("refusing: --seconds must be in (0, 3600]")
    if opts.inputs < 1 or opts.start < 0:
        raise SystemExit("refusing: --inputs must be positive and --start not negative")
    rows: list[tuple[str, Tally]] = []
    for name in opts.targets.split(","):
        if name not in TARGETS:
            raise SystemExit(f"unknown target {name!r}; known: {', '.join(TARGETS)}")
        if not TARGETS[name].seeds():
            raise SystemExit(f"no seed for {name}")
        tally = fuzz(name, opts.seconds, str(opts.seed), opts.hang, opts.inputs, opts.start)
        rows.append((name, tally))
        print(f"{name}: {tally.tried} inputs, {tally.failed} failing", file=sys.stderr)
        for finding in tally.findings.values():
            where = save(TARGETS[name], finding) if opts.save else None
            saved = f" -> {where.relative_to(ROOT)}" if where else ""
            print(
                f"  {finding.count} x {finding.key} (input {finding.index}){saved}", file=sys.stderr
            )
    if opts.markdown:
        print(
            f"Structure-aware fuzzing, {opts.seconds:g} s per target, seed {opts.seed}, "
            f"Python {platform.python_version()}, {time.strftime('%Y-%m-%d')}:\n\n"
            "| target | inputs tried | inputs/s | failing inputs | distinct findings |\n"
            "|---|---:|---:|---:|---:|"
        )
    for name, t in rows:
        rate = t.tried / t.seconds if t.seconds else 0.0
        if opts.markdown:
            print(f"| {name} | {t.tried:,} | {rate:,.0f} | {t.failed:,} | {len(t.findings)} |")
        else:
            print(f"{name}: {t.tried} inputs ({rate:.0f}/s), {t.failed} failing, "
                  f"{len(t.findings)} distinct")  # fmt: skip
    if any(t.findings for _, t in rows):
        sys.exit(1)


if __name__ == "__main__":
    main()
