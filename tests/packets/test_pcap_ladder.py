"""``tcplens pcap --flow``: the ladder shows only orders an endpoint can go through,
with Wireshark's relative sequence numbers.

Relative numbers are compared with tshark's ``tcp.seq``/``tcp.ack``
(``tcp.relative_sequence_numbers:TRUE``) frame by frame, on a real capture
picked up mid-stream and on hand-built ones whose first acknowledgement
disagrees with the first sequence number seen.
"""

from __future__ import annotations

import io
import itertools
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tcplens.model.machine import TRANSITIONS
from tcplens.model.states import State
from tcplens.packets.pcap import read_frames
from tcplens.packets.tracker import Connection, Tracker, reconstruct
from tcplens.views.commands.pcap import _ladder_rows

from . import build
from .build import ACK, FIN, PSH, RST, SYN

FIXTURES = Path(__file__).parent.parent / "fixtures" / "pcap"
CAPTURES = sorted(p for p in FIXTURES.iterdir() if p.suffix in (".pcap", ".pcapng"))
C, SRV = ("10.0.0.1", 40000), ("10.0.0.2", 8080)

#: every (from, to) pair the model's table has a row for
STEPS = {(state, row.next) for state, rows in TRANSITIONS.items() for row in rows.values()}


def pkt(t: float, frm: tuple[str, int], flags: int, seq: int, ack: int = 0, n: int = 0) -> bytes:
    to = SRV if frm == C else C
    return build.ether(
        build.ipv4(frm[0], to[0], build.tcp(frm[1], to[1], seq, ack, flags, payload=b"x" * n))
    )


def capture(rows: list[tuple[float, tuple[str, int], int, int, int, int]]) -> bytes:
    return build.pcap(
        [(int(t * 1e9), pkt(t, frm, fl, seq, ack, n)) for t, frm, fl, seq, ack, n in rows]
    )


HANDSHAKE = [
    (0.0, C, SYN, 100, 0, 0),
    (0.01, SRV, SYN | ACK, 500, 101, 0),
    (0.02, C, ACK, 101, 501, 0),
]
#: both sides send FIN before the other's arrives; the client's is captured first
CROSSING = [
    (1.0, C, FIN | ACK, 101, 501, 0),
    (1.0001, SRV, FIN | ACK, 501, 101, 0),
    (1.01, C, ACK, 102, 502, 0),
    (1.0101, SRV, ACK, 502, 102, 0),
]
#: the same close, picked up mid-stream after 100 bytes each way
MID_CROSSING = [
    (0.0, C, ACK | PSH, 1000, 5000, 100),
    (0.01, SRV, ACK | PSH, 5000, 1100, 200),
    (1.0, C, FIN | ACK, 1100, 5200, 0),
    (1.0001, SRV, FIN | ACK, 5200, 1100, 0),
    (1.01, C, ACK, 1101, 5201, 0),
    (1.0101, SRV, ACK, 5201, 1101, 0),
]
#: the client acknowledges 5000, but the server's first captured segment starts at 6000;
#: then a segment without ACK, a retransmitted FIN and a bare RST
ODD = [
    (0.0, C, ACK, 1000, 5000, 100),
    (0.01, SRV, ACK, 6000, 1100, 200),
    (0.02, C, 0, 1100, 0, 10),
    (0.03, C, FIN | ACK, 1110, 6200, 0),
    (0.04, C, FIN | ACK, 1110, 6200, 0),
    (0.05, SRV, RST, 6200, 0, 0),
]


def connections(data: bytes) -> list[Connection]:
    return list(reconstruct(read_frames(io.BytesIO(data)), Tracker(keep_segments=True)))


def columns(conn: Connection) -> tuple[list[str], list[str]]:
    """Each side's states in the order the ladder shows them, top to bottom."""
    rows = _ladder_rows(conn)
    left = [r.left for r in rows if r.left_changed]
    right = [r.right for r in rows if r.right_changed]
    return left, right


def assert_possible(states: list[str], assumed: bool) -> None:
    for a, b in itertools.pairwise(states):
        assert (State.parse(a), State.parse(b)) in STEPS, f"{a} -> {b} in {states}"
    assert assumed or states[0] in ("CLOSED", "LISTEN", "UNKNOWN"), states


