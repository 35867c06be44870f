"""``tcplens ls``: filters, columns and every output format, on real loopback sockets."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from tcplens.model import SPELLINGS, State
from tcplens.views.cli import cli
from tests.sources.live import KnownSockets, known_sockets

PROC = Path(__file__).parent.parent / "fixtures" / "proc"


@pytest.fixture(scope="module")
def known() -> Iterator[KnownSockets]:
    with known_sockets() as sockets:
        yield sockets


def run(*args: str) -> str:
    result = CliRunner().invoke(cli, ["ls", *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


def tcplens(*args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tcplens", *args], capture_output=True, text=True, **kwargs
    )


def mine(known: KnownSockets, *args: str) -> list[dict[str, Any]]:
    """``ls --json`` rows that belong to our known sockets."""
    doc = json.loads(run("--json", *args))

    def addr(end: dict[str, Any]) -> str:
        ip, port = end["ip"], end["port"] or 0
        return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"

    return [
        row
        for row in doc["sockets"]
        if (row["proto"], row["family"], addr(row["local"]), addr(row["remote"])) in known.expected
    ]


def states(rows: list[dict[str, Any]]) -> list[str]:
    return sorted(row["state"] for row in rows)


def test_json_contract_has_version_snapshot_and_every_key(known: KnownSockets) -> None:
    doc = json.loads(run("--json"))
    assert doc["version"] == 1
    assert set(doc["snapshot"]) >= {"source", "host", "taken_at", "missing", "count", "total"}
    assert doc["snapshot"]["source"] == "netlink"
    assert doc["snapshot"]["count"] == len(doc["sockets"])
    keys = {
        "proto", "family", "local", "remote", "state", "recv_q", "send_q", "uid", "user",
        "inode", "pid", "fd", "process", "cmdline", "timer", "info", "interface", "holders",
    }  # fmt: skip
    assert all(set(row) == keys for row in doc["sockets"])
    rows = mine(known)
    assert len(rows) == len(known.expected)
    listener = next(r for r in rows if r["state"] == "LISTEN" and r["family"] == 4)
    assert listener["pid"] == os.getpid() and listener["local"]["port"] == known.listen_port
    assert listener["timer"] is None and listener["info"] is None


@pytest.mark.parametrize("spelling", ["close-wait", "CLOSE_WAIT", "CLOSE-WAIT", "08", "closewait"])
def test_state_filter_takes_every_spelling(known: KnownSockets, spelling: str) -> None:
    assert states(mine(known, "--state", spelling)) == ["CLOSE_WAIT"]


def test_state_filter_groups_and_repeats(known: KnownSockets) -> None:
    assert states(mine(known, "--state", "bucket")) == ["TIME_WAIT"]
    assert states(mine(known, "--state", "fin-wait-2", "--state", "time-wait")) == [
        "FIN_WAIT2",
        "TIME_WAIT",
    ]
    assert states(mine(known, "--state", "FIN-WAIT-2,TIME_WAIT")) == ["FIN_WAIT2", "TIME_WAIT"]
    assert "LISTEN" not in states(mine(known, "--state", "connected"))
    synchronized = states(mine(known, "-t", "--state", "synchronized"))
    assert set(synchronized) == {"ESTABLISHED", "CLOSE_WAIT", "FIN_WAIT2", "TIME_WAIT"}


@pytest.mark.parametrize(
    "args",
    [(), ("--state", "bucket"), ("-t", "--state", "synchronized"), ("-u",), ("-6",), ("-4", "-t")],
)
def test_json_without_processes_selects_and_reads_as_the_record_path(
    known: KnownSockets, args: tuple[str, ...]
) -> None:
    # -P --json takes the columnar dump (no records); with processes, the record path
    def comparable(rows: list[dict[str, Any]]) -> list[str]:
        for row in rows:
            for key in ("pid", "fd", "process", "user", "holders"):
                row[key] = None
            if row["timer"]:
                row["timer"]["remaining"] = None  # the clock moved between the two runs
        return sorted(json.dumps(row, sort_keys=True) for row in rows)

    records, columns = mine(known, *args), mine(known, "-P", *args)
    assert records and comparable(columns) == comparable(records)


def test_protocol_family_and_listening_filters(known: KnownSockets) -> None:
    assert {r["proto"] for r in mine(known, "-u")} == {"udp"}
    assert {r["proto"] for r in mine(known, "-t")} == {"tcp"}
    assert {r["family"] for r in mine(known, "-6")} == {6}
    assert {r["family"] for r in mine(known, "-4")} == {4}
    listening = mine(known, "-l")
    assert sorted((r["proto"], r["state"]) for r in listening) == [
        ("tcp", "LISTEN"),
        ("tcp", "LISTEN"),
        ("udp", "CLOSED"),
        ("udp", "CLOSED"),
    ]


@pytest.fixture(params=["one dump", "split dump"])
def dump(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Both ways ``ls`` may read a large table: a host with 20k+ TCP sockets splits it.

    Why force it: the split dump lists ESTABLISHED first, so the columnar
    route (``-6``) and the records route (``--src``) order rows differently
    whenever another process leaves that many sockets on the host.
    """
    if request.param == "split dump":
        from tcplens.sources import columns

        monkeypatch.setattr(columns, "SPLIT_MIN", 0)
        monkeypatch.setattr(columns, "_spare_core", lambda: True)  # however busy the host
    return str(request.param)


