"""Windows netstat dumps: -an, -ano (CRLF), -anb with executables, the seed's flattened paste."""

from __future__ import annotations

from tcplens import parse_text
from tcplens.model import State
from tcplens.sources.records import Addr, Socket
from tests.sources.text.helpers import FIXTURES, load


def test_an_fixture_crlf() -> None:
    assert b"\r\n" in (FIXTURES / "windows10-netstat-an.txt").read_bytes()
    snap = load("windows10-netstat-an.txt")
    assert snap.source == "text:windows-netstat"
    assert snap.warnings == []
    assert len(snap.sockets) == 260
    tcp = [s for s in snap.sockets if s.proto == "tcp"]
    assert len(tcp) == 80
    assert sum(s.state is State.LISTEN for s in tcp) == 48
    assert sum(s.state is State.ESTABLISHED for s in tcp) == 32
    assert snap.sockets[0] == Socket(
        "tcp", 4, Addr("0.0.0.0", 135), Addr("0.0.0.0", 0), State.LISTEN
    )
    assert snap.sockets[20] == Socket(
        "tcp", 4, Addr("127.0.0.1", 1031), Addr("127.0.0.1", 1032), State.ESTABLISHED
    )
    v6 = next(s for s in snap.sockets if s.local == Addr("::1", 1025))
    assert v6 == Socket("tcp", 6, Addr("::1", 1025), Addr("::", 0), State.LISTEN)
    udp = next(s for s in snap.sockets if s.proto == "udp")
    assert udp == Socket("udp", 4, Addr("0.0.0.0", 53), Addr("*", None), State.CLOSED)
    last = snap.sockets[-1]
    assert (last.proto, last.family, last.interface, last.local.port) == ("udp", 6, "9", 1900)


def test_aon_fixture_pids() -> None:
    snap = load("windows10-netstat-aon.txt")
    assert snap.warnings == []
    assert len(snap.sockets) == 208
    assert sum(s.proto == "udp" for s in snap.sockets) == 137
    assert all(s.pid is not None for s in snap.sockets)
    assert snap.sockets[0] == Socket(
        "tcp", 4, Addr("0.0.0.0", 135), Addr("0.0.0.0", 0), State.LISTEN, pid=1712
    )
    assert snap.sockets[-1] == Socket(
        "udp", 6, Addr("fe80::f5d1:8bf7:c410:e325", 52284), Addr("*", None), State.CLOSED,
        pid=8844, interface="64",
    )  # fmt: skip


def test_anb_fixture_executables_attach_to_the_socket_above() -> None:
    snap = load("windows-netstat-anb.txt")
    assert snap.warnings == []
    assert [(s.proto, s.local.port, s.pid, s.process) for s in snap.sockets] == [
        ("tcp", 135, 988, "svchost.exe"),
        ("tcp", 445, 4, "System"),
        ("tcp", 1027, 1244, "alg.exe"),
        ("tcp", 139, 4, "System"),
        ("udp", 1025, 1120, "svchost.exe"),
        ("udp", 500, 696, "lsass.exe"),
    ]
    assert snap.sockets[3].local == Addr("192.168.0.104", 139)


def test_anb_without_elevation_notes_missing_owners() -> None:
    text = (
        "\r\nActive Connections\r\n\r\n"
        "  Proto  Local Address          Foreign Address        State\r\n"
        "  TCP    0.0.0.0:135            0.0.0.0:0              LISTENING\r\n"
        "  RpcSs\r\n"
        " [svchost.exe]\r\n"
        "  TCP    0.0.0.0:445            0.0.0.0:0              LISTENING\r\n"
        " Can not obtain ownership information\r\n"
        "  TCP    10.0.0.5:49700         10.0.0.1:443           SYN_SENT\r\n"
        "  TCP    10.0.0.5:49701         10.0.0.1:443           FIN_WAIT_2\r\n"
        "  TCP    10.0.0.5:49702         10.0.0.1:443           TIME_WAIT\r\n"
        " Can not obtain ownership information\r\n"
    )
    snap = parse_text(text)
    assert snap.warnings == []
    assert [s.process for s in snap.sockets] == ["svchost.exe", None, None, None, None]
    assert [s.state for s in snap.sockets][2:] == [
        State.SYN_SENT,
        State.FIN_WAIT2,
        State.TIME_WAIT,
    ]
    assert len(snap.missing) == 1 and "2 sockets" in snap.missing[0]


def test_seed_flattened_paste_is_reported_not_guessed() -> None:
    snap = load("seed002-windows-netstat-na-p-tcp.txt")
    assert snap.source == "text:windows-netstat"
    # the page lost its line breaks and the addresses' hosts ("TCP :110 :0 LISTENING")
    assert snap.sockets == []
    (warning,) = snap.warnings
    assert warning.line == 1
    assert warning.message.startswith("12 netstat rows run together on one line")
    assert "12 unreadable" in warning.message
    assert snap.missing == [
        "12 sockets on line 1 are not counted: the paste lost their line breaks and part of "
        "their addresses",
        "1 line of the input not understood (first: line 1); any sockets there are not counted",
    ]


def test_flattened_paste_with_intact_addresses_is_recovered() -> None:
    text = (
        "C:\\>netstat -na -p tcp Active Connections Proto Local Address Foreign Address State "
        "TCP 0.0.0.0:110 0.0.0.0:0 LISTENING TCP 10.0.0.5:3624 10.0.0.9:80 CLOSE_WAIT 1234"
    )
    snap = parse_text(text)
    assert [(s.local, s.state, s.pid) for s in snap.sockets] == [
        (Addr("0.0.0.0", 110), State.LISTEN, None),
        (Addr("10.0.0.5", 3624), State.CLOSE_WAIT, 1234),
    ]
    assert len(snap.warnings) == 1
    assert len(snap.missing) == 1 and snap.missing[0].startswith("1 line of the input")


def test_unknown_windows_state_warns_with_suggestion() -> None:
    text = "  TCP    0.0.0.0:135            0.0.0.0:0              LISTENNING\r\n"
    snap = parse_text(text)
    assert snap.sockets == []
    assert "LISTEN" in snap.warnings[0].message


def test_offload_column_and_unexpected_columns() -> None:
    text = (
        "  TCP    0.0.0.0:135            0.0.0.0:0              LISTENING       988     InHost\r\n"
        "  TCP    0.0.0.0:136            0.0.0.0:0              LISTENING       988     what\r\n"
    )
    snap = parse_text(text)
    assert [s.pid for s in snap.sockets] == [988]
    assert [w.line for w in snap.warnings] == [2]


def test_a_listener_with_a_peer_port_is_a_damaged_line() -> None:
    # found by fuzzing: one stray digit turned "0.0.0.0:0" into "0.0.0.0:10"
    text = "  TCP    0.0.0.0:13656          0.0.0.0:10             LISTENING\r\n"
    snap = parse_text(text)
    assert snap.sockets == []
    assert snap.warnings[0].message == "a listening socket with a peer port (0.0.0.0:10)"
