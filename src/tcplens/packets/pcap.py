"""Capture file readers (pcap, pcapng) and a pcap writer.

Readers take a *binary file object* and stream: they never load the whole
file, they never seek, so a pipe works as well as a file, and memory stays
the size of one read chunk however large the capture is.  The layout is
picked from the first four bytes (the magic number), as dpkt and libpcap do:

=============  ==========================================================
``a1b2c3d4``   pcap, microsecond timestamps (either byte order)
``a1b23c4d``   pcap, nanosecond timestamps (either byte order)
``0a0d0d0a``   pcapng section header block (byte order from its own magic)
=============  ==========================================================

Formats: pcap is https://www.ietf.org/archive/id/draft-ietf-opsawg-pcap-04.html
and pcapng is https://www.ietf.org/archive/id/draft-ietf-opsawg-pcapng-01.html
(block layouts cited next to the structs below).

A record cut short by the end of the file is *not* yielded as garbage: every
complete record before it is yielded, then :class:`TruncatedInput` names the
record number (1-based, like Wireshark's frame numbers) and the byte offset
where that record starts.  A record whose length is impossible (a pcap
captured length above :func:`record_limit`, a pcapng block length that is
not a multiple of 4, too large, or repeated differently at its end, a packet
running past its block) ends the readable part the same way, as
:class:`CorruptRecord` (a kind of truncation): nothing after it can be
framed.  Anything that is not a capture at all raises :class:`InputError`
with one line saying why.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from tcplens.errors import CorruptRecord, InputError, TruncatedInput

__all__ = [
    "LINKTYPE_NAMES",
    "Frame",
    "PcapWriter",
    "read_frames",
    "record_limit",
]

#: link-layer header types we know by name (https://www.tcpdump.org/linktypes.html)
LINKTYPE_NAMES: dict[int, str] = {
    0: "NULL",
    1: "ETHERNET",
    12: "RAW",
    14: "RAW",
    101: "RAW",
    108: "LOOP",
    113: "LINUX_SLL",
    228: "IPV4",
    229: "IPV6",
    276: "LINUX_SLL2",
    9: "PPP",
    10: "FDDI",
    50: "PPP_HDLC",
    51: "PPP_ETHER",
    104: "C_HDLC",
    105: "IEEE802_11",
    127: "IEEE802_11_RADIOTAP",
}

_CHUNK = 1 << 20
#: A record longer than this is garbage, not a packet: four times libpcap's
#: MAXIMUM_SNAPLEN (262144), the largest snapshot of the link types we decode.
_MAX_RECORD = 262_144 * 4
#: No file header can raise the limit past this (libpcap's largest per-link-type
#: maximum, D-Bus, is 128 MiB); a longer "record" is a damaged length field.
_ABSURD_RECORD = 256 << 20


def record_limit(snaplen: int) -> int:
    """The largest captured length a pcap record of this file may have.

    A record longer than the file's snapshot length is accepted up to
    :data:`_MAX_RECORD`, as libpcap and Wireshark accept it (old Solaris
    writers got the header's snaplen wrong); a snaplen above that raises the
    limit, but never past :data:`_ABSURD_RECORD`, so a damaged header cannot
    make a damaged record length look plausible.
    """
    return min(max(snaplen, _MAX_RECORD), _ABSURD_RECORD)


# --- pcap: file header (24 bytes) and record header (16 bytes) ---------------
# struct pcap_file_header { u32 magic; u16 version_major, version_minor;
#   i32 thiszone; u32 sigfigs, snaplen, linktype; }   (libpcap pcap/pcap.h)
# struct pcap_sf_pkthdr  { u32 ts_sec, ts_usec_or_nsec, caplen, len; }
_PCAP_MAGIC_US = 0xA1B2C3D4
_PCAP_MAGIC_NS = 0xA1B23C4D
_PCAP_HDR = {"<": struct.Struct("<IHHiIII"), ">": struct.Struct(">IHHiIII")}
_PCAP_REC = {"<": struct.Struct("<IIII"), ">": struct.Struct(">IIII")}

# --- pcapng: generic block header and the blocks we read ----------------------
# block: u32 type; u32 total_length; body; u32 total_length (padded to 4)
_PCAPNG_SHB = 0x0A0D0D0A
_PCAPNG_BOM = 0x1A2B3C4D
_PCAPNG_IDB = 0x00000001
_PCAPNG_OPB = 0x00000002  # obsolete packet block
_PCAPNG_SPB = 0x00000003
_PCAPNG_EPB = 0x00000006
_BLOCK_HDR = {"<": struct.Struct("<II"), ">": struct.Struct(">II")}
# IDB body: u16 linktype; u16 reserved; u32 snaplen; options
_IDB = {"<": struct.Struct("<HHI"), ">": struct.Struct(">HHI")}
# EPB body: u32 interface_id; u32 ts_high; u32 ts_low; u32 caplen; u32 origlen; data
_EPB = {"<": struct.Struct("<IIIII"), ">": struct.Struct(">IIIII")}
# OPB body: u16 interface_id; u16 drops; u32 ts_high; u32 ts_low; u32 caplen; u32 len
_OPB = {"<": struct.Struct("<HHIIII"), ">": struct.Struct(">HHIIII")}
# SPB body: u32 origlen; data
_SPB = {"<": struct.Struct("<I"), ">": struct.Struct(">I")}
# option: u16 code; u16 length; value padded to 4
_OPT = {"<": struct.Struct("<HH"), ">": struct.Struct(">HH")}
_OPT_IF_TSRESOL = 9
_OPT_IF_TSOFFSET = 14


@dataclass(frozen=True, slots=True)
class Frame:
    """One captured packet as the file stores it, before any decoding."""

    ts_ns: int  # nanoseconds since the epoch (integer: no float rounding)
    linktype: int
    data: bytes
    wire_len: int  # length on the wire; > len(data) when the snapshot length cut it
    record: int  # 1-based record number (Wireshark's frame number)
    offset: int  # byte offset of the record in the file
    interface: int = 0

    @property
    def ts(self) -> float:
        return self.ts_ns / 1e9


class _Stream:
    """A forward-only byte window over a file object, read in large chunks.

    Parsing from one ``bytes`` buffer with ``unpack_from`` is what makes a
    pure-Python reader fast; the window is refilled only when a record
    crosses its end, so memory is bounded by the chunk plus one record.
    """

    __slots__ = ("base", "buf", "eof", "fileobj", "pos")

    def __init__(self, fileobj: BinaryIO) -> None:
        self.fileobj = fileobj
        self.buf = b""
        self.pos = 0  # position in buf
        self.base = 0  # file offset of buf[0]
        self.eof = False

    def offset(self) -> int:
        return self.base + self.pos

    def ensure(self, n: int) -> bool:
        """Make ``n`` bytes available at ``pos``; False if the file ends first."""
        while len(self.buf) - self.pos < n:
            if self.eof:
                return False
            chunk = self.fileobj.read(max(_CHUNK, n))
            if not chunk:
                self.eof = True
                return False
            self.base += self.pos
            self.buf = self.buf[self.pos :] + chunk
            self.pos = 0
        return True

    def remaining(self) -> int:
        return len(self.buf) - self.pos


def _name(fileobj: BinaryIO, path: str | None) -> str | None:
    if path is not None:
        return path
    name = getattr(fileobj, "name", None)
    return name if isinstance(name, str) else None


def read_frames(fileobj: BinaryIO, path: str | None = None) -> Iterator[Frame]:
    """Yield every frame of a pcap or pcapng stream, in file order."""
    where = _name(fileobj, path)
    stream = _Stream(fileobj)
    if not stream.ensure(4):
        if stream.remaining() == 0:
            raise InputError("empty file, not a capture", path=where)
        raise InputError("too short to be a capture", path=where, offset=0)
    head = stream.buf[:4]
    magic_le = struct.unpack("<I", head)[0]
    if magic_le in (_PCAP_MAGIC_US, _PCAP_MAGIC_NS):
        yield from _read_pcap(stream, "<", magic_le == _PCAP_MAGIC_NS, where)
    elif struct.unpack(">I", head)[0] in (_PCAP_MAGIC_US, _PCAP_MAGIC_NS):
        yield from _read_pcap(stream, ">", struct.unpack(">I", head)[0] == _PCAP_MAGIC_NS, where)
    elif magic_le == _PCAPNG_SHB:
        yield from _read_pcapng(stream, where)
    else:
        raise InputError(f"not a pcap or pcapng file (magic 0x{head.hex()})", path=where, offset=0)


def _read_pcap(stream: _Stream, order: str, nanos: bool, where: str | None) -> Iterator[Frame]:
    hdr = _PCAP_HDR[order]
    if not stream.ensure(hdr.size):
        raise InputError("pcap file header is truncated", path=where, offset=0)
    _magic, major, _minor, _zone, _sigfigs, snaplen, network = hdr.unpack_from(stream.buf, 0)
    if major != 2:
        raise InputError(f"unsupported pcap version {major}", path=where, offset=4)
    # The upper bits of the link-type field carry FCS information (pcap draft, section 4).
    linktype = network & 0xFFFF
    stream.pos = hdr.size
    rec = _PCAP_REC[order]
    unpack = rec.unpack_from
    limit = record_limit(snaplen)
    scale = 1 if nanos else 1000
    record = 0
    while True:
        record += 1
        if not stream.ensure(16):
            if stream.remaining():
                raise TruncatedInput(
                    "record header is truncated",
                    path=where,
                    record=record,
                    offset=stream.offset(),
                )
            return
        pos = stream.pos
        sec, frac, caplen, wire = unpack(stream.buf, pos)
        if caplen > limit:
            raise CorruptRecord(
                f"captured length {caplen} is larger than any packet (limit {limit}); "
                "the capture is damaged from this record on",
                path=where,
                record=record,
                offset=stream.offset(),
            )
        if not stream.ensure(16 + caplen):
            raise TruncatedInput(
                f"record is truncated ({stream.remaining() - 16} of {caplen} bytes present)",
                path=where,
                record=record,
                offset=stream.offset(),
            )
        pos = stream.pos
        start = stream.offset()
        data = stream.buf[pos + 16 : pos + 16 + caplen]
        stream.pos = pos + 16 + caplen
        yield Frame(sec * 1_000_000_000 + frac * scale, linktype, data, wire, record, start)


@dataclass(slots=True)
class _Interface:
    linktype: int
    snaplen: int
    #: timestamp units per second (if_tsresol; default 10**6)
    units: int = 1_000_000
    #: seconds added to every timestamp (if_tsoffset)
    offset_s: int = 0


def _parse_options(
    body: bytes, start: int, order: str, where: str | None, at: int
) -> Iterator[tuple[int, bytes]]:
    opt = _OPT[order]
    pos = start
    while pos + 4 <= len(body):
        code, length = opt.unpack_from(body, pos)
        if code == 0:  # opt_endofopt
            return
        value = body[pos + 4 : pos + 4 + length]
        if len(value) < length:
            raise InputError(f"option {code} runs past its block", path=where, offset=at + pos)
        yield code, value
        pos += 4 + ((length + 3) & ~3)


def _tsresol(value: int) -> int:
    """Units per second from an if_tsresol byte: MSB clear = 10^-n, set = 2^-n."""
    exponent = value & 0x7F
    if value & 0x80:
        return 1 << min(exponent, 63)
    return int(10 ** min(exponent, 18))


def _read_pcapng(stream: _Stream, where: str | None) -> Iterator[Frame]:
    order = "<"
    interfaces: list[_Interface] = []
    record = 0
    section_seen = False
    while True:
        if not stream.ensure(8):
            if stream.remaining():
                raise TruncatedInput(
                    "block header is truncated",
                    path=where,
                    record=record + 1,
                    offset=stream.offset(),
                )
            return
        start = stream.offset()
        pos = stream.pos
        raw_type = struct.unpack_from("<I", stream.buf, pos)[0]
        if raw_type == _PCAPNG_SHB:
            # The section header's own byte-order magic decides the order of everything in it.
            if not stream.ensure(12):
                raise TruncatedInput(
                    "section header is truncated", path=where, record=record + 1, offset=start
                )
            pos = stream.pos
            bom = stream.buf[pos + 8 : pos + 12]
            if struct.unpack("<I", bom)[0] == _PCAPNG_BOM:
                order = "<"
            elif struct.unpack(">I", bom)[0] == _PCAPNG_BOM:
                order = ">"
            else:
                raise InputError(
                    f"pcapng section header has a bad byte-order magic 0x{bom.hex()}",
                    path=where,
                    offset=start + 8,
                )
            interfaces = []
            section_seen = True
        elif not section_seen:
            raise InputError("pcapng file does not start with a section header", path=where)
        block_type, total = _BLOCK_HDR[order].unpack_from(stream.buf, pos)
        if total < 12 or total % 4 or total > _MAX_RECORD + 64:
            raise CorruptRecord(
                f"block of type 0x{block_type:08x} has an impossible length {total}; "
                "the capture is damaged from this block on",
                path=where,
                record=record + 1,
                offset=start,
            )
        if not stream.ensure(total):
            raise TruncatedInput(
                f"block is truncated ({stream.remaining()} of {total} bytes present)",
                path=where,
                record=record + 1,
                offset=start,
            )
        pos = stream.pos
        block = stream.buf[pos : pos + total]
        stream.pos = pos + total
        trailer = _BLOCK_HDR[order].unpack_from(block, total - 8)[1]
        if trailer != total:
            raise CorruptRecord(
                f"block lengths disagree ({total} at the start, {trailer} at the end); "
                "the capture is damaged from this block on",
                path=where,
                record=record + 1,
                offset=start,
            )
        body = block[8 : total - 4]
        if block_type == _PCAPNG_IDB:
            interfaces.append(_parse_idb(body, order, where, start))
        elif block_type in (_PCAPNG_EPB, _PCAPNG_OPB, _PCAPNG_SPB):
            record += 1
            yield _packet_block(block_type, body, order, interfaces, record, start, where)
        # every other block (name resolution, statistics, custom...) is skipped


def _parse_idb(body: bytes, order: str, where: str | None, at: int) -> _Interface:
    if len(body) < 8:
        raise InputError("interface description block is too short", path=where, offset=at)
    linktype, _reserved, snaplen = _IDB[order].unpack_from(body, 0)
    iface = _Interface(linktype, snaplen)
    for code, value in _parse_options(body, 8, order, where, at + 8):
        if code == _OPT_IF_TSRESOL and value:
            iface.units = _tsresol(value[0])
        elif code == _OPT_IF_TSOFFSET and len(value) >= 8:
            iface.offset_s = int(struct.unpack(order + "q", value[:8])[0])
    return iface


def _packet_block(
    block_type: int,
    body: bytes,
    order: str,
    interfaces: list[_Interface],
    record: int,
    at: int,
    where: str | None,
) -> Frame:
    if block_type == _PCAPNG_SPB:
        if len(body) < 4 or not interfaces:
            raise InputError(
                "simple packet block without an interface", path=where, record=record, offset=at
            )
        (wire,) = _SPB[order].unpack_from(body, 0)
        iface = interfaces[0]
        caplen = min(wire, iface.snaplen or wire, len(body) - 4)
        # A simple packet block has no timestamp at all.
        return Frame(0, iface.linktype, body[4 : 4 + caplen], wire, record, at, 0)
    if block_type == _PCAPNG_EPB:
        header = _EPB[order]
        if len(body) < header.size:
            raise InputError("packet block is too short", path=where, record=record, offset=at)
        if_id, hi, lo, caplen, wire = header.unpack_from(body, 0)
    else:
        header = _OPB[order]
        if len(body) < header.size:
            raise InputError("packet block is too short", path=where, record=record, offset=at)
        if_id, _drops, hi, lo, caplen, wire = header.unpack_from(body, 0)
    if if_id >= len(interfaces):
        raise InputError(
            f"packet refers to interface {if_id}, but only {len(interfaces)} are described",
            path=where,
            record=record,
            offset=at,
        )
    if header.size + caplen > len(body):
        raise CorruptRecord(
            f"captured length {caplen} runs past its block; the capture is damaged from this "
            "block on",
            path=where,
            record=record,
            offset=at,
        )
    iface = interfaces[if_id]
    units = (hi << 32) | lo
    ts_ns = units if iface.units == 1_000_000_000 else units * 1_000_000_000 // iface.units
    ts_ns += iface.offset_s * 1_000_000_000
    data = body[header.size : header.size + caplen]
    return Frame(ts_ns, iface.linktype, data, wire, record, at, if_id)


class PcapWriter:
    """Write frames as a classic pcap file (nanosecond magic, host byte order).

    Used by ``tcplens capture -w``; the nanosecond variant keeps AF_PACKET's
    timestamps without rounding and every reader since libpcap 1.5 accepts it.
    """

    def __init__(
        self,
        fileobj: BinaryIO,
        linktype: int = 1,
        *,
        snaplen: int = 262_144,
        nanosecond: bool = True,
    ) -> None:
        self.fileobj = fileobj
        self.nanosecond = nanosecond
        magic = _PCAP_MAGIC_NS if nanosecond else _PCAP_MAGIC_US
        fileobj.write(_PCAP_HDR["<"].pack(magic, 2, 4, 0, 0, snaplen, linktype))
        self.snaplen = snaplen
        self.count = 0

    def write(self, ts_ns: int, data: bytes, wire_len: int | None = None) -> None:
        sec, rest = divmod(ts_ns, 1_000_000_000)
        frac = rest if self.nanosecond else rest // 1000
        data = data[: self.snaplen]
        wire = len(data) if wire_len is None else wire_len
        self.fileobj.write(_PCAP_REC["<"].pack(sec, frac, len(data), wire))
        self.fileobj.write(data)
        self.count += 1

    def flush(self) -> None:
        self.fileobj.flush()
