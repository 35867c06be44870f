"""inode -> process attribution: exact on live sockets, degrades on races and permissions."""

from __future__ import annotations

import os
import pwd
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tcplens.model import State
from tcplens.sources import processes
from tcplens.sources.records import Addr, Holder, Socket


def _sock(inode: int | None, uid: int | None = 0) -> Socket:
    return Socket(
        "tcp", 4, Addr("127.0.0.1", 1), Addr("0.0.0.0", 0), State.LISTEN, uid=uid, inode=inode
    )


def test_own_socket_gets_pid_fd_name_user_and_cmdline() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        inode = os.fstat(s.fileno()).st_ino
        fd = s.fileno()
        rows = [_sock(inode, os.geteuid())]
        notes = processes.attribute(rows, cmdline=True)
    [row] = rows
    assert (row.pid, row.fd) == (os.getpid(), fd)
    assert row.process == Path("/proc/self/comm").read_text().strip()
    assert row.cmdline is not None and "pytest" in row.cmdline
    assert row.user == pwd.getpwuid(os.geteuid()).pw_name
    if os.geteuid() == 0:
        assert notes == []


def test_scan_finds_sockets_of_another_process() -> None:
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import socket,sys,os; s=socket.socket(); s.bind(('127.0.0.1',0)); s.listen();"
            "print(os.fstat(s.fileno()).st_ino, s.fileno(), flush=True); sys.stdin.read()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        inode, fd = map(int, child.stdout.readline().split())
        result = processes.scan({inode})
        assert result.owners == {inode: processes.Owner(child.pid, fd)}
    finally:
        child.communicate("")


def _fake_proc(root: Path) -> None:
    """A proc root with a normal process, one that vanished and a zombie-like entry."""
    fd = root / "100" / "fd"
    fd.mkdir(parents=True)
    os.symlink("socket:[555]", fd / "3")
    os.symlink("/dev/null", fd / "0")
    os.symlink("socket:[556]", fd / "7")
    (root / "100" / "comm").write_text("nginx\n")
    (root / "100" / "cmdline").write_bytes(b"nginx: worker\0-g\0daemon off;\0")
    (root / "200").mkdir()  # exited between listing /proc and opening fd/
    (root / "300").mkdir()
    (root / "300" / "fd").write_text("")  # not a directory
    (root / "self").mkdir()  # ignored: not a pid


def test_fake_proc_root_maps_inodes_and_survives_vanished_processes(tmp_path: Path) -> None:
    _fake_proc(tmp_path)
    result = processes.scan(None, str(tmp_path))
    assert result.owners == {555: processes.Owner(100, 3), 556: processes.Owner(100, 7)}
    assert result.vanished == 2 and result.denied == 0
    rows = [_sock(555), _sock(999), _sock(None)]
    notes = processes.attribute(rows, proc_root=str(tmp_path), cmdline=True)
    assert notes == []
    assert (rows[0].pid, rows[0].fd, rows[0].process) == (100, 3, "nginx")
    assert rows[0].cmdline == "nginx: worker -g daemon off;"
    assert rows[1].pid is None and rows[2].pid is None


def test_missing_proc_root_attributes_nothing(tmp_path: Path) -> None:
    rows = [_sock(555)]
    assert processes.attribute(rows, proc_root=str(tmp_path / "none")) == []
    assert rows[0].pid is None


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to switch to nobody")
def test_unreadable_processes_are_counted_and_reported_as_netstat_does() -> None:
    code = (
        "import os, sys; from tcplens.sources import processes as p\n"
        "from tcplens.sources.records import Socket, Addr\n"
        "from tcplens.model import State\n"
        "a = Addr('127.0.0.1', 1)\n"
        "rows = [Socket('tcp', 4, a, a, State.LISTEN, inode=int(sys.argv[1]))]\n"
        "os.setgroups([]); os.setgid(65534); os.setuid(65534)\n"
        "notes = p.attribute(rows)\n"
        "print(rows[0].pid, notes == [p.NOT_ALL_IDENTIFIED], p.scan(None).denied > 0)\n"
    )
    with socket.socket() as s:  # held by us (root): nobody may not read our fds
        s.bind(("127.0.0.1", 0))
        inode = os.fstat(s.fileno()).st_ino
        out = subprocess.run(
            [sys.executable, "-c", code, str(inode)],
            capture_output=True,
            text=True,
            cwd="/",
            check=True,
        ).stdout
    assert out.split() == ["None", "True", "True"]


def test_unknown_uid_becomes_its_number() -> None:
    rows = [_sock(None, uid=4_000_000)]
    processes.attribute(rows)
    assert rows[0].user == "4000000"


