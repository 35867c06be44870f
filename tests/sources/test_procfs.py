"""/proc/net parser: recorded files decode to the sockets that were open, bad input is located."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from tcplens.errors import InputError, SourceError
from tcplens.model import State
from tcplens.sources import procfs
from tcplens.sources.records import Addr
from tests.contract import check_snapshot

PROC = Path(__file__).parent.parent / "fixtures" / "proc"

pytestmark = pytest.mark.skipif(
    sys.byteorder != "little", reason="fixtures recorded on a little-endian host"
)


def test_decode_address_examples() -> None:
    assert procfs.decode_address("0100007F:0277", 4) == Addr("127.0.0.1", 631)
    assert procfs.decode_address("00000000000000000000000001000000:1F90", 6) == Addr("::1", 8080)
    mapped = procfs.decode_address("0000000000000000FFFF00000100007F:0016", 6)
    assert mapped == Addr("::ffff:127.0.0.1", 22)


def test_recorded_proc_root_gives_every_known_socket() -> None:
    snap = procfs.snapshot(str(PROC))
    check_snapshot(snap)
    assert snap.source == "procfs"
    assert snap.missing == []
    by = {(s.proto, s.family, str(s.local), str(s.remote)): s for s in snap.sockets}
    assert len(snap.sockets) == 18
    listen = by[("tcp", 4, "127.0.0.1:40697", "0.0.0.0:0")]
    assert listen.state is State.LISTEN and listen.inode == 19893 and listen.uid == 0
    unread = by[("tcp", 4, "127.0.0.1:40697", "127.0.0.1:46350")]
    assert unread.state is State.ESTABLISHED and unread.recv_q == 5
    assert by[("tcp", 4, "127.0.0.1:40697", "127.0.0.1:46360")].state is State.CLOSE_WAIT
    fin2 = by[("tcp", 4, "127.0.0.1:46360", "127.0.0.1:40697")]
    assert fin2.state is State.FIN_WAIT2 and fin2.timer is None


def test_time_wait_minisocket_has_unknown_owner_and_a_timer() -> None:
    snap = procfs.snapshot(str(PROC))
    [tw] = [s for s in snap.sockets if s.state is State.TIME_WAIT]
    assert tw.inode is None and tw.uid is None
    assert tw.timer is not None and tw.timer.kind == "timewait"
    assert tw.timer.remaining == pytest.approx(0x1751 / procfs.USER_HZ)


def test_keepalive_timer_kind() -> None:
    snap = procfs.snapshot(str(PROC))
    [ka] = [s for s in snap.sockets if s.timer and s.timer.kind == "keepalive"]
    assert ka.state is State.ESTABLISHED
    assert ka.timer is not None and ka.timer.remaining == pytest.approx(0xAFC61 / procfs.USER_HZ)


def test_ipv6_and_udp_files() -> None:
    snap = procfs.snapshot(str(PROC))
    v6 = [s for s in snap.sockets if s.family == 6]
    assert {str(s.local) for s in v6 if s.state is State.LISTEN} == {"[::]:50743", "[::1]:48355"}
    assert any(s.local.ip == "::ffff:127.0.0.1" for s in v6)
    udp = {(s.family, s.state, s.remote.port) for s in snap.sockets if s.proto == "udp"}
    assert udp == {(4, State.ESTABLISHED, 59857), (4, State.CLOSED, 0), (6, State.CLOSED, 0)}


def test_malformed_line_names_path_and_line_number(tmp_path: Path) -> None:
    shutil.copytree(PROC, tmp_path / "proc")
    tcp = tmp_path / "proc" / "net" / "tcp"
    lines = tcp.read_text().splitlines()
    lines[3] = "   2: 0100007F:9EF9 garbage"
    tcp.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError) as info:
        procfs.snapshot(str(tmp_path / "proc"))
    assert info.value.line == 4
    assert info.value.path == str(tcp)
    assert f"{tcp} line 4:" in str(info.value)


def test_bad_hex_address_is_an_input_error() -> None:
    header = (
        "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt uid t inode"
    )
    bad = "   0: 0100ZZ7F:0277 00000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0 1"
    with pytest.raises(InputError, match="line 2"):
        procfs.parse([header, bad], "tcp", 4, path="x")


def test_missing_proc_root_is_a_source_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="not a proc root"):
        procfs.snapshot(str(tmp_path / "nope"))


def test_missing_ipv6_file_is_noted_not_fatal(tmp_path: Path) -> None:
    shutil.copytree(PROC, tmp_path / "proc")
    (tmp_path / "proc" / "net" / "tcp6").unlink()
    snap = procfs.snapshot(str(tmp_path / "proc"))
    assert any("tcp6" in note for note in snap.missing)
    assert all(s.family == 4 or s.proto == "udp" for s in snap.sockets)


def test_fin_timeout_reads_sysctl_or_defaults(tmp_path: Path) -> None:
    (tmp_path / "sys/net/ipv4").mkdir(parents=True)
    (tmp_path / "sys/net/ipv4/tcp_fin_timeout").write_text("30\n")
    assert procfs.read_fin_timeout(str(tmp_path)) == 30.0
    assert procfs.read_fin_timeout(str(tmp_path / "none")) == 60.0
