"""Capture readers: every layout from its magic, streaming, truncation, garbage."""

from __future__ import annotations

import contextlib
import io
import struct
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tcplens.errors import CorruptRecord, InputError, TcplensError, TruncatedInput
from tcplens.packets.pcap import Frame, PcapWriter, read_frames, record_limit

from . import build

FIXTURES = Path(__file__).parent.parent / "fixtures" / "pcap"
ALL_FIXTURES = sorted(p for p in FIXTURES.iterdir() if p.suffix in (".pcap", ".pcapng"))


def frames_of(data: bytes) -> list[Frame]:
    return list(read_frames(io.BytesIO(data), path="t.pcap"))


# Frame counts and link types checked against capinfos by hand when the fixtures were added.
EXPECTED = {
    "200722_tcp_anon.pcapng": (35, 1),
    "http_ip4and6.pcapng": (20, 1),
    "simple_http_sll2.pcap": (24, 276),
    "tcp_handshake.pcapng": (3, 1),
    "tcp_refuseconnection.pcapng": (2, 1),
    "tcp_retransmissions.pcapng": (6, 1),
    "tcp_teardown.pcapng": (4, 1),
    "lab_midstream.pcap": (8, 1),
    "lab_syn_blackhole.pcap": (6, 1),
    "lab_synack_rexmit.pcap": (4, 276),
    # issue 15's encapsulations (capinfos: Ethernet, PPP, Cisco HDLC, FDDI, 802.11, radiotap)
    "encap_ethernet.pcap": (176, 1),
    "encap_kernel_vxlan.pcap": (10, 1),
    "encap_kernel_vxlan6.pcap": (10, 1),
    "encap_ppp.pcap": (8, 9),
    "encap_ppp_ether.pcap": (8, 51),
    "encap_ppp_hdlc.pcap": (8, 50),
    "encap_cisco_hdlc.pcap": (8, 104),
    "encap_fddi.pcap": (8, 10),
    "encap_wifi.pcap": (8, 105),
    "encap_radiotap.pcap": (8, 127),
}


@pytest.mark.parametrize("path", ALL_FIXTURES, ids=lambda p: p.name)
def test_fixture_frame_count_and_linktype(path: Path) -> None:
    with path.open("rb") as fh:
        frames = list(read_frames(fh))
    count, linktype = EXPECTED[path.name]
    assert len(frames) == count
    assert {f.linktype for f in frames} == {linktype}
    assert [f.record for f in frames] == list(range(1, count + 1))
    assert all(f.ts_ns > 0 for f in frames)


