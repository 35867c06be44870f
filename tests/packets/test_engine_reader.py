"""The engine's reader and decoder must see what the Python reference sees.

``tcplens._engine.read_and_decode`` runs the Rust reader, link-type check
and decoder over a capture and returns every frame with its segment, the
frame count, the decode counters and the error that ended the input.  The
same capture goes through ``read_frames`` and ``reconstruct`` (with a
tracker that only records what it is fed), and everything must be equal:
frames, segments, ``CaptureSummary.frames``, ``DecodeStats``, and the error's
class, message, record and byte offset.  Fixtures, captures built for every
link type and encapsulation, and damaged captures drawn by hypothesis.
"""

from __future__ import annotations

import io
from dataclasses import astuple, fields
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tcplens import _engine
from tcplens.errors import TcplensError
from tcplens.packets.decode import DecodeStats, decode, supported_linktype
from tcplens.packets.pcap import read_frames
from tcplens.packets.tracker import CaptureSummary, reconstruct

from . import build
from .build import ACK, FIN, PSH, SYN

FIXTURES = Path(__file__).parent.parent / "fixtures" / "pcap"
SHARED = Path("/work/shared/fixtures/pcap")
NAME = "capture.pcap"


class Recorder:
    """Stands in for the tracker: keeps what ``reconstruct`` feeds it."""

    def __init__(self, check: bool = False) -> None:
        self.fed: list[tuple[Any, ...]] = []
        self.peak = 0
        self.check_checksums = check  # reconstruct() reads it (--check-checksums)

    def feed(self, t: float, seg: Any, frame_len: int = 0, record: int = 0) -> list[Any]:
        self.fed.append((t, astuple(seg), frame_len, record))
        return []

    def finish(self) -> list[Any]:
        return []


def error_view(exc: BaseException | None) -> tuple[Any, ...] | None:
    if exc is None:
        return None
    return (
        type(exc).__name__,
        str(exc),
        getattr(exc, "record", None),
        getattr(exc, "offset", None),
    )


def reference(data: bytes, check: bool = False) -> dict[str, Any]:
    tracker = Recorder(check)
    summary = CaptureSummary()
    error: BaseException | None = None
    try:
        for _ in reconstruct(read_frames(io.BytesIO(data), NAME), tracker, summary, NAME):  # type: ignore[arg-type]
            pass
    except TcplensError as exc:
        error = exc
    # the frames themselves, up to the first link type reconstruct refuses
    frames = []
    stats = DecodeStats(check_checksums=check)
    try:
        for f in read_frames(io.BytesIO(data), NAME):
            if not supported_linktype(f.linktype):
                break
            seg = decode(f.linktype, f.data, stats)
            frames.append(
                (
                    f.record,
                    f.offset,
                    f.ts_ns,
                    f.linktype,
                    f.wire_len,
                    f.interface,
                    len(f.data),
                    None if seg is None else astuple(seg),
                )
            )
    except TcplensError:
        pass
    return {
        "frames": frames,
        "fed": tracker.fed,
        "count": summary.frames,
        "stats": astuple(summary.decode),
        "error": error_view(error),
    }


def engine(source: Any, check: bool = False) -> dict[str, Any]:
    frames, count, stats, error = _engine.read_and_decode(source, NAME, check)
    fed = [
        (ts_ns / 1e9, seg, wire_len, record)
        for record, _off, ts_ns, _lt, wire_len, _if, _cap, seg in frames
        if seg is not None
    ]
    return {
        "frames": frames,
        "fed": fed,
        "count": count,
        "stats": tuple(stats[f.name] for f in fields(DecodeStats)),
        "error": error_view(error),
    }


def assert_same(data: bytes, check: bool = False) -> dict[str, Any]:
    """``check``: both validate checksums (``--check-checksums``)."""
    ref = reference(data, check)
    assert engine(io.BytesIO(data), check) == ref
    return ref


def fixture_paths() -> list[Path]:
    paths = sorted(FIXTURES.glob("*.pcap*"))
    if SHARED.is_dir():
        seen = {p.name for p in paths}
        paths += sorted(p for p in SHARED.glob("*.pcap*") if p.name not in seen)
    return paths


@pytest.mark.parametrize("path", fixture_paths(), ids=lambda p: p.name)
def test_every_fixture_reads_and_decodes_the_same(path: Path) -> None:
    data = path.read_bytes()
    ref = assert_same(data)
    assert ref["fed"], "a fixture without TCP tests nothing"
    # the file opened by Rust itself gives the same as the Python file object
    assert engine(str(path)) == {**ref, "error": ref["error"]}
    # and with every checksum checked (IPv4, UDP tunnels, TCP)
    assert_same(data, check=True)


