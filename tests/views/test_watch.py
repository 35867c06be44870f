"""``tcplens watch``: the sampling loop, the live table rendered headless, and the real command.

The table is tested by rendering :class:`WatchView` through a recording rich
console (no terminal needed); the command runs as a subprocess, piped (one
line per change) and inside a pseudo-terminal (the live table), on loopback
sockets this test owns and filters by port.
"""

from __future__ import annotations

import itertools
import os
import pty
import re
import select
import socket
import subprocess
import sys
import time

from rich.console import Console
from rich.segment import Segment

from tcplens.model.states import State
from tcplens.sources.processes import OwnerCache
from tcplens.sources.records import Addr, Snapshot, Socket
from tcplens.views.watch import CHANGE_STYLES, WatchView, render_watch, sample
from tests.views.test_trace import WAIT, following, listener, port_of, reset

S = State


def sock(lport: int, rport: int, state: State = S.ESTABLISHED, inode: int | None = None) -> Socket:
    return Socket("tcp", 4, Addr("127.0.0.1", lport), Addr("127.0.0.1", rport), state, inode=inode)


def snap(at: float, *sockets: Socket) -> Snapshot:
    return Snapshot(sockets=list(sockets), source="test", host="box", taken_at=at)


def segments(view: WatchView, *, max_rows: int | None = None) -> list[Segment]:
    console = Console(width=140, force_terminal=True, color_system="truecolor", record=True)
    return list(console.render(render_watch(view, max_rows=max_rows)))


def lines_with_styles(view: WatchView, **kw: int) -> list[tuple[str, set[str]]]:
    """Each rendered line's text and the colours used on it."""
    out: list[tuple[str, set[str]]] = []
    text, colours = "", set()
    for seg in segments(view, **kw):
        if seg.text == "\n":
            out.append((text, colours))
            text, colours = "", set()
            continue
        text += seg.text
        if seg.style is not None and seg.style.color is not None and seg.text.strip():
            colours.add(seg.style.color.name)
    return out


def row(lines: list[tuple[str, set[str]]], needle: str) -> tuple[str, set[str]]:
    (hit,) = [line for line in lines if needle in line[0]]
    return hit


# --- sampling --------------------------------------------------------------------------------


class FakeClock:
    def __init__(self, cost: float = 0.0) -> None:
        self.now = 100.0
        self.cost = cost  # seconds each snapshot takes
        self.sleeps: list[float] = []

    def take(self) -> Snapshot:
        self.now += self.cost
        return snap(self.now)

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(round(seconds, 6))
        self.now += seconds


def test_sample_keeps_a_fixed_schedule_when_snapshots_take_time() -> None:
    clock = FakeClock(cost=0.3)
    taken = [
        s.taken_at
        for s in sample(
            clock.take, interval=1.0, count=4, clock=lambda: clock.now, sleep=clock.sleep
        )
    ]
    assert len(taken) == 4
    assert clock.sleeps == [0.7, 0.7, 0.7]  # not 1.0 each: slow snapshots do not add drift
    assert [round(b - a, 6) for a, b in itertools.pairwise(taken)] == [1.0, 1.0, 1.0]


def test_sample_duration_ends_with_a_snapshot_at_the_end() -> None:
    clock = FakeClock()
    taken = [
        s.taken_at
        for s in sample(
            clock.take, interval=1.0, duration=2.5, clock=lambda: clock.now, sleep=clock.sleep
        )
    ]
    assert [round(t - 100.0, 6) for t in taken] == [0.0, 1.0, 2.0, 2.5]


def test_owners_scan_proc_only_for_sockets_not_seen_before() -> None:
    with listener() as lsock:
        inode = os.fstat(lsock.fileno()).st_ino
        owners = OwnerCache()
        rows = [sock(port_of(lsock), 0, S.LISTEN, inode)]
        owners.fill(rows)
        assert (rows[0].pid, owners.scans) == (os.getpid(), 1)
        again = [sock(port_of(lsock), 0, S.LISTEN, inode), sock(1, 2, S.TIME_WAIT, None)]
        owners.fill(again)
        assert (again[0].pid, again[0].process, owners.scans) == (os.getpid(), rows[0].process, 1)
        assert again[1].pid is None


# --- the table, headless ----------------------------------------------------------------------


def two_snapshots() -> WatchView:
    view = WatchView(highlight=2, interval=0.5)
    view.update(snap(0.0, sock(80, 5001, inode=1), sock(80, 5002, inode=2)))
    view.update(
        snap(
            1.0,
            sock(80, 5001, S.CLOSE_WAIT, inode=1),  # changed
            sock(80, 5003, inode=3),  # new
        )  # 5002 closed
    )
    return view


def test_new_rows_are_green_closed_red_and_changed_yellow() -> None:
    lines = lines_with_styles(two_snapshots())
    assert CHANGE_STYLES == {"opened": "bold green", "closed": "bold red", "changed": "bold yellow"}
    text, colours = row(lines, ":5003")
    assert colours == {"green"} and "ESTABLISHED" in text
    text, colours = row(lines, ":5002")
    assert colours == {"red"} and "ESTABLISHED → gone" in text
    text, colours = row(lines, ":5001")
    assert colours == {"yellow"} and "ESTABLISHED → CLOSE_WAIT" in text


def test_header_counts_states_and_changes() -> None:
    lines = [text for text, _ in lines_with_styles(two_snapshots())]
    assert lines[0].startswith("tcplens watch  box · test")
    assert "refresh 2 every 0.5s" in lines[0]
    assert "ESTABLISHED 1" in lines[1] and "CLOSE_WAIT 1" in lines[1]
    assert "+1 new" in lines[1] and "-1 closed" in lines[1] and "~1 changed" in lines[1]


