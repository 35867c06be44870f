"""macOS and FreeBSD netstat dumps: dotted ports, tcp4/tcp6/tcp46, -A columns, other sections."""

from __future__ import annotations

from tcplens import parse_text
from tcplens.model import State
from tcplens.sources.records import Addr, Socket
from tests.contract import check_snapshot
from tests.sources.text.helpers import load


def test_freebsd12_an_fixture() -> None:
    snap = load("freebsd12-netstat-an.txt")
    assert snap.source == "text:bsd-netstat"
    assert snap.warnings == []
    assert snap.skipped == {"unix": 14}
    assert snap.missing == []
    assert snap.sockets == [
        Socket("tcp", 4, Addr("192.168.71.163", 22), Addr("192.168.71.1", 56321),
               State.ESTABLISHED, 0, 0),
        # a listener's Send-Q without -L is its send buffer, not its backlog: unknown
        Socket("tcp", 4, Addr("127.0.0.1", 25), Addr("*", None), State.LISTEN, 0, None),
        Socket("tcp", 4, Addr("*", 22), Addr("*", None), State.LISTEN, 0, None),
        Socket("tcp", 6, Addr("*", 22), Addr("*", None), State.LISTEN, 0, None),
        Socket("udp", 4, Addr("*", 514), Addr("*", None), State.CLOSED, 0, 0),
        Socket("udp", 6, Addr("*", 514), Addr("*", None), State.CLOSED, 0, 0),
    ]  # fmt: skip


def test_freebsd10_an_fixture() -> None:
    snap = load("freebsd10.1-netstat-an.txt")
    assert snap.warnings == []
    assert snap.skipped == {"unix": 27}
    assert len(snap.sockets) == 36
    assert sum(s.proto == "tcp" for s in snap.sockets) == 23
    assert snap.sockets[0] == Socket(
        "tcp", 4, Addr("192.168.1.33", 780), Addr("192.168.1.10", 2049), State.CLOSE_WAIT, 0, 0
    )
    assert snap.sockets[1].state is State.CLOSED
    assert snap.sockets[3] == Socket(
        "tcp", 6, Addr("::1", 6012), Addr("*", None), State.LISTEN, 0, None
    )
    assert snap.sockets[4].send_q == 52
    wildcard = snap.sockets[26]
    assert wildcard == Socket("udp", 4, Addr("*", None), Addr("*", None), State.CLOSED, 0, 0)


def test_macos_An_fixture_sections_and_truncated_addresses() -> None:
    snap = load("macos10.14-netstat-An.txt")
    assert snap.warnings == []
    assert snap.skipped == {"icm4": 1, "unix": 400, "kctl-modules": 17, "kevt": 27, "kctl": 97}
    assert len(snap.sockets) == 137
    assert sum(s.proto == "tcp" for s in snap.sockets) == 49
    assert sum(s.family == 6 for s in snap.sockets) == 40  # tcp6, udp6 and udp46
    assert snap.sockets[0] == Socket(
        "tcp", 4, Addr("192.168.1.221", 5486), Addr("140.82.113.26", 443), State.ESTABLISHED, 0, 0
    )
    assert snap.sockets[17] == Socket(
        "tcp", 4, Addr("192.168.1.221", 5442), Addr("35.236.87.93", 8081), State.CLOSE_WAIT, 31, 0
    )
    assert snap.sockets[19] == Socket(
        "tcp", 4, Addr("127.0.0.1", 53755), Addr("127.0.0.1", 53763), State.ESTABLISHED, 0, 0
    )
    dual = next(s for s in snap.sockets if s.local == Addr("*", 61224))
    assert (dual.proto, dual.family, dual.state) == ("udp", 6, State.CLOSED)
    # 18-character columns: 83 addresses fill them and may have lost digits
    (note,) = snap.missing
    assert note.startswith("83 addresses fill netstat's column")
    cut = snap.sockets[4]
    assert (cut.family, cut.local) == (6, Addr("2600:1700:bab0:d", 5))


AANV = """\
Active Internet connections (including servers)
Proto Recv-Q Send-Q  Local Address          Foreign Address        (state)     rhiwat shiwat    pid   epid  state    options
tcp4       0      0  10.0.0.5.22            10.0.0.9.51234         ESTABLISHED 131072 131768    412      0 0x0102 0x00000004
tcp46      0      0  *.80                   *.*                    LISTEN      131072 131072    99       0 0x0100 0x00000006
udp4       0      0  *.5353                 *.*                                786896   9216    301      0 0x0000 0x00000000
tcp6       0      0  fe80::1%lo0.631        *.*                    LISTEN      131072 131072    88       0 0x0100 0x00000006
tcp4       0      0  10.0.0.5.52000         10.0.0.1.https         SYN_SENT    131072 131072    77       0 0x0100 0x00000006
"""  # noqa: E501


def test_macos_anv_pid_column_zone_and_service_name() -> None:
    snap = parse_text(AANV)
    check_snapshot(snap, text_source=True)
    assert snap.warnings == []
    assert snap.source == "text:bsd-netstat"
    assert [s.pid for s in snap.sockets] == [412, 99, 301, 88, 77]
    assert snap.sockets[1].family == 6  # tcp46 is a dual-stack socket
    assert snap.sockets[2].state is State.CLOSED
    zoned = snap.sockets[3]
    assert (zoned.local, zoned.interface) == (Addr("fe80::1", 631), "lo0")
    assert snap.sockets[4].remote == Addr("10.0.0.1", 443, "https")
    assert snap.sockets[4].state is State.SYN_SENT


def test_freebsd_A_tcpcb_column_and_bad_rows() -> None:
    text = (
        "Active Internet connections (including servers)\n"
        "Tcpcb            Proto Recv-Q Send-Q Local Address      Foreign Address    (state)\n"
        "fffff80003a5c7a0 tcp4       0      0 10.0.0.5.22        10.0.0.9.51234     SYN_RCVD\n"
        "fffff80003a5c7a1 tcp4       0      0 10.0.0.5.22        10.0.0.9.51235     FIN_WAIT_1\n"
        "fffff80003a5c7a2 tcp4       0      0 10.0.0.5.22        10.0.0.9.51236\n"
        "fffff80003a5c7a3 tcp4       0      0 10.0.0.5.22        10.0.0.9.99999     LISTEN\n"
        "what is this\n"
    )
    snap = parse_text(text)
    assert [s.state for s in snap.sockets] == [State.SYN_RECV, State.FIN_WAIT1]
    assert [w.line for w in snap.warnings] == [5, 6, 7]


def test_listen_queues_become_listeners_with_linux_queue_meaning() -> None:
    text = (
        "Current listen queue sizes (qlen/incqlen/maxqlen)\n"
        "Proto Listen                           Local Address\n"
        "tcp4  3/0/128                          *.80\n"
        "tcp6  0/0/128                          ::1.631\n"
        "unix  0/0/4096                         /var/run/devd.seqpacket.pipe\n"
    )
    snap = parse_text(text)
    assert snap.source == "text:bsd-netstat"
    assert snap.warnings == []
    assert snap.skipped == {"unix": 1}
    assert snap.sockets == [
        Socket("tcp", 4, Addr("*", 80), Addr("*", None), State.LISTEN, 3, 128),
        Socket("tcp", 6, Addr("::1", 631), Addr("*", None), State.LISTEN, 0, 128),
    ]