CORPUS = Path(__file__).parents[2] / "rust" / "fuzz" / "corpus" / "reader_decode"


@pytest.mark.parametrize("path", sorted(CORPUS.iterdir()), ids=lambda p: p.name[:16])
def test_every_fuzz_corpus_input_reads_and_decodes_the_same(path: Path) -> None:
    # every input the fuzzer kept or found (cargo test replays them in Rust too)
    assert_same(path.read_bytes())


def seg(src: str, dst: str, sport: int, dport: int, flags: int, payload: bytes = b"") -> bytes:
    t = build.tcp(sport, dport, 7, 9, flags, payload=payload)
    if ":" in src:
        return build.ipv6(src, dst, t)
    return build.ipv4(src, dst, t)


V4 = seg("10.0.0.1", "10.0.0.2", 1000, 80, SYN)
V6 = seg("2001:db8::1", "2001:db8::2", 1000, 443, PSH | ACK, b"hello")


def test_every_link_type_and_encapsulation_decodes_the_same() -> None:
    ext = [(0, b"\x00" * 6), (43, b"\x00" * 14), (60, b"\x00" * 6)]
    v6_ext = build.ipv6("2001:db8::1", "2001:db8::2", build.tcp(1, 2, 3, 4, FIN | ACK), ext=ext)
    atomic = build.ipv6(
        "::1", "::2", build.tcp(1, 2, 3, 4, ACK), ext=[(44, b"\x00\x00\x00\x00\x00\x01")]
    )
    fragment = build.ipv6(
        "::1", "::2", build.tcp(1, 2, 3, 4, ACK), ext=[(44, b"\x00\x09\x00\x00\x00\x01")]
    )
    v4_opts = build.ipv4("10.0.0.1", "10.0.0.2", build.tcp(5, 6, 7, 8, SYN), options=b"\x01" * 8)
    v4_frag = build.ipv4("10.0.0.1", "10.0.0.2", build.tcp(5, 6, 7, 8, SYN), frag=0x2000)
    udp = build.ipv4("10.0.0.1", "10.0.0.2", b"\x00" * 8, proto=17)
    cases: list[tuple[int, list[bytes]]] = [
        (1, [build.ether(V4), build.ether(V6, 0x86DD), build.ether(V4, vlans=((0x8100, 5),))]),
        (1, [build.ether(V4, vlans=((0x88A8, 1), (0x8100, 2))), build.ether(b"", 0x0806)]),
        (
            1,
            [
                build.ether(v6_ext, 0x86DD),
                build.ether(atomic, 0x86DD),
                build.ether(fragment, 0x86DD),
            ],
        ),
        (1, [build.ether(v4_opts), build.ether(v4_frag), build.ether(udp), b"\x00" * 9]),
        (113, [build.sll(V4), build.sll(V6, 0x86DD), build.sll(V4)[:10]]),
        (276, [build.sll2(V4), build.sll2(V6, 0x86DD), build.sll2(V4, 0x0806)]),
        (
            0,
            [
                build.null(V4, 2),
                build.null(V4, 2, ">"),
                build.null(V6, 30),
                build.null(V6, 24, ">"),
            ],
        ),
        (108, [build.null(V4, 2, ">"), build.null(V6, 28, ">"), build.null(V4, 7, ">")]),
        (101, [V4, V6, b"", b"\x50\x00"]),
        (12, [V4]),
        (14, [V6]),
        (228, [V4]),
        (229, [V6]),
    ]
    for linktype, frames in cases:
        data = build.pcap([(i * 1000, f) for i, f in enumerate(frames)], linktype=linktype)
        ref = assert_same(data)
        assert ref["count"] == len(frames)


def test_unsupported_link_type_is_the_same_located_error() -> None:
    data = build.pcap([(0, b"user")], linktype=147)  # LINKTYPE_USER0
    ref = assert_same(data)
    assert ref["error"][0] == "InputError"
    assert "link type 147" in ref["error"][1]


@pytest.mark.parametrize("order", ["<", ">"])
@pytest.mark.parametrize("nanos", [False, True])
def test_classic_pcap_byte_orders_and_resolutions(order: str, nanos: bool) -> None:
    frames = [(1_700_000_000_123_456_789 + i, build.ether(V4)) for i in range(3)]
    assert_same(build.pcap(frames, order=order, nanos=nanos))