def unordered(rows: list[dict[str, Any]]) -> list[str]:
    """The rows as a multiset: where two routes list the same sockets, order is not the point."""
    return sorted(json.dumps(row, sort_keys=True) for row in rows)


def test_port_and_address_filters(known: KnownSockets, dump: str) -> None:
    port = str(known.listen_port)
    sport = mine(known, "--sport", port)
    assert {r["local"]["port"] for r in sport} == {known.listen_port} and len(sport) == 3
    dport = mine(known, "--dport", port)
    assert {r["remote"]["port"] for r in dport} == {known.listen_port}
    assert states(dport) == ["ESTABLISHED", "FIN_WAIT2", "TIME_WAIT"]
    assert len(mine(known, "--port", port)) == 6
    assert unordered(mine(known, "--src", "::1/128")) == unordered(mine(known, "-6"))
    assert mine(known, "--dst", "10.0.0.0/8") == []
    assert len(mine(known, "--src", "127.0.0.0/8", "--dport", port)) == 3


def test_pid_and_process_filters(known: KnownSockets) -> None:
    rows = mine(known, "--pid", str(os.getpid()))
    assert len(rows) == len(known.expected) - 1  # all but the TIME_WAIT minisocket
    comm = Path("/proc/self/comm").read_text().strip()
    assert mine(known, "--process", comm[:3]) == rows
    assert mine(known, "--process", comm[:2] + "*") == rows
    assert mine(known, "--process", "no-such-process") == []


def test_sort_by_receive_queue_puts_unread_bytes_first(known: KnownSockets) -> None:
    rows = mine(known, "--sort", "recv-q")
    assert rows[0]["recv_q"] == 3


def test_no_processes_leaves_pids_unknown(known: KnownSockets) -> None:
    assert {r["pid"] for r in mine(known, "-P")} == {None}


def test_plain_text_columns_timers_info_and_extended(known: KnownSockets) -> None:
    port = str(known.listen_port)
    text = run("-oie", "--port", port)
    header, *lines = text.splitlines()
    assert header.split()[:4] == ["Proto", "Recv-Q", "Send-Q", "Local"]
    assert "Timer" in header and "TCP info" in header and "Inode" in header
    tw = next(line for line in lines if "TIME_WAIT" in line)
    assert "timewait " in tw
    est = next(line for line in lines if "ESTABLISHED" in line)
    assert "cwnd:" in est and f"{os.getpid()}/" in est
    inode = str(next(e.inode for e in known.expected.values() if e.state is State.LISTEN))
    assert any(inode in line for line in lines)


def test_resolve_shows_names(known: KnownSockets) -> None:
    text = run("--resolve", "--sport", str(known.listen_port), "-4")
    assert "localhost:" in text
    assert "127.0.0.1:" not in text


def test_csv_has_a_header_and_a_row_per_socket(known: KnownSockets) -> None:
    rows = list(csv.DictReader(io.StringIO(run("--csv", "--port", str(known.listen_port)))))
    assert len(rows) == 6
    assert {r["state"] for r in rows} >= {"LISTEN", "TIME_WAIT", "CLOSE_WAIT"}
    assert all(r["local_ip"] == "127.0.0.1" for r in rows)