def test_fixture_timestamps_match_tshark() -> None:
    path = FIXTURES / "200722_tcp_anon.pcapng"
    out = subprocess.run(
        ["tshark", "-r", str(path), "-T", "fields", "-e", "frame.time_epoch"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    with path.open("rb") as fh:
        ours = [f.ts_ns for f in read_frames(fh)]
    theirs = [round(float(t) * 1e6) * 1000 for t in out]
    assert ours == theirs


@pytest.mark.parametrize("order", ["<", ">"])
@pytest.mark.parametrize("nanos", [False, True])
def test_pcap_both_resolutions_both_byte_orders(order: str, nanos: bool) -> None:
    ts = 1_700_000_000_123_456_789
    data = build.pcap([(ts, b"\x01" * 60), (ts + 1000, b"\x02" * 70)], order=order, nanos=nanos)
    frames = frames_of(data)
    expected = ts if nanos else ts - ts % 1000
    assert [f.ts_ns for f in frames] == [expected, expected + 1000]
    assert [len(f.data) for f in frames] == [60, 70]
    assert frames[1].offset == 24 + 16 + 60


def test_pcapng_two_interfaces_with_different_linktypes_and_resolutions() -> None:
    eth = build.ether(build.ipv4("10.0.0.1", "10.0.0.2", build.tcp(1, 2)))
    raw = build.ipv4("10.0.0.3", "10.0.0.4", build.tcp(3, 4))
    for order in "<>":
        data = (
            build.ng_shb(order)
            + build.ng_idb(1, order=order)  # default resolution: microseconds
            + build.ng_idb(101, tsresol=9, order=order)  # nanoseconds
            + build.ng_idb(1, tsresol=0x80 | 10, order=order)  # 2^-10 seconds
            + build.ng_block(0x0BAD_F00D, b"unknown block", order)  # skipped
            + build.ng_epb(0, 1_500_000_000_250_000, eth, order)
            + build.ng_epb(1, 1_500_000_000_000_000_007, raw, order)
            + build.ng_block(4, b"\x00" * 8, order)  # name resolution: skipped
            + build.ng_epb(2, 3 * 1024 + 512, eth, order)
            + build.ng_spb(eth, order)
        )
        frames = frames_of(data)
        assert [f.linktype for f in frames] == [1, 101, 1, 1]
        assert [f.interface for f in frames] == [0, 1, 2, 0]
        assert frames[0].ts_ns == 1_500_000_000_250_000_000
        assert frames[1].ts_ns == 1_500_000_000_000_000_007
        assert frames[2].ts_ns == 3_500_000_000
        assert frames[3].data == eth
        assert [f.record for f in frames] == [1, 2, 3, 4]


def test_pcapng_second_section_may_switch_byte_order() -> None:
    eth = build.ether(build.ipv4("10.0.0.1", "10.0.0.2", build.tcp(1, 2)))
    data = (
        build.ng_shb("<")
        + build.ng_idb(1)
        + build.ng_epb(0, 1, eth)
        + build.ng_shb(">")
        + build.ng_idb(101, order=">")
        + build.ng_epb(0, 2, eth[14:], ">")
    )
    frames = frames_of(data)
    assert [f.linktype for f in frames] == [1, 101]


def test_truncated_last_record_yields_the_rest_then_names_record_and_offset() -> None:
    path = FIXTURES / "simple_http_sll2.pcap"
    data = path.read_bytes()
    whole = frames_of(data)
    cut = data[: whole[-1].offset + 20]
    seen: list[Frame] = []
    with pytest.raises(TruncatedInput) as info:
        for frame in read_frames(io.BytesIO(cut), path="cut.pcap"):
            seen.append(frame)
    assert len(seen) == len(whole) - 1
    assert info.value.record == len(whole)
    assert info.value.offset == whole[-1].offset
    assert info.value.exit_code == 1
    assert str(info.value).startswith(f"cut.pcap record {len(whole)} byte {whole[-1].offset}:")


def record_boundaries(data: bytes) -> set[int]:
    """Offsets where a record (pcap) or block (pcapng) ends, walked independently of the reader."""
    if data[:4] == b"\x0a\x0d\x0d\x0a":
        order = "<" if data[8:12] == b"\x4d\x3c\x2b\x1a" else ">"
        offset, ends = 0, set()
        while offset < len(data):
            offset += struct.unpack_from(order + "I", data, offset + 4)[0]
            ends.add(offset)
        return ends
    order = "<" if data[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    offset, ends = 24, {24}
    while offset < len(data):
        offset += 16 + struct.unpack_from(order + "I", data, offset + 8)[0]
        ends.add(offset)
    return ends


@pytest.mark.parametrize("path", ALL_FIXTURES, ids=lambda p: p.name)
def test_every_cut_point_is_either_clean_or_truncated(path: Path) -> None:
    data = path.read_bytes()
    frames = frames_of(data)
    ends = record_boundaries(data)
    assert max(ends) == len(data)
    for cut in sorted(set(range(0, len(data), 7)) | ends):
        seen = 0
        try:
            for frame in read_frames(io.BytesIO(data[:cut])):
                assert frame.data == frames[seen].data
                seen += 1
        except TruncatedInput as exc:
            # a cut inside a record is reported, naming the record it cut
            assert cut not in ends, cut
            assert exc.record == seen + 1
        except InputError:
            assert cut < 40  # only a cut inside the file header is "not a capture"
        else:
            # a clean end is only possible where a record ends
            assert cut in ends, cut


def test_bad_magic_is_one_line_input_error() -> None:
    with pytest.raises(InputError) as info:
        frames_of(b"GET / HTTP/1.1\r\n\r\n")
    assert "not a pcap or pcapng file" in str(info.value)
    assert "\n" not in str(info.value)
    assert not isinstance(info.value, TruncatedInput)


def test_empty_file_is_an_input_error() -> None:
    with pytest.raises(InputError, match="empty"):
        frames_of(b"")


def read_until_error(data: bytes) -> tuple[list[Frame], InputError]:
    seen: list[Frame] = []
    with pytest.raises(InputError) as info:
        seen.extend(read_frames(io.BytesIO(data), path="t.pcap"))
    return seen, info.value


@pytest.mark.parametrize("caplen", [0x7FFFFFFF, 300 << 20, (1 << 20) + 1])
@pytest.mark.parametrize("snaplen", [65535, 0xFFFFFFFF])
def test_impossible_record_length_ends_the_capture_after_the_good_records(
    caplen: int, snaplen: int
) -> None:
    # a header snaplen of 4 GiB must not make a 2 GiB record look plausible
    if snaplen == 0xFFFFFFFF and caplen <= 256 << 20:
        caplen = (256 << 20) + 1
    data = bytearray(build.pcap([(0, b"\x00" * 60)] * 3, snaplen=snaplen))
    third = 24 + 2 * (16 + 60)
    data[third + 8 : third + 12] = caplen.to_bytes(4, "little")
    seen, error = read_until_error(bytes(data))
    assert len(seen) == 2
    assert isinstance(error, CorruptRecord) and isinstance(error, TruncatedInput)
    assert (error.record, error.offset, error.exit_code) == (3, third, 1)
    assert str(error).startswith(f"t.pcap record 3 byte {third}: captured length {caplen} ")


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.binary(min_size=0, max_size=80), min_size=1, max_size=12),
    st.data(),
    st.integers((1 << 20) + 1, 0xFFFFFFFF),
    st.sampled_from(["<", ">"]),
)
def test_any_damaged_record_length_yields_exactly_the_records_before_it(
    payloads: list[bytes], data: st.DataObject, caplen: int, order: str
) -> None:
    bad = data.draw(st.integers(0, len(payloads) - 1))
    raw = bytearray(build.pcap([(i, p) for i, p in enumerate(payloads)], order=order))
    offset = 24 + sum(16 + len(p) for p in payloads[:bad])
    struct.pack_into(order + "I", raw, offset + 8, caplen)
    seen, error = read_until_error(bytes(raw))
    assert [f.data for f in seen] == payloads[:bad]
    assert isinstance(error, CorruptRecord)
    assert (error.record, error.offset) == (bad + 1, offset)


def test_record_longer_than_the_snaplen_is_read_as_libpcap_reads_it() -> None:
    # old writers put a wrong snaplen in the header; libpcap and Wireshark accept
    # longer records up to the link type's maximum, and so do we
    frames = frames_of(build.pcap([(0, b"\x00" * 2000)], snaplen=1500))
    assert len(frames[0].data) == 2000
    assert record_limit(1500) == 1 << 20 and record_limit(0xFFFFFFFF) == 256 << 20


def pcapng_blocks(count: int) -> tuple[bytes, list[int]]:
    """A pcapng file of ``count`` packets and the offset of each packet block."""
    data = build.ng_shb() + build.ng_idb(1)
    offsets = []
    for i in range(count):
        offsets.append(len(data))
        data += build.ng_epb(0, i, b"\x00" * 60)
    return data, offsets


@pytest.mark.parametrize(
    ("where", "value", "words"),
    [
        (4, 0x7FFFFFFC, "impossible length 2147483644"),  # total length, absurd
        (4, 90, "impossible length 90"),  # total length, not a multiple of 4
        (-4, 96, "lengths disagree (92 at the start, 96 at the end)"),  # trailer
        (20, 500, "captured length 500 runs past its block"),  # EPB caplen
    ],
)
def test_pcapng_block_with_an_impossible_length_ends_the_capture_after_the_good_blocks(
    where: int, value: int, words: str
) -> None:
    data, offsets = pcapng_blocks(3)
    raw = bytearray(data)
    at = offsets[2] + where if where >= 0 else offsets[2] + 92 + where
    struct.pack_into("<I", raw, at, value)
    seen, error = read_until_error(bytes(raw))
    assert len(seen) == 2
    assert isinstance(error, CorruptRecord)
    assert (error.record, error.offset, error.exit_code) == (3, offsets[2], 1)
    assert words in str(error)


def test_writer_round_trips_through_the_reader_and_tshark(tmp_path: Path) -> None:
    out = tmp_path / "w.pcap"
    eth = build.ether(build.ipv4("10.0.0.1", "10.0.0.2", build.tcp(1000, 80, flags=build.SYN)))
    with out.open("wb") as fh:
        writer = PcapWriter(fh, 1)
        writer.write(1_700_000_000_000_000_123, eth)
        writer.write(1_700_000_001_000_000_000, eth)
    with out.open("rb") as fh:
        frames = list(read_frames(fh))
    assert [f.ts_ns for f in frames] == [1_700_000_000_000_000_123, 1_700_000_001_000_000_000]
    text = subprocess.run(
        ["tshark", "-r", str(out), "-T", "fields", "-e", "tcp.srcport", "-e", "frame.time_epoch"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert text[0].split("\t") == ["1000", "1700000000.000000123"]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=400))
def test_random_bytes_never_raise_anything_but_tcplens_errors(data: bytes) -> None:
    with contextlib.suppress(TcplensError):
        frames_of(data)


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(ALL_FIXTURES),
    st.lists(st.tuples(st.integers(0, 20_000), st.integers(0, 255)), min_size=1, max_size=8),
)
def test_mutated_fixtures_never_raise_anything_but_tcplens_errors(
    path: Path, edits: list[tuple[int, int]]
) -> None:
    data = bytearray(path.read_bytes())
    for position, value in edits:
        data[position % len(data)] = value
    with contextlib.suppress(TcplensError):
        frames_of(bytes(data))
