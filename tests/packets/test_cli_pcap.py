"""``tcplens pcap`` as users run it: a real subprocess, real files, real exit codes."""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from tcplens.packets.engine import engine_available
from tcplens.packets.pcap import read_frames

from . import build

FIXTURES = Path(__file__).parent.parent / "fixtures" / "pcap"


def tcplens(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tcplens", *args], capture_output=True, text=True, timeout=60
    )


def test_table_lists_every_connection_with_states() -> None:
    res = tcplens("pcap", str(FIXTURES / "http_ip4and6.pcapng"))
    assert res.returncode == 0, res.stderr
    lines = [line for line in res.stdout.splitlines() if " SF " in line]
    assert len(lines) == 2, res.stdout
    assert "TIME_WAIT" in lines[0] and "CLOSED" in lines[0] and "SF" in lines[0]
    assert "2001:db8:1:2::1002" in res.stdout


def test_json_is_versioned_and_complete() -> None:
    res = tcplens("pcap", "--json", str(FIXTURES / "tcp_refuseconnection.pcapng"))
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["version"] == 1
    (conn,) = doc["connections"]
    assert conn["conn_state"] == "REJ"
    assert [h["state"] for h in conn["orig"]["history"]] == ["CLOSED", "SYN_SENT", "CLOSED"]
    assert conn["resp"]["final_state"] == "CLOSED"
    assert doc["summary"]["frames"] == 2


def test_zeek_conn_log_has_fields_header_and_one_row_per_connection() -> None:
    res = tcplens("pcap", "--zeek", str(FIXTURES / "200722_tcp_anon.pcapng"))
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    fields = next(line for line in lines if line.startswith("#fields")).split("\t")[1:]
    rows = [dict(zip(fields, line.split("\t"), strict=True)) for line in lines if line[:1] != "#"]
    assert [r["conn_state"] for r in rows] == ["SF", "SF"]
    assert [r["history"] for r in rows] == ["ShADaFf", "ShADadfF"]
    assert rows[1]["orig_bytes"] == "9519" and rows[1]["resp_pkts"] == "13"


def test_flow_draws_the_ladder_of_one_connection() -> None:
    res = tcplens("pcap", "--flow", "1", str(FIXTURES / "tcp_handshake.pcapng"))
    assert res.returncode == 0, res.stderr
    assert "SYN+ACK seq=0 ack=1" in res.stdout
    assert "SYN_RECV" in res.stdout and "ESTABLISHED" in res.stdout
    res = tcplens("pcap", "--flow", "7", str(FIXTURES / "tcp_handshake.pcapng"))
    assert res.returncode == 2
    assert "no connection 7" in res.stderr


def test_states_shows_time_in_each_state_and_cannot_tell() -> None:
    res = tcplens("pcap", "--states", str(FIXTURES / "tcp_retransmissions.pcapng"))
    assert res.returncode == 0, res.stderr
    assert "cannot tell:" in res.stdout
    assert "assumed: picked up mid-stream" in res.stdout


def test_truncated_capture_prints_connections_then_fails_with_record_and_offset(
    tmp_path: Path,
) -> None:
    data = (FIXTURES / "simple_http_sll2.pcap").read_bytes()
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(data[:-30])
    res = tcplens("pcap", str(cut))
    assert res.returncode == 1
    assert "SF" in res.stdout  # the first connection was complete
    assert res.stderr.count("\n") == 1
    assert "record 24 byte" in res.stderr and "truncated" in res.stderr
    assert "Traceback" not in res.stderr


def test_bad_magic_and_unknown_link_type_are_one_line_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pcap"
    bad.write_bytes(b"this is not a capture at all")
    res = tcplens("pcap", str(bad))
    assert res.returncode == 2
    assert res.stderr.strip().count("\n") == 0 and "not a pcap or pcapng" in res.stderr
    odd = tmp_path / "odd.pcap"
    odd.write_bytes(build.pcap([(0, b"\x00" * 40)], linktype=147))
    res = tcplens("pcap", str(odd))
    assert res.returncode == 2
    assert "link type 147" in res.stderr and "record 1" in res.stderr
    assert "Traceback" not in res.stderr


