"""Decoder: every link type, IPv4 options, IPv6 extension headers, fragments."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tcplens.errors import InputError
from tcplens.packets.decode import (
    DecodeStats,
    decode,
    format_ip,
    ihl_bytes,
    ipv4_fragment,
    tcp_data_offset,
)
from tcplens.packets.pcap import read_frames

from . import build

FIXTURES = Path(__file__).parent.parent / "fixtures" / "pcap"

SEG = build.tcp(40000, 80, 1000, 2000, build.PSH | build.ACK, window=512, payload=b"hello")
V4 = build.ipv4("192.0.2.1", "198.51.100.2", SEG)
V6 = build.ipv6("2001:db8::1", "2001:db8::2", SEG)


def check(seg: object, src: str, dst: str, ip_len: int) -> None:
    assert seg is not None
    assert format_ip(seg.src) == src  # type: ignore[attr-defined]
    assert format_ip(seg.dst) == dst  # type: ignore[attr-defined]
    assert (seg.sport, seg.dport, seg.seq, seg.ack) == (40000, 80, 1000, 2000)  # type: ignore[attr-defined]
    assert seg.flags == build.PSH | build.ACK  # type: ignore[attr-defined]
    assert (seg.window, seg.payload, seg.ip_len) == (512, 5, ip_len)  # type: ignore[attr-defined]


def test_bitfields_are_parenthesised_right() -> None:
    assert ihl_bytes(0x45) == 20
    assert ihl_bytes(0x4F) == 60
    assert tcp_data_offset(0x50) == 20
    assert tcp_data_offset(0xF1) == 60  # the NS bit in the low nibble is ignored
    assert ipv4_fragment(0x2000)  # More Fragments
    assert ipv4_fragment(0x0001)  # offset 8 bytes
    assert not ipv4_fragment(0x4000)  # Don't Fragment only


@pytest.mark.parametrize(
    "linktype,frame",
    [
        (1, build.ether(V4)),
        (1, build.ether(V4, vlans=((0x8100, 10),))),
        (1, build.ether(V4, vlans=((0x88A8, 100), (0x8100, 10)))),  # QinQ
        (113, build.sll(V4)),
        (276, build.sll2(V4)),
        (0, build.null(V4, 2, "<")),
        (0, build.null(V4, 2, ">")),
        (108, build.null(V4, 2, ">")),
        (101, V4),
        (228, V4),
    ],
    ids=["eth", "vlan", "qinq", "sll", "sll2", "null-le", "null-be", "loop", "raw", "ipv4"],
)
def test_ipv4_over_every_link_type(linktype: int, frame: bytes) -> None:
    check(decode(linktype, frame), "192.0.2.1", "198.51.100.2", len(V4))


@pytest.mark.parametrize(
    "linktype,frame",
    [
        (1, build.ether(V6, 0x86DD)),
        (276, build.sll2(V6, 0x86DD)),
        (0, build.null(V6, 30, "<")),  # macOS AF_INET6
        (0, build.null(V6, 24, ">")),  # OpenBSD AF_INET6, big-endian host
        (101, V6),
        (229, V6),
    ],
)
def test_ipv6_over_link_types(linktype: int, frame: bytes) -> None:
    check(decode(linktype, frame), "2001:db8::1", "2001:db8::2", len(V6))


def test_ipv4_options_are_skipped_by_header_length() -> None:
    packet = build.ipv4("192.0.2.1", "198.51.100.2", SEG, options=b"\x01\x01\x01\x00" * 3)
    check(decode(101, packet), "192.0.2.1", "198.51.100.2", len(packet))


def test_ipv6_extension_header_chain_is_walked() -> None:
    packet = build.ipv6(
        "2001:db8::1",
        "2001:db8::2",
        SEG,
        ext=[(0, b"\x01\x04\x00\x00\x00\x00"), (60, b"\x01\x0c" + b"\x00" * 12), (43, b"\x00" * 6)],
    )
    check(decode(101, packet), "2001:db8::1", "2001:db8::2", len(packet))


def test_atomic_ipv6_fragment_header_still_decodes_but_real_fragments_are_counted() -> None:
    atomic = build.ipv6("2001:db8::1", "2001:db8::2", SEG, ext=[(44, b"\x00\x00\x00\x00\x00\x01")])
    assert decode(101, atomic) is not None
    stats = DecodeStats()
    first = build.ipv6("2001:db8::1", "2001:db8::2", SEG, ext=[(44, b"\x00\x01\x00\x00\x00\x01")])
    assert decode(101, first, stats) is None
    assert stats.fragments == 1


def test_ipv4_fragments_are_counted_not_reassembled() -> None:
    stats = DecodeStats()
    first = build.ipv4("192.0.2.1", "198.51.100.2", SEG, frag=0x2000)
    later = build.ipv4("192.0.2.1", "198.51.100.2", b"x" * 16, frag=0x0003)
    assert decode(101, first, stats) is None
    assert decode(101, later, stats) is None
    assert stats.fragments == 2
    assert stats.tcp == 0


def test_non_tcp_and_non_ip_are_counted() -> None:
    stats = DecodeStats()
    assert (
        decode(101, build.ipv4("192.0.2.1", "198.51.100.2", b"\x00" * 8, proto=17), stats) is None
    )
    assert decode(1, build.ether(b"\x00" * 28, 0x0806), stats) is None
    assert (stats.non_tcp, stats.non_ip, stats.frames) == (1, 1, 2)


def test_payload_counts_come_from_ip_length_not_capture_length() -> None:
    # Ethernet padding after a small segment must not count as payload.
    padded = build.ether(build.ipv4("10.0.0.1", "10.0.0.2", build.tcp(1, 2))) + b"\x00" * 6
    seg = decode(1, padded)
    assert seg is not None and seg.payload == 0
    # A capture cut by the snapshot length still knows the payload size.
    snapped = build.ether(V4)[:54]
    seg = decode(1, snapped)
    assert seg is not None and seg.payload == 5


def test_unknown_link_type_is_an_input_error() -> None:
    with pytest.raises(InputError, match="link type 147"):
        decode(147, b"\x00" * 40)


def test_every_fixture_segment_decodes() -> None:
    for path in FIXTURES.glob("*.pcap*"):
        stats = DecodeStats()
        with path.open("rb") as fh:
            for frame in read_frames(fh):
                decode(frame.linktype, frame.data, stats)
        assert stats.tcp == stats.frames, path.name


@settings(max_examples=500, deadline=None)
@given(
    st.sampled_from([0, 1, 9, 10, 50, 51, 101, 104, 105, 108, 113, 127, 229, 276]),
    st.binary(max_size=120),
)
def test_garbage_frames_decode_to_none_or_a_segment_never_an_exception(
    linktype: int, data: bytes
) -> None:
    stats = DecodeStats()
    decode(linktype, data, stats)
    assert stats.frames == 1


def test_decode_is_usable_on_frames_streamed_from_bytes() -> None:
    data = build.pcap([(0, build.ether(V4))])
    (frame,) = read_frames(io.BytesIO(data))
    check(decode(frame.linktype, frame.data), "192.0.2.1", "198.51.100.2", len(V4))