def test_pcapng_sections_interfaces_resolutions_and_skipped_blocks() -> None:
    data = (
        build.ng_shb(">")
        + build.ng_idb(1, order=">")
        + build.ng_idb(101, tsresol=9, order=">")
        + build.ng_block(0x0BAD_F00D, b"skipped", ">")
        + build.ng_epb(0, 1_000_000, build.ether(V4), ">")
        + build.ng_epb(1, 1_100_000_000, V6, ">")
        + build.ng_shb("<")
        + build.ng_idb(113, tsresol=0x80 | 20)
        + build.ng_epb(0, 3 << 20, build.sll(V4))
        + build.ng_spb(build.sll(V4))
        + build.ng_block(2, b"\x00" * 20)  # obsolete packet block holding no data
    )
    ref = assert_same(data)
    assert ref["count"] == 5


def test_pcap_version_0xFF02_is_refused_from_a_file_and_a_stream_alike(tmp_path: Path) -> None:
    data = bytearray(build.pcap([(0, build.ether(V4))]))
    data[4:6] = (0xFF02).to_bytes(2, "little")
    ref = assert_same(bytes(data))
    assert ref["error"][:2] == ("InputError", f"{NAME} byte 4: unsupported pcap version 65282")
    path = tmp_path / NAME
    path.write_bytes(data)
    assert engine(str(path))["error"] == ref["error"]


@pytest.mark.parametrize("cut", [1, 3, 10, 17, 30])
def test_truncated_captures_end_with_the_same_error(cut: int) -> None:
    for data in (
        build.pcap([(0, build.ether(V4)), (1, build.ether(V6, 0x86DD))]),
        build.ng_shb() + build.ng_idb(1) + build.ng_epb(0, 5, build.ether(V4)) * 2,
    ):
        ref = assert_same(data[:-cut])
        assert ref["error"] is not None


def test_not_a_capture_empty_and_short_inputs() -> None:
    for data in (b"", b"\xd4\xc3", b"GIF89a........", b"\xd4\xc3\xb2\xa1\x02\x00"):
        assert assert_same(data)["error"][0] == "InputError"


def test_a_missing_file_is_one_input_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pcap"
    err = engine(str(missing))["error"]
    assert err[0] == "InputError"
    assert err[1] == f"{NAME}: cannot open: No such file or directory"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    which=st.sampled_from(["tcp_handshake.pcapng", "simple_http_sll2.pcap", "http_ip4and6.pcapng"]),
    edits=st.lists(st.tuples(st.integers(0, 2000), st.integers(0, 255)), max_size=6),
    cut=st.integers(0, 3000),
)
def test_damaged_captures_read_and_decode_the_same(
    which: str, edits: list[tuple[int, int]], cut: int
) -> None:
    data = bytearray((FIXTURES / which).read_bytes()[:3000])
    for at, value in edits:
        if at < len(data):
            data[at] = value
    assert_same(bytes(data[: len(data) - cut % max(1, len(data))]))


def test_udp_tunnel_checksums_decode_the_same() -> None:
    """Good, bad and zero outer UDP checksums over IPv4 and IPv6, whole and cut."""
    from . import encap_frames

    rows: list[tuple[int, bytes]] = []
    for case in encap_frames.UDP_CASES:
        for v6 in (False, True):
            for i, (_t, frame) in enumerate(encap_frames.frames(case)):
                for csum in ("good", "bad", "zero"):
                    f = encap_frames.with_udp_checksum(frame, csum, v6)
                    rows += [(len(rows), f), (len(rows) + 1, f[: len(f) - 1 - i])]
    data = build.pcap(rows)
    checked = assert_same(data, check=True)
    assert checked["stats"] != assert_same(data)["stats"]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    case=st.integers(0, 4),
    v6=st.booleans(),
    csum=st.sampled_from(["good", "bad", "zero"]),
    edits=st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), max_size=4),
    cut=st.integers(0, 200),
)
def test_damaged_udp_tunnel_frames_with_checksums_checked_decode_the_same(
    case: int, v6: bool, csum: str, edits: list[tuple[int, int]], cut: int
) -> None:
    from . import encap_frames

    frame = encap_frames.frames(encap_frames.UDP_CASES[case])[3][1]
    data = bytearray(encap_frames.with_udp_checksum(frame, csum, v6))
    for at, value in edits:
        if at < len(data):
            data[at] = value
    assert_same(build.pcap([(0, bytes(data[: max(0, len(data) - cut)]))]), check=True)
