"""Encapsulations between a frame's link header and its innermost IP header.

Every layer Zeek decodes, one small function each, the readable twin of the
engine's ``rust/src/encap.rs`` (the differential tests hold the two equal).
A decoder returns ``(offset, ethertype)`` of the next header, IP being
``ETH_P_IP``/``ETH_P_IPV6``, or raises :class:`Unsupported` (a ``non_ip``
count, reported per type) or :class:`Malformed` (too short or inconsistent).

The layers a frame went through are appended to ``layers`` as text
(``vlan 100``, ``gre 10.0.0.1-10.0.0.2``, ``vxlan 10.0.0.1-10.0.0.2 vni 42``).
Only what is the same in both directions goes into a layer, because the chain
is part of the flow key: a tunnel's endpoints in canonical order, VLAN ids,
VNIs, PPPoE sessions — not MPLS labels or GTP TEIDs, which differ per
direction.  Wire layouts are listed in ``encap.rs``.
"""

from __future__ import annotations

import hashlib
import ipaddress
import struct

ETH_P_IP = 0x0800
ETH_P_IPV6 = 0x86DD
#: more layers than this is a crafted frame, not a network
MAX_LAYERS = 32

_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")

_VLAN_TPIDS = frozenset({0x8100, 0x88A8, 0x9100, 0x9200})
_VXLAN, _GENEVE, _TEREDO, _AYIYA, _GTPU = 4789, 6081, 3544, 5072, 2152
_UDP_TUNNELS = frozenset({_VXLAN, _GENEVE, _TEREDO, _AYIYA, _GTPU})

Next = tuple[int, int]


class Malformed(Exception):
    """Too short or inconsistent to go on."""


class Unsupported(Exception):
    """A protocol we do not look inside; the message names its type."""


class BadChecksum(Exception):
    """A tunnel's UDP checksum is wrong (:func:`_udp_checksum_bad`): a
    ``bad_checksums`` count, and the tunnel is not decapsulated."""


def _u8(data: bytes, at: int) -> int:
    if at >= len(data):
        raise Malformed
    return data[at]


def _u16(data: bytes, at: int) -> int:
    if at + 2 > len(data):
        raise Malformed
    return int(_U16.unpack_from(data, at)[0])


def _u32(data: bytes, at: int) -> int:
    if at + 4 > len(data):
        raise Malformed
    return int(_U32.unpack_from(data, at)[0])


#: distinct chains kept per process, as ``encap.rs`` interns them: later new ones share
#: one text, so a crafted capture cannot grow the table without bound
MAX_CHAINS = 65_536
OVERFLOW = ("more than 65536 encapsulation chains: not told apart",)
_CHAINS: set[tuple[str, ...]] = set()


def chain(layers: list[str]) -> tuple[str, ...]:
    """The chain a segment carries: its layers, or :data:`OVERFLOW` once the table is full."""
    found = tuple(layers)
    if found not in _CHAINS:
        if len(_CHAINS) >= MAX_CHAINS:
            _CHAINS.add(OVERFLOW)
            return OVERFLOW
        _CHAINS.add(found)
    return found


def _push(layers: list[str], layer: str) -> None:
    if len(layers) >= MAX_LAYERS:
        raise Unsupported(f"more than {MAX_LAYERS} layers")
    layers.append(layer)


# --- link types ---------------------------------------------------------------------


def family(value: int) -> Next:
    """BSD address families: AF_INET6 is 10 Linux, 24 Net/OpenBSD, 28 FreeBSD, 30 macOS."""
    if value == 2:
        return 4, ETH_P_IP
    if value in (10, 24, 28, 30):
        return 4, ETH_P_IPV6
    raise Unsupported(f"address family {value}")


def raw(data: bytes, at: int) -> Next:
    version = _u8(data, at) >> 4
    if version == 4:
        return at, ETH_P_IP
    if version == 6:
        return at, ETH_P_IPV6
    raise Unsupported(f"IP version {version}")


def ethernet(data: bytes, at: int, layers: list[str]) -> Next:
    return ethertype(data, at + 14, _u16(data, at + 12), layers)


