"""Vectorised reconstruction for pcap and pcapng files: same results, less Python per packet.

Theory of operation
-------------------
Most segments of a connection change nothing but counters: no SYN, FIN or
RST, no new once-per-direction history letter, nobody waiting for an ACK.
This module decodes a chunk of records at once with numpy, groups the
segments by 4-tuple, and hands the :class:`~tcplens.packets.tracker.Tracker`
only the segments that can matter ("interesting"), in capture order:

* SYN, FIN and RST segments, and anything the vectorised decoder does not
  handle (fragments, IPv6 extension headers, odd link headers);
* the first segment of each side in the chunk when the flow is new, the
  model has not seen that side, or Zeek's endpoint is still INACTIVE;
* every segment that may be a retransmission, carries a zero window, or
  acknowledges data the capture never showed (``T``, ``W``, ``G``), decided
  with the same sequence-space tests the tracker uses;
* while a side waits for an acknowledgement (SYN_RECV, FIN_WAIT1, CLOSING,
  LAST_ACK), the next ACK-bearing segment from the other side; this is found
  as the tracker goes, since waiting starts and ends there;
* every segment of a 4-tuple that shows a second SYN in the chunk (possible
  port reuse) or whose Zeek endpoint is in RESET.

Before each interesting segment is fed, the plain segments of its flow since
the last one are applied in bulk from prefix sums: packet and byte counters,
PSH/ACK counts, the last window, the highest sequence number sent and
acknowledged (Zeek's ``last_seq``/``ack_seq``), the completeness bits and
Zeek's ``last_time``.  Every one of those is a sum, a maximum or a "last
value", so order inside a run does not change it.  The only order-dependent
effect a plain segment can have is a first ``A`` (pure ACK) or ``D`` (data)
history letter; the run's first such segments per side are found by
position and their letters added in that order.  State changes happen only on
interesting segments.  Tests run captures through both paths and require
identical connections.

The one intended difference: idle connections are evicted at chunk
boundaries instead of packet by packet, so a connection idle longer than a
timeout *inside* one chunk is not split where the packet-by-packet path
would split it.

Two processes, same results
---------------------------
Each chunk is handled in two steps: :func:`_decode` (record headers, link,
IP and TCP fields, grouping by 4-tuple) needs no tracker state; :func:`_track`
feeds and bulk-applies.  For a large file on a machine with a second core, a
forked worker reads and decodes while this process tracks
(:func:`_offloaded`), and by default the worker also tracks the connections
whose 4-tuple falls in its share (:func:`_partitioned`): connections share no
state, so each side's tracker sees exactly what one tracker sees for them,
and what one tracker keeps across connections (numbering, clock, sweeps,
peak, decode counts) is reconciled at every chunk boundary, where one
tracker would sweep.  Output order and content are those of one process;
tests hold the two to equality, in order, on busy captures.
"""

from __future__ import annotations

import heapq
import io
import os
import pickle
import queue
import struct
import threading
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

import numpy as np
import numpy.typing as npt

from tcplens.errors import InputError, TruncatedInput
from tcplens.packets.decode import DecodeStats, Segment4, decode, supported_linktype
from tcplens.packets.pcap import (
    _PCAPNG_BOM as _BOM,
)
from tcplens.packets.pcap import (
    _PCAPNG_EPB as _EPB,
)
from tcplens.packets.pcap import (
    _PCAPNG_IDB as _IDB,
)
from tcplens.packets.pcap import (
    _PCAPNG_OPB as _OPB,
)
from tcplens.packets.pcap import (
    _PCAPNG_SHB as _SHB,
)
from tcplens.packets.pcap import (
    _PCAPNG_SPB as _SPB,
)
from tcplens.packets.pcap import (
    LINKTYPE_NAMES,
    _packet_block,
    _parse_idb,
)
from tcplens.packets.tracker import _WAITING, CaptureSummary, Connection, Tracker, _Flow
from tcplens.packets.zeek import ZeekState

__all__ = ["reconstruct_pcap_fast"]

I64 = npt.NDArray[np.int64]
U8 = npt.NDArray[np.uint8]
B = npt.NDArray[np.bool_]

FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10
_MOD = 1 << 32
_HALF = 1 << 31
_CHUNK_BYTES = 8 << 20
_MAX_RECORD = 262_144 * 4
_NEG = -(1 << 40)
_BYTES16 = np.arange(16, dtype=np.int64)
#: zero bytes after every chunk's records, so that gathers of fixed-size headers past
#: a short last frame read zeros instead of running off the buffer
_PAD = bytes(128)


@dataclass(slots=True)
class _Chunk:
    """Record offsets of one chunk and the raw bytes they point into.

    For pcap, ``offsets`` are record headers and the rest is read from them with
    numpy.  For pcapng the block walk has already read each packet's header, so
    ``offsets`` are where the packet data starts and ``meta`` holds caplen, wire
    length, timestamp (ns) and link type per packet.
    """

    buf: bytes
    offsets: list[int]
    first_record: int
    base: int  # file offset of buf[0]
    meta: tuple[list[int], list[int], list[int], list[int]] | None = None


@dataclass(slots=True)
class _Decoded:
    """A chunk decoded and grouped by 4-tuple: everything that needs no tracker state.

    Positions ``*_o`` are in group order (``o`` maps them to capture order).
    Nothing here points into the chunk's buffer except ``slow_frames`` (the
    frames the vectorised decoder leaves to the exact one), so a decoded chunk
    is small and can cross a process boundary (:func:`_shrink`, :func:`_grow`).
    """

    n: int
    first_record: int
    stamps: npt.NDArray[np.float64]
    slow_frames: dict[int, tuple[int, bytes]]
    slow_keys: set[tuple[bytes, int, bytes, int]]
    gkey: list[tuple[bytes, int, bytes, int] | None]
    first_syn: B
    reuse: B
    o: I64
    new_group: B
    group_of_o: I64
    gstart_pos: I64
    side_o: I64
    flags_o: I64
    len_o: I64
    end_o: I64
    ack_o: I64
    window_o: I64
    wire_o: I64
    iplen_o: I64
    interesting_o: B
    first_of_side: B
    fast_o: B
    gpart: npt.NDArray[np.int8]
    nfast: int


#: narrowest exact dtype of each integer array of :class:`_Decoded` (for the pipe)
_NARROW: dict[str, type[np.integer[Any]]] = {
    "o": np.int32,
    "group_of_o": np.int32,
    "gstart_pos": np.int32,
    "side_o": np.int8,
    "flags_o": np.uint8,
    "len_o": np.int32,
    "end_o": np.uint32,
    "ack_o": np.uint32,
    "window_o": np.uint16,
    "wire_o": np.uint32,
    "iplen_o": np.int32,
}


def _shrink(dec: _Decoded) -> dict[str, Any]:
    """A decoded chunk in a quarter of the bytes: what the worker sends."""
    state = {name: getattr(dec, name) for name in _Decoded.__dataclass_fields__}
    for name, dtype in _NARROW.items():
        state[name] = state[name].astype(dtype)
    return state


def _grow(state: dict[str, Any]) -> _Decoded:
    """Undo :func:`_shrink` (every value fits its narrow type, so this is exact)."""
    for name in _NARROW:
        state[name] = state[name].astype(np.int64)
    return _Decoded(**state)


