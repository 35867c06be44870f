"""One complete TCP connection inside each encapsulation tcplens decodes, built with scapy.

Used by ``test_encap.py`` and written once to ``tests/fixtures/pcap/encap_*.pcap``
(``python3 -m tests.packets.encap_frames``) so that the differential tests
(engine vs reference) cover every encapsulation too.  Where scapy has the
layer it builds it (VLAN, MPLS, PPPoE, GRE, VXLAN, Geneve, GTP-U, 802.11,
radiotap, PPP); the rest are a few bytes written out with their layout named.
Every case's reply direction swaps the outer addresses, and MPLS labels and
GTP TEIDs differ per direction as on real networks, so a chain that kept
per-direction values would split the connection in two.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from scapy.contrib.geneve import GENEVE
from scapy.contrib.gtp import GTP_U_Header
from scapy.contrib.mpls import MPLS
from scapy.layers.dot11 import Dot11, Dot11QoS, RadioTap
from scapy.layers.inet import GRE, IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import LLC, SNAP, Dot1AD, Dot1Q, Ether
from scapy.layers.ppp import HDLC, PPP, PPPoE
from scapy.layers.vxlan import VXLAN
from scapy.packet import Packet, Raw

from . import build

FIXTURES = Path(__file__).parent.parent / "fixtures" / "pcap"

CLIENT4, SERVER4 = "10.9.0.1", "10.9.0.2"
CLIENT6, SERVER6 = "fd09::1", "fd09::2"
OUT_A, OUT_B = "192.0.2.1", "192.0.2.2"
U4 = f"{OUT_A}-{OUT_B}"

#: (client to server?, inner IP packet) of one connection: handshake, data, close
Conversation = list[tuple[bool, Packet]]


def conversation(sport: int, dport: int = 80, v6: bool = False) -> Conversation:
    ip: Callable[[bool], Packet]
    if v6:
        ip = lambda c2s: IPv6(src=CLIENT6 if c2s else SERVER6, dst=SERVER6 if c2s else CLIENT6)  # noqa: E731
    else:
        ip = lambda c2s: IP(src=CLIENT4 if c2s else SERVER4, dst=SERVER4 if c2s else CLIENT4)  # noqa: E731
    c, s = 1000, 5000
    steps = [
        (True, "S", c, 0, b""),
        (False, "SA", s, c + 1, b""),
        (True, "A", c + 1, s + 1, b""),
        (True, "PA", c + 1, s + 1, b"hello"),
        (False, "A", s + 1, c + 6, b""),
        (True, "FA", c + 6, s + 1, b""),
        (False, "FA", s + 1, c + 7, b""),
        (True, "A", c + 7, s + 2, b""),
    ]
    out: Conversation = []
    for c2s, flags, seq, ack, data in steps:
        a, b = (sport, dport) if c2s else (dport, sport)
        out.append(
            (
                c2s,
                ip(c2s)
                / TCP(sport=a, dport=b, flags=flags, seq=seq, ack=ack, window=500)
                / Raw(data),
            )
        )
    return out


def outer4(c2s: bool, **kw: object) -> Packet:
    return IP(src=OUT_A if c2s else OUT_B, dst=OUT_B if c2s else OUT_A, **kw)


def eth(**kw: object) -> Packet:
    return Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02", **kw)


def inner_eth(inner: Packet) -> Packet:
    kind = 0x86DD if isinstance(inner, IPv6) else 0x0800
    return Ether(src="02:00:00:00:01:01", dst="02:00:00:00:01:02", type=kind) / inner


def raw_eth(etype: int, body: bytes) -> bytes:
    return bytes(eth(type=etype)) + body


@dataclass(frozen=True)
class Case:
    name: str
    linktype: int
    #: wraps one inner packet (and its direction) into a frame
    wrap: Callable[[bool, Packet], bytes]
    chain: tuple[str, ...]
    v6: bool = False


def _snap(inner: Packet) -> Packet:
    return LLC(dsap=0xAA, ssap=0xAA, ctrl=3) / SNAP(OUI=0, code=0x0800) / inner


CASES: list[Case] = [
    Case("vlan", 1, lambda d, p: bytes(eth() / Dot1Q(vlan=100) / p), ("vlan 100",)),
    Case("vlan_other", 1, lambda d, p: bytes(eth() / Dot1Q(vlan=200) / p), ("vlan 200",)),
    Case(
        "qinq",
        1,
        lambda d, p: bytes(eth() / Dot1AD(vlan=10) / Dot1Q(vlan=20) / p),
        ("vlan 10", "vlan 20"),
    ),
    Case(
        "mpls",
        1,
        # labels are per hop and direction: the reply comes back with others
        lambda d, p: bytes(
            eth() / MPLS(label=16 if d else 17, s=0) / MPLS(label=30 if d else 31, s=1) / p
        ),
        ("mpls",),
    ),
    Case(
        "mpls_pw_control_word",
        1,
        # RFC 4385 control word (first nibble 0), then the customer's Ethernet frame
        lambda d, p: raw_eth(
            0x8847, bytes(MPLS(label=18, s=1)) + b"\x00\x00\x00\x05" + bytes(inner_eth(p))
        ),
        ("mpls",),
    ),
    Case(
        "pppoe",
        1,
        lambda d, p: bytes(eth() / PPPoE(sessionid=0x11) / PPP(proto=0x0021) / p),
        ("pppoe 17",),
    ),
    Case(
        "pbb",
        1,
        # 802.1ah I-TAG: flags + 24-bit I-SID, then the customer's Ethernet header
        lambda d, p: raw_eth(0x88E7, struct.pack("!I", 5000) + bytes(inner_eth(p))),
        ("pbb 5000",),
    ),
    Case(
        "fabricpath",
        1,
        # outer header's ethertype 0x8903, FTAG/TTL, then the classical Ethernet frame
        lambda d, p: raw_eth(0x8903, b"\x00\x3f" + bytes(inner_eth(p))),
        ("fabricpath",),
    ),
    Case(
        "vntag",
        1,
        lambda d, p: raw_eth(0x8926, b"\x80\x01\x00\x02\x08\x00" + bytes(p)),
        ("vntag",),
    ),
    Case("ipip", 1, lambda d, p: bytes(eth() / outer4(d, proto=4) / p), (f"ip {U4}",)),
    Case("sit", 1, lambda d, p: bytes(eth() / outer4(d, proto=41) / p), (f"ip {U4}",), v6=True),
    Case(
        "ip4in6",
        1,
        lambda d, p: bytes(
            eth()
            / IPv6(src="fd00::1" if d else "fd00::2", dst="fd00::2" if d else "fd00::1", nh=4)
            / p
        ),
        ("ip fd00::1-fd00::2",),
    ),
    Case("gre", 1, lambda d, p: bytes(eth() / outer4(d) / GRE(proto=0x0800) / p), (f"gre {U4}",)),
    Case(
        "gre_key_seq",
        1,
        lambda d, p: bytes(
            eth()
            / outer4(d)
            / GRE(key_present=1, key=9, seqnum_present=1, sequence_number=3, proto=0x86DD)
            / p
        ),
        (f"gre {U4}",),
        v6=True,
    ),
    Case(
        "gretap",
        1,
        lambda d, p: bytes(eth() / outer4(d) / GRE(proto=0x6558) / inner_eth(p)),
        (f"gre {U4}",),
    ),
    Case(
        "erspan2",
        1,
        # GRE with a sequence number, ERSPAN type II header (8 bytes: version 1, VLAN, session)
        lambda d, p: bytes(
            eth()
            / outer4(d)
            / GRE(seqnum_present=1, sequence_number=1, proto=0x88BE)
            / Raw(b"\x10\x00\x00\x05\x00\x00\x00\x00" + bytes(inner_eth(p)))
        ),
        (f"gre {U4}",),
    ),
    Case(
        "erspan3",
        1,
        # ERSPAN type III header (12 bytes, O bit set) and its 8-byte platform subheader
        lambda d, p: bytes(
            eth()
            / outer4(d)
            / GRE(seqnum_present=1, sequence_number=1, proto=0x22EB)
            / Raw(b"\x20\x00\x00\x05" + b"\x00" * 7 + b"\x01" + b"\x00" * 8 + bytes(inner_eth(p)))
        ),
        (f"gre {U4}",),
    ),
    Case(
        "vxlan",
        1,
        lambda d, p: bytes(
            eth()
            / outer4(d)
            / UDP(sport=40000 if d else 40001, dport=4789)
            / VXLAN(vni=42)
            / inner_eth(p)
        ),
        (f"vxlan {U4} vni 42",),
    ),
    Case(
        "geneve",
        1,
        lambda d, p: bytes(
            eth()
            / outer4(d)
            / UDP(sport=40002, dport=6081)
            / GENEVE(vni=7, proto=0x6558)
            / inner_eth(p)
        ),
        (f"geneve {U4} vni 7",),
    ),
    Case(
        "gtpu",
        1,
        # TEIDs are chosen by each receiver: different per direction
        lambda d, p: bytes(
            eth()
            / outer4(d)
            / UDP(sport=2152, dport=2152)
            / GTP_U_Header(teid=0x100 if d else 0x200)
            / p
        ),
        (f"gtpv1 {U4}",),
    ),
    Case(
        "teredo",
        1,
        # origin indication (u16 0, port, address), then the IPv6 packet
        lambda d, p: bytes(
            eth()
            / outer4(d)
            / UDP(sport=3544 if d else 50000, dport=50000 if d else 3544)
            / Raw(b"\x00\x00\x0d\x80\x3f\xff\xfd\xfe" + bytes(p))
        ),
        (f"teredo {U4}",),
        v6=True,
    ),
    Case(
        "ayiya",
        1,
        # idlen 4 (16-byte identity), siglen 5 words, opcode 1 (forward), next header 41
        lambda d, p: bytes(
            eth()
            / outer4(d)
            / UDP(sport=5072, dport=5072)
            / Raw(b"\x41\x52\x11\x29" + b"\x00" * 40 + bytes(p))
        ),
        (f"ayiya {U4}",),
        v6=True,
    ),
    Case("ppp", 9, lambda d, p: bytes(PPP(proto=0x0021) / p), ()),
    # LINKTYPE_PPP_ETHER: the PPPoE header without its Ethernet header
    Case(
        "ppp_ether",
        51,
        lambda d, p: bytes(PPPoE(sessionid=0x11) / PPP(proto=0x0021) / p),
        ("pppoe 17",),
    ),
    Case("ppp_hdlc", 50, lambda d, p: bytes(HDLC() / PPP(proto=0x0021) / p), ()),
    Case("cisco_hdlc", 104, lambda d, p: b"\x0f\x00\x08\x00" + bytes(p), ()),
    # FDDI: frame control (LLC, async), two addresses, LLC/SNAP
    Case("fddi", 10, lambda d, p: b"\x50" + b"\x02" * 6 + b"\x04" * 6 + bytes(_snap(p)), ()),
    Case(
        "wifi",
        105,
        lambda d, p: bytes(Dot11(type=2, subtype=0, FCfield=0x01 if d else 0x02) / _snap(p)),
        (),
    ),
    Case(
        "wifi_qos_radiotap",
        127,
        lambda d, p: bytes(
            RadioTap()
            / Dot11(type=2, subtype=8, FCfield=0x01 if d else 0x02)
            / Dot11QoS()
            / _snap(p)
        ),
        (),
    ),
]


#: the cases whose outer layer is UDP (their checksum is what ``--check-checksums`` judges)
UDP_CASES = [c for c in CASES if c.name in ("vxlan", "geneve", "gtpu", "teredo", "ayiya")]


def with_udp_checksum(frame: bytes, csum: str, v6: bool = False) -> bytes:
    """A UDP-tunnel case's frame (Ethernet, IPv4, UDP, ...) with its outer UDP
    checksum ``good`` (scapy computes it), ``bad`` (the good one plus 1) or
    ``zero``; ``v6`` moves the datagram into an outer IPv6 header (fd00::1/2
    for 192.0.2.1/2).  The inner headers stay byte for byte."""
    outer = Ether(frame)
    ip, udp = outer[IP], outer[UDP]
    payload = bytes(udp.payload)
    net: Packet = IP(src=ip.src, dst=ip.dst)
    if v6:
        net = IPv6(
            src=ip.src.replace("192.0.2.", "fd00::"), dst=ip.dst.replace("192.0.2.", "fd00::")
        )
    good = bytes(eth() / net / UDP(sport=udp.sport, dport=udp.dport) / Raw(payload))
    at = 14 + (40 if v6 else 20) + 6
    right = struct.unpack_from("!H", good, at)[0]
    value = {"good": right, "bad": right % 0xFFFF + 1, "zero": 0}[csum]
    return good[:at] + struct.pack("!H", value) + good[at + 2 :]


def frames(
    case: Case, sport: int = 40123, start_ns: int = 1_700_000_000_000_000_000
) -> list[tuple[int, bytes]]:
    return [
        (start_ns + i * 1_000_000, case.wrap(c2s, pkt))
        for i, (c2s, pkt) in enumerate(conversation(sport, v6=case.v6))
    ]


def capture(case: Case, sport: int = 40123) -> bytes:
    return build.pcap(frames(case, sport), linktype=case.linktype, nanos=True)


def fixtures() -> dict[str, bytes]:
    """One fixture per link type, every Ethernet case in one (a connection each, ports apart)."""
    by_link: dict[int, list[tuple[int, bytes]]] = {}
    for i, case in enumerate(CASES):
        by_link.setdefault(case.linktype, []).extend(
            frames(case, 41000 + i, 1_700_000_000_000_000_000 + i * 10**9)
        )
    names = {
        51: "ppp_ether",
        1: "ethernet",
        9: "ppp",
        10: "fddi",
        50: "ppp_hdlc",
        104: "cisco_hdlc",
        105: "wifi",
        127: "radiotap",
    }
    return {
        f"encap_{names[lt]}.pcap": build.pcap(rows, linktype=lt, nanos=True)
        for lt, rows in by_link.items()
    }


if __name__ == "__main__":
    for name, data in fixtures().items():
        (FIXTURES / name).write_bytes(data)
        print(name, len(data))