def ethertype(data: bytes, at: int, etype: int, layers: list[str]) -> Next:
    """The layer an ethertype (or an 802.3 length: LLC) names, down to IP."""
    while True:
        if etype in (ETH_P_IP, ETH_P_IPV6):
            return at, etype
        if etype in _VLAN_TPIDS:
            _push(layers, f"vlan {_u16(data, at) & 0x0FFF}")
            etype = _u16(data, at + 2)
            at += 4
        elif etype == 0x8926:  # VN-Tag
            _push(layers, "vntag")
            etype = _u16(data, at + 4)
            at += 6
        elif etype == 0x88E7:  # 802.1ah I-TAG, then the customer's Ethernet header
            _push(layers, f"pbb {_u32(data, at) & 0x00FFFFFF}")
            etype = _u16(data, at + 16)
            at += 18
        elif etype == 0x8903:  # FabricPath: FTAG/TTL, then the classical Ethernet header
            _push(layers, "fabricpath")
            etype = _u16(data, at + 14)
            at += 16
        elif etype == 0x6558:  # transparent Ethernet bridging
            etype = _u16(data, at + 12)
            at += 14
        elif etype in (0x8847, 0x8848):
            return mpls(data, at, layers)
        elif etype == 0x8864:
            return pppoe(data, at, layers)
        elif etype <= 1500:
            return llc(data, at, layers)
        else:
            raise Unsupported(f"ethertype 0x{etype:04x}")
        if len(layers) >= MAX_LAYERS:
            raise Unsupported(f"more than {MAX_LAYERS} layers")


def llc(data: bytes, at: int, layers: list[str]) -> Next:
    """802.2 LLC: only SNAP (AA AA 03) names what it carries."""
    dsap = _u8(data, at)
    if dsap != 0xAA or _u8(data, at + 1) != 0xAA or _u8(data, at + 2) != 0x03:
        raise Unsupported(f"LLC SAP 0x{dsap:02x}")
    etype = _u16(data, at + 6)
    if etype <= 1500:
        raise Unsupported(f"ethertype 0x{etype:04x}")
    return ethertype(data, at + 8, etype, layers)


def mpls(data: bytes, at: int, layers: list[str]) -> Next:
    """Labels to the bottom of the stack; then IP by its version nibble (as
    Zeek), a pseudowire control word (nibble 0) then Ethernet, else Ethernet."""
    _push(layers, "mpls")
    for _ in range(MAX_LAYERS):
        label = _u32(data, at)
        at += 4
        if label & 0x100:
            nibble = _u8(data, at) >> 4
            if nibble == 4:
                return at, ETH_P_IP
            if nibble == 6:
                return at, ETH_P_IPV6
            if nibble == 0:
                return ethernet(data, at + 4, layers)
            return ethernet(data, at, layers)
    raise Unsupported(f"more than {MAX_LAYERS} layers")


def _ppp_protocol(data: bytes, at: int, proto: int, layers: list[str]) -> Next:
    if proto == 0x0021:
        return at, ETH_P_IP
    if proto == 0x0057:
        return at, ETH_P_IPV6
    if proto in (0x0281, 0x0283):
        return mpls(data, at, layers)
    raise Unsupported(f"PPP protocol 0x{proto:04x}")


def ppp(data: bytes, at: int, layers: list[str]) -> Next:
    """PPP with or without address/control (FF 03), protocol compressed (odd) or not."""
    if _u8(data, at) == 0xFF and _u8(data, at + 1) == 0x03:
        at += 2
    first = _u8(data, at)
    if first & 1:
        return _ppp_protocol(data, at + 1, first, layers)
    return _ppp_protocol(data, at + 2, _u16(data, at), layers)


def pppoe(data: bytes, at: int, layers: list[str]) -> Next:
    _push(layers, f"pppoe {_u16(data, at + 2)}")
    return _ppp_protocol(data, at + 8, _u16(data, at + 6), layers)


def chdlc(data: bytes, at: int, layers: list[str]) -> Next:
    return ethertype(data, at + 4, _u16(data, at + 2), layers)