def _fields(dec: _Decoded) -> I64:
    """Per capture-order packet, what feeding it reads (one row per field).

    Rows: group position, group, side, seq, ack, flags, window, payload, IP
    length, wire length, fast.  Payload and seq are exact for fast packets
    (the only ones whose fields are read; slow ones are decoded again).
    """
    n, o = dec.n, dec.o  # capture order: all n packets; positions: those in ``o``
    flags_o, len_o = dec.flags_o, dec.len_o
    seq_o = (dec.end_o - len_o - ((flags_o & SYN) != 0) - ((flags_o & FIN) != 0)) % _MOD
    rows = np.stack(
        [
            np.arange(len(o), dtype=np.int64),
            dec.group_of_o,
            dec.side_o,
            seq_o,
            dec.ack_o,
            flags_o,
            dec.window_o,
            len_o,
            dec.iplen_o,
            dec.wire_o,
            dec.fast_o,
        ]
    )
    out: I64 = np.zeros((len(rows), n), dtype=np.int64)
    out[:, o] = rows
    return out


def _subset(dec: _Decoded, part: int) -> _Decoded:
    """Only the groups partition ``part`` owns (whole groups, so group order holds)."""
    own = dec.gpart == part
    keep = np.flatnonzero(own[dec.group_of_o])
    new_group = dec.new_group[keep]
    by_position = {
        name: getattr(dec, name)[keep]
        for name in (
            "o",
            "side_o",
            "flags_o",
            "len_o",
            "end_o",
            "ack_o",
            "window_o",
            "wire_o",
            "iplen_o",
            "interesting_o",
            "first_of_side",
            "fast_o",
        )
    }
    return _Decoded(
        n=dec.n,
        first_record=dec.first_record,
        stamps=dec.stamps,
        slow_frames=dec.slow_frames,
        slow_keys=dec.slow_keys,
        gkey=[key for key, mine in zip(dec.gkey, own.tolist(), strict=True) if mine],
        first_syn=dec.first_syn[own],
        reuse=dec.reuse[own],
        new_group=new_group,
        group_of_o=np.cumsum(new_group) - 1,
        gstart_pos=np.flatnonzero(new_group),
        gpart=dec.gpart[own],
        nfast=dec.nfast,
        **by_position,
    )


def _index(fileobj: BinaryIO, order: str, snaplen: int, path: str | None) -> Iterator[_Chunk]:
    """Walk the record headers chunk by chunk (the only per-record Python loop)."""
    unpack = struct.Struct(order + "I").unpack_from
    limit = max(snaplen, _MAX_RECORD)
    carry = b""
    base = 24
    record = 1
    while True:
        data = fileobj.read(_CHUNK_BYTES)
        buf = b"".join((carry, data, _PAD))  # the one copy of a chunk
        if not data:
            if carry:
                raise TruncatedInput(
                    "record is truncated" if len(carry) >= 16 else "record header is truncated",
                    path=path,
                    record=record,
                    offset=base,
                )
            return
        offsets: list[int] = []
        append = offsets.append
        off = 0
        end = len(buf) - len(_PAD)
        stop = end - 16
        while off <= stop:
            nxt = off + 16 + unpack(buf, off + 8)[0]
            if nxt > end or nxt - off > limit + 16:  # caplen read once on the common path
                caplen = nxt - off - 16
                if caplen > limit:
                    raise InputError(
                        f"captured length {caplen} is larger than any packet; not a valid record",
                        path=path,
                        record=record + len(offsets),
                        offset=base + off,
                    )
                break
            append(off)
            off = nxt
        yield _Chunk(buf, offsets, record, base)
        record += len(offsets)
        carry = buf[off:end]
        base += off


def _index_pcapng(fileobj: BinaryIO, path: str | None) -> Iterator[_Chunk]:
    """Walk pcapng blocks chunk by chunk: sections, interfaces, packet blocks."""
    order = "<"
    interfaces: list[Any] = []
    carry = b""
    base = 0
    record = 1
    section_seen = False
    supported: set[int] = set()
    epb = struct.Struct("<IIIII").unpack_from
    while True:
        data = fileobj.read(_CHUNK_BYTES)
        buf = b"".join((carry, data, _PAD))  # the one copy of a chunk
        if not data:
            if carry:
                raise TruncatedInput("block is truncated", path=path, record=record, offset=base)
            return
        offsets: list[int] = []
        caplens: list[int] = []
        wires: list[int] = []
        stamps: list[int] = []
        links: list[int] = []
        first = record
        off = 0
        end = len(buf) - len(_PAD)
        while off + 12 <= end:
            raw_type = struct.unpack_from("<I", buf, off)[0]
            if raw_type == _SHB:
                bom = struct.unpack_from("<I", buf, off + 8)[0]
                if bom == _BOM:
                    order = "<"
                elif struct.unpack_from(">I", buf, off + 8)[0] == _BOM:
                    order = ">"
                else:
                    raise InputError(
                        "pcapng section header has a bad byte-order magic",
                        path=path,
                        offset=base + off + 8,
                    )
                interfaces = []
                section_seen = True
                epb = struct.Struct(order + "IIIII").unpack_from
            elif not section_seen:
                raise InputError("pcapng file does not start with a section header", path=path)
            block_type, total = struct.unpack_from(order + "II", buf, off)
            if total < 12 or total % 4 or total > _MAX_RECORD + 64:
                raise InputError(
                    f"block of type 0x{block_type:08x} has an impossible length {total}",
                    path=path,
                    record=record,
                    offset=base + off,
                )
            if off + total > end:
                break
            if struct.unpack_from(order + "I", buf, off + total - 4)[0] != total:
                raise InputError(
                    "block lengths disagree", path=path, record=record, offset=base + off
                )
            if block_type == _IDB:
                interfaces.append(
                    _parse_idb(buf[off + 8 : off + total - 4], order, path, base + off)
                )
            elif block_type in (_EPB, _SPB, _OPB):
                if (
                    block_type == _EPB
                    and total >= 32
                    and (if_id := epb(buf, off + 8)[0]) < len(interfaces)
                    and 20 + epb(buf, off + 8)[3] <= total - 12
                ):
                    # the common case, read in place (no Frame object per packet)
                    _if, hi, lo, cap, wlen = epb(buf, off + 8)
                    iface = interfaces[if_id]
                    units = (hi << 32) | lo
                    stamp = (
                        units
                        if iface.units == 1_000_000_000
                        else units * 1_000_000_000 // iface.units
                    ) + iface.offset_s * 1_000_000_000
                    lt = iface.linktype
                    start = off + 28
                else:
                    body = buf[off + 8 : off + total - 4]
                    frame = _packet_block(
                        block_type, body, order, interfaces, record, base + off, path
                    )
                    cap, wlen, stamp, lt = (
                        len(frame.data),
                        frame.wire_len,
                        frame.ts_ns,
                        frame.linktype,
                    )
                    start = off + 8 + (4 if block_type == _SPB else 20)
                if lt not in supported:
                    if not supported_linktype(lt):
                        name = LINKTYPE_NAMES.get(lt, "unknown")
                        raise InputError(
                            f"link type {lt} ({name}) is not supported; tcplens reads "
                            "Ethernet, Linux SLL/SLL2, BSD NULL/LOOP and raw IP",
                            path=path,
                            record=record,
                            offset=base + off,
                        )
                    supported.add(lt)
                offsets.append(start)
                caplens.append(cap)
                wires.append(wlen)
                stamps.append(stamp)
                links.append(lt)
                record += 1
            off += total
        yield _Chunk(buf, offsets, first, base, (caplens, wires, stamps, links))
        carry = buf[off:end]
        base += off


def _u16(a: U8, idx: I64) -> I64:
    return (a[idx].astype(np.int64) << 8) | a[idx + 1]


def _u32(a: U8, idx: I64) -> I64:
    return (
        (a[idx].astype(np.int64) << 24)
        | (a[idx + 1].astype(np.int64) << 16)
        | (a[idx + 2].astype(np.int64) << 8)
        | a[idx + 3]
    )


def _group_cummax(values: I64, group_start: B) -> I64:
    """Running maximum that restarts at every ``group_start`` (values >= _NEG)."""
    n = len(values)
    gid = np.cumsum(group_start) - 1
    shifted = values - _NEG  # >= 0
    big = gid.astype(np.int64) * (1 << 42)
    out: I64 = np.maximum.accumulate(shifted + big) - big + _NEG
    return out[:n]


