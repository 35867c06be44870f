"""Decode captured frames down to the TCP header fields the tracker needs.

Link layers: Ethernet, Linux cooked capture v1 and v2 (SLL, SLL2), BSD
loopback (NULL in the capturing host's byte order, LOOP in network order),
raw IPv4/IPv6, PPP, PPPoE, Cisco HDLC, FDDI, 802.11 with or without radiotap.
Every layer between them and the innermost IP header (VLAN tags, MPLS,
tunnels...) is decoded by :mod:`tcplens.packets.encap`; an IP payload that is
a tunnel goes back there, so the segment returned is the innermost one.
Network layer: IPv4 with options, IPv6 with its extension header chain.
Fragments are *counted, not reassembled*: only an unfragmented datagram
carries a TCP header we can trust to be whole.

Every wire structure is declared once below, as a :class:`struct.Struct`
with its byte order spelled out and the header it comes from named; the
bitfields that share a byte are unpacked by small functions with their
parentheses written out (``(b >> 4) & 0xF``) and tested on their own.

Byte counts come from the IP length fields, not from how much was
captured, so a capture cut by a snapshot length still counts payload
right, as tshark and Zeek do.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Callable
from dataclasses import dataclass, field

from tcplens.errors import InputError
from tcplens.packets import encap

__all__ = [
    "DecodeStats",
    "Segment4",
    "decode",
    "format_ip",
    "ihl_bytes",
    "ipv4_fragment",
    "supported_linktype",
    "tcp_data_offset",
]

# Ethernet II: u8 dst[6]; u8 src[6]; u16 ethertype            (linux/if_ether.h)
_ETH = struct.Struct("!6s6sH")
# 802.1Q / 802.1ad tag after the TPID: u16 TCI; u16 inner ethertype   (linux/if_vlan.h)
_VLAN = struct.Struct("!HH")
# Linux cooked v1: u16 pkttype; u16 hatype; u16 halen; u8 addr[8]; u16 protocol
#   (https://www.tcpdump.org/linktypes/LINKTYPE_LINUX_SLL.html)
_SLL = struct.Struct("!HHH8sH")
# Linux cooked v2: u16 protocol; u16 reserved; u32 ifindex; u16 hatype; u8 pkttype;
#   u8 halen; u8 addr[8]   (https://www.tcpdump.org/linktypes/LINKTYPE_LINUX_SLL2.html)
_SLL2 = struct.Struct("!HHIHBB8s")
# BSD NULL: u32 address family in the *capturing host's* byte order; LOOP: network order
_NULL_LE = struct.Struct("<I")
_NULL_BE = struct.Struct(">I")
# IPv4: u8 ver_ihl; u8 tos; u16 total_len; u16 id; u16 flags_frag; u8 ttl; u8 proto;
#   u16 csum; u8 src[4]; u8 dst[4]   (netinet/ip.h, RFC 791)
_IPV4 = struct.Struct("!BBHHHBBH4s4s")
# IPv6: u32 ver_tc_flow; u16 payload_len; u8 next_header; u8 hop_limit; u8 src[16];
#   u8 dst[16]   (netinet/ip6.h, RFC 8200)
_IPV6 = struct.Struct("!IHBB16s16s")
# IPv6 extension header prefix: u8 next_header; u8 hdr_ext_len   (RFC 8200 section 4)
_IPV6_EXT = struct.Struct("!BB")
# IPv6 fragment header: u8 next; u8 reserved; u16 offset_flags; u32 id
_IPV6_FRAG = struct.Struct("!BBHI")
# TCP: u16 sport; u16 dport; u32 seq; u32 ack; u8 data_offset; u8 flags; u16 window;
#   u16 csum; u16 urgent   (netinet/tcp.h, RFC 9293 section 3.1)
_TCP = struct.Struct("!HHIIBBHHH")

ETH_P_IP = 0x0800
ETH_P_IPV6 = 0x86DD
_VLAN_TPIDS = frozenset({0x8100, 0x88A8, 0x9100, 0x9200})
# BSD address families for IPv6 differ per OS (24 NetBSD/OpenBSD, 28 FreeBSD, 30 macOS)
_AF_INET = 2
_AF_INET6 = frozenset({10, 24, 28, 30})

IPPROTO_TCP = 6
_V6_EXTENSIONS = frozenset({0, 43, 60, 135, 139, 140})  # hop-by-hop, routing, dest opts, ...
_V6_FRAGMENT = 44
_V6_AH = 51

LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
LINKTYPE_LOOP = 108
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = 276
_RAW_TYPES = frozenset({12, 14, LINKTYPE_RAW, LINKTYPE_IPV4, LINKTYPE_IPV6})
_SUPPORTED = frozenset(
    {LINKTYPE_NULL, LINKTYPE_ETHERNET, LINKTYPE_LOOP, LINKTYPE_LINUX_SLL, LINKTYPE_LINUX_SLL2}
    | _RAW_TYPES
    | {9, 10, 50, 51, 104, 105, 127}
)


def ihl_bytes(ver_ihl: int) -> int:
    """IPv4 header length in bytes: the low nibble counts 32-bit words."""
    return (ver_ihl & 0x0F) * 4


def ipv4_fragment(flags_frag: int) -> bool:
    """True for any fragment: More Fragments set, or a non-zero fragment offset."""
    return bool((flags_frag & 0x2000) or (flags_frag & 0x1FFF))


def tcp_data_offset(byte12: int) -> int:
    """TCP header length in bytes: the high nibble of byte 12 counts 32-bit words."""
    return ((byte12 >> 4) & 0x0F) * 4


def supported_linktype(linktype: int) -> bool:
    return linktype in _SUPPORTED


@dataclass(slots=True)
class Segment4:
    """One TCP segment as seen on the wire: addresses, ports and header fields.

    Addresses stay raw ``bytes`` (4 or 16) so keying a connection costs no
    formatting; :func:`format_ip` turns them into text for display.
    """

    src: bytes
    dst: bytes
    sport: int
    dport: int
    seq: int
    ack: int
    flags: int
    window: int
    payload: int  # TCP payload bytes, from the IP length fields
    ip_len: int  # IP bytes (header + payload), Zeek's *_ip_bytes
    #: the encapsulation layers it came through, outermost first (``packets.encap``);
    #: part of the flow key, so one 4-tuple in two tunnels is two connections
    tunnel: tuple[str, ...] = ()
    #: the TCP checksum was checked (``DecodeStats.check_checksums``) and is wrong:
    #: Zeek records such a segment as history ``C``/``c`` and nothing else
    bad_checksum: bool = False
    #: the payload was not captured whole (snapshot length): Zeek's reassembler
    #: does not take it (``truncated_tcp_payload``), so its ACK shows a content gap
    payload_cut: bool = False


@dataclass(slots=True)
class DecodeStats:
    """What the decoder saw besides TCP, so nothing is silently dropped."""

    frames: int = 0
    tcp: int = 0
    fragments: int = 0
    non_ip: int = 0
    non_tcp: int = 0
    malformed: int = 0
    #: the ``non_ip`` frames by what they carried ("ethertype 0x88cc", "GRE protocol 0x880b", ...)
    unsupported: dict[str, int] = field(default_factory=dict)
    #: a setting, not a count: validate IPv4 header, UDP and TCP checksums as Zeek does
    #: by default (``pcap --check-checksums``).  Off, like Wireshark: a capture taken
    #: on the sending host carries offloaded checksums the NIC had not filled in yet.
    check_checksums: bool = False
    #: IPv4 headers with a wrong checksum (dropped, as Zeek's IP analyzer drops
    #: them), UDP tunnel datagrams with one (dropped, not decapsulated:
    #: ``encap._udp_checksum_bad``) plus TCP segments with one (kept, flagged
    #: ``bad_checksum``)
    bad_checksums: int = 0


def format_ip(raw: bytes) -> str:
    return str(ipaddress.ip_address(raw))


def decode(linktype: int, data: bytes, stats: DecodeStats | None = None) -> Segment4 | None:
    """Decode one frame to its innermost TCP segment; None (and a count) for anything else.

    An unknown link type is an input error, not a count: nothing in such a
    file could be decoded, so saying so once is more useful than zero rows.
    """
    st = stats if stats is not None else DecodeStats()
    st.frames += 1
    layers: list[str] = []
    try:
        offset, proto = _link(linktype, data, layers)
        while True:
            ip = (_ipv4 if proto == ETH_P_IP else _ipv6)(data, offset, st)
            if isinstance(ip, Segment4):
                st.tcp += 1
                if layers:
                    ip.tunnel = encap.chain(layers)
                return ip
            if ip is None:  # counted already
                return None
            nxt = encap.ip_payload(
                data, ip[1], ip[0], ip[2], ip[3], layers, ip[4], st.check_checksums
            )
            if nxt is None:
                st.non_tcp += 1
                return None
            offset, proto = nxt
    except (encap.Malformed, struct.error, IndexError):
        st.malformed += 1
    except encap.Unsupported as what:
        st.non_ip += 1
        st.unsupported[str(what)] = st.unsupported.get(str(what), 0) + 1
    except encap.BadChecksum:
        st.bad_checksums += 1
    return None


def _link(linktype: int, data: bytes, layers: list[str]) -> tuple[int, int]:
    """Offset of the first IP header and its ethertype, after every encapsulation."""
    if linktype == LINKTYPE_ETHERNET:
        return encap.ethernet(data, 0, layers)
    if linktype == LINKTYPE_LINUX_SLL2:
        return encap.ethertype(data, _SLL2.size, _SLL2.unpack_from(data, 0)[0], layers)
    if linktype == LINKTYPE_LINUX_SLL:
        return encap.ethertype(data, _SLL.size, _SLL.unpack_from(data, 0)[4], layers)
    if linktype in (LINKTYPE_NULL, LINKTYPE_LOOP):
        if linktype == LINKTYPE_LOOP:
            family = _NULL_BE.unpack_from(data, 0)[0]
        else:
            # The capturing host's byte order is not recorded: the family is a
            # small number, so whichever reading is small is the right one.
            family = _NULL_LE.unpack_from(data, 0)[0]
            if family > 0xFFFF:
                family = _NULL_BE.unpack_from(data, 0)[0]
        return encap.family(family)
    if linktype in _RAW_TYPES:
        return encap.raw(data, 0)
    if linktype in _LINKS:
        return _LINKS[linktype](data, layers)
    name = f"link type {linktype}"
    raise InputError(f"unsupported {name}; tcplens reads {LINKTYPES_READ}")


#: link types beyond Ethernet, cooked, loopback and raw IP (tcpdump.org/linktypes.html)
_LINKS: dict[int, Callable[[bytes, list[str]], tuple[int, int]]] = {
    9: lambda data, layers: encap.ppp(data, 0, layers),  # PPP
    50: encap.ppp_or_chdlc,  # PPP_HDLC
    51: lambda data, layers: encap.pppoe(data, 0, layers),  # PPP_ETHER
    10: encap.fddi,  # FDDI
    104: lambda data, layers: encap.chdlc(data, 0, layers),  # C_HDLC
    105: lambda data, layers: encap.wifi(data, 0, layers),  # IEEE802_11
    127: encap.radiotap,  # IEEE802_11_RADIOTAP
}
#: what the "not supported" message lists (the engine's message says the same)
LINKTYPES_READ = (
    "Ethernet, Linux SLL/SLL2, BSD NULL/LOOP, raw IP, PPP, Cisco HDLC, FDDI and IEEE 802.11"
)

#: an IP payload that is not TCP: (protocol, offset, src, dst, end as the IP
#: length fields say), maybe a tunnel
_Other = tuple[int, int, bytes, bytes, int]


def _ipv4(data: bytes, offset: int, st: DecodeStats) -> Segment4 | _Other | None:
    if len(data) < offset + _IPV4.size:
        st.malformed += 1
        return None
    ver_ihl, _tos, total, _id, flags_frag, _ttl, proto, _csum, src, dst = _IPV4.unpack_from(
        data, offset
    )
    ihl = ihl_bytes(ver_ihl)
    if (ver_ihl >> 4) != 4 or ihl < 20:
        st.malformed += 1
        return None
    if st.check_checksums and not checksum_ok(data[offset : offset + ihl]):
        st.bad_checksums += 1  # Zeek: weird bad_IP_checksum, the datagram is dropped
        return None
    if ipv4_fragment(flags_frag):
        st.fragments += 1
        return None
    if total == 0:  # TSO/GRO: the NIC fills the length in later; use what was captured
        total = len(data) - offset
    if proto != IPPROTO_TCP:
        return proto, offset + ihl, src, dst, offset + total
    if total < ihl:
        st.malformed += 1
        return None
    return _tcp(data, offset + ihl, src, dst, total - ihl, total, st)


def _ipv6(data: bytes, offset: int, st: DecodeStats) -> Segment4 | _Other | None:
    if len(data) < offset + _IPV6.size:
        st.malformed += 1
        return None
    vtf, plen, nxt, _hops, src, dst = _IPV6.unpack_from(data, offset)
    if (vtf >> 28) != 6:
        st.malformed += 1
        return None
    if plen == 0:  # jumbogram or TSO: fall back to the captured length
        plen = len(data) - offset - _IPV6.size
    pos = offset + _IPV6.size
    remaining = plen
    for _ in range(16):  # bounded: a chain longer than this is garbage
        if nxt == IPPROTO_TCP:
            return _tcp(data, pos, src, dst, remaining, plen + _IPV6.size, st)
        if nxt == _V6_FRAGMENT:
            if len(data) < pos + _IPV6_FRAG.size:
                st.malformed += 1
                return None
            nxt, _res, off_flags, _ident = _IPV6_FRAG.unpack_from(data, pos)
            if off_flags & 0xFFF9:  # offset (high 13 bits) or M flag (bit 0)
                st.fragments += 1
                return None
            pos += _IPV6_FRAG.size
            remaining -= _IPV6_FRAG.size
            continue
        if nxt in _V6_EXTENSIONS or nxt == _V6_AH:
            if len(data) < pos + _IPV6_EXT.size:
                st.malformed += 1
                return None
            following, hlen = _IPV6_EXT.unpack_from(data, pos)
            size = (hlen + 2) * 4 if nxt == _V6_AH else (hlen + 1) * 8
            nxt = following
            pos += size
            remaining -= size
            continue
        return nxt, pos, src, dst, offset + _IPV6.size + plen
    st.malformed += 1
    return None


def _tcp(
    data: bytes,
    pos: int,
    src: bytes,
    dst: bytes,
    length: int,
    ip_len: int,
    st: DecodeStats,
) -> Segment4 | None:
    if len(data) < pos + _TCP.size:
        st.malformed += 1
        return None
    sport, dport, seq, ack, off, flags, window, _csum, _urg = _TCP.unpack_from(data, pos)
    hdr = tcp_data_offset(off)
    if hdr < 20 or hdr > length:
        st.malformed += 1
        return None
    bad = st.check_checksums and _tcp_checksum_bad(data, pos, src, dst, length, st)
    return Segment4(
        src,
        dst,
        sport,
        dport,
        seq,
        ack,
        flags,
        window,
        length - hdr,
        ip_len,
        bad_checksum=bad,
        payload_cut=len(data) < pos + length,
    )


def checksum_ok(*parts: bytes) -> bool:
    """The Internet checksum (RFC 1071) over ``parts``, checksum field included.

    A correct header or segment sums to 0xFFFF (Zeek: ``in_cksum(...) == 0xffff``).
    The one's-complement sum does not depend on byte order, so native 16-bit
    words are summed; an odd length is padded with a zero byte.
    """
    data = b"".join(parts)
    if len(data) % 2:
        data += b"\0"
    total = sum(memoryview(data).cast("H"))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total == 0xFFFF


def _tcp_checksum_bad(
    data: bytes, pos: int, src: bytes, dst: bytes, length: int, st: DecodeStats
) -> bool:
    """Zeek's ``TCPAnalyzer::ValidateChecksum``: pseudo-header (RFC 9293 3.1, RFC 8200
    8.1) plus the whole segment, checked only when it was captured whole
    (``caplen >= len``); a bad one is counted."""
    if length < 0 or len(data) < pos + length:
        return False
    pseudo = src + dst + struct.pack("!IxxxB", length, IPPROTO_TCP)
    bad = not checksum_ok(pseudo, data[pos : pos + length])
    if bad:
        st.bad_checksums += 1
    return bad