def ppp_or_chdlc(data: bytes, layers: list[str]) -> Next:
    """LINKTYPE_PPP_HDLC carries PPP and Cisco HDLC (address 0x0F/0x8F) frames."""
    if _u8(data, 0) in (0x0F, 0x8F):
        return chdlc(data, 0, layers)
    return ppp(data, 0, layers)


def fddi(data: bytes, layers: list[str]) -> Next:
    return llc(data, 13, layers)


def wifi(data: bytes, at: int, layers: list[str]) -> Next:
    """802.11: only unprotected data frames with a payload carry IP."""
    fc0, fc1 = _u8(data, at), _u8(data, at + 1)
    if (fc0 >> 2) & 0x03 != 2:
        raise Unsupported("802.11 management or control frame")
    subtype = (fc0 >> 4) & 0x0F
    if subtype & 0x04:
        raise Unsupported("802.11 data frame without payload")
    if fc1 & 0x40:
        raise Unsupported("802.11 protected (encrypted) frame")
    hdr = 24
    if fc1 & 0x03 == 0x03:
        hdr += 6  # fourth address (WDS)
    if subtype & 0x08:
        hdr += 2  # QoS control
        if fc1 & 0x80:
            hdr += 4  # HT control
    return llc(data, at + hdr, layers)


def radiotap(data: bytes, layers: list[str]) -> Next:
    length = _u8(data, 2) | (_u8(data, 3) << 8)  # little endian
    return wifi(data, length, layers)


# --- tunnels inside IP ------------------------------------------------------------


def _tunnel(layers: list[str], kind: str, src: bytes, dst: bytes, vni: int | None = None) -> None:
    a, b = (src, dst) if src <= dst else (dst, src)
    text = f"{kind} {ipaddress.ip_address(a)}-{ipaddress.ip_address(b)}"
    _push(layers, text if vni is None else f"{text} vni {vni}")


def ip_payload(
    data: bytes,
    at: int,
    proto: int,
    src: bytes,
    dst: bytes,
    layers: list[str],
    end: int = -1,
    check: bool = False,
) -> Next | None:
    """The next layer when an IP payload is a tunnel; None when it is not one.

    ``end`` is where the IP length fields say the payload ends (past the
    captured bytes when the snapshot length cut it); ``check`` validates a UDP
    tunnel's checksum against it (``DecodeStats.check_checksums``).
    """
    if proto == 4:
        _tunnel(layers, "ip", src, dst)
        return at, ETH_P_IP
    if proto == 41:
        _tunnel(layers, "ip", src, dst)
        return at, ETH_P_IPV6
    if proto == 47:
        _tunnel(layers, "gre", src, dst)
        return gre(data, at, layers)
    if proto == 17:
        return _udp(data, at, src, dst, layers, end, check)
    return None


def _aruba(proto: int) -> bool:
    return (
        (proto & 0x8200 == 0x8200 and proto & 0x0F == 0)
        or (proto & 0x8300 == 0x8300 and proto & 0x0F == 0 and proto <= 0x8370)
        or proto == 0x9000
    )


def gre(data: bytes, at: int, layers: list[str]) -> Next:
    """GRE and PPTP's enhanced GRE, with Zeek's payloads: IP, Ethernet bridging,
    ERSPAN I/II/III, Aruba (802.11), WCCP (redirect header, then IPv4)."""
    flags = _u16(data, at)
    proto = _u16(data, at + 2)
    version = flags & 0x0007
    if version > 1:
        raise Unsupported(f"GRE version {version}")
    if flags & 0x4000 or flags & 0x0078:
        raise Unsupported(f"GRE protocol 0x{proto:04x}")  # routing or reserved flags
    body = at + 4 + 4 * sum(1 for bit in (0x8000, 0x2000, 0x1000, 0x0080) if flags & bit)
    if version == 1:
        if proto != 0x880B:
            raise Unsupported(f"GRE protocol 0x{proto:04x}")
        return ppp(data, body, layers)
    if proto == 0x88BE:  # ERSPAN II has a GRE sequence number and 8 bytes; type I neither
        return ethernet(data, body + (8 if flags & 0x1000 else 0), layers)
    if proto == 0x22EB:  # ERSPAN III, with an 8-byte platform header if O is set
        return ethernet(data, body + 12 + 8 * (_u8(data, body + 11) & 0x01), layers)
    if proto == 0x883E:  # WCCP
        return (body, ETH_P_IP) if _u8(data, body) >> 4 == 4 else (body + 4, ETH_P_IP)
    if _aruba(proto):
        return wifi(data, body, layers)
    if proto in (ETH_P_IP, ETH_P_IPV6):
        return body, proto
    if proto in (0x6558, 0x8847, 0x8848, 0x8100, 0x88A8):
        return ethertype(data, body, proto, layers)
    raise Unsupported(f"GRE protocol 0x{proto:04x}")