def _ffill_last(mask: B, group_start: B) -> I64:
    """For each position, the last position <= it (same group) where ``mask`` holds, else -1."""
    pos = np.where(mask, np.arange(len(mask)), -1)
    gid = np.cumsum(group_start) - 1
    big = gid.astype(np.int64) * (1 << 40)
    filled = np.maximum.accumulate(np.where(pos >= 0, pos + big, big - 1)) - big
    out: I64 = np.where(filled >= 0, filled, -1)
    return out


def _signed(a: I64) -> I64:
    out: I64 = ((a + _HALF) % _MOD) - _HALF
    return out


class _Prepend:
    """A file object that first returns bytes already read from it."""

    def __init__(self, head: bytes, fileobj: BinaryIO) -> None:
        self.head = head
        self.fileobj = fileobj

    def read(self, n: int = -1) -> bytes:
        if self.head:
            out, self.head = self.head, b""
            return out + self.fileobj.read(max(0, n - len(out))) if n >= 0 else out
        return self.fileobj.read(n)


def reconstruct_pcap_fast(
    fileobj: BinaryIO,
    tracker: Tracker,
    summary: CaptureSummary,
    path: str | None = None,
    *,
    offload: bool | None = None,
    split: bool | None = None,
) -> Iterator[Connection]:
    """Like :func:`tcplens.packets.tracker.reconstruct` for a pcap or pcapng stream.

    ``offload``: index and decode in a forked worker process while this one
    tracks (see :func:`_offloaded`); ``None`` decides from the file (a real file
    of at least :data:`_OFFLOAD_MIN_BYTES` on a machine with a second core).
    ``split`` (with ``offload``; the default then): the worker also tracks half
    of the connections (see :func:`_partitioned`).
    """
    head = fileobj.read(24)
    magic = struct.unpack("<I", head[:4])[0] if len(head) >= 4 else 0
    chunks: Iterator[_Chunk]
    order = "<"
    scale = 1000
    linktype = -1
    if magic == _SHB:
        chunks = _index_pcapng(_Prepend(head, fileobj), path)  # type: ignore[arg-type]
    else:
        if len(head) < 24:
            raise InputError("pcap file header is truncated", path=path, offset=0)
        if magic in (0xA1B2C3D4, 0xA1B23C4D):
            order = "<"
        elif struct.unpack(">I", head[:4])[0] in (0xA1B2C3D4, 0xA1B23C4D):
            order = ">"
            magic = struct.unpack(">I", head[:4])[0]
        else:
            raise InputError(f"not a pcap file (magic 0x{head[:4].hex()})", path=path, offset=0)
        scale = 1 if magic == 0xA1B23C4D else 1000
        _m, _maj, _min, _zone, _sig, snaplen, network = struct.unpack(order + "IHHiIII", head)
        linktype = network & 0xFFFF
        if not supported_linktype(linktype):
            raise InputError(
                f"link type {linktype} ({LINKTYPE_NAMES.get(linktype, 'unknown')}) is not "
                "supported; tcplens reads Ethernet, Linux SLL/SLL2, BSD NULL/LOOP and raw IP",
                path=path,
                record=1,
                offset=24,
            )
        chunks = _index(fileobj, order, snaplen, path)
    tracker.sweeping = False
    stats = summary.decode

    def decoded() -> Iterator[_Decoded]:
        for chunk in chunks:
            if chunk.offsets:
                primary = chunk.meta[3][0] if chunk.meta is not None else linktype
                yield _decode(chunk, order, scale, primary)

    if offload is None:
        offload = _worth_offloading(fileobj)
    if split is None:
        split = offload
    if offload and split and tracker.on_change is None and not tracker.keep_segments:
        yield from _partitioned(decoded(), tracker, summary)
        return
    source = _offloaded(decoded()) if offload else decoded()
    try:
        for dec in source:
            yield from _track(dec, tracker, stats, summary)
            done = tracker.sweep(dec.n)
            summary.connections += len(done)
            yield from done
    except TruncatedInput as exc:
        yield from summary.finish(tracker, exc)
        raise
    finally:
        close = getattr(source, "close", None)
        if close is not None:
            close()
    yield from summary.finish(tracker)


#: smallest file worth a worker process (forking and the pipe cost a few ms)
_OFFLOAD_MIN_BYTES = 32 << 20


def _worth_offloading(fileobj: BinaryIO) -> bool:
    """A real, large file and a second core: decode there, track here."""
    if not isinstance(fileobj, io.BufferedReader):
        return False  # e.g. the CLI's progress-counting wrapper: its reads must stay here
    try:
        cores = len(os.sched_getaffinity(0))
        size = os.fstat(fileobj.fileno()).st_size
    except (AttributeError, OSError, ValueError):
        return False
    return cores >= 2 and size >= _OFFLOAD_MIN_BYTES


def _offloaded(decoded: Iterator[_Decoded]) -> Iterator[_Decoded]:
    """Run ``decoded`` in a forked child and yield what it sends, in order.

    Pipeline parallelism with exactly the in-process results: the child reads,
    indexes and decodes (everything in :class:`_Decoded` needs no tracker
    state), the parent tracks.  The child inherits the open file object and is
    the only one to read it from then on.  The pipe holds less than a chunk, so
    the child runs at most a chunk or two ahead and memory stays bounded.  An
    :class:`~tcplens.errors.InputError` in the child (bad or truncated record)
    is sent as data and raised here at the same point of the stream as the
    in-process path raises it.  The child leaves with ``os._exit``: it must not
    flush the copy of this process's unwritten stdout it was born with.
    """
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child; its results are checked in the parent
        code = 0
        try:
            os.close(read_fd)
            _produce(decoded, write_fd)
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    os.close(write_fd)
    pipe = open(read_fd, "rb", buffering=1 << 20)  # noqa: SIM115 - closed in finally
    try:
        while True:
            head = pipe.read(8)
            if len(head) < 8:
                raise RuntimeError("decoding worker ended without a result")
            kind, payload = pickle.loads(pipe.read(int.from_bytes(head, "little")))
            if kind == "chunk":
                yield _grow(payload)
            elif kind == "end":
                return
            elif kind == "input-error":
                cls, reason, where = payload
                raise cls(reason, **where)
            else:
                raise RuntimeError(f"decoding worker failed:\n{payload}")
    finally:
        pipe.close()  # a child still writing gets EPIPE and leaves
        os.waitpid(pid, 0)


def _send(write_fd: int, item: tuple[str, Any]) -> None:
    """One length-prefixed pickle on a pipe."""
    data = pickle.dumps(item, protocol=pickle.HIGHEST_PROTOCOL)
    for part in (len(data).to_bytes(8, "little"), data):
        view = memoryview(part)
        while view:
            view = view[os.write(write_fd, view) :]


def _receive(pipe: BinaryIO) -> tuple[str, Any]:
    head = pipe.read(8)
    if len(head) < 8:
        raise RuntimeError("worker process ended without a result")
    kind, payload = pickle.loads(pipe.read(int.from_bytes(head, "little")))
    return kind, payload


def _produce(decoded: Iterator[_Decoded], write_fd: int) -> None:
    """The child's side of :func:`_offloaded`: length-prefixed pickles on the pipe."""

    def send(item: tuple[str, Any]) -> None:
        data = pickle.dumps(item, protocol=pickle.HIGHEST_PROTOCOL)
        for part in (len(data).to_bytes(8, "little"), data):
            view = memoryview(part)
            while view:
                view = view[os.write(write_fd, view) :]

    try:
        for dec in decoded:
            send(("chunk", _shrink(dec)))
        send(("end", None))
    except InputError as exc:
        where = {"path": exc.path, "line": exc.line, "offset": exc.offset, "record": exc.record}
        send(("input-error", (type(exc), exc.reason, where)))
    except OSError:
        pass  # EPIPE: the parent stopped reading
    except Exception:
        send(("failure", traceback.format_exc()))