@pytest.mark.skipif(shutil.which("netstat") is None, reason="net-tools netstat not installed")
def test_netstat_output_matches_net_tools_byte_for_byte(known: KnownSockets) -> None:
    ours = run("--netstat").splitlines()
    real = subprocess.run(
        ["netstat", "-tuanpW"], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert ours[:2] == real[:2]

    def netstat_addr(text: str) -> str:
        ip, port = text.rsplit(":", 1)
        return f"{ip.strip('[]')}:{'*' if port == '0' else port}"

    wanted = {f"{netstat_addr(k[2])} {netstat_addr(k[3])}" for k in known.expected}

    def keyed(lines: list[str]) -> dict[str, str]:
        # Local+foreign address identify a row; netstat names the program after
        # argv[0] while we use the kernel's comm, so compare up to the pid.
        out = {}
        for line in lines[2:]:
            key = " ".join(line.split()[3:5])
            if key in wanted:
                cut = line.find(f" {os.getpid()}/")
                out[key] = line if cut < 0 else line[:cut]
        return out

    ours_k, real_k = keyed(ours), keyed(real)
    assert len(real_k) == len(known.expected)
    assert ours_k == real_k
    udp = [line for line in ours if line.startswith("udp ") and f":{known.udp_port} " in line]
    assert any(line[67:80] == " " * 13 for line in udp)  # unconnected UDP: blank state


def test_netstat_state_column_uses_linux_netstat_spellings() -> None:
    from tcplens.sources.records import Addr, Snapshot, Socket
    from tcplens.views.sockets import render_netstat

    socks = [
        Socket("tcp", 4, Addr("127.0.0.1", 1), Addr("127.0.0.1", 2), state, 0, 0) for state in State
    ]
    lines = render_netstat(Snapshot(socks, source="test")).splitlines()[2:]
    for line, state in zip(lines, State, strict=True):
        assert line[68:80].rstrip() == SPELLINGS[state]["netstat (Linux)"][0]
    assert any(line[68:80] == "CLOSE       " for line in lines)


def test_bogus_state_lists_valid_states_and_exits_2() -> None:
    result = tcplens("ls", "--state", "bogus")
    assert result.returncode == 2
    assert "valid states: LISTEN, SYN_SENT" in result.stderr and "CLOSE_WAIT" in result.stderr
    assert "Traceback" not in result.stderr


def test_conflicting_formats_are_a_usage_error() -> None:
    result = tcplens("ls", "--json", "--csv")
    assert result.returncode == 2 and "choose one of" in result.stderr


def test_missing_proc_root_is_one_line_and_exit_2(tmp_path: Path) -> None:
    result = tcplens("ls", "--proc-root", str(tmp_path / "gone"))
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "not a proc root" in result.stderr and "Traceback" not in result.stderr


def test_malformed_proc_line_names_file_and_line(tmp_path: Path) -> None:
    shutil.copytree(PROC, tmp_path / "proc")
    udp = tmp_path / "proc" / "net" / "udp"
    udp.write_text(udp.read_text() + "this is not a socket line\n")
    result = tcplens("ls", "--proc-root", str(tmp_path / "proc"), "-P")
    assert result.returncode == 2
    assert f"{udp} line 4:" in result.stderr and "Traceback" not in result.stderr


def test_recorded_proc_root_lists_its_sockets() -> None:
    out = run("--proc-root", str(PROC), "-P", "--state", "time-wait", "--netstat")
    assert out.splitlines()[2:] == [
        "tcp        0      0 127.0.0.1:46374         127.0.0.1:40697         TIME_WAIT   -"
        + " " * 19
    ]


def test_help_has_an_example() -> None:
    result = tcplens("ls", "--help")
    assert result.returncode == 0
    assert any(line.strip().startswith("Example:") for line in result.stdout.splitlines())


def test_netstat_output_reads_back_through_the_saved_text_parser(
    known: KnownSockets, tmp_path: Path
) -> None:
    saved = tmp_path / "netstat.txt"
    saved.write_text(run("--netstat"))
    back = mine(known, "--from", str(saved))
    live = mine(known)

    def ident(rows: list[dict[str, Any]]) -> set[tuple[Any, ...]]:
        return {
            (r["proto"], r["family"], r["local"]["ip"], r["local"]["port"], r["remote"]["ip"],
             r["remote"]["port"] or 0, r["state"], r["pid"])
            for r in rows
        }  # fmt: skip

    # netstat prints a wildcard peer as "*": the parser keeps port None, live sources 0
    assert ident(back) == ident(live)
    assert len(back) == len(known.expected)


def test_fast_json_rows_equal_the_dict_form_for_odd_values() -> None:
    from tcplens.sources.records import Addr, Snapshot, Socket, TcpInfo, Timer
    from tcplens.views.sockets import render_json, socket_to_json

    odd = Socket(
        "udp", 6, Addr("fe80::1%eth0", None, "dns"), Addr("::", 0), State.CLOSED,
        None, None, 0, None, 1, 2, 'we"ird\\ näme', "ü", "a\nb", Timer("on", 0.2, 3),
        TcpInfo(rtt_ms=1.5, cwnd=10), "eth0",
    )  # fmt: skip
    plain = Socket("tcp", 4, Addr("1.2.3.4", 80), Addr("5.6.7.8", 9), State.ESTABLISHED, 1, 2)
    doc = json.loads(render_json(Snapshot([odd, plain], source="test")))
    assert doc["sockets"] == [socket_to_json(odd), socket_to_json(plain)]
    assert doc["sockets"][0]["timer"] == {"kind": "on", "remaining": 0.2, "retransmits": 3}


def test_terminal_table_is_coloured_by_state_and_fits_the_width() -> None:
    from rich.console import Console

    from tcplens.sources.records import Addr, Socket
    from tcplens.views.sockets import STATE_STYLES, Columns, render_table

    long_ip = "2001:db8:aaaa:bbbb:cccc:dddd:eeee:ffff"
    socks = [
        Socket("tcp", 6, Addr(long_ip, 443), Addr(long_ip, 55555), State.CLOSE_WAIT, 0, 0),
        Socket("tcp", 4, Addr("0.0.0.0", 22), Addr("0.0.0.0", 0), State.LISTEN, 0, 128),
    ]
    console = Console(width=80, record=True, force_terminal=True, color_system="truecolor")
    console.print(render_table(socks, Columns(timers=True), width=80), crop=False)
    text = console.export_text(clear=False)
    # every cell stays whole: two long IPv6 addresses run past 80 columns, as in ss
    assert "CLOSE_WAIT" in text and "Recv-Q" in text and "PID/Program" in text
    assert f"[{long_ip}]:443" in text and f"[{long_ip}]:55555" in text
    assert len(text.splitlines()) == 3
    styled = console.export_text(styles=True)
    assert "\x1b[1;31m" in styled  # CLOSE_WAIT in bold red
    assert STATE_STYLES[State.CLOSE_WAIT] == "bold red"


@pytest.mark.parametrize("processes", [True, False])
def test_coloured_plain_text_aligns_exactly_like_plain_text(processes: bool) -> None:
    import re

    from tcplens.sources.records import Addr, Socket
    from tcplens.views.sockets import Columns, render_plain, write_plain

    socks = [
        Socket("tcp", 4, Addr("10.0.0.1", 80), Addr("10.0.0.2", 5), state, 0, 0, pid=7)
        for state in (State.LISTEN, State.CLOSE_WAIT, State.TIME_WAIT)
    ]
    cols = Columns(processes=processes)
    buf = io.StringIO()
    write_plain(buf, socks, cols, colour=True)
    coloured = buf.getvalue()
    assert "\x1b[1;31mCLOSE_WAIT" in coloured
    assert re.sub(r"\x1b\[[0-9;]*m", "", coloured) == render_plain(socks, cols)


def test_source_flag_and_environment_choose_the_source(
    known: KnownSockets, monkeypatch: pytest.MonkeyPatch
) -> None:
    def source_of(*args: str) -> str:
        doc: dict[str, Any] = json.loads(run("--json", *args))
        return str(doc["snapshot"]["source"])

    monkeypatch.setenv("TCPLENS_SOURCE", "procfs")
    assert source_of() == "procfs"
    assert source_of("--source", "psutil") == "psutil"
    monkeypatch.delenv("TCPLENS_SOURCE")
    assert source_of() == "netlink"
    # every source sees our listener, with our pid
    for source in ("netlink", "procfs", "psutil"):
        rows = mine(known, "--source", source, "-l", "-t", "-4")
        assert [(r["state"], r["pid"]) for r in rows] == [("LISTEN", os.getpid())], source


def test_resolve_in_json_adds_host_and_service_names(known: KnownSockets) -> None:
    rows = mine(known, "--resolve", "--sport", str(known.listen_port), "-4")
    assert rows and all(r["local"]["host"] == "localhost" for r in rows)
    listener = next(r for r in rows if r["state"] == "LISTEN")
    assert listener["remote"]["ip"] == "0.0.0.0" and "host" not in listener["remote"]


def test_cmdline_column_and_key(known: KnownSockets) -> None:
    rows = mine(known, "--cmdline", "-l", "-t", "-4")
    assert rows and all("pytest" in (r["cmdline"] or "") for r in rows)
    text = run("--cmdline", "--sport", str(known.listen_port), "-l")
    assert "Command" in text.splitlines()[0] and "pytest" in text


def test_record_and_column_rows_have_the_one_set_of_keys() -> None:
    """Every JSON writer gives the same keys in the same order (JSON_KEYS), for every socket."""
    from tcplens.sources import netlink
    from tcplens.sources.columns import dump_columns
    from tcplens.sources.records import Snapshot
    from tcplens.views.sockets import (
        JSON_KEYS,
        socket_to_json,
        write_json,
        write_json_columns,
    )

    keys = list(JSON_KEYS)
    with known_sockets():
        snap = netlink.snapshot()
        cols = dump_columns()
    records, columns = io.StringIO(), io.StringIO()
    write_json(records, snap)
    write_json_columns(columns, cols, Snapshot([], source="netlink"))
    for text in (records.getvalue(), columns.getvalue()):
        rows = json.loads(text)["sockets"]
        assert rows and all(list(row) == keys for row in rows)
    assert all(list(socket_to_json(s)) == keys for s in snap.sockets)
    assert socket_to_json(snap.sockets[0]) == json.loads(records.getvalue())["sockets"][0]