def test_highlights_fade_and_closed_rows_go_after_a_few_refreshes() -> None:
    view = two_snapshots()  # highlight=2: marked at refresh 2, still shown at refresh 3
    rows = (sock(80, 5001, S.CLOSE_WAIT, inode=1), sock(80, 5003, inode=3))
    view.update(snap(2.0, *rows))
    assert row(lines_with_styles(view), ":5002")[1] == {"red"}
    view.update(snap(3.0, *rows))
    lines = lines_with_styles(view)
    assert not [line for line in lines if ":5002" in line[0]]  # the closed row is gone
    assert "green" not in row(lines, ":5003")[1]
    text, colours = row(lines, ":5001")
    assert "yellow" not in colours and "CLOSE_WAIT" in text and "→" not in text
    assert text.split()[-2] == "2.0s"  # two seconds in CLOSE_WAIT so far


def test_rows_present_at_start_show_a_minimum_time_in_state() -> None:
    view = WatchView()
    view.update(snap(0.0, sock(80, 5001, inode=1)))
    view.update(snap(3.0, sock(80, 5001, inode=1)))
    assert "≥3.0s" in row(lines_with_styles(view), ":5001")[0]


def test_too_many_rows_keep_the_highlighted_ones() -> None:
    view = WatchView()
    base = [sock(80, 6000 + n, inode=10 + n) for n in range(30)]
    view.update(snap(0.0, *base))
    view.update(snap(1.0, *base, sock(80, 7000, inode=99)))
    lines = lines_with_styles(view, max_rows=5)
    assert row(lines, ":7000")[1] == {"green"}
    assert any("… 27 more sockets" in text for text, _ in lines)


def test_state_filter_hides_other_states_unless_highlighted() -> None:
    view = WatchView(states=frozenset({S.CLOSE_WAIT}), highlight=1)
    view.update(snap(0.0, sock(80, 5001, inode=1), sock(80, 5002, inode=2)))
    view.update(snap(1.0, sock(80, 5001, S.CLOSE_WAIT, inode=1), sock(80, 5002, inode=2)))
    shown = [r.sock.remote.port for r in view.rows()]
    assert shown == [5001]


# --- the command ----------------------------------------------------------------------------


def test_piped_watch_prints_plus_and_minus_lines_for_real_sockets() -> None:
    with listener() as lsock, following(
        "watch", "--port", str(port_of(lsock)), "--interval", "0.05",
    ) as run:  # fmt: skip
        run.started("watching")
        client = socket.create_connection(("127.0.0.1", port_of(lsock)))
        server, _ = lsock.accept()
        cport, sport = port_of(client), port_of(server)
        run.wait_for(lambda line: " + " in line, n=2)
        reset(client)
        server.close()
        run.wait_for(lambda line: " - " in line, n=2)
        assert run.finish(interrupt=True) == 0
    fields = [line.split() for line in run.lines]
    assert all(len(f) == 9 and f[6] == "->" for f in fields), run.lines
    opened = {(f[3], f[4]): f for f in fields if f[1] == "+"}
    closed = {(f[3], f[4]): f for f in fields if f[1] == "-"}
    server_key = (f"127.0.0.1:{sport}", f"127.0.0.1:{cport}")
    client_key = (f"127.0.0.1:{cport}", f"127.0.0.1:{sport}")
    assert set(opened) == set(closed) == {server_key, client_key}
    assert opened[server_key][5:8] == ["new", "->", "ESTABLISHED"]
    assert closed[client_key][5:8] == ["ESTABLISHED", "->", "gone"]
    assert opened[server_key][8].startswith(f"{os.getpid()}/")  # process names are on


def test_watch_on_a_terminal_draws_the_live_table() -> None:
    master, slave = pty.openpty()
    with listener() as lsock:
        args = ["watch", "--port", str(port_of(lsock)), "-P", "--interval", "0.05"]
        proc = subprocess.Popen(
            [sys.executable, "-m", "tcplens", *args, "--count", "400"],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env={**os.environ, "COLUMNS": "120", "LINES": "30", "TERM": "xterm-256color"},
        )
        os.close(slave)
        out = b""
        client: socket.socket | None = None
        cport = 0
        try:
            deadline = time.monotonic() + WAIT
            while time.monotonic() < deadline:
                ready, _, _ = select.select([master], [], [], 0.1)
                if ready:
                    try:
                        out += os.read(master, 65536)
                    except OSError:
                        break
                if client is None and b"PID/Program" in out:
                    client = socket.create_connection(("127.0.0.1", port_of(lsock)))
                    cport, mark = port_of(client), len(out)
                if client is not None and f":{cport}".encode() in out[mark:]:
                    break
        finally:
            proc.kill()
            proc.wait()
            os.close(master)
            if client is not None:
                client.close()
    text = out.decode("utf-8", "replace")
    assert "tcplens watch" in text and "Local Address" in text and "In state" in text
    assert client is not None
    # the new connection's cells are drawn bold green (the client's row starts with its port)
    assert re.search(rf"\x1b\[1;32m *127\.0\.0\.1:{cport}\b", text), text[-3000:]


def test_owners_remember_unowned_inodes_instead_of_searching_again() -> None:
    owners = OwnerCache()
    orphan = [sock(1, 2, S.FIN_WAIT1, inode=1)]  # no process holds socket inode 1
    owners.fill(orphan)
    owners.fill([sock(1, 2, S.FIN_WAIT1, inode=1)])
    assert owners.scans == 1 and orphan[0].pid is None