def _decode(chunk: _Chunk, order: str, scale: int, linktype: int) -> _Decoded:
    """Everything about a chunk that does not depend on the tracker (see :class:`_Decoded`)."""
    buf = chunk.buf
    n = len(chunk.offsets)
    a: U8 = np.frombuffer(buf, dtype=np.uint8)  # padded: fixed-size gathers stay inside
    off: I64 = np.asarray(chunk.offsets, dtype=np.int64)
    if chunk.meta is None:
        # the four header words in one gather (n x 16 bytes), read in the file's order
        head = a[off[:, None] + _BYTES16].view(order + "u4").astype(np.int64)
        sec, frac, caplen, wire = head[:, 0], head[:, 1], head[:, 2], head[:, 3]
        ts_ns = sec * 1_000_000_000 + frac * scale
        # Python floats later, exactly as ts_ns / 1e9 in the tracker
        stamps: npt.NDArray[np.float64] = ts_ns / 1e9
        p = off + 16  # start of the frame
        links: list[int] = [linktype] * n
        other_link = np.zeros(n, dtype=bool)
    else:
        caps, wires, stamp_ns, links = chunk.meta
        caplen = np.asarray(caps, dtype=np.int64)
        wire = np.asarray(wires, dtype=np.int64)
        stamps = np.asarray([stamp / 1e9 for stamp in stamp_ns], dtype=np.float64)
        p = off
        other_link = np.asarray(links, dtype=np.int64) != linktype

    # -- link layer ------------------------------------------------------------------
    if linktype == 1:
        etype = _u16(a, p + 12)
        l3 = p + 14
        vlan = (etype == 0x8100) | (etype == 0x88A8)
        etype = np.where(vlan, _u16(a, p + 16), etype)
        l3 = np.where(vlan, l3 + 4, l3)
        link_ok = ~((etype == 0x8100) | (etype == 0x88A8) | (etype == 0x9100))
        link_ok &= ~other_link
    elif linktype == 276:
        etype = _u16(a, p)
        l3 = p + 20
        link_ok = ~other_link
    elif linktype == 113:
        etype = _u16(a, p + 14)
        l3 = p + 16
        link_ok = ~other_link
    else:  # raw, NULL, LOOP: leave to the exact decoder unless raw IP
        if linktype in (12, 14, 101, 228, 229):
            version = a[p] >> 4
            etype = np.where(version == 4, 0x0800, np.where(version == 6, 0x86DD, 0))
            l3 = p
            link_ok = ~other_link
        else:
            etype = np.zeros(n, dtype=np.int64)
            l3 = p
            link_ok = np.zeros(n, dtype=bool)

    # -- IPv4 / IPv6 ----------------------------------------------------------------------
    is4 = link_ok & (etype == 0x0800) & ((a[l3] >> 4) == 4)
    is6 = link_ok & (etype == 0x86DD) & ((a[l3] >> 4) == 6)
    ihl = (a[l3] & 0x0F).astype(np.int64) * 4
    total4 = _u16(a, l3 + 2)
    frag4 = _u16(a, l3 + 6) & 0x3FFF
    proto4 = a[l3 + 9]
    ok4 = is4 & (ihl >= 20) & (frag4 == 0) & (proto4 == 6) & (total4 >= ihl + 20)
    plen6 = _u16(a, l3 + 4)
    ok6 = is6 & (a[l3 + 6] == 6) & (plen6 >= 20)
    l4 = np.where(ok4, l3 + ihl, l3 + 40)
    # the fixed TCP header in one gather (n x 16 bytes): ports and window as 16-bit,
    # sequence and acknowledgement numbers as 32-bit big-endian words
    tcp = a[l4[:, None] + _BYTES16]
    words16 = tcp.view(">u2").astype(np.int64)
    sport, dport, window = words16[:, 0], words16[:, 1], words16[:, 7]
    numbers = np.ascontiguousarray(tcp[:, 4:12]).view(">u4").astype(np.int64)
    seq, ack = numbers[:, 0], numbers[:, 1]
    flags = tcp[:, 13].astype(np.int64)
    ip_len = np.where(ok4, total4, plen6 + 40)
    captured_end = p + caplen
    doff = ((tcp[:, 12] >> 4) & 0x0F).astype(np.int64) * 4
    ip_payload = np.where(ok4, total4 - ihl, plen6)
    fast = (ok4 | ok6) & (l4 + 20 <= captured_end) & (doff >= 20) & (doff <= ip_payload)
    payload = ip_payload - doff

    # Addresses as two 64-bit words each (IPv4 in the low word of the second).
    def words(start: I64, width: int) -> tuple[I64, I64]:
        hi = np.zeros(n, dtype=np.int64)
        lo = np.zeros(n, dtype=np.int64)
        if width == 4:
            lo = _u32(a, start)
        else:
            hi = (_u32(a, start) << 32) | _u32(a, start + 4)
            lo = (_u32(a, start + 8) << 32) | _u32(a, start + 12)
        return hi, lo

    s4hi, s4lo = words(l3 + 12, 4)
    d4hi, d4lo = words(l3 + 16, 4)
    if ok6.any():
        s6hi, s6lo = words(l3 + 8, 16)
        d6hi, d6lo = words(l3 + 24, 16)
        shi = np.where(ok6, s6hi, s4hi)
        slo = np.where(ok6, s6lo, s4lo)
        dhi = np.where(ok6, d6hi, d4hi)
        dlo = np.where(ok6, d6lo, d4lo)
    else:  # IPv4 only: the high words are all zero
        shi, slo, dhi, dlo = s4hi, s4lo, d4hi, d4lo
    fam = ok6.astype(np.int64)

    # canonical order: (addr, port) pairs compared as the tracker compares them
    # (bytes first, then port); both families never mix in one flow.
    src_first = (shi < dhi) | ((shi == dhi) & ((slo < dlo) | ((slo == dlo) & (sport <= dport))))
    # IPv4 bytes compare like the integer; IPv6 hi/lo words compare like the bytes only
    # when read unsigned: the sign bit flips the order of the high half.
    if ok6.any():
        shu, dhu = shi ^ np.int64(-(1 << 63)), dhi ^ np.int64(-(1 << 63))
        slu, dlu = slo ^ np.int64(-(1 << 63)), dlo ^ np.int64(-(1 << 63))
        src_first6 = (shu < dhu) | (
            (shu == dhu) & ((slu < dlu) | ((slu == dlu) & (sport <= dport)))
        )
        src_first = np.where(ok6, src_first6, src_first)
    ahi = np.where(src_first, shi, dhi)
    alo = np.where(src_first, slo, dlo)
    apt = np.where(src_first, sport, dport)
    bhi = np.where(src_first, dhi, shi)
    blo = np.where(src_first, dlo, slo)
    bpt = np.where(src_first, dport, sport)
    side = np.where(src_first, 0, 1)  # 0: from A, 1: from B

    # Group by 4-tuple; non-fast packets form their own singleton groups at the end.
    if ok6.any():
        columns = [~fast, fam, ahi, alo, apt, bhi, blo, bpt]
    else:  # the same order from three keys: (address, port) packed in 48 bits
        columns = [~fast, (alo << 16) | apt, (blo << 16) | bpt]
    order_idx = np.lexsort((np.arange(n), *reversed(columns)))
    new_group = np.ones(n, dtype=bool)
    if n > 1:
        same = np.ones(n - 1, dtype=bool)
        for col in columns:
            sorted_col = col[order_idx]
            same &= sorted_col[1:] == sorted_col[:-1]
        new_group[1:] = ~same
    new_group |= ~fast[order_idx]  # every slow packet stands alone
    gid_sorted = np.cumsum(new_group) - 1
    ngroups = int(gid_sorted[-1]) + 1
    gstart_pos = np.flatnonzero(new_group)

    # -- per-packet values in group order --------------------------------------------
    o = order_idx
    side_o = side[o]
    flags_o = flags[o]
    len_o = np.where(fast, payload, 0)[o]
    ctrl_o = (flags_o & (SYN | FIN | RST)) != 0
    end_o = (seq[o] + len_o + ((flags_o & SYN) != 0) + ((flags_o & FIN) != 0)) % _MOD
    ack_o = ack[o]
    # bases per group and side: the first end seen from that side in the chunk
    interesting_o = ~fast[o] | ctrl_o | new_group
    group_of_o = gid_sorted

    # Slow packets decoded up front only to learn their flows: those flows then take
    # the exact path for the whole chunk, so order between the two kinds is kept.
    slow_keys: set[tuple[bytes, int, bytes, int]] = set()
    slow_frames: dict[int, tuple[int, bytes]] = {}
    slow_part: dict[int, int] = {}
    for i in np.flatnonzero(~fast).tolist():
        start = int(p[i])
        slow_frames[i] = (links[i], buf[start : start + int(caplen[i])])
        probe = decode(links[i], slow_frames[i][1], DecodeStats())
        if probe is not None:
            a1, a2 = (probe.src, probe.sport), (probe.dst, probe.dport)
            lo_, hi_ = (a1, a2) if a1 <= a2 else (a2, a1)
            slow_keys.add((lo_[0], lo_[1], hi_[0], hi_[1]))
            slow_part[i] = _part((lo_[0], lo_[1], hi_[0], hi_[1]))

    # Group keys as the tracker spells them (Python, once per group).
    gkeys_ahi = ahi[o][gstart_pos].tolist()
    gkeys_alo = alo[o][gstart_pos].tolist()
    gkeys_apt = apt[o][gstart_pos].tolist()
    gkeys_bhi = bhi[o][gstart_pos].tolist()
    gkeys_blo = blo[o][gstart_pos].tolist()
    gkeys_bpt = bpt[o][gstart_pos].tolist()
    gfam = fam[o][gstart_pos].tolist()
    gfast = fast[o][gstart_pos].tolist()
    gkey: list[tuple[bytes, int, bytes, int] | None] = []
    for g in range(ngroups):
        if not gfast[g]:
            gkey.append(None)
            continue
        if gfam[g]:
            araw = (gkeys_ahi[g] & (_MOD * _MOD - 1)).to_bytes(8, "big") + (
                gkeys_alo[g] & (_MOD * _MOD - 1)
            ).to_bytes(8, "big")
            braw = (gkeys_bhi[g] & (_MOD * _MOD - 1)).to_bytes(8, "big") + (
                gkeys_blo[g] & (_MOD * _MOD - 1)
            ).to_bytes(8, "big")
        else:
            araw = gkeys_alo[g].to_bytes(4, "big")
            braw = gkeys_blo[g].to_bytes(4, "big")
        gkey.append((araw, gkeys_apt[g], braw, gkeys_bpt[g]))
    # which of two trackers owns each group (see _partitioned); a slow packet's
    # group is owned by whoever owns the flow it decodes to
    gpart = np.array([0 if key is None else _part(key) for key in gkey], dtype=np.int8)
    if slow_part:
        gid_cap = np.empty(n, dtype=np.int64)
        gid_cap[o] = group_of_o
        for i, part in slow_part.items():
            gpart[gid_cap[i]] = part
    # a second bare SYN in a group: possible port reuse, take the exact path
    bare_syn_o = (flags_o & (SYN | ACK)) == SYN
    syn_count = np.bincount(group_of_o, weights=bare_syn_o, minlength=ngroups)
    first_is_syn = bare_syn_o[gstart_pos]
    reuse = (syn_count - first_is_syn) > 0

    # first segment of each side in its group
    first_of_side = np.zeros(n, dtype=bool)
    for phys in (0, 1):
        m = side_o == phys
        lastpos = _ffill_last(m, new_group)
        prev = np.empty(n, dtype=np.int64)
        prev[0] = -1
        prev[1:] = lastpos[:-1]
        prev[new_group] = -1
        first_of_side |= m & (prev == -1)

    return _Decoded(
        n=n,
        first_record=chunk.first_record,
        stamps=stamps,
        slow_frames=slow_frames,
        slow_keys=slow_keys,
        gkey=gkey,
        first_syn=first_is_syn,
        reuse=reuse,
        o=o,
        new_group=new_group,
        group_of_o=group_of_o,
        gstart_pos=gstart_pos,
        side_o=side_o,
        flags_o=flags_o,
        len_o=len_o,
        end_o=end_o,
        ack_o=ack_o,
        window_o=window[o],
        wire_o=wire[o],
        iplen_o=ip_len[o],
        interesting_o=interesting_o,
        first_of_side=first_of_side,
        fast_o=fast[o],
        gpart=gpart,
        nfast=int(fast.sum()),
    )