def _udp(
    data: bytes, at: int, src: bytes, dst: bytes, layers: list[str], ip_end: int, check: bool
) -> Next | None:
    """A UDP tunnel by port (destination first, then source, as Zeek dispatches);
    with ``check``, one whose checksum is wrong stops here (:func:`_udp_checksum_bad`)."""
    if at + 6 > len(data):
        return None
    sport, dport, ulen = struct.unpack_from("!HHH", data, at)
    body = at + 8
    end = at + ulen if ulen >= 8 else len(data)
    port = dport if dport in _UDP_TUNNELS else sport
    if check and port in _UDP_TUNNELS and _udp_checksum_bad(data, at, ip_end, src, dst, dport):
        raise BadChecksum
    if port == _VXLAN:
        _tunnel(layers, "vxlan", src, dst, _vni(data, body))
        return ethernet(data, body + 8, layers)
    if port == _GENEVE:
        _tunnel(layers, "geneve", src, dst, _vni(data, body))
        return geneve(data, body, layers)
    if port == _TEREDO:
        inner = _teredo(data, body, end)
        if inner is None:
            return None
        _tunnel(layers, "teredo", src, dst)
        return inner, ETH_P_IPV6
    if port == _AYIYA:
        found = _ayiya(data, body)
        if found is None:
            return None
        inner, nxt = found
        _tunnel(layers, "ayiya", src, dst)
        if nxt == 4:
            return inner, ETH_P_IP
        if nxt == 41:
            return inner, ETH_P_IPV6
        raise Unsupported(f"AYIYA next header {nxt}")
    if port == _GTPU:
        if not _gtpu_data(data, body):
            return None
        _tunnel(layers, "gtpv1", src, dst)
        return _gtpu(data, body)
    return None


def _udp_checksum_bad(data: bytes, at: int, end: int, src: bytes, dst: bytes, dport: int) -> bool:
    """Zeek's UDP checksum rule, run before a datagram reaches VXLAN, Geneve,
    Teredo, AYIYA or GTP-U (``UDPAnalyzer::DeliverPacket``,
    ``src/packet_analysis/protocol/udp/UDP.cc``, Zeek 8.0).

    Checked only when captured whole (``remaining >= len``).  Over IPv4 a zero
    checksum means none was sent (RFC 768); over IPv6 it is checked ("not
    optional", RFC 8200 8.1) and so fails, except for VXLAN to port 4789
    (``vxlan_ports``) longer than UDP + VXLAN + Ethernet headers with the VNI
    flag set, which RFC 7348 lets send zero (a non-zero one is checked:
    ``Tunnel::validate_vxlan_checksums`` is T).  A bad one is weird
    ``bad_UDP_checksum``, ``C``/``c`` on the *outer* UDP connection, and no
    ``ForwardPacket``: the tunnel is not decapsulated, so the inner TCP
    connection gets nothing from the frame.  Zeek checks every datagram; only
    tunnels carry TCP, so only they are checked here.  The engine's
    ``encap::udp_checksum_bad`` says the same (and what the two leave out).
    """
    from tcplens.packets.decode import checksum_ok  # decode imports this module

    if end < at + 8 or end > len(data):
        return False  # cut by the snapshot length (or a lying length): not checked
    datagram = data[at:end]
    if datagram[6:8] == b"\0\0":
        vxlan = dport == _VXLAN and len(datagram) > 8 + 8 + 14 and bool(datagram[8] & 0x08)
        if len(src) == 4 or vxlan:
            return False
    pseudo = src + dst + struct.pack("!IxxxB", len(datagram), 17)
    return not checksum_ok(pseudo, datagram)