def test_help_has_an_example() -> None:
    res = tcplens("pcap", "--help")
    assert res.returncode == 0
    assert any(line.strip().startswith("Example:") for line in res.stdout.splitlines())


def test_sort_orders_the_table() -> None:
    path = str(FIXTURES / "200722_tcp_anon.pcapng")
    by_start = tcplens("pcap", path).stdout.splitlines()
    by_bytes = tcplens("pcap", "--sort", "bytes", path).stdout.splitlines()
    rows = [line.split()[0] for line in by_start if " SF " in line]
    assert rows == ["1", "2"]
    rows = [line.split()[0] for line in by_bytes if " SF " in line]
    assert rows == ["2", "1"]  # connection 2 carried 9519 bytes


def test_flow_accepts_an_endpoint_or_a_port() -> None:
    path = str(FIXTURES / "200722_tcp_anon.pcapng")
    res = tcplens("pcap", "--flow", "192.168.200.135:7876", path)
    assert res.returncode == 0, res.stderr
    assert "frame 9" in res.stdout and "frame 2 " not in res.stdout
    res = tcplens("pcap", "--flow", "2000", path)  # a port both connections share
    assert res.returncode == 0, res.stderr
    assert "1 more match 2000: 2" in res.stdout
    res = tcplens(
        "pcap", "--flow", "[2001:db8:1:2::1000]:80", str(FIXTURES / "http_ip4and6.pcapng")
    )
    assert res.returncode == 0 and "frame 11" in res.stdout


def damaged_capture(tmp_path: Path, layout: str) -> tuple[Path, int]:
    """The 35-frame fixture with an impossible length in record 30 (pcap or pcapng)."""
    source = FIXTURES / "200722_tcp_anon.pcapng"
    raw = bytearray(source.read_bytes())
    if layout == "pcap":
        frames = list(read_frames(io.BytesIO(bytes(raw))))
        raw = bytearray(
            build.pcap([(f.ts_ns, f.data) for f in frames], linktype=frames[0].linktype)
        )
        offset = 24 + sum(16 + len(f.data) for f in frames[:29])
        struct.pack_into("<I", raw, offset + 8, 300 << 20)
    else:
        offset, seen = 0, 0
        while seen < 30:
            kind, total = struct.unpack_from("<II", raw, offset)
            seen += kind == 6
            if seen < 30:
                offset += total
        struct.pack_into("<I", raw, offset + 4, 0x7FFFFFFC)
    path = tmp_path / f"damaged.{layout}"
    path.write_bytes(bytes(raw))
    return path, offset


@pytest.mark.parametrize("layout", ["pcap", "pcapng"])
@pytest.mark.parametrize("stdin", [False, True], ids=["file", "stdin"])
@pytest.mark.parametrize("route", ["engine", "python"])
def test_impossible_record_length_prints_connections_then_fails_with_record_and_offset(
    tmp_path: Path, layout: str, stdin: bool, route: str
) -> None:
    if route == "engine" and not engine_available():
        pytest.skip("the engine is not built")
    path, offset = damaged_capture(tmp_path, layout)
    for fmt in ([], ["--json"]):
        res = subprocess.run(
            [sys.executable, "-m", "tcplens", "pcap", *fmt, "-" if stdin else str(path)],
            input=path.read_bytes() if stdin else None,
            capture_output=True,
            timeout=60,
            env={**os.environ, "TCPLENS_PACKETS": route},
        )
        out, err = res.stdout.decode(), res.stderr.decode()
        assert res.returncode == 1, err
        assert err.count("\n") == 1 and "Traceback" not in err
        assert f"record 30 byte {offset}:" in err
        if fmt:
            doc = json.loads(out)
            assert len(doc["connections"]) == 2
            assert f"record 30 byte {offset}" in doc["summary"]["truncated"]
        else:
            assert "2 connections from 29 frames" in out