def _track(
    dec: _Decoded,
    tracker: Tracker,
    stats: DecodeStats,
    summary: CaptureSummary,
    part: int | None = None,
    reused: list[tuple[int, Connection]] | None = None,
) -> Iterator[Connection]:
    """Feed a decoded chunk's interesting segments to the tracker, the rest in bulk.

    With ``part``, only the groups that partition owns (``dec.gpart``), and
    only partition 0 counts frames; connections finished by port reuse go to
    ``reused`` with the record that finished them instead of being yielded.
    """
    if not part:
        summary.frames += dec.n
    if part is not None:
        dec = _subset(dec, part)
        if not len(dec.o):
            if not part:
                stats.frames += dec.nfast
                stats.tcp += dec.nfast
            return
    n = len(dec.o)  # positions (capture indices ``o`` still count all dec.n packets)
    o = dec.o
    new_group = dec.new_group
    group_of_o = dec.group_of_o
    gstart_pos = dec.gstart_pos
    ngroups = len(gstart_pos)
    side_o = dec.side_o
    flags_o = dec.flags_o
    len_o = dec.len_o
    end_o = dec.end_o
    ack_o = dec.ack_o
    hasack_o = (flags_o & ACK) != 0
    gkey = dec.gkey
    slow_keys = dec.slow_keys
    first_syn = dec.first_syn.tolist()
    first_of_side = dec.first_of_side
    fields = _fields(dec)
    times: list[float] = dec.stamps.tolist()
    interesting_o = dec.interesting_o
    base_end = np.zeros((ngroups, 2), dtype=np.int64)
    has_base = np.zeros((ngroups, 2), dtype=bool)
    all_slow = np.zeros(ngroups, dtype=bool)
    need_first = np.ones((ngroups, 2), dtype=bool)
    waiting_groups: set[int] = set()
    for g in range(ngroups):
        key = gkey[g]
        if key is None:
            all_slow[g] = True
            continue
        if key in slow_keys:
            all_slow[g] = True
        flow = tracker.flows.get(key)
        if flow is None:
            continue
        if first_syn[g]:
            all_slow[g] = True  # a SYN on a known 4-tuple: maybe port reuse
            continue
        z = flow.zeek
        if z.orig.state == ZeekState.RESET or z.resp.state == ZeekState.RESET:
            all_slow[g] = True
            continue
        for phys in (0, 1):
            s = _side_index(flow, key, phys)
            me = flow.max_end[s]
            if me is not None:
                base_end[g, phys] = me
                has_base[g, phys] = True
            zep = z.orig if s == 0 else z.resp
            side_obj = flow.sides[s]
            need_first[g, phys] = side_obj is None or zep.state == ZeekState.INACTIVE
            if side_obj is not None and side_obj.endpoint.state in _WAITING:
                waiting_groups.add(g)

    all_slow |= dec.reuse

    # Relative sequence numbers per group-side; a side without a base takes its first end.
    for phys in (0, 1):
        idx = np.flatnonzero(first_of_side & (side_o == phys))
        grp = group_of_o[idx]
        nob = ~has_base[grp, phys]
        base_end[grp[nob], phys] = end_o[idx[nob]]
    base_self = base_end[group_of_o, side_o]
    base_peer = base_end[group_of_o, 1 - side_o]
    rel_end = _signed(end_o - base_self)
    # running max of own end *before* each packet (initial: 0 if a base existed, else none)
    own = {}
    for phys in (0, 1):
        m = side_o == phys
        v = np.where(m, _signed(end_o - base_end[group_of_o, phys]), _NEG)
        cm = _group_cummax(v, new_group)
        before = np.empty(n, dtype=np.int64)
        before[0] = _NEG
        before[1:] = cm[:-1]
        before[new_group] = _NEG
        init = np.where(has_base[group_of_o, phys], 0, _NEG)
        own[phys] = (np.maximum(before, init), np.maximum(cm, init))
    before_self = np.where(side_o == 0, own[0][0], own[1][0])
    peer_max_before = np.where(side_o == 0, own[1][0], own[0][0])
    retrans = (len_o > 0) & (rel_end <= before_self) & (before_self > _NEG)
    rel_ack_peer = _signed(ack_o - base_peer)
    gap = hasack_o & (peer_max_before > _NEG) & (rel_ack_peer > peer_max_before)
    zero = dec.window_o == 0
    pure_ack = hasack_o & (len_o == 0)
    data = len_o > 0
    need_first_o = need_first[group_of_o, side_o] & first_of_side
    interesting_o = interesting_o | retrans | gap | zero | need_first_o | all_slow[group_of_o]

    # Prefix sums in group order for bulk application, both physical sides in one
    # table (columns 0-7: side 0, 8-15: side 1): one row per position, two rows read
    # per run instead of converting whole arrays to lists.
    plain_o = ~interesting_o
    wire_o = dec.wire_o
    iplen_o = dec.iplen_o
    cols_list: list[npt.NDArray[Any]] = []
    posts: list[I64] = []
    for phys in (0, 1):
        m = (side_o == phys) & plain_o
        cols_list += [
            m,
            np.where(m, len_o, 0),
            np.where(m, iplen_o, 0),
            np.where(m, wire_o, 0),
            m & ((flags_o & PSH) != 0),
            m & hasack_o,
            m & pure_ack,
            m & data,
        ]
        # last plain position, last plain ACK position, and where the running maxima of
        # the end and of the ack were reached (positions, -1: none in the group yet)
        posts += [_ffill_last(m, new_group), _ffill_last(m & hasack_o, new_group)]
        for vals, base, mm in (
            (end_o, base_end[group_of_o, phys], m),
            (ack_o, base_end[group_of_o, 1 - phys], m & hasack_o),
        ):
            rel = np.where(mm, _signed(vals - base), _NEG)
            cm = _group_cummax(rel, new_group)
            posts.append(_ffill_last(mm & (rel == cm), new_group))
    # summed along the rows of a (columns, n) array: contiguous runs; a run reads two
    # columns of it
    sums = np.zeros((len(cols_list), n + 1), dtype=np.int64)
    np.cumsum(np.stack(cols_list), axis=1, out=sums[:, 1:])
    lasts = np.stack(posts, axis=1)

    gstart_l = gstart_pos.tolist()
    ends = np.zeros(n, dtype=bool)
    ends[np.append(gstart_pos[1:] - 1, n - 1)] = True
    rev_start = ends[::-1]
    nxt_ack: list[I64] = []
    for phys in (0, 1):
        m = (side_o == phys) & hasack_o
        # next position >= k in the same group with an ACK from ``phys`` (reverse ffill;
        # group ends, reversed, are the group starts of the reversed array), then -1
        # for "none" at position n so that pos + 1 needs no bounds test
        last = _ffill_last(m[::-1], rev_start)
        nxt_ack.append(np.append(np.where(last >= 0, n - 1 - last, -1)[::-1], -1))

    # First plain pure ACK / data segment of each side at or after each position: their
    # history letters (A, D) are added in bulk, in position order, when a run is applied.
    letter_cols: list[I64] = []
    letter_codes: list[tuple[int, str]] = []
    for phys in (0, 1):
        for mask, code in ((pure_ack, "A"), (data, "D")):
            m = (side_o == phys) & plain_o & mask
            last = _ffill_last(m[::-1], rev_start)
            letter_cols.append(np.where(last >= 0, n - 1 - last, -1)[::-1])
            letter_codes.append((phys, code))
    nxt_letter = np.stack(letter_cols, axis=1)  # read one row per applied run

    window_o = dec.window_o
    all_slow_l: list[bool] = all_slow.tolist()

    # -- feed interesting packets in capture order, bulk-applying plain runs ----------
    applied = list(gstart_l)  # per group: first group-order position not yet applied
    gend_l = [*gstart_l[1:], n]
    heap = np.flatnonzero(interesting_o)
    pending: list[int] = o[heap].tolist()  # capture-order indices
    # What the loop reads per fed packet, as Python ints, for the packets known to be fed
    # (a sixth of them): one numpy gather instead of a scalar read per field; packets
    # found later (waits, resets) read their row on demand.
    rows: dict[int, list[int]] = dict(zip(pending, fields[:, o[heap]].T.tolist(), strict=True))
    heapq.heapify(pending)
    queued = set(pending)
    feed = tracker.feed
    flows = tracker.flows
    recs = dec.first_record
    reset = ZeekState.RESET
    inactive = ZeekState.INACTIVE

    def apply(g: int, upto: int) -> None:
        """Apply plain packets of group g at positions [applied[g], upto)."""
        start = applied[g]
        if upto <= start:
            return
        applied[g] = upto
        key = gkey[g]
        if key is None:
            return
        flow = flows.get(key)
        if flow is None:
            return
        sides = (_side_index(flow, key, 0), _side_index(flow, key, 1))
        letters = None
        for (phys, code), j in zip(letter_codes, nxt_letter[start].tolist(), strict=True):
            if 0 <= j < upto:
                if letters is None:
                    letters = [(j, phys, code)]
                else:
                    letters.append((j, phys, code))
        if letters is not None:
            letters.sort()
            for _j, phys, code in letters:
                flow.zeek.letter(sides[phys] == 0, code)
        latest = -1
        both = (sums[:, upto] - sums[:, start]).tolist()
        pos_rows: list[int] | None = None
        for phys in (0, 1):
            c = 8 * phys
            count = both[c]
            if not count:
                continue
            s = sides[phys]
            st = flow.stats[s]
            st.packets += count
            st.payload_bytes += both[c + 1]
            st.ip_bytes += both[c + 2]
            st.frame_bytes += both[c + 3]
            st.psh += both[c + 4]
            st.ack += both[c + 5]
            if both[c + 6]:
                flow.completeness |= 4  # COMPLETE_ACK
            if both[c + 7]:
                flow.completeness |= 8  # COMPLETE_DATA
            if pos_rows is None:
                pos_rows = lasts[upto - 1].tolist()
            c = 4 * phys
            last, last_ack, max_end_pos, max_ack_pos = pos_rows[c : c + 4]
            if last > latest:
                latest = last
            flow.last_window[s] = int(window_o[last])
            zeek = flow.zeek
            zep = zeek.orig if s == 0 else zeek.resp
            zpeer = zeek.resp if s == 0 else zeek.orig
            if max_end_pos >= start:
                end = int(end_o[max_end_pos])
                cur = flow.max_end[s]
                if cur is None or 0 < (end - cur) % _MOD < _HALF:
                    flow.max_end[s] = end
                if zep.state != reset and 0 < (end - zep.last_seq) % _MOD < _HALF:
                    zep.last_seq = end
            if last_ack >= start:
                if zpeer.state == inactive:
                    value = (int(ack_o[last_ack]) - 1) % _MOD
                    zpeer.init_seq(value)
                    zpeer.last_seq = value
                elif max_ack_pos >= start:
                    av = int(ack_o[max_ack_pos])
                    if 0 < (av - zpeer.ack_seq) % _MOD < _HALF:
                        zpeer.ack_seq = av
        if latest >= 0:
            t = times[int(o[latest])]
            flow.last = t
            if t > tracker.now:
                tracker.now = t
            zeek = flow.zeek
            if not (zeek.orig.did_close and zeek.resp.did_close):
                zeek.last_time = t

    def watch(g: int, pos: int, flow: _Flow | None = None) -> None:
        key = gkey[g]
        if key is None:
            return
        if flow is None:
            flow = flows.get(key)
            if flow is None:
                return
        for s in (0, 1):
            side_obj = flow.sides[s]
            if side_obj is not None and side_obj.endpoint.state in _WAITING:
                nxt = int(nxt_ack[_phys_of(flow, key, 1 - s)][pos + 1])
                if nxt >= 0 and nxt < gend_l[g]:
                    i = int(o[nxt])
                    if i not in queued:
                        queued.add(i)
                        heapq.heappush(pending, i)

    # Waits carried over from the previous chunk.
    for g in sorted(waiting_groups):
        watch(g, gstart_l[g] - 1)

    while pending:
        i = heapq.heappop(pending)
        row = rows.pop(i, None)
        if row is None:
            row = fields[:, i].tolist()
        pos, g, side_i, seq_i, ack_i, flags_i, window_i, payload_i, iplen_i, wire_i, fast_i = row
        if applied[g] < pos:
            apply(g, pos)
        applied[g] = pos + 1
        record = recs + i
        fk = gkey[g]
        if fast_i:
            assert fk is not None
            if side_i == 0:
                src, sp, dst, dp = fk
            else:
                dst, dp, src, sp = fk
            seg = Segment4(
                src,
                dst,
                sp,
                dp,
                seq_i,
                ack_i,
                flags_i,
                window_i,
                payload_i,
                iplen_i,
            )
        else:
            link_i, data_b = dec.slow_frames[i]
            seg_or_none = decode(link_i, data_b, stats)
            if seg_or_none is None:
                continue
            seg = seg_or_none
        done = feed(times[i], seg, wire_i, record)
        if done:
            if reused is not None:
                reused.extend((record, conn) for conn in done)
            else:
                summary.connections += len(done)
                yield from done
        if fk is not None:
            flow = flows.get(fk)
            if flow is not None:
                z = flow.zeek
                if (z.orig.state == reset or z.resp.state == reset) and not all_slow_l[g]:
                    all_slow_l[g] = True
                    for j in o[pos + 1 : gend_l[g]].tolist():
                        if j not in queued:
                            queued.add(j)
                            heapq.heappush(pending, j)
                watch(g, pos, flow)
    for g in range(ngroups):
        if applied[g] < gend_l[g]:
            apply(g, gend_l[g])
    if not part:
        stats.frames += dec.nfast
        stats.tcp += dec.nfast