def _vni(data: bytes, body: int) -> int:
    return _u32(data, body + 4) >> 8 if body + 8 <= len(data) else 0


def geneve(data: bytes, at: int, layers: list[str]) -> Next:
    optlen = (_u8(data, at) & 0x3F) * 4
    proto = _u16(data, at + 2)
    body = at + 8 + optlen
    if proto == 0x6558:
        return ethernet(data, body, layers)
    if proto in (ETH_P_IP, ETH_P_IPV6):
        return body, proto
    raise Unsupported(f"ethertype 0x{proto:04x}")


def _teredo(data: bytes, at: int, end: int) -> int | None:
    """Authentication and origin indication skipped, then an IPv6 header that
    fits the datagram; anything else is plain UDP on port 3544."""
    try:
        if _u16(data, at) == 0x0001:
            at += 4 + _u8(data, at + 2) + _u8(data, at + 3) + 8 + 1
        if _u16(data, at) == 0x0000:
            at += 8
        plen = _u16(data, at + 4)
        ok = _u8(data, at) >> 4 == 6 and at + 40 + plen <= end
    except Malformed:
        return None
    return at if ok else None


def _ayiya(data: bytes, at: int) -> tuple[int, int] | None:
    """A forward (opcode 1) packet's payload offset and IP protocol."""
    if at + 4 > len(data):
        return None
    ident = 1 << (data[at] >> 4)
    sig = (data[at + 1] >> 4) * 4
    body = at + 8 + ident + sig
    if data[at + 2] & 0x0F != 1 or len(data) <= body:
        return None
    return body, data[at + 3]


def _gtpu_data(data: bytes, at: int) -> bool:
    """Version 1, GTP (not GTP'), a G-PDU: signalling is plain UDP."""
    if at + 2 > len(data):
        return False
    flags = data[at]
    return flags >> 5 == 1 and bool(flags & 0x10) and data[at + 1] == 0xFF


def _gtpu(data: bytes, at: int) -> Next:
    flags = data[at]
    pos = at + 8
    if flags & 0x07:
        nxt = _u8(data, at + 11)
        pos += 4
        if flags & 0x04:
            for _ in range(MAX_LAYERS):
                if nxt == 0:
                    break
                units = _u8(data, pos)
                if units == 0:
                    raise Malformed
                nxt = _u8(data, pos + units * 4 - 1)
                pos += units * 4
    nibble = _u8(data, pos) >> 4
    if nibble == 4:
        return pos, ETH_P_IP
    if nibble == 6:
        return pos, ETH_P_IPV6
    raise Unsupported("GTP-U non-IP payload")


#: the layers Zeek calls tunnels (its ``Tunnel::Type``); VLAN, MPLS, PPPoE... are not
_TUNNEL_KINDS = frozenset({"ip", "gre", "vxlan", "geneve", "teredo", "ayiya", "gtpv1"})


def tunnel_uid(layer: str) -> str:
    """A stable uid for a tunnel: "C" + 17 base-62 digits of BLAKE2b-96 over its text.

    tcplens writes no tunnel.log, so a parent's uid cannot point at a row as
    Zeek's does; a hash of the tunnel's endpoints gives every connection in
    one tunnel the same parent, which is what the field is used for.
    """
    number = int.from_bytes(hashlib.blake2b(layer.encode(), digest_size=12).digest(), "big")
    alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
    out = []
    for _ in range(17):
        number, digit = divmod(number, 62)
        out.append(alphabet[digit])
    return "C" + "".join(out)


def chain_text(chain: tuple[str, ...]) -> str:
    """A chain as the table, ``--flow`` and ``--states`` show it, outermost first:
    ``vlan 7 > vxlan 192.0.2.1-192.0.2.2 vni 42`` (the engine's ``render::via``)."""
    return " > ".join(chain)


def tunnel_parents(chain: tuple[str, ...]) -> tuple[str, ...]:
    """Zeek's ``tunnel_parents``: the uids of the chain's tunnels, outermost first."""
    return tuple(tunnel_uid(layer) for layer in chain if layer.split(" ", 1)[0] in _TUNNEL_KINDS)