@pytest.mark.parametrize("rows", [HANDSHAKE + CROSSING, MID_CROSSING], ids=["full", "midstream"])
def test_crossing_fins_are_drawn_in_the_order_each_side_went_through(
    rows: list[tuple[float, tuple[str, int], int, int, int, int]],
) -> None:
    (conn,) = connections(capture(rows))
    left, right = columns(conn)
    # the server sent its FIN before the client's (captured first) reached it
    assert right[-3:] == ["FIN_WAIT1", "CLOSING", "TIME_WAIT"]
    assert left[-3:] == ["FIN_WAIT1", "CLOSING", "TIME_WAIT"]
    for states in (left, right):
        assert_possible(states, assumed=rows is MID_CROSSING)
    late = [r for r in _ladder_rows(conn)[1:] if r.direction is None and r.right_changed]
    assert [r.right for r in late] == ["CLOSING"]
    first_fin = len(rows) - 3
    assert (
        late[0].note == f"frame {first_fin} reaches resp only now: it crossed frame {first_fin + 1}"
    )


def test_crossing_fins_ladder_through_the_cli(tmp_path: Path) -> None:
    path = tmp_path / "cross.pcap"
    path.write_bytes(capture(HANDSHAKE + CROSSING))
    out = subprocess.run(
        [sys.executable, "-m", "tcplens", "pcap", "--flow", "1", str(path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    resp = {}
    for line in out.splitlines():
        words = line.split()
        if words[-2:-1] == ["frame"] and "crossed" not in words:
            resp[int(words[-1])] = words[-3]
    # the client's FIN (frame 4) has not reached resp when resp sends its own (frame 5)
    assert (resp[4], resp[5], resp[6]) == ("│", "FIN_WAIT1", "TIME_WAIT"), out
    assert "frame 4 reaches resp only now: it crossed frame 5" in out, out
    assert out.index("FIN_WAIT1") < out.index("CLOSING")


@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: p.name)
def test_every_fixture_ladder_shows_only_possible_state_orders(path: Path) -> None:
    for conn in connections(path.read_bytes()):
        assumed = "assumed" in conn.orig_history[0][2]
        for states in columns(conn):
            assert_possible(states, assumed)


MIDSTREAM_TSHARK = [
    (1, 1),
    (1, 101),
    (1, 101),
    (101, 201),
    (101, 201),
    (201, 102),
    (201, 102),
    (102, 202),
]


def test_midstream_capture_has_wiresharks_relative_numbers() -> None:
    # tshark -o tcp.relative_sequence_numbers:TRUE -e tcp.seq -e tcp.ack, recorded once;
    # the FIN (frame 5) uses one number: the peer acknowledges 102
    (conn,) = connections((FIXTURES / "lab_midstream.pcap").read_bytes())
    assert [(s.seq, s.ack) for s in conn.segments] == MIDSTREAM_TSHARK


def tshark_numbers(path: Path) -> dict[int, tuple[int, int]]:
    """Frame number -> relative (seq, ack) of every frame tshark decodes as TCP."""
    out = subprocess.run(
        [
            "tshark",
            "-r",
            str(path),
            "-o",
            "tcp.relative_sequence_numbers:TRUE",
            "-Y",
            "tcp",
            "-T",
            "fields",
            "-e",
            "frame.number",
            "-e",
            "frame.protocols",
            "-e",
            "tcp.seq",
            "-e",
            "tcp.ack",
            "-e",
            "tcp.flags",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    numbers = {}
    for line in out.splitlines():
        frame, protocols, seq, ack, flags = line.split("\t")
        if ":cfp:" in protocols:
            # tshark 4.0 leaves most Cisco FabricPath frames' numbers absolute (tcp.seq equals
            # tcp.seq_raw) and one of the same stream relative: no reference to hold us to
            continue
        numbers[int(frame)] = (int(seq), int(ack) if int(flags, 16) & ACK else 0)
    return numbers


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")
@pytest.mark.parametrize(
    "name",
    [
        "handshake+crossing",
        "midstream+crossing",
        "odd",
        *(p.name for p in CAPTURES),
    ],
)
def test_relative_numbers_agree_with_tshark(name: str, tmp_path: Path) -> None:
    built = {
        "handshake+crossing": HANDSHAKE + CROSSING,
        "midstream+crossing": MID_CROSSING,
        "odd": ODD,
    }
    if name in built:
        path = tmp_path / "built.pcap"
        path.write_bytes(capture(built[name]))
    else:
        path = FIXTURES / name
    ours = {s.record: (s.seq, s.ack) for c in connections(path.read_bytes()) for s in c.segments}
    theirs = tshark_numbers(path)
    # tshark leaves a few encapsulations undecoded without a decode-as hint (MPLS carrying
    # Ethernet without a control word): those frames are compared only where it decodes them
    assert theirs
    assert set(theirs) <= set(ours)
    assert {record: ours[record] for record in theirs} == theirs