def _part(key: tuple[bytes, int, bytes, int]) -> int:
    """Partition of a 4-tuple: 1 (the worker, which also decodes) for 3/8 of them.

    From the low bits of both ports and both addresses' last bytes, so both
    directions of a connection land on the same side.
    """
    return int((key[1] ^ key[3] ^ key[0][-1] ^ key[2][-1]) % 8 < 3)


class _ChunkArrived(Exception):
    """A decoded chunk came in while waiting for the end of input."""


def _monotonic(dec: _Decoded) -> bool:
    return bool(np.all(dec.stamps[1:] >= dec.stamps[:-1]))


def _partitioned(
    decoded: Iterator[_Decoded], tracker: Tracker, summary: CaptureSummary
) -> Iterator[Connection]:
    """Track with two processes: connections split by 4-tuple, results as from one.

    A forked worker reads and decodes every chunk (sending each here, as in
    :func:`_offloaded`), then both processes track the same chunk, each only
    the groups it owns (:func:`_part`): connections never share state, so each
    tracker sees exactly the segments one tracker would for those
    connections.  What is global in one tracker is reconciled at every chunk
    boundary, where the single-process path sweeps (theory of operation):

    * connection numbers: one tracker numbers connections in the order their
      first record arrives, so both sides send the records that created
      connections in the chunk and renumber from the merged list;
    * the sweep decision (capture time, packets since the last sweep, live
      connections) is taken here from both sides' figures and sent to the
      worker, which evicts what is stale and sends those connections back;
      output order is that of one tracker: connections finished by port reuse
      in record order, then each sweep's batch in connection order;
    * capture time inside a chunk is the time of the packet being fed when
      timestamps do not go backwards, in either process.  A chunk where they
      do, more live connections than the tracker's cap, or the end of input
      makes the worker hand its connections over (pickled) and go on only
      decoding: this process then has everything one tracker would have.
    """
    up_r, up_w = os.pipe()
    down_r, down_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child; its results are checked in the parent
        code = 0
        try:
            os.close(up_r)
            os.close(down_w)
            _partition_worker(decoded, tracker, up_w, down_r)
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    os.close(up_w)
    os.close(down_r)
    pipe = open(up_r, "rb", buffering=1 << 20)  # noqa: SIM115 - closed in finally
    ahead: list[_Decoded] = []
    stats = summary.decode
    held: list[list[Connection]] = []  # this side's last sweep, to merge with the worker's
    evicted: list[list[Connection]] = []  # the worker's, when it came in early
    split = True

    def take(flows: list[tuple[tuple[bytes, int, bytes, int], _Flow]]) -> None:
        nonlocal split
        merged = [*tracker.flows.items(), *flows]
        merged.sort(key=lambda kv: kv[1].index)
        tracker.flows.clear()
        tracker.flows.update(merged)
        split = False

    def wait_for(kind: str) -> Any:
        """The worker's next message of ``kind``; chunks sent ahead are kept.

        Waiting for "end" means waiting for the next chunk or the end: a chunk
        then raises :class:`_ChunkArrived`.
        """
        if kind == "evicted" and evicted:
            return evicted.pop()
        while True:
            got, payload = _receive(pipe)
            if got == kind:
                return payload
            if got == "evicted":  # the worker's share of a held sweep batch
                evicted.append(payload)
            elif got == "chunk":
                ahead.append(_grow(payload))
                if kind == "end":
                    raise _ChunkArrived
            elif got == "flows-sent":
                pass
            elif got == "flows":
                take(payload)
            elif got == "input-error":
                cls, reason, where = payload
                raise cls(reason, **where)
            elif got == "failure":
                raise RuntimeError(f"tracking worker failed:\n{payload}")
            else:
                raise RuntimeError(f"tracking worker sent {got!r} instead of {kind!r}")

    try:
        try:
            while True:
                if not ahead:
                    try:
                        wait_for("end")
                        break
                    except _ChunkArrived:
                        pass
                dec = ahead.pop(0)
                if split and not _monotonic(dec):
                    yield from _flush(held, tracker, summary, wait_for)
                    wait_for("flows-sent")  # the worker handed its connections over
                if not split:
                    yield from _flush(held, tracker, summary, wait_for)
                    yield from _track(dec, tracker, stats, summary)
                    done = tracker.sweep(dec.n)
                    summary.connections += len(done)
                    yield from done
                    continue
                yield from _split_chunk(dec, tracker, summary, wait_for, down_w, held)
        except TruncatedInput as exc:
            yield from _flush(held, tracker, summary, wait_for)
            if split:
                wait_for("flows-sent")
            yield from summary.finish(tracker, exc)
            raise
        yield from _flush(held, tracker, summary, wait_for)
        if split:
            wait_for("flows-sent")
        yield from summary.finish(tracker)
    finally:
        pipe.close()
        os.close(down_w)
        os.waitpid(pid, 0)


