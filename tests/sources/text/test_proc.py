"""Saved /proc/net/{tcp,tcp6,udp,udp6} text, recorded on the build machine (see SOURCES.md)."""

from __future__ import annotations

from tcplens import parse_text
from tcplens.model import State
from tcplens.sources.records import Addr, Socket, Timer
from tests.sources.text.helpers import FIXTURES, load


def test_head_of_four_files_with_markers() -> None:
    snap = load("linux-proc-net-head.txt")
    assert snap.source == "text:proc"
    assert snap.warnings == []
    assert snap.sockets == [
        # tx_queue of a listener is not its backlog: unknown
        Socket("tcp", 4, Addr("127.0.0.1", 34253), Addr("0.0.0.0", 0), State.LISTEN, 0, None,
               uid=0, inode=31682),
        Socket("tcp", 4, Addr("127.0.0.1", 49312), Addr("127.0.0.1", 34253), State.ESTABLISHED,
               0, 0, uid=0, inode=31683, timer=Timer("keepalive", 7199.8, 0)),
        Socket("tcp", 4, Addr("127.0.0.1", 34253), Addr("127.0.0.1", 49312), State.ESTABLISHED,
               10, 0, uid=0, inode=31684),
        Socket("tcp", 6, Addr("::1", 60091), Addr("::", 0), State.LISTEN, 0, None, uid=0,
               inode=31685),
        Socket("udp", 4, Addr("127.0.0.1", 48918), Addr("0.0.0.0", 0), State.CLOSED, 0, 0,
               uid=0, inode=31686),
        Socket("udp", 6, Addr("::1", 38207), Addr("::1", 9), State.ESTABLISHED, 0, 0, uid=0,
               inode=31687),
    ]  # fmt: skip


def test_udp_header_without_markers_makes_rows_udp() -> None:
    lines = (FIXTURES / "linux-proc-net-head.txt").read_text().splitlines()
    udp = "\n".join(lines[lines.index("==> /proc/net/udp <==") + 1 :][:2])
    (sock,) = parse_text(udp).sockets
    assert sock.proto == "udp"
    assert sock.local == Addr("127.0.0.1", 48918)


def test_path_names_the_protocol_when_there_is_no_header() -> None:
    row = "15170: 0100007F:BF16 00000000:0000 07 00000000:00000000 00:00000000 00000000  0  0 31686"
    assert parse_text(row, "proc", path="/tmp/udp").sockets[0].proto == "udp"
    assert parse_text(row, "proc").sockets[0].proto == "tcp"


def test_damaged_rows_warn() -> None:
    text = (
        "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  "
        "timeout inode\n"
        "   1: 0100007F:85CD 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0\n"
        "   2: 0100007F:85CD 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0  0 7\n"
        "   3: 0100007F:85CD 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0  0 x\n"
    )
    snap = parse_text(text)
    assert [w.line for w in snap.warnings] == [2, 4]
    assert [s.inode for s in snap.sockets] == [7]