def test_scan_reads_on_after_the_first_owner_for_sockets_shared_after_fork(
    tmp_path: Path,
) -> None:
    _fake_proc(tmp_path)
    worker = tmp_path / "400" / "fd"
    worker.mkdir(parents=True)
    os.symlink("socket:[555]", worker / "3")  # a forked worker holds the listener too
    (tmp_path / "400" / "comm").write_text("nginx\n")
    result = processes.scan({555}, str(tmp_path))
    assert result.owners == {555: processes.Owner(100, 3)}
    assert result.shared == {555: [processes.Owner(400, 3)]}
    assert result.holders(555) == [processes.Owner(100, 3), processes.Owner(400, 3)]
    assert result.scanned == 2  # every process is read: any may hold a wanted socket
    rows = [_sock(555), _sock(556)]
    processes.attribute(rows, proc_root=str(tmp_path))
    assert (rows[0].pid, rows[0].fd, rows[0].process) == (100, 3, "nginx")
    assert rows[0].holders == (Holder(100, 3, "nginx"), Holder(400, 3, "nginx"))
    assert rows[1].holders == ()  # one holder: pid, fd and process say it all
    # the same through a scan split over child processes, and as columns
    merged = processes.PendingScan(str(tmp_path), parts=2).result()
    assert merged.holders(555) == result.holders(555)
    owners = processes.owners_of([555, 556], [0, 0], merged, str(tmp_path))
    assert owners.holders == {0: (Holder(100, 3, "nginx"), Holder(400, 3, "nginx"))}


def test_a_scan_in_a_child_process_gives_the_scan_done_here(tmp_path: Path) -> None:
    _fake_proc(tmp_path)
    pending = processes.PendingScan(str(tmp_path))
    assert pending.pid != os.getpid()
    result = pending.result()
    assert result == processes.scan(None, str(tmp_path))
    assert result.owners[555] == processes.Owner(100, 3) and result.vanished == 2
    rows = [_sock(556)]
    assert processes.attribute(rows, proc_root=str(tmp_path), pending=None) == []
    assert (rows[0].pid, rows[0].fd, rows[0].process) == (100, 7, "nginx")


def test_live_scan_in_a_child_finds_this_process_sockets() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        fd = listener.fileno()
        pending = processes.PendingScan("/proc")
        rows = [_sock(os.fstat(fd).st_ino)]
        processes.attribute(rows, pending=pending)
    assert (rows[0].pid, rows[0].fd) == (os.getpid(), fd)


def test_a_child_that_fails_falls_back_to_scanning_here(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_proc(tmp_path)
    parent = os.getpid()
    real = processes.scan

    def scan_unless_child(wanted: set[int] | None, proc_root: str = "/proc") -> object:
        if os.getpid() != parent:
            raise RuntimeError("the child breaks")
        return real(wanted, proc_root)

    monkeypatch.setattr(processes, "scan", scan_unless_child)
    result = processes.PendingScan(str(tmp_path)).result()
    assert result.owners == {555: processes.Owner(100, 3), 556: processes.Owner(100, 7)}


def test_a_cancelled_scan_leaves_no_child(tmp_path: Path) -> None:
    _fake_proc(tmp_path)
    pending = processes.PendingScan(str(tmp_path))
    pending.cancel()
    with pytest.raises(ChildProcessError):
        os.waitpid(pending.pid, 0)


def test_no_child_is_forked_while_other_threads_run() -> None:
    import threading

    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        assert processes.start_scan() is None
    finally:
        stop.set()
        other.join()


def test_a_scan_split_over_two_children_equals_one_scan(tmp_path: Path) -> None:
    _fake_proc(tmp_path)
    later = tmp_path / "400" / "fd"
    later.mkdir(parents=True)
    os.symlink("socket:[555]", later / "9")  # shared with pid 100: the lowest pid keeps it
    os.symlink("socket:[777]", later / "4")
    (tmp_path / "400" / "comm").write_text("worker\n")
    pending = processes.PendingScan(str(tmp_path), parts=2)
    assert len(pending.children) == 2
    result = pending.result()
    assert result == processes.scan(None, str(tmp_path))
    assert result.owners[555] == processes.Owner(100, 3)
    assert result.owners[777] == processes.Owner(400, 4)
    assert result.scanned == 2 and result.vanished == 2


def test_live_split_scan_finds_every_socket_of_this_process() -> None:
    with socket.socket() as a, socket.socket(socket.AF_INET6) as b:
        fds = {a.fileno(), b.fileno()}
        inodes = {os.fstat(fd).st_ino for fd in fds}
        found = processes.PendingScan("/proc", parts=2).result()
    assert {found.owners[i] for i in inodes} == {processes.Owner(os.getpid(), fd) for fd in fds}


def test_a_child_sending_garbage_falls_back_to_scanning_here(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_proc(tmp_path)
    parent = os.getpid()
    real = processes._send

    def garbage_unless_parent(fd: int, found: processes.ScanResult) -> None:
        if os.getpid() == parent:
            real(fd, found)
        else:
            os.write(fd, b"not marshal")
            os.close(fd)

    monkeypatch.setattr(processes, "_send", garbage_unless_parent)
    result = processes.PendingScan(str(tmp_path), parts=2).result()
    assert result == processes.scan(None, str(tmp_path))


def test_a_failed_fork_leaves_no_child_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_proc(tmp_path)
    (tmp_path / "400" / "fd").mkdir(parents=True)
    real_fork, forks = os.fork, []

    def second_fails() -> int:
        if forks:
            raise OSError(11, "Resource temporarily unavailable")
        pid = real_fork()
        forks.append(pid)
        return pid

    monkeypatch.setattr(os, "fork", second_fails)
    with pytest.raises(OSError):
        processes.PendingScan(str(tmp_path), parts=2)
    monkeypatch.setattr(os, "fork", real_fork)
    with pytest.raises(ChildProcessError):
        os.waitpid(forks[0], 0)  # the first child was killed and reaped