def _split_chunk(
    dec: _Decoded,
    tracker: Tracker,
    summary: CaptureSummary,
    wait_for: Any,
    down_w: int,
    held: list[list[Connection]],
) -> Iterator[Connection]:
    """This process's half of one chunk, then the reconciliation (see :func:`_partitioned`).

    The previous sweep's batch is yielded only after this half is tracked: the
    worker's share of it arrives meanwhile, and nothing this chunk finishes
    is yielded before it.
    """
    count0 = tracker.count
    live0 = len(tracker.flows)
    reused: list[tuple[int, Connection]] = []
    for _ in _track(dec, tracker, summary.decode, summary, part=0, reused=reused):
        pass  # nothing is yielded with ``reused``
    yield from _flush(held, tracker, summary, wait_for)
    now_w, since_w, live_w, live0_w, created_w, reused_w, stats_w = wait_for("report")
    for name, value in stats_w.items():
        setattr(summary.decode, name, getattr(summary.decode, name) + value)
    created = sorted(_created(tracker, count0, reused) + created_w)
    number = {record: count0 + 1 + k for k, record in enumerate(created)}
    finishes = sorted([r for r, _c in reused] + [r for r, _c in reused_w])
    # the peak as one tracker measures it: live connections right after each creation
    live, k = live0 + live0_w, 0
    for record in created:
        while k < len(finishes) and finishes[k] <= record:
            live -= 1
            k += 1
        live += 1
        tracker.peak = max(tracker.peak, live)
    now = max(tracker.now, now_w)
    since = tracker._since_sweep + since_w  # the worker sent its own feeds only
    live_all = len(tracker.flows) + live_w
    if live_all > tracker.max_connections:
        mode = "migrate"
    elif now >= tracker._next_sweep and (since + dec.n) * 4 >= live_all:
        mode = "sweep"
    else:
        mode = "keep"
    _send(down_w, ("decision", (count0, number, now, since, mode)))
    _reconcile(tracker, count0, number, now, since)
    for conns in (reused, reused_w):
        for _record, conn in conns:
            if conn.index > count0:
                conn.index = number[conn.first_record]
    for _record, conn in sorted([*reused, *reused_w], key=lambda rc: rc[0]):
        summary.connections += 1
        yield conn
    if mode == "migrate":
        wait_for("flows-sent")
        done = tracker.sweep(dec.n)
        summary.connections += len(done)
        yield from done
    elif mode == "sweep":
        tracker._since_sweep += dec.n
        held.append(tracker._sweep())  # the worker swept too: merged in _flush
    else:
        tracker._since_sweep += dec.n


