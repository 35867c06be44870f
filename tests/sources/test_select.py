"""Source choice in one place, and every live source agreeing with each other and with ss."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import types
from pathlib import Path

import psutil
import pytest

from tcplens.errors import SourceError
from tcplens.model import State
from tcplens.sources import select, take_snapshot
from tcplens.sources.records import Snapshot
from tests.contract import check_snapshot
from tests.sources.live import Key, known_sockets

PROC = Path(__file__).parent.parent / "fixtures" / "proc"


def test_flag_beats_environment_beats_auto(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(select.ENV_VAR, raising=False)
    assert select.choose_source() == "auto"
    monkeypatch.setenv(select.ENV_VAR, "procfs")
    assert select.choose_source() == "procfs"
    assert select.choose_source("psutil") == "psutil"
    assert take_snapshot().source == "procfs"
    assert take_snapshot("netlink").source == "netlink"


def test_unknown_source_names_the_choices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(select.ENV_VAR, "bogus")
    with pytest.raises(SourceError, match=r"TCPLENS_SOURCE: unknown source 'bogus'.*netlink"):
        take_snapshot()


def test_auto_is_netlink_on_linux(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(select.ENV_VAR, raising=False)
    assert take_snapshot("auto", processes=False).source == "netlink"


def test_auto_falls_back_to_procfs_when_netlink_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    from tcplens.sources import netlink

    def broken(**kwargs: object) -> None:
        raise SourceError("cannot open a sock_diag netlink socket: denied")

    monkeypatch.delenv(select.ENV_VAR, raising=False)
    monkeypatch.setattr(netlink, "snapshot", broken)
    snap = take_snapshot("auto", processes=False)
    assert snap.source == "procfs"
    assert any("netlink unavailable" in note for note in snap.missing)
    with pytest.raises(SourceError):
        take_snapshot("netlink")


def test_a_recorded_proc_root_means_procfs() -> None:
    snap = take_snapshot(proc_root=str(PROC), processes=False)
    assert snap.source == "procfs" and len(snap.sockets) == 18


def test_missing_proc_root_is_a_source_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="not a proc root"):
        take_snapshot("procfs", proc_root=str(tmp_path / "missing"))


def test_from_file_uses_the_saved_text_reader(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, str | None, bool]] = []
    snap = take_snapshot(processes=False)

    def read_text(path: str, fmt: str | None = None, strict: bool = False) -> object:
        calls.append((path, fmt, strict))
        return snap

    fake = types.ModuleType("tcplens.sources.text")
    fake.read_text = read_text  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "tcplens.sources.text", fake)
    assert take_snapshot(from_file="-", fmt="ss", strict=True) is snap
    assert calls == [("-", "ss", True)]


def test_from_file_without_a_reader_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tcplens.sources.text", types.ModuleType("empty"))
    with pytest.raises(SourceError, match="saved-text parsing is not available"):
        take_snapshot(from_file="x.txt")


_SS_ADDR = re.compile(r"^(?P<ip>\[.*\]|[^:]+|.*):(?P<port>\*|\d+)$")


def _ss_addr(text: str) -> tuple[str, str]:
    match = _SS_ADDR.match(text)
    assert match, text
    ip, port = match["ip"], match["port"]
    ip = ip.strip("[]").split("%")[0]
    return ip, "0" if port == "*" else port


def _ss(args: list[str]) -> dict[Key, tuple[State, int | None]]:
    """Run ss and key its rows as our Socket addresses print (``str(Addr)``)."""
    out = subprocess.run(["ss", *args], capture_output=True, text=True, check=True).stdout
    rows: dict[Key, tuple[State, int | None]] = {}
    proto = "udp" if "-u" in "".join(args) else "tcp"
    for line in out.splitlines():
        fields = line.split()
        if len(fields) < 5:
            continue
        state = State.parse(fields[0])
        (lip, lport), (rip, rport) = _ss_addr(fields[3]), _ss_addr(fields[4])
        family = 6 if ":" in lip else 4
        if rip == "*":
            rip = "::" if family == 6 else "0.0.0.0"

        def fmt(ip: str, port: str, family: int = family) -> str:
            return f"[{ip}]:{port}" if family == 6 else f"{ip}:{port}"

        pid_match = re.search(r"pid=(\d+)", line)
        pid = int(pid_match[1]) if pid_match else None
        rows[(proto, family, fmt(lip, lport), fmt(rip, rport))] = (state, pid)
    return rows


@pytest.mark.skipif(shutil.which("ss") is None, reason="iproute2 ss not installed")
def test_netlink_procfs_psutil_and_ss_agree_on_known_sockets() -> None:
    with known_sockets() as known:
        snaps = {name: take_snapshot(name) for name in ("netlink", "procfs", "psutil")}
        ss_rows = _ss(["-tanpH"]) | _ss(["-uanpH"])
    own = Path("/proc/self/comm").read_text().strip()
    comm = {"netlink": own, "procfs": own, "psutil": psutil.Process().name()}
    for name, snap in snaps.items():
        check_snapshot(snap)
        seen = known.select(snap.sockets)
        assert set(seen) == set(known.expected), name
        for key, expected in known.expected.items():
            sock = seen[key]
            assert (sock.state, sock.pid) == (expected.state, expected.pid), (name, key)
            if name != "psutil":
                assert sock.inode == expected.inode, (name, key)
            if expected.pid is not None:
                assert sock.process == comm[name], (name, key)
    for key, expected in known.expected.items():
        assert ss_rows.get(key) == (expected.state, expected.pid), key
    # Unread bytes and queue semantics agree between the two kernel interfaces.
    nl = known.select(snaps["netlink"].sockets)
    pf = known.select(snaps["procfs"].sockets)
    for key in known.expected:
        assert nl[key].recv_q == pf[key].recv_q, key
        if nl[key].state is not State.LISTEN:
            assert nl[key].send_q == pf[key].send_q, key
        else:  # /proc shows tx_queue 0, which is not the backlog netlink reports
            assert pf[key].send_q is None and nl[key].send_q, key
    assert max(s.recv_q or 0 for s in nl.values()) == 3


def test_columns_where_netlink_is_chosen_with_owners_from_the_scan_beside_the_dump() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        listing = select.open_listing("columns", "netlink", protos=["tcp"], families=[4])
        assert isinstance(listing, select.ColumnListing)
        assert {(proto, fam) for proto, fam, _a, _b in listing.columns.ranges} == {("tcp", 4)}
        [index] = [i for i, p in enumerate(listing.columns.sport) if p == port]
        owners = listing.owners()
        assert owners is not None and owners.pid[index] == os.getpid()
        header = listing.header()
        assert (header.source, header.sockets, header.missing) == ("netlink", [], listing.missing)
    unowned = select.open_listing("columns", "netlink", processes=False)
    assert isinstance(unowned, select.ColumnListing) and unowned.owners() is None


def test_one_rule_gives_records_where_columns_cannot_be_had(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(select.ENV_VAR, raising=False)
    assert select.columns_unavailable() is None
    assert select.columns_unavailable("psutil") == "the psutil source"
    assert select.columns_unavailable(proc_root=str(PROC)) == "recorded files (--proc-root)"
    procfs = select.open_listing("columns", "procfs", processes=False)
    assert isinstance(procfs, Snapshot) and procfs.source == "procfs"
    recorded = select.open_listing("columns", proc_root=str(PROC), processes=False)
    assert isinstance(recorded, Snapshot) and len(recorded.sockets) == 18
    # what the kernel cannot narrow (ports) or columns do not carry (tcp_info) needs records
    ports = select.open_listing("columns", "netlink", processes=False, sports=[1])
    info = select.open_listing("columns", "netlink", processes=False, info=True)
    assert isinstance(ports, Snapshot) and isinstance(info, Snapshot)
    with pytest.raises(SourceError, match="which the procfs source cannot give"):
        select.open_listing("columns", "procfs", fallback=False)


def test_columns_fall_back_to_records_when_netlink_fails_under_auto(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tcplens.sources import columns

    def broken(self: object, missing: object = None) -> None:
        raise SourceError("sock_diag: the tcp dump ended without NLMSG_DONE")

    monkeypatch.delenv(select.ENV_VAR, raising=False)
    monkeypatch.setattr(columns.PendingColumns, "result", broken)
    records = select.open_listing("columns", processes=False)
    assert isinstance(records, Snapshot) and records.source == "netlink"
    with pytest.raises(SourceError, match="NLMSG_DONE"):
        select.open_listing("columns", "netlink", processes=False)
    with pytest.raises(SourceError, match="NLMSG_DONE"):
        select.open_listing("columns", processes=False, fallback=False)
