"""Zeek's rules, one hand-built capture each, through the engine and the reference.

Each expected ``conn_state``/``history`` is derived from Zeek's own source
(``src/packet_analysis/protocol/tcp/TCPSessionAdapter.cc`` and ``TCP.cc``,
``scripts/base/protocols/conn/main.zeek``); the rule is cited at each test.
Both routes (the compiled engine and the Python reference) must give it.
"""

from __future__ import annotations

import dataclasses
import io

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tcplens.packets.decode import DecodeStats, decode
from tcplens.packets.engine import ROUTE_ENV, engine_available, reconstruct_capture
from tcplens.packets.tracker import CaptureSummary, Connection, Timeouts, Tracker

from . import build
from . import test_engine_diff as diff
from .build import ACK, FIN, PSH, RST, SYN

# Neither port is one of Zeek's likely server ports, so no guess flips a connection.
A = ("10.0.0.1", 40000)
B = ("10.0.0.2", 9999)

ROUTES = [
    "python",
    pytest.param(
        "engine", marks=pytest.mark.skipif(not engine_available(), reason="engine not built")
    ),
]


def pkt(
    t: float, frm: tuple[str, int], flags: int, seq: int, ack: int = 0, length: int = 0
) -> tuple[int, bytes]:
    to = B if frm == A else A
    seg = build.tcp(frm[1], to[1], seq, ack, flags, payload=b"x" * length)
    return int(t * 1e9), build.ether(build.ipv4(frm[0], to[0], seg))


def run(
    route: str, packets: list[tuple[int, bytes]], monkeypatch: pytest.MonkeyPatch
) -> list[Connection]:
    monkeypatch.setenv(ROUTE_ENV, route)
    data = build.pcap(packets, nanos=True)
    tracker = Tracker()
    return list(reconstruct_capture(io.BytesIO(data), tracker, CaptureSummary(), "rules.pcap"))


def verdicts(conns: list[Connection]) -> list[tuple[str, str]]:
    return [(c.conn_state, c.history) for c in sorted(conns, key=lambda c: c.index)]


def handshake(t: float = 0.0, a_isn: int = 100, b_isn: int = 500) -> list[tuple[int, bytes]]:
    return [
        pkt(t, A, SYN, a_isn),
        pkt(t + 0.01, B, SYN | ACK, b_isn, a_isn + 1),
        pkt(t + 0.02, A, ACK, a_isn + 1, b_isn + 1),
    ]