def _flush(
    held: list[list[Connection]], tracker: Tracker, summary: CaptureSummary, wait_for: Any
) -> Iterator[Connection]:
    """Yield a held sweep batch merged with the worker's, in connection order."""
    if not held:
        return
    theirs: list[Connection] = wait_for("evicted")
    tracker.evicted += len(theirs)
    done = sorted([*held.pop(), *theirs], key=lambda c: c.index)
    summary.connections += len(done)
    yield from done


def _created(tracker: Tracker, count0: int, reused: list[tuple[int, Connection]]) -> list[int]:
    """Records that created connections since the count was ``count0`` (newest last in dict)."""
    out = [conn.first_record for _r, conn in reused if conn.index > count0]
    for flow in reversed(tracker.flows.values()):
        if flow.index <= count0:
            break
        out.append(flow.first_record)
    return out


def _reconcile(
    tracker: Tracker, count0: int, number: dict[int, int], now: float, since: int
) -> None:
    """Both processes: global numbering, clock and sweep counter after a chunk."""
    for flow in reversed(tracker.flows.values()):
        if flow.index <= count0:
            break
        flow.index = number[flow.first_record]
    tracker.count = count0 + len(number)
    tracker.now = now
    tracker._since_sweep = since


def _partition_worker(
    decoded: Iterator[_Decoded], tracker: Tracker, up_w: int, down_r: int
) -> None:
    """The worker's side of :func:`_partitioned`."""
    control = open(down_r, "rb")  # noqa: SIM115 - the process ends with it
    # Writes go through a thread: a chunk sent ahead must not wait for the parent
    # to read it (that would put the two halves of a chunk one after the other).
    outbox: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()

    def writer() -> None:
        try:
            while (data := outbox.get()) is not None:
                view = memoryview(data)
                while view:
                    view = view[os.write(up_w, view) :]
        except OSError:
            pass  # EPIPE: the parent stopped reading

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()

    def send(item: tuple[str, Any]) -> None:
        data = pickle.dumps(item, protocol=pickle.HIGHEST_PROTOCOL)
        outbox.put(len(data).to_bytes(8, "little") + data)

    summary = CaptureSummary()  # frames are counted by the parent
    stats = summary.decode
    split = True
    error: InputError | None = None

    def hand_over() -> None:
        nonlocal split
        send(("flows", list(tracker.flows.items())))
        send(("flows-sent", None))
        tracker.flows.clear()
        split = False

    def produce() -> _Decoded | None:
        nonlocal error
        try:
            dec = next(decoded)
        except StopIteration:
            return None
        except InputError as exc:
            error = exc
            return None
        send(("chunk", _shrink(dec)))
        return dec

    try:
        current = produce()
        while current is not None:
            following = produce()  # decoded and sent before this one is tracked
            if split and not _monotonic(current):
                hand_over()
            if split:
                count0, since0 = tracker.count, tracker._since_sweep
                live0 = len(tracker.flows)
                reused: list[tuple[int, Connection]] = []
                for _ in _track(current, tracker, stats, summary, part=1, reused=reused):
                    pass
                delta = {name: getattr(stats, name) for name in DecodeStats.__dataclass_fields__}
                for name in delta:
                    setattr(stats, name, 0)
                report = (
                    tracker.now,
                    tracker._since_sweep - since0,
                    len(tracker.flows),
                    live0,
                    _created(tracker, count0, reused),
                    reused,
                    delta,
                )
                send(("report", report))
                _kind, payload = _receive(control)
                count0, number, now, since, mode = payload
                _reconcile(tracker, count0, number, now, since)
                if mode == "migrate":
                    hand_over()
                elif mode == "sweep":
                    tracker._since_sweep += current.n
                    send(("evicted", tracker._sweep()))
                else:
                    tracker._since_sweep += current.n
            current = following
        if split:
            hand_over()
        if error is not None:
            where = {
                "path": error.path,
                "line": error.line,
                "offset": error.offset,
                "record": error.record,
            }
            send(("input-error", (type(error), error.reason, where)))
        else:
            send(("end", None))
    except OSError:
        pass  # EPIPE: the parent stopped reading
    except Exception:
        send(("failure", traceback.format_exc()))
    finally:
        outbox.put(None)
        thread.join()


def _side_index(flow: _Flow, key: tuple[bytes, int, bytes, int], phys: int) -> int:
    """Tracker side (0 orig, 1 resp) of physical side ``phys`` (0: key's first address)."""
    ip, port = (key[0], key[1]) if phys == 0 else (key[2], key[3])
    return 0 if (ip == flow.orig_ip and port == flow.orig_port) else 1


def _phys_of(flow: _Flow, key: tuple[bytes, int, bytes, int], s: int) -> int:
    return 0 if _side_index(flow, key, 0) == s else 1
