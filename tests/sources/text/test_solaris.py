"""Solaris netstat -n: one section per protocol and family."""

from __future__ import annotations

from tcplens import parse_text
from tcplens.model import State
from tcplens.sources.records import Addr, Socket
from tests.contract import check_snapshot
from tests.sources.text.helpers import load


def test_solaris_n_fixture() -> None:
    snap = load("solaris-netstat-n.txt")
    assert snap.source == "text:solaris-netstat"
    assert snap.warnings == []
    assert snap.skipped == {"unix": 11}
    assert len(snap.sockets) == 9
    udp = snap.sockets[:3]
    assert udp[0] == Socket(
        "udp", 4, Addr("8.8.17.4", 15934), Addr("8.8.7.7", 53), State.ESTABLISHED
    )  # "Connected"
    assert all(s.proto == "udp" and s.recv_q is None for s in udp)
    tcp = snap.sockets[3:]
    assert tcp[0] == Socket(
        "tcp", 4, Addr("8.8.17.4", 1337), Addr("8.8.213.120", 65472), State.ESTABLISHED, 0, 0
    )
    assert [s.state for s in tcp[1:]] == [State.TIME_WAIT] * 5
    assert tcp[1].remote == Addr("8.8.17.4", 111)


SOLARIS_A = """\

UDP: IPv4
   Local Address        Remote Address      State
-------------------- -------------------- ----------
      *.*                                 Unbound
      *.111                               Idle

TCP: IPv4
   Local Address        Remote Address    Swind Send-Q Rwind Recv-Q    State
-------------------- -------------------- ----- ------ ----- ------ -----------
      *.*                  *.*                0      0 49152      0 IDLE
      *.22                 *.*                0      0 49152      0 LISTEN
10.0.0.4.22          10.0.0.9.51234       64128     52 64128      7 ESTABLISHED

TCP: IPv6
   Local Address                     Remote Address                 Swind Send-Q Rwind Recv-Q   State      If
--------------------------------- --------------------------------- ----- ------ ----- ------ ----------- -----
      *.22                              *.*                             0      0 49152      0 LISTEN
::1.32782                         ::1.32781                         49152      0 49152      0 ESTABLISHED
fe80::1.22                        fe80::2.4000                      49152      0 49152      0 ESTABLISHED e1000g0

SCTP:
        Local Address                   Remote Address          Swind  Send-Q Rwind  Recv-Q StrsI/O  State
------------------------------- ------------------------------- ------ ------ ------ ------ ------- -----------
0.0.0.0                         0.0.0.0                              0      0 102400      0  32/32  CLOSED
"""  # noqa: E501


def test_solaris_an_idle_bound_ipv6_interface_and_sctp_skipped() -> None:
    snap = parse_text(SOLARIS_A)
    check_snapshot(snap, text_source=True)
    assert snap.warnings == []
    assert snap.skipped == {"sctp": 1}
    assert [(s.proto, s.family, s.state) for s in snap.sockets] == [
        ("udp", 4, State.CLOSED),
        ("udp", 4, State.CLOSED),
        ("tcp", 4, State.CLOSED),
        ("tcp", 4, State.LISTEN),
        ("tcp", 4, State.ESTABLISHED),
        ("tcp", 6, State.LISTEN),
        ("tcp", 6, State.ESTABLISHED),
        ("tcp", 6, State.ESTABLISHED),
    ]
    assert snap.sockets[1].local == Addr("*", 111)
    assert (snap.sockets[4].send_q, snap.sockets[4].recv_q) == (52, 7)
    assert snap.sockets[6].local == Addr("::1", 32782)
    assert snap.sockets[7].interface == "e1000g0"