# -- connection reuse: TCPSessionAdapter::IsReuse --------------------------------------
@pytest.mark.parametrize("route", ROUTES)
def test_syn_after_a_reject_is_a_new_connection_even_with_the_same_isn(
    route: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # IsClosed() (either side did_close) -> every SYN is reuse, whatever its number.
    packets = [pkt(0, A, SYN, 100), pkt(0.01, B, RST | ACK, 0, 101), pkt(1, A, SYN, 100)]
    assert verdicts(run(route, packets, monkeypatch)) == [("REJ", "Sr"), ("S0", "S")]


@pytest.mark.parametrize("route", ROUTES)
def test_syn_after_one_sided_fin_is_a_new_connection(
    route: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Only the originator closed: IsClosed() is orig->did_close || resp->did_close.
    packets = [*handshake(), pkt(1, A, FIN | ACK, 101, 501), pkt(2, A, SYN, 7000)]
    assert verdicts(run(route, packets, monkeypatch)) == [("S2", "ShAF"), ("S0", "S")]


@pytest.mark.parametrize("route", ROUTES)
def test_syn_with_a_new_isn_on_an_open_attempt_is_a_new_connection(
    route: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Not closed, but base_seq != orig->StartSeq(): "SYN_seq_jump", and reuse.
    packets = [pkt(0, A, SYN, 100), pkt(1, A, SYN, 100), pkt(3, A, SYN, 9000)]
    assert verdicts(run(route, packets, monkeypatch)) == [("S0", "S"), ("S0", "S")]


@pytest.mark.parametrize("route", ROUTES)
def test_syn_after_syn_ack_with_matching_number_is_the_reversal_not_reuse(
    route: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The SYN+ACK came first (two interfaces): IsReuse declines, and the
    # inactive-state SYN flips roles ('^' after the responder's 's').
    packets = [pkt(0, A, SYN | ACK, 500, 101), pkt(0.001, B, SYN, 100), pkt(0.02, B, ACK, 101, 501)]
    assert verdicts(run(route, packets, monkeypatch)) == [("S1", "Hs^A")]


@pytest.mark.parametrize("route", ROUTES)
def test_syn_ack_is_reuse_only_while_the_originator_is_inactive(
    route: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A half connection: only B's side seen (SYN+ACK, RST), so orig is INACTIVE
    # after the flip... here B's SYN+ACK came from a non-server port, so B stays
    # the originator (SYN_ACK_SENT) and a later SYN+ACK is not reuse.
    packets = [pkt(0, B, SYN | ACK, 500, 101), pkt(0.1, B, SYN | ACK, 800, 101)]
    assert len(run(route, packets, monkeypatch)) == 1
    # After a handshake, the responder's repeated SYN+ACK is never reuse.
    packets = [*handshake(), pkt(1, B, SYN | ACK, 900, 101)]
    assert len(run(route, packets, monkeypatch)) == 1


# -- checksums: TCPAnalyzer::ValidateChecksum, IP analyzer's bad_IP_checksum ----------
def sframe(
    t: float,
    frm: tuple[str, int],
    flags: str,
    seq: int,
    ack: int = 0,
    payload: bytes = b"",
    *,
    tcp_sum: int | None = None,
    ip_sum: int | None = None,
) -> tuple[int, bytes]:
    """A frame with real checksums, built by scapy (not by the code under test)."""
    from scapy.layers.inet import IP, TCP
    from scapy.layers.l2 import Ether

    to = B if frm == A else A
    ip = IP(src=frm[0], dst=to[0], chksum=ip_sum)
    tcp = TCP(sport=frm[1], dport=to[1], flags=flags, seq=seq, ack=ack, chksum=tcp_sum)
    return int(t * 1e9), bytes(Ether() / ip / tcp / payload)


def good_handshake() -> list[tuple[int, bytes]]:
    return [
        sframe(0, A, "S", 100),
        sframe(0.01, B, "SA", 500, 101),
        sframe(0.02, A, "A", 101, 501),
    ]


def run_checked(
    route: str, packets: list[tuple[int, bytes]], monkeypatch: pytest.MonkeyPatch, check: bool
) -> tuple[list[Connection], CaptureSummary]:
    monkeypatch.setenv(ROUTE_ENV, route)
    summary = CaptureSummary()
    data = build.pcap(packets, nanos=True)
    tracker = Tracker(check_checksums=check)
    conns = list(reconstruct_capture(io.BytesIO(data), tracker, summary, "sums.pcap"))
    return sorted(conns, key=lambda c: c.index), summary


@pytest.mark.parametrize("route", ROUTES)
def test_bad_tcp_checksum_is_history_c_and_moves_nothing(
    route: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    packets = [*good_handshake(), sframe(1, A, "PA", 101, 501, b"hello", tcp_sum=0xDEAD)]
    (conn,), summary = run_checked(route, packets, monkeypatch, check=True)
    assert (conn.conn_state, conn.history) == ("S1", "ShAC")
    assert (conn.zeek.orig_pkts, conn.zeek.orig_bytes) == (2, 0)
    assert summary.decode.bad_checksums == 1
    # Off (the default, as Wireshark): the same segment is data.
    (conn,), summary = run_checked(route, packets, monkeypatch, check=False)
    assert (conn.conn_state, conn.history) == ("S1", "ShAD")
    assert conn.zeek.orig_pkts == 3
    assert summary.decode.bad_checksums == 0


@pytest.mark.parametrize("route", ROUTES)
def test_checksum_errors_scale_like_retransmissions(
    route: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # ScaledHistoryEntry: the 1st, 10th, 100th ... error adds a letter.
    bad = [sframe(1 + i / 100, B, "A", 501, 101, tcp_sum=0xBEEF) for i in range(10)]
    (conn,), _ = run_checked(route, [*good_handshake(), *bad], monkeypatch, check=True)
    assert conn.history == "ShAcc"


@pytest.mark.parametrize("route", ROUTES)
def test_bad_ipv4_header_checksum_drops_the_packet(
    route: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    packets = [sframe(0, A, "S", 100), sframe(0.01, B, "SA", 500, 101, ip_sum=0x1234)]
    (conn,), summary = run_checked(route, packets, monkeypatch, check=True)
    assert (conn.conn_state, conn.history, conn.zeek.resp_pkts) == ("S0", "S", 0)
    assert (summary.decode.bad_checksums, summary.decode.tcp) == (1, 1)
    (conn,), _ = run_checked(route, packets, monkeypatch, check=False)
    assert (conn.conn_state, conn.history) == ("S1", "Sh")


def test_cli_check_checksums_flag(tmp_path: pytest.TempPathFactory) -> None:
    import json
    import subprocess
    import sys
    from pathlib import Path

    path = Path(str(tmp_path)) / "sums.pcap"
    packets = [*good_handshake(), sframe(1, A, "PA", 101, 501, b"hello", tcp_sum=0xDEAD)]
    path.write_bytes(build.pcap(packets, nanos=True))

    def zeek_history(*extra: str) -> str:
        out = subprocess.run(
            [sys.executable, "-m", "tcplens", "pcap", str(path), "--zeek", *extra],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        rows = [line.split("\t") for line in out.splitlines() if not line.startswith("#")]
        fields = next(line for line in out.splitlines() if line.startswith("#fields"))
        return rows[0][fields.split("\t")[1:].index("history")]

    assert zeek_history() == "ShAD"
    assert zeek_history("--check-checksums") == "ShAC"
    out = subprocess.run(
        [sys.executable, "-m", "tcplens", "pcap", str(path), "--json", "--check-checksums"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert json.loads(out)["summary"]["bad_checksums"] == 1


# -- content gaps: TCP_Reassembler::AckReceived / Undelivered / Gap -------------------
@pytest.mark.parametrize("route", ROUTES)
def test_acknowledged_hole_is_a_gap_of_its_size(
    route: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 111..120 never captured; B's ACK of 131 reveals it (data above it was seen).
    packets = [
        *handshake(),
        pkt(1, A, PSH | ACK, 101, 501, 10),
        pkt(1.1, A, PSH | ACK, 121, 501, 10),
        pkt(1.2, B, ACK, 501, 131),
    ]
    (conn,) = run(route, packets, monkeypatch)
    assert (conn.history, conn.zeek.missed_bytes) == ("ShADaG", 10)


@pytest.mark.parametrize("route", ROUTES)
def test_hole_filled_before_the_ack_is_no_gap(route: str, monkeypatch: pytest.MonkeyPatch) -> None:
    packets = [
        *handshake(),
        pkt(1, A, PSH | ACK, 111, 501, 10),
        pkt(1.1, A, PSH | ACK, 101, 501, 10),  # out of order: Zeek's T (seq below last)
        pkt(1.2, B, ACK, 501, 121),
    ]
    (conn,) = run(route, packets, monkeypatch)
    assert (conn.history, conn.zeek.missed_bytes) == ("ShADTa", 0)


@pytest.mark.parametrize("route", ROUTES)
def test_gaps_scale_and_sum_into_missed_bytes(route: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # Ten acknowledged 100-byte holes: G at the 1st and 10th, 1000 bytes missed.
    packets = [*handshake()]
    for i in range(10):
        packets.append(pkt(1 + i, B, ACK, 501, 101 + 100 * (i + 1)))
    (conn,) = run(route, packets, monkeypatch)
    assert (conn.history, conn.zeek.missed_bytes) == ("ShAaGG", 1000)


@pytest.mark.parametrize("route", ROUTES)
def test_no_gap_once_a_side_reset(route: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # The RST+ACK acknowledges unseen data, but B is RESET then: not "clean".
    packets = [*handshake(), pkt(1, B, RST | ACK, 501, 1101)]
    (conn,) = run(route, packets, monkeypatch)
    assert (conn.conn_state, conn.history, conn.zeek.missed_bytes) == ("RSTR", "ShAr", 0)


@pytest.mark.parametrize("route", ROUTES)
def test_partial_connection_first_ack_is_not_a_gap(
    route: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Mid-stream: A's start is faked one below its first byte; B acking that one
    # byte (a keep-alive's) is "up_to_seq <= 2 && IsPartial()": ignored.
    packets = [pkt(0, A, ACK, 1000, 2000), pkt(0.1, B, ACK, 2000, 1001)]
    (conn,) = run(route, packets, monkeypatch)
    assert (conn.history, conn.zeek.missed_bytes) == ("Aa", 0)


@settings(max_examples=60, deadline=None)
@given(payload=st.binary(max_size=40), bit=st.integers(min_value=0, max_value=10_000))
def test_any_flipped_bit_fails_the_tcp_checksum_in_both_decoders(payload: bytes, bit: int) -> None:
    """One's-complement sums catch every single-bit error; scapy fills the right sum."""
    _, frame = sframe(0, A, "PA", 1, 1, payload)
    start = 14 + 20  # the TCP header
    i = start * 8 + bit % ((len(frame) - start) * 8)
    bad = bytearray(frame)
    bad[i // 8] ^= 1 << (i % 8)
    for data, want in ((frame, False), (bytes(bad), True)):
        stats = DecodeStats(check_checksums=True)
        seg = decode(1, data, stats)
        assert seg is None or seg.bad_checksum is want  # (a data-offset flip: malformed)
        assert decode(1, data, DecodeStats()) is None or not decode(1, data).bad_checksum
        if engine_available():
            from tcplens import _engine

            pcap = build.pcap([(0, data)])
            frames, _n, engine_stats, _err = _engine.read_and_decode(io.BytesIO(pcap), None, True)
            got = frames[0][-1]
            assert (got is None) == (seg is None)
            if got is not None and seg is not None:
                assert got == dataclasses.astuple(seg)  # bad_checksum included
            assert engine_stats["bad_checksums"] == stats.bad_checksums


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(diff.segment, st.booleans()), min_size=1, max_size=40))
def test_soups_with_bad_checksums_agree_in_engine_and_reference(
    rows: list[tuple[tuple[object, ...], bool]],
) -> None:
    """Segments flagged bad_checksum anywhere (first of a flow, a reuse SYN, ...)."""
    if not engine_available():
        pytest.skip("engine not built")
    base = diff.soup([r for r, _ in rows])
    marked = [
        (rec, ts, size, (*fields[:11], bad))
        for (rec, ts, size, fields), (_, bad) in zip(base, rows, strict=True)
    ]
    diff.assert_same(marked, timeouts=Timeouts(attempt=2.0, closed=2.0, reset=1.0, inactivity=6.0))


# -- orientation: TCPAnalyzer::WantConnection / IsLikelyServerPort ---------------------
@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize(
    "server_port,history",
    [
        (993, "^d"),  # imaps (ssl_ports): data from it, so it is the responder
        (2811, "^d"),  # gridftp (ftp ports)
        (8443, "D"),  # not in any base script's likely_server_ports: no flip
        (1883, "^d"),  # mqtt
        (20000, "^d"),  # dnp3
        (3306, "D"),  # mysql: analysed on 3306, never added to likely_server_ports (8.0)
        (5432, "D"),  # postgresql: likewise
        (514, "D"),  # syslog over TCP: likewise
        (161, "D"),  # snmp is registered for UDP only
    ],
)
def test_mid_stream_orientation_follows_zeeks_likely_server_ports(
    route: str, server_port: int, history: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    seg = build.tcp(server_port, 40000, 5000, 7000, PSH | ACK, payload=b"x" * 10)
    frame = build.ether(build.ipv4("10.0.0.2", "10.0.0.1", seg))
    (conn,) = run(route, [(0, frame)], monkeypatch)
    assert conn.history == history
    assert conn.orig.port == (40000 if history.startswith("^") else server_port)


def snapped_pcap(frames: list[tuple[int, bytes]], snaplen: int) -> bytes:
    """A pcap whose records keep at most ``snaplen`` bytes of each frame."""
    import struct

    out = struct.pack("<IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, snaplen, 1)
    for ts_ns, data in frames:
        sec, frac = divmod(ts_ns, 1_000_000_000)
        kept = data[:snaplen]
        out += struct.pack("<IIII", sec, frac, len(kept), len(data)) + kept
    return out


@pytest.mark.parametrize("route", ROUTES)
def test_payload_cut_by_the_snapshot_length_is_a_content_gap(
    route: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # TCP_Endpoint::DataSent: caplen < len is "truncated_tcp_payload", the
    # reassembler never gets the bytes, and the peer's ACK of them is a gap.
    packets = [
        *handshake(),
        pkt(1, A, PSH | ACK, 101, 501, 1000),
        pkt(1.1, B, ACK, 501, 1101),
        pkt(2, A, FIN | ACK, 1101, 501),
        pkt(2.1, B, FIN | ACK, 501, 1102),
        pkt(2.2, A, ACK, 1102, 502),
    ]
    monkeypatch.setenv(ROUTE_ENV, route)
    data = snapped_pcap(packets, snaplen=96)
    conns = list(reconstruct_capture(io.BytesIO(data), Tracker(), CaptureSummary(), "cut.pcap"))
    (conn,) = conns
    assert (conn.conn_state, conn.history, conn.zeek.missed_bytes) == ("SF", "ShADaGFf", 1000)
    assert conn.zeek.orig_bytes == 1000  # sizes still come from sequence numbers
    (whole,) = run(route, packets, monkeypatch)
    assert (whole.history, whole.zeek.missed_bytes) == ("ShADaFf", 0)
