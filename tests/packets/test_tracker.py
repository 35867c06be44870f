"""Tracker: both sides' states from real fixtures and from hand-built exchanges.

Expected states for the fixtures were worked out by reading each capture
(tshark -V) against RFC 9293 and Linux behaviour; Zeek's conn_state and
history follow the rules in Zeek's main.zeek (see tcplens.packets.zeek).
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tcplens.errors import TcplensError, TruncatedInput
from tcplens.model.states import State
from tcplens.packets.decode import Segment4
from tcplens.packets.pcap import read_frames
from tcplens.packets.tracker import Connection, Timeouts, Tracker, reconstruct, reconstruct_file

from . import build
from .build import ACK, FIN, PSH, RST, SYN

FIXTURES = Path(__file__).parent.parent / "fixtures" / "pcap"
S = State


def fixture(name: str) -> list[Connection]:
    with (FIXTURES / name).open("rb") as fh:
        return reconstruct_file(fh, name)


def states(hist: list[tuple[float, State, str]]) -> list[State]:
    return [s for _, s, _ in hist]


# -- a tiny exchange language: "C>S SYN seq=100" style tuples --------------------------
C = ("10.0.0.1", 40000)
SRV = ("10.0.0.2", 8080)


def pkt(
    t: float,
    frm: tuple[str, int],
    flags: int,
    seq: int,
    ack: int = 0,
    length: int = 0,
    window: int = 65535,
) -> tuple[int, bytes]:
    to = SRV if frm == C else C
    seg = build.tcp(frm[1], to[1], seq, ack, flags, window=window, payload=b"x" * length)
    return int(t * 1e9), build.ether(build.ipv4(frm[0], to[0], seg))


def run(packets: list[tuple[int, bytes]], **kwargs: object) -> list[Connection]:
    data = build.pcap(packets, nanos=True)
    return reconstruct_file(io.BytesIO(data), "synthetic.pcap", **kwargs)  # type: ignore[arg-type]


def handshake(t: float = 0.0) -> list[tuple[int, bytes]]:
    return [
        pkt(t, C, SYN, 100),
        pkt(t + 0.01, SRV, SYN | ACK, 500, 101),
        pkt(t + 0.02, C, ACK, 101, 501),
    ]


# -- fixtures ------------------------------------------------------------------------------
def test_handshake_fixture_both_sides_established() -> None:
    (conn,) = fixture("tcp_handshake.pcapng")
    assert states(conn.orig_history) == [S.CLOSED, S.SYN_SENT, S.ESTABLISHED]
    assert states(conn.resp_history) == [S.LISTEN, S.SYN_RECV, S.ESTABLISHED]
    assert (conn.conn_state, conn.history, conn.completeness) == ("S1", "ShA", 7)
    assert str(conn.orig) == "172.16.16.128:2826"
    assert conn.resp_history[1][0] == conn.start  # SYN_RECV when the SYN was seen
    assert conn.orig_history[2][0] == pytest.approx(conn.start + 0.132627, abs=1e-6)


def test_refused_connection_server_never_listened() -> None:
    (conn,) = fixture("tcp_refuseconnection.pcapng")
    assert states(conn.orig_history) == [S.CLOSED, S.SYN_SENT, S.CLOSED]
    assert states(conn.resp_history) == [S.CLOSED]
    assert "nothing was listening" in conn.resp_history[0][2]
    assert (conn.conn_state, conn.history, conn.completeness) == ("REJ", "Sr", 37)


def test_teardown_picked_up_mid_stream_server_closes_first() -> None:
    (conn,) = fixture("tcp_teardown.pcapng")
    # Zeek flips the direction: the first packet came from port 80.
    assert str(conn.orig) == "172.16.16.128:3363"
    assert states(conn.orig_history) == [S.ESTABLISHED, S.CLOSE_WAIT, S.LAST_ACK, S.CLOSED]
    assert states(conn.resp_history) == [S.ESTABLISHED, S.FIN_WAIT1, S.FIN_WAIT2, S.TIME_WAIT]
    assert conn.orig_history[0][2].startswith("assumed")
    assert (conn.conn_state, conn.history, conn.completeness) == ("SF", "^fAFa", 20)


def test_retransmissions_fixture_counts_and_unseen_peer() -> None:
    (conn,) = fixture("tcp_retransmissions.pcapng")
    assert conn.orig_stats.retransmissions == 5
    assert conn.resp_stats.packets == 0
    assert (conn.conn_state, conn.history, conn.completeness) == ("OTH", "DT", 8)
    assert "resp" in conn.cannot_tell


@pytest.mark.parametrize(
    "name,closer_first",
    [("http_ip4and6.pcapng", "orig"), ("200722_tcp_anon.pcapng", None)],
)
def test_full_connections_end_in_time_wait_and_closed(name: str, closer_first: str | None) -> None:
    conns = fixture(name)
    assert len(conns) == 2
    for conn in conns:
        assert conn.conn_state == "SF"
        assert conn.completeness == 31
        finals = {conn.orig_state, conn.resp_state}
        assert finals == {S.TIME_WAIT, S.CLOSED}
    if closer_first == "orig":
        assert [c.orig_state for c in conns] == [S.TIME_WAIT, S.TIME_WAIT]
        assert conns[1].orig.ip == "2001:db8:1:2::1002"
    else:
        # 7875: the client closes first; 7876: the server does.
        assert [c.orig_state for c in conns] == [S.TIME_WAIT, S.CLOSED]
        assert states(conns[1].resp_history)[-3:] == [S.FIN_WAIT1, S.FIN_WAIT2, S.TIME_WAIT]


def test_sll2_fixture_server_closes_first_with_fin_ack_shortcut() -> None:
    conns = fixture("simple_http_sll2.pcap")
    for conn in conns:
        # The client's FIN also acknowledges the server's: FIN_WAIT1 -> TIME_WAIT directly.
        assert states(conn.resp_history)[-2:] == [S.FIN_WAIT1, S.TIME_WAIT]
        assert states(conn.orig_history)[-3:] == [S.CLOSE_WAIT, S.LAST_ACK, S.CLOSED]
        assert conn.history == "ShADadfF"
    assert [c.zeek.orig_bytes for c in conns] == [512, 466]
    assert [c.zeek.resp_bytes for c in conns] == [200, 655]


# -- evidence from retransmissions --------------------------------------------------------
def test_syn_ack_retransmitted_after_the_ack_means_the_ack_was_lost() -> None:
    conns = run([*handshake(), pkt(1.0, SRV, SYN | ACK, 500, 101)])
    (conn,) = conns
    assert conn.orig_state is S.ESTABLISHED
    # The server never got the ACK: still SYN_RECV, and its history no longer claims otherwise.
    assert states(conn.resp_history) == [S.LISTEN, S.SYN_RECV]
    assert any("did not arrive" in n for n in conn.notes)
    assert conn.history == "ShAH" or conn.history.startswith("ShA")


def test_after_a_lost_ack_the_next_client_segment_completes_the_handshake() -> None:
    conns = run(
        [*handshake(), pkt(1.0, SRV, SYN | ACK, 500, 101), pkt(1.01, C, PSH | ACK, 101, 501, 10)]
    )
    (conn,) = conns
    assert states(conn.resp_history) == [S.LISTEN, S.SYN_RECV, S.ESTABLISHED]
    assert conn.resp_history[-1][0] == pytest.approx(1.01)


def test_fin_retransmitted_after_its_ack_means_the_ack_was_lost() -> None:
    packets = [
        *handshake(),
        pkt(1.0, C, FIN | ACK, 101, 501),
        pkt(1.01, SRV, ACK, 501, 102),
        pkt(1.5, C, FIN | ACK, 101, 501),
    ]
    (conn,) = run(packets)
    assert conn.orig_state is S.FIN_WAIT1
    assert conn.resp_state is S.CLOSE_WAIT


def test_zero_window_at_the_end_makes_the_state_cannot_tell() -> None:
    packets = [
        *handshake(),
        pkt(1.0, C, PSH | ACK, 101, 501, 1000),
        pkt(1.01, SRV, ACK, 501, 1101, window=0),
    ]
    (conn,) = run(packets)
    assert conn.orig_state is S.ESTABLISHED
    assert "cannot be told" in conn.cannot_tell["orig"]
    assert conn.resp_stats.zero_windows == 1
    assert "w" in conn.history


# -- Zeek conn_state variety -----------------------------------------------------------------
@pytest.mark.parametrize(
    "packets,conn_state,history",
    [
        ([pkt(0, C, SYN, 100)], "S0", "S"),
        ([pkt(0, C, SYN, 100), pkt(1, C, SYN, 100), pkt(3, C, SYN, 100)], "S0", "S"),
        ([pkt(0, C, SYN, 100), pkt(0.1, C, RST, 101)], "RSTOS0", "SR"),
        ([pkt(0, C, SYN, 100), pkt(0.1, C, FIN, 101)], "SH", "SF"),
        ([*handshake(), pkt(1, C, RST | ACK, 101, 501)], "RSTO", "ShAR"),
        ([*handshake(), pkt(1, SRV, RST | ACK, 501, 101)], "RSTR", "ShAr"),
        ([*handshake(), pkt(1, C, FIN | ACK, 101, 501)], "S2", "ShAF"),
        ([*handshake(), pkt(1, SRV, FIN | ACK, 501, 101)], "S3", "ShAf"),
        ([pkt(0, SRV, SYN | ACK, 500, 101), pkt(0.1, SRV, RST, 501)], "RSTRH", "^hr"),
        ([pkt(0, SRV, SYN | ACK, 500, 101), pkt(0.1, SRV, FIN | ACK, 501, 101)], "SHR", "^hf"),
        ([pkt(0, C, PSH | ACK, 1, 1, 10), pkt(0.1, SRV, ACK, 1, 11)], "OTH", "Da"),
    ],
)
def test_zeek_conn_state(packets: list[tuple[int, bytes]], conn_state: str, history: str) -> None:
    (conn,) = run(packets)
    assert (conn.conn_state, conn.history) == (conn_state, history)


def test_half_open_attempt_responder_cannot_be_told() -> None:
    (conn,) = run([pkt(0, C, SYN, 100), pkt(1, C, SYN, 100)])
    assert states(conn.orig_history) == [S.CLOSED, S.SYN_SENT]
    assert conn.resp_state is S.UNKNOWN
    assert "never seen" in conn.cannot_tell["resp"]


def test_history_letters_repeat_on_new_sequence_numbers_and_scale_logarithmically() -> None:
    packets = [*handshake()]
    packets.append(pkt(1.0, C, PSH | ACK, 101, 501, 10))
    for i in range(12):  # the same payload twelve more times: T at 1 and at 10
        packets.append(pkt(1.1 + i / 100, C, PSH | ACK, 101, 501, 10))
    packets += [pkt(2.0, C, FIN | ACK, 111, 501), pkt(2.1, C, FIN | ACK, 111, 501)]
    (conn,) = run(packets)
    assert conn.history == "ShADTTF"
    # twelve repeated payloads and the repeated FIN, as Wireshark counts them
    assert conn.orig_stats.retransmissions == 13


def test_simultaneous_close_passes_through_closing() -> None:
    packets = [
        *handshake(),
        pkt(1.0, C, FIN | ACK, 101, 501),
        pkt(1.0001, SRV, FIN | ACK, 501, 101),
        pkt(1.01, C, ACK, 102, 502),
        pkt(1.0101, SRV, ACK, 502, 102),
    ]
    (conn,) = run(packets)
    assert states(conn.orig_history)[-3:] == [S.FIN_WAIT1, S.CLOSING, S.TIME_WAIT]
    assert states(conn.resp_history)[-3:] == [S.FIN_WAIT1, S.CLOSING, S.TIME_WAIT]
    assert conn.conn_state == "SF"


def test_data_crossing_a_fin_is_read_when_no_rst_follows() -> None:
    """A FIN may come from shutdown(SHUT_WR): the peer's data after it is read, not reset.

    The model answers new data after close() with RST; the wire cannot tell
    close() from shutdown(), so the tracker must not assume close() here.
    """
    packets = [
        *handshake(),
        pkt(1.0, C, FIN | ACK, 101, 501),
        pkt(1.001, SRV, PSH | ACK, 501, 101, 10),  # crosses the FIN: does not ACK it
        pkt(1.002, C, ACK, 102, 511),  # the client reads it
        pkt(1.003, SRV, ACK, 511, 102),
        pkt(1.1, SRV, FIN | ACK, 511, 102),
        pkt(1.101, C, ACK, 102, 512),
    ]
    (conn,) = run(packets)
    assert states(conn.orig_history)[-3:] == [S.FIN_WAIT1, S.FIN_WAIT2, S.TIME_WAIT]
    assert states(conn.resp_history)[-3:] == [S.CLOSE_WAIT, S.LAST_ACK, S.CLOSED]


def test_data_after_close_answered_with_rst_ends_both_sides() -> None:
    packets = [
        *handshake(),
        pkt(1.0, C, FIN | ACK, 101, 501),
        pkt(1.001, SRV, ACK, 501, 102),
        pkt(1.002, SRV, PSH | ACK, 501, 102, 10),  # the client had called close()
        pkt(1.003, C, RST, 102),
    ]
    (conn,) = run(packets)
    assert states(conn.orig_history)[-3:] == [S.FIN_WAIT1, S.FIN_WAIT2, S.CLOSED]
    assert conn.orig_history[-1][0] == pytest.approx(1.003)
    assert states(conn.resp_history)[-2:] == [S.CLOSE_WAIT, S.CLOSED]


def test_time_wait_expires_after_two_msl_of_capture_time() -> None:
    packets = [
        *handshake(),
        pkt(1.0, C, FIN | ACK, 101, 501),
        pkt(1.01, SRV, FIN | ACK, 501, 102),
        pkt(1.02, C, ACK, 102, 502),
        # unrelated traffic much later moves the capture clock on
        (int(100e9), build.ether(build.ipv4("10.9.9.9", "10.9.9.8", build.tcp(1, 2, 0, 0, SYN)))),
    ]
    conns = run(packets, msl=30.0, timeouts=Timeouts(closed=120.0))
    assert states(conns[0].orig_history)[-2:] == [S.TIME_WAIT, S.CLOSED]
    assert conns[0].orig_history[-1][0] == pytest.approx(1.01 + 60.0)
    # Followed only for the default 5 s after the close, it is still in TIME_WAIT.
    conns = run(packets, msl=30.0)
    assert conns[0].orig_state is S.TIME_WAIT


def test_port_reuse_new_syn_after_close_starts_a_new_connection() -> None:
    first = [
        *handshake(),
        pkt(1.0, C, FIN | ACK, 101, 501),
        pkt(1.01, SRV, FIN | ACK, 501, 102),
        pkt(1.02, C, ACK, 102, 502),
    ]
    second = [
        pkt(2.0, C, SYN, 9000),
        pkt(2.01, SRV, SYN | ACK, 7000, 9001),
        pkt(2.02, C, ACK, 9001, 7001),
    ]
    conns = run(first + second)
    assert len(conns) == 2
    assert conns[0].conn_state == "SF"
    assert states(conns[1].orig_history) == [S.CLOSED, S.SYN_SENT, S.ESTABLISHED]
    assert conns[1].start == pytest.approx(2.0)


def test_retransmitted_syn_is_not_port_reuse() -> None:
    conns = run([pkt(0, C, SYN, 100), pkt(1, C, SYN, 100), pkt(1.01, SRV, SYN | ACK, 5, 101)])
    assert len(conns) == 1
    assert conns[0].resp_history[1][0] == pytest.approx(1.0)  # SYN_RECV on the SYN that got through


def test_truncated_capture_yields_connections_so_far_then_raises() -> None:
    data = (FIXTURES / "200722_tcp_anon.pcapng").read_bytes()
    frames = list(read_frames(io.BytesIO(data)))
    cut = data[: frames[20].offset + 10]
    got: list[Connection] = []
    with pytest.raises(TruncatedInput) as info:
        got.extend(reconstruct(read_frames(io.BytesIO(cut), "cut.pcapng")))
    assert len(got) == 2
    assert info.value.record == 21


def _syn(i: int, t: float) -> Segment4:
    src = bytes([10, (i >> 16) & 255, (i >> 8) & 255, i & 255])
    return Segment4(src, b"\x0a\xff\xff\xfe", 1024 + i % 50000, 80, i * 7, 0, SYN, 65535, 0, 60)


def test_syn_flood_runs_in_bounded_memory() -> None:
    """20k half-open attempts over 10 s: live connections stay bounded by the timeouts."""
    tracker = Tracker(timeouts=Timeouts(attempt=5.0))
    finished = 0
    for i in range(20_000):
        finished += len(tracker.feed(i / 2000, _syn(i, i / 2000)))
    # 5 s of SYNs at 2000/s, plus the sweep's slack (sweeps are amortised over packets)
    assert tracker.peak <= 15_000
    assert len(tracker.flows) <= 15_000
    assert finished >= 20_000 - 15_000
    rest = tracker.finish()
    assert finished + len(rest) == 20_000
    assert all(c.conn_state == "S0" for c in rest)


def test_hard_cap_evicts_longest_idle_first() -> None:
    tracker = Tracker(max_connections=1000, timeouts=Timeouts(attempt=1e9))
    out = []
    for i in range(5000):
        out += tracker.feed(float(i), _syn(i, float(i)))
    assert len(tracker.flows) <= 1000
    assert out and out[0].index == 1


def _all_dicts(data: bytes, shortcut: bool) -> list[dict[str, object]]:
    tracker = Tracker()
    tracker.shortcut = shortcut
    return [c.as_dict() for c in reconstruct(read_frames(io.BytesIO(data)), tracker)]


@pytest.mark.parametrize("name", sorted(p.name for p in FIXTURES.glob("*.pcap*")))
def test_short_path_for_plain_segments_changes_nothing(name: str) -> None:
    data = (FIXTURES / name).read_bytes()
    assert _all_dicts(data, True) == _all_dicts(data, False)


def test_short_path_agrees_on_losses_zero_windows_and_retransmissions() -> None:
    packets = [
        *handshake(),
        pkt(1.0, SRV, SYN | ACK, 500, 101),
        pkt(1.01, C, PSH | ACK, 101, 501, 10),
        pkt(1.02, C, PSH | ACK, 101, 501, 10),
        pkt(1.03, SRV, ACK, 501, 111, window=0),
        pkt(1.04, SRV, PSH | ACK, 501, 111, 20),
        pkt(1.05, C, FIN | ACK, 111, 521),
        pkt(1.06, SRV, ACK, 521, 112),
        pkt(1.07, SRV, PSH | ACK, 521, 112, 5),
        pkt(1.08, C, ACK, 112, 526),
        pkt(1.09, SRV, FIN | ACK, 526, 112),
        pkt(1.10, C, ACK, 112, 527),
    ]
    data = build.pcap(packets, nanos=True)
    fast, slow = _all_dicts(data, True), _all_dicts(data, False)
    assert fast == slow
    assert [h["state"] for h in fast[0]["orig"]["history"]][-3:] == [  # type: ignore[index]
        "FIN_WAIT1",
        "FIN_WAIT2",
        "TIME_WAIT",
    ]


ALL_BYTES = [p.read_bytes() for p in sorted(FIXTURES.glob("*.pcap*"))]


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(range(len(ALL_BYTES))),
    st.lists(st.tuples(st.integers(0, 20_000), st.integers(0, 255)), min_size=1, max_size=12),
)
def test_mutated_captures_reconstruct_or_fail_cleanly(
    which: int, edits: list[tuple[int, int]]
) -> None:
    data = bytearray(ALL_BYTES[which])
    for position, value in edits:
        data[32 + position % (len(data) - 32)] = value
    try:
        for conn in reconstruct(read_frames(io.BytesIO(bytes(data)))):
            assert conn.orig_history and conn.resp_history
            json.dumps(conn.as_dict())
    except TcplensError:
        pass


def test_multi_flag_inconsistent_and_gap_letters() -> None:
    syn_fin_ack = SYN | FIN | ACK
    (conn,) = run(
        [
            pkt(0, C, SYN, 100),
            pkt(0.1, SRV, syn_fin_ack, 5, 101),
            pkt(0.2, SRV, syn_fin_ack, 5, 101),
        ]
    )
    assert conn.history == "Sq"  # once per direction
    # A SYN after a close (the SYN+FIN closed it) is a new connection (Zeek's IsReuse).
    conns = run([pkt(0, C, SYN | FIN, 100), pkt(0.1, C, SYN | FIN, 100)])
    assert [c.history for c in conns] == ["Q", "Q"]
    (conn,) = run([*handshake(), pkt(1, C, FIN | RST | ACK, 101, 501)])
    assert conn.history == "ShAI"
    # The server acknowledges 1000 bytes of the client's the capture never showed: a
    # content gap in the originator's stream (upper case), after the server's pure ACK.
    (conn,) = run([*handshake(), pkt(1, SRV, ACK, 501, 1101)])
    assert conn.history == "ShAaG"


def test_on_change_reports_every_state_entered_as_it_happens() -> None:
    seen: list[tuple[str, State]] = []
    tracker = Tracker(on_change=lambda c: seen.append((c.side, c.state)))
    data = build.pcap([*handshake()], nanos=True)
    conns = list(reconstruct(read_frames(io.BytesIO(data)), tracker))
    assert [s for side, s in seen if side == "orig"] == states(conns[0].orig_history)
    assert [s for side, s in seen if side == "resp"] == states(conns[0].resp_history)


def test_repeated_syn_and_syn_ack_are_retransmissions_as_wireshark_counts_them() -> None:
    # recorded in a namespace (tests/packets/record_lab_captures.py); tshark marks
    # frames 2-6 and 3-4 tcp.analysis.retransmission
    (blackholed,) = fixture("lab_syn_blackhole.pcap")
    assert (blackholed.orig_stats.syn, blackholed.orig_stats.retransmissions) == (6, 5)
    assert blackholed.orig_state is S.SYN_SENT and blackholed.conn_state == "S0"
    (unanswered,) = fixture("lab_synack_rexmit.pcap")
    assert (unanswered.resp_stats.syn, unanswered.resp_stats.retransmissions) == (3, 2)
    assert unanswered.orig_stats.retransmissions == 0
    assert unanswered.resp_state is S.SYN_RECV
