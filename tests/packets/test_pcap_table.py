"""The ``tcplens pcap`` table: plain rows, streamed to a pipe, whole in a terminal.

Laying out a rich table of 8,000 connections cost four times the
reconstruction itself; the table is now written by hand.  These tests hold
it to that (no rich table is ever built), to streaming (a row is out before
the capture has been read to the end) and to whole cells in a narrow
terminal.
"""

from __future__ import annotations

import dataclasses
import io
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import rich.table
from click.testing import CliRunner

from tcplens.packets.pcap import read_frames
from tcplens.packets.tracker import CaptureSummary, Connection, Tracker, reconstruct
from tcplens.views.commands import pcap as pcap_command
from tests.terminal import run_in_terminal

from . import build
from .build import ACK, FIN, SYN

FIXTURES = Path(__file__).parent.parent / "fixtures" / "pcap"


def connections(path: Path) -> list[Connection]:
    with path.open("rb") as fh:
        return list(reconstruct(read_frames(fh), Tracker()))


def many(count: int) -> bytes:
    """``count`` short IPv4 connections, one after the other, then one over IPv6."""
    frames: list[tuple[int, bytes]] = []
    t = 0
    for i in range(count):
        c, s = ("10.0.0.1", 2000 + i), ("10.0.0.2", 80)
        for frm, flags, seq, ack in (
            (c, SYN, 100, 0),
            (s, SYN | ACK, 500, 101),
            (c, ACK | FIN, 101, 501),
            (s, ACK | FIN, 501, 102),
            (c, ACK, 102, 502),
        ):
            to = s if frm is c else c
            seg = build.tcp(frm[1], to[1], seq, ack, flags)
            frames.append((t, build.ether(build.ipv4(frm[0], to[0], seg))))
            t += 1_000_000
    seg = build.tcp(3000, 443, 1, 0, SYN)
    frames.append((t, build.ether(build.ipv6("2001:db8::1", "2001:db8::2", seg), 0x86DD)))
    return build.pcap(frames)


def test_connections_go_out_in_capture_order_as_soon_as_the_lower_numbers_have() -> None:
    conns = {c.index: c for c in connections(FIXTURES / "200722_tcp_anon.pcapng")}
    conns |= {c.index + 2: c for c in connections(FIXTURES / "http_ip4and6.pcapng")}
    # re-number copies: 1..4, finishing as 2, 4, 1, 3
    fake = {i: dataclasses.replace(conns[i], index=i) for i in conns}
    seen: list[int] = []

    def finishing() -> Iterator[Connection]:
        for i in (2, 4, 1, 3):
            yield fake[i]
            seen.append(i)

    out = []
    for conn in pcap_command._in_capture_order(finishing()):
        out.append((conn.index, list(seen)))
    # 1 and 2 leave as soon as 1 arrives; 3 and 4 as soon as 3 does
    assert out == [(1, [2, 4]), (2, [2, 4]), (3, [2, 4, 1]), (4, [2, 4, 1])]


def test_rows_are_written_before_the_capture_has_been_read_to_the_end() -> None:
    out = io.StringIO()
    written_before_end: list[str] = []
    conns = connections(FIXTURES / "200722_tcp_anon.pcapng")

    def slowly() -> Iterator[Connection]:
        yield conns[0]
        written_before_end.append(out.getvalue())
        yield conns[1]

    pcap_command._streamed_table(pcap_command._table_rows(slowly()), CaptureSummary(), out)
    first_rows = [line for line in written_before_end[0].splitlines() if " SF " in line]
    assert [row.split()[0] for row in first_rows] == ["1"]
    assert len([line for line in out.getvalue().splitlines() if " SF " in line]) == 2


def test_no_rich_table_is_built_for_a_streamed_or_a_whole_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a rich Table was built")

    monkeypatch.setattr(rich.table.Table, "__init__", refuse)
    path = tmp_path / "many.pcap"
    path.write_bytes(many(300))
    for sort in ("start", "bytes"):
        res = CliRunner().invoke(pcap_command.command, [str(path), "--sort", sort])
        assert res.exit_code == 0, res.output
        rows = [line.split() for line in res.output.splitlines() if " SF " in line]
        assert len(rows) == 300
        assert "301 connections from 1501 frames" in res.output
        assert "[2001:db8::1]:3000" in res.output  # wider than the IPv4 column: not cut


def test_streamed_and_whole_tables_show_the_same_rows(tmp_path: Path) -> None:
    path = tmp_path / "many.pcap"
    path.write_bytes(many(40))
    piped = subprocess.run(
        [sys.executable, "-m", "tcplens", "pcap", str(path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    shown = in_terminal(60, str(path))
    assert [line.split() for line in piped.splitlines()] == [
        line.split() for line in shown.splitlines()
    ]


def in_terminal(columns: int, *args: str) -> str:
    """``tcplens pcap ARGS`` in a real pseudo-terminal ``columns`` wide, styles removed."""
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    env["TERM"] = "xterm"
    screen = run_in_terminal(["pcap", *args], columns=columns, lines=50, env=env, timeout=60)
    assert screen.code == 0, screen.text
    return screen.text


@pytest.mark.parametrize("columns", [60, 80])
def test_a_narrow_terminal_never_cuts_or_splits_an_address(columns: int) -> None:
    text = in_terminal(columns, str(FIXTURES / "http_ip4and6.pcapng"))
    rows = [line for line in text.splitlines() if " SF " in line]
    assert len(rows) == 2
    assert "172.16.16.140:53350" in rows[0] and "172.16.16.139:80" in rows[0]
    assert "[2001:db8:1:2::1002]:35023" in rows[1] and "[2001:db8:1:2::1000]:80" in rows[1]
