"""psutil source: same records as the kernel sources for what psutil knows, None for the rest."""

from __future__ import annotations

import os
import socket
from collections import namedtuple

import psutil

from tcplens.model import State
from tcplens.sources import portable
from tests.contract import check_snapshot
from tests.sources.live import known_sockets

# psutil's own field order (psutil/_ntuples.py: sconn)
Sconn = namedtuple("Sconn", "fd family type laddr raddr status pid")
Addr = namedtuple("Addr", "ip port")


def test_udp_state_follows_the_kernel_convention() -> None:
    bound = Sconn(5, socket.AF_INET, socket.SOCK_DGRAM, Addr("127.0.0.1", 53), (), "NONE", 9)
    conn = Sconn(
        6, socket.AF_INET6, socket.SOCK_DGRAM, Addr("::1", 5353), Addr("::1", 53), "NONE", 9
    )
    assert portable.from_psutil(bound).state is State.CLOSED
    sock = portable.from_psutil(conn)
    assert sock.state is State.ESTABLISHED and sock.family == 6 and sock.remote.port == 53


def test_tcp_status_and_missing_fields() -> None:
    listen = Sconn(-1, socket.AF_INET, socket.SOCK_STREAM, Addr("0.0.0.0", 22), (), "LISTEN", None)
    sock = portable.from_psutil(listen)
    assert sock.state is State.LISTEN and sock.proto == "tcp"
    assert sock.remote.port == 0 and sock.remote.ip == "0.0.0.0"
    assert (sock.fd, sock.pid, sock.inode, sock.recv_q, sock.timer) == (None,) * 5
    tw = Sconn(-1, socket.AF_INET, socket.SOCK_STREAM, Addr("1.2.3.4", 5), Addr("5.6.7.8", 9),
               psutil.CONN_TIME_WAIT, None)  # fmt: skip
    assert portable.from_psutil(tw).state is State.TIME_WAIT


def test_live_psutil_snapshot_passes_the_contract_and_finds_our_pid() -> None:
    with known_sockets() as known:
        snap = portable.snapshot()
        bare = portable.snapshot(processes=False)
    check_snapshot(snap)
    check_snapshot(bare)
    assert snap.source == "psutil" and snap.missing
    seen = known.select(snap.sockets)
    assert set(seen) == set(known.expected)
    for key, expected in known.expected.items():
        assert (seen[key].state, seen[key].pid) == (expected.state, expected.pid), key
    assert any(s.process == psutil.Process(os.getpid()).name() for s in seen.values())
    assert all(s.pid is None for s in known.select(bare.sockets).values())
