"""Build packets and capture files byte by byte, independently of the reader.

The tests need captures with properties the public fixtures do not have
(nanosecond pcap in big-endian order, pcapng with two interfaces and odd
timestamp resolutions, QinQ, IPv6 extension headers).  These builders write
the formats from their specifications with plain ``struct`` so a reader bug
cannot hide behind a shared helper.
"""

from __future__ import annotations

import ipaddress
import struct

FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10


def tcp(
    sport: int,
    dport: int,
    seq: int = 0,
    ack: int = 0,
    flags: int = ACK,
    *,
    window: int = 65535,
    payload: bytes = b"",
    options: bytes = b"",
) -> bytes:
    assert len(options) % 4 == 0
    offset = (20 + len(options)) // 4
    header = struct.pack(
        "!HHIIBBHHH",
        sport,
        dport,
        seq & 0xFFFFFFFF,
        ack & 0xFFFFFFFF,
        offset << 4,
        flags,
        window,
        0,
        0,
    )
    return header + options + payload


def ipv4(
    src: str, dst: str, payload: bytes, *, proto: int = 6, options: bytes = b"", frag: int = 0
) -> bytes:
    assert len(options) % 4 == 0
    ihl = (20 + len(options)) // 4
    total = 20 + len(options) + len(payload)
    header = struct.pack(
        "!BBHHHBBH4s4s",
        (4 << 4) | ihl,
        0,
        total,
        1,
        frag,
        64,
        proto,
        0,
        ipaddress.IPv4Address(src).packed,
        ipaddress.IPv4Address(dst).packed,
    )
    return header + options + payload


def ipv6(
    src: str, dst: str, payload: bytes, *, ext: list[tuple[int, bytes]] | None = None
) -> bytes:
    """``ext``: (header type, body) pairs; bodies are padded to the 8-byte rule."""
    chain = ext or []
    blob = b""
    types = [t for t, _ in chain] + [6]
    for index, (_kind, body) in enumerate(chain):
        nxt = types[index + 1]
        if _kind == 44:  # fragment header: fixed 8 bytes, body is offset/flags + id
            blob += struct.pack("!BB", nxt, 0) + body
            continue
        raw = struct.pack("!BB", nxt, 0) + body
        pad = (-len(raw)) % 8
        raw += b"\x00" * pad
        blob += struct.pack("!BB", nxt, len(raw) // 8 - 1) + raw[2:]
    first = types[0]
    header = struct.pack(
        "!IHBB16s16s",
        6 << 28,
        len(blob) + len(payload),
        first,
        64,
        ipaddress.IPv6Address(src).packed,
        ipaddress.IPv6Address(dst).packed,
    )
    return header + blob + payload


def ether(
    payload: bytes, ethertype: int = 0x0800, vlans: tuple[tuple[int, int], ...] = ()
) -> bytes:
    """``vlans``: (TPID, VLAN id) from the outside in."""
    out = b"\x02\x00\x00\x00\x00\x01" + b"\x02\x00\x00\x00\x00\x02"
    for tpid, vid in vlans:
        out += struct.pack("!H", tpid) + struct.pack("!H", vid & 0x0FFF)
    return out + struct.pack("!H", ethertype) + payload


def sll(payload: bytes, protocol: int = 0x0800) -> bytes:
    return struct.pack("!HHH8sH", 0, 1, 6, b"\x02" * 6 + b"\x00\x00", protocol) + payload


def sll2(payload: bytes, protocol: int = 0x0800) -> bytes:
    return struct.pack("!HHIHBB8s", protocol, 0, 1, 1, 0, 6, b"\x02" * 6 + b"\x00\x00") + payload


def null(payload: bytes, family: int, order: str = "<") -> bytes:
    return struct.pack(order + "I", family) + payload


def pcap(
    frames: list[tuple[int, bytes]],
    *,
    linktype: int = 1,
    order: str = "<",
    nanos: bool = False,
    snaplen: int = 65535,
) -> bytes:
    """``frames``: (timestamp in ns, bytes)."""
    magic = 0xA1B23C4D if nanos else 0xA1B2C3D4
    out = struct.pack(order + "IHHiIII", magic, 2, 4, 0, 0, snaplen, linktype)
    for ts_ns, data in frames:
        sec, rest = divmod(ts_ns, 1_000_000_000)
        frac = rest if nanos else rest // 1000
        out += struct.pack(order + "IIII", sec, frac, len(data), len(data)) + data
    return out


def _pad4(data: bytes) -> bytes:
    return data + b"\x00" * ((-len(data)) % 4)


def ng_block(kind: int, body: bytes, order: str = "<") -> bytes:
    body = _pad4(body)
    total = 12 + len(body)
    return struct.pack(order + "II", kind, total) + body + struct.pack(order + "I", total)


def ng_option(code: int, value: bytes, order: str = "<") -> bytes:
    return struct.pack(order + "HH", code, len(value)) + _pad4(value)


def ng_shb(order: str = "<") -> bytes:
    body = struct.pack(order + "IHHq", 0x1A2B3C4D, 1, 0, -1)
    return ng_block(0x0A0D0D0A, body, order)


def ng_idb(
    linktype: int, *, tsresol: int | None = None, order: str = "<", snaplen: int = 0
) -> bytes:
    body = struct.pack(order + "HHI", linktype, 0, snaplen)
    if tsresol is not None:
        body += ng_option(9, bytes([tsresol]), order) + ng_option(0, b"", order)
    return ng_block(1, body, order)


def ng_epb(iface: int, units: int, data: bytes, order: str = "<") -> bytes:
    body = struct.pack(
        order + "IIIII", iface, units >> 32, units & 0xFFFFFFFF, len(data), len(data)
    )
    return ng_block(6, body + data, order)


def ng_spb(data: bytes, order: str = "<") -> bytes:
    return ng_block(3, struct.pack(order + "I", len(data)) + data, order)
