"""Linux net-tools netstat dumps: fixtures from jc, Parse-Netstat and the seeds, plus edge rows."""

from __future__ import annotations

import pytest

from tcplens import parse_text
from tcplens.errors import InputError
from tcplens.model import State
from tcplens.sources.records import Addr, Socket, Timer
from tests.contract import check_snapshot
from tests.sources.text.helpers import load

BANNER = (
    "Not all processes could be identified, non-owned process info will not be shown, "
    "you would have to be root to see it all."
)


def test_anp_fixture_records_and_unix_section_skipped() -> None:
    snap = load("linux-netstat-anp.txt")
    assert snap.source == "text:linux-netstat"
    assert snap.warnings == []
    assert len(snap.sockets) == 14
    assert snap.skipped == {"unix": 3}
    assert [s.proto for s in snap.sockets].count("udp") == 4
    assert snap.sockets[0] == Socket(
        "tcp", 4, Addr("127.0.0.1", 1027), Addr("0.0.0.0", None), State.LISTEN, recv_q=0
    )  # a listener's Send-Q in netstat is /proc/net/tcp's tx_queue (0), not its backlog
    # a row without the PID column, a host name and a "*" wildcard
    assert snap.sockets[1] == Socket(
        "tcp", 4, Addr("builder.localdomain", 1028), Addr("*", None), State.LISTEN, 0, None
    )
    assert snap.sockets[7].pid == 1234
    assert snap.sockets[7].process == "program with space"
    established = snap.sockets[8]
    assert established == Socket(
        "tcp",
        4,
        Addr("192.168.0.103", 44922),
        Addr("1.2.3.4", 143),
        State.ESTABLISHED,
        0,
        0,
        pid=25820,
        process="thunderbird-b",  # netstat cuts program names short
    )
    assert snap.sockets[9] == Socket(
        "tcp", 6, Addr("::1", 1028), Addr("::", None), State.LISTEN, 0, None
    )
    assert snap.sockets[12] == Socket(
        "udp", 4, Addr("192.168.0.103", 52753), Addr("0.0.0.0", None), State.CLOSED, 0, 0,
        pid=8888, process="opera",
    )  # fmt: skip
    assert snap.sockets[13] == Socket(
        "udp", 6, Addr("::", 42069), Addr("::", None), State.CLOSED, 0, 0
    )


def test_aeep_fixture_user_inode_services_and_raw_skipped() -> None:
    snap = load("ubuntu18.04-netstat-aeep.txt")
    assert snap.warnings == []
    assert len(snap.sockets) == 8
    assert snap.skipped == {"raw6": 1, "unix": 113}
    assert snap.sockets[0] == Socket(
        "tcp",
        4,
        Addr("localhost", 53, "domain"),
        Addr("0.0.0.0", None),
        State.LISTEN,
        0,
        None,
        user="systemd-resolve",
        inode=26985,
        pid=893,
        process="systemd-resolve",
    )
    sshd = snap.sockets[3]
    assert sshd.local == Addr("localhost", 22, "ssh")
    assert sshd.remote == Addr("localhost", 33098)
    assert (sshd.user, sshd.inode, sshd.pid, sshd.process) == ("root", 44626, 2322, "sshd: kbrazil")
    assert snap.sockets[5] == Socket(
        "tcp", 6, Addr("::", 22, "ssh"), Addr("::", None), State.LISTEN, 0, None,
        user="root", inode=30499, pid=1161, process="sshd",
    )  # fmt: skip
    assert snap.sockets[7].local == Addr("kbrazil-ubuntu", 68, "bootpc")
    assert snap.sockets[7].state is State.CLOSED


def test_seed_paste_with_nbsp_banner_prompt_and_prose() -> None:
    snap = load("seed003-linux-netstat-anlp.txt")
    assert snap.host == "bogon"
    assert snap.missing == [
        BANNER,
        "1 line of the input not understood (first: line 7); any sockets there are not counted",
    ]
    assert len(snap.sockets) == 5
    # the one line of prose between the two pastes is reported, not dropped
    assert [(w.line, w.text) for w in snap.warnings] == [(7, "又比如")]
    assert snap.sockets[0] == Socket(
        "tcp", 4, Addr("0.0.0.0", 10050), Addr("0.0.0.0", None), State.LISTEN, 0, None,
        pid=2502, process="server",
    )  # fmt: skip
    assert snap.sockets[3] == Socket(
        "tcp", 4, Addr("192.168.190.81", 48008), Addr("192.168.190.81", 10050),
        State.CLOSE_WAIT, 1, 0, pid=2510, process="client",
    )  # fmt: skip
    assert snap.sockets[4].state is State.FIN_WAIT2
    assert snap.sockets[4].pid is None and snap.sockets[4].process is None


def test_seed_second_paste_server_in_close_wait() -> None:
    snap = load("seed003-linux-netstat-anlp-2.txt")
    assert snap.warnings == []
    assert snap.missing == [BANNER]
    assert [s.state for s in snap.sockets] == [State.LISTEN, State.CLOSE_WAIT, State.FIN_WAIT2]
    assert snap.sockets[1] == Socket(
        "tcp", 4, Addr("192.168.190.81", 10050), Addr("192.168.190.81", 48010),
        State.CLOSE_WAIT, 1, 0, pid=2568, process="server",
    )  # fmt: skip
    assert snap.sockets[2].pid is None


def test_strict_names_the_prose_line() -> None:
    from tests.sources.text.helpers import FIXTURES

    text = (FIXTURES / "seed003-linux-netstat-anlp.txt").read_text(encoding="utf-8")
    with pytest.raises(InputError) as info:
        parse_text(text, strict=True, path="seed.txt")
    assert info.value.line == 7
    assert str(info.value).startswith("seed.txt line 7: not a netstat row")


TIMERS = """\
Active Internet connections (servers and established)
Proto Recv-Q Send-Q Local Address           Foreign Address         State       User       Inode      PID/Program name     Timer
tcp        0      0 0.0.0.0:2024            0.0.0.0:*               LISTEN      0          1060       -                    off (0.00/0/0)
tcp        0      0 127.0.0.1:46360         127.0.0.1:40697         TIME_WAIT   0          0          -                    timewait (48.22/0/0)
tcp        0     36 10.0.0.5:22             10.0.0.9:51234          ESTABLISHED 0          4242       880/sshd: root@pts/0 on (0.20/1/0)
tcp        0      0 10.0.0.5:22             10.0.0.9:51235          ESTABLISHED 1000       4243       881/ssh              keepalive (7175.32/0/0)
tcp6       0      0 fe80::1%eth0:22         fe80::2%eth0:40000      SYN_RECV    0          0          -                    on (0.98/2/0)
tcp6       0      0 ::ffff:127.0.0.1:8080   ::ffff:127.0.0.1:5555   ESTABLISHED 33         777        99/java              probe (1.00/0/3)
udp        0      0 10.0.0.5:5353           10.0.0.1:53             ESTABLISHED 0          4300       12/resolved          off (0.00/0/0)
"""  # noqa: E501


def test_numeric_user_inode_and_every_timer_kind() -> None:
    snap = parse_text(TIMERS)
    check_snapshot(snap, text_source=True)
    assert snap.warnings == []
    assert [s.timer for s in snap.sockets] == [
        Timer("off", 0.0, 0),
        Timer("timewait", 48.22, 0),
        Timer("on", 0.2, 1),
        Timer("keepalive", 7175.32, 0),
        Timer("on", 0.98, 2),
        Timer("probe", 1.0, 0),
        Timer("off", 0.0, 0),
    ]
    assert snap.sockets[0].uid == 0 and snap.sockets[0].user is None
    assert snap.sockets[0].inode == 1060
    assert snap.sockets[2].process == "sshd: root@pts/0"
    assert snap.sockets[2].send_q == 36
    assert snap.sockets[3].uid == 1000
    zoned = snap.sockets[4]
    assert zoned.local == Addr("fe80::1", 22)
    assert zoned.interface == "eth0"
    assert zoned.family == 6
    mapped = snap.sockets[5]
    assert mapped.local.ip == str(__import__("ipaddress").ip_address("::ffff:127.0.0.1"))
    assert mapped.family == 6
    assert snap.sockets[6].state is State.ESTABLISHED  # connected UDP


def test_bad_rows_become_warnings_with_line_numbers() -> None:
    text = (
        "Proto Recv-Q Send-Q Local Address           Foreign Address         State\n"
        "tcp        0      0 0.0.0.0:22              0.0.0.0:*               LISTEN\n"
        "tcp        0      0 0.0.0.0:99999           0.0.0.0:*               LISTEN\n"
        "tcp        0      0 0.0.0.0:80              0.0.0.0:*               LISTNE\n"
        "tcp        0      0 0.0.0.0:81              0.0.0.0:*\n"
        "garbage here\n"
    )
    snap = parse_text(text)
    assert len(snap.sockets) == 1
    assert [w.line for w in snap.warnings] == [3, 4, 5, 6]
    assert "out of range" in snap.warnings[0].message
    assert "LISTEN" in snap.warnings[1].message  # the model suggests the closest state
    assert "without a state" in snap.warnings[2].message


OTHER_FAMILIES = """\
(No info could be read for "-p": geteuid()=1000 but you should be root.)
Active Internet connections (only servers)
Proto Recv-Q Send-Q Local Address           Foreign Address         State       PID/Program name
tcp        0      0 127.0.0.1:631           0.0.0.0:*               LISTEN      -
Active Bluetooth connections (only servers)
Proto  Destination       Source            State         PSM DCID   SCID      IMTU    OMTU Security
l2cap  00:00:00:00:00:00 11:22:33:44:55:66 LISTEN        1   0x0000 0x0000    672     0    low
"""


def test_no_info_banner_and_other_families_are_counted() -> None:
    text = OTHER_FAMILIES
    snap = parse_text(text)
    assert snap.warnings == []
    assert snap.missing == [
        'No info could be read for "-p": geteuid()=1000 but you should be root.'
    ]
    assert snap.skipped == {"bluetooth": 1}
    assert len(snap.sockets) == 1


def test_cut_ipv6_hosts_keep_their_ports_and_are_reported() -> None:
    cut = load("linux-netstat-tanp-ipv6-cut.txt")
    wide = load("linux-netstat-tanpW-ipv6.txt")
    assert cut.warnings == wide.warnings == []
    assert wide.missing == []
    (note,) = cut.missing
    assert note.startswith("5 addresses fill netstat's 23-character column")
    full = "2001:db8:aaaa:bbbb:cccc:dddd:eeee:1"
    assert wide.sockets[2] == Socket(
        "tcp", 6, Addr(full, 49806), Addr(full, 443), State.ESTABLISHED, 0, 0,
        pid=16014, process="python3",
    )  # fmt: skip
    # without -W: "2001:db8:aaaa:bbb:49806" -- the port survives, the host does not
    assert cut.sockets[2].local == Addr("2001:db8:aaaa:bbb", 49806)
    assert cut.sockets[2].remote == Addr("2001:db8:aaaa:bbbb:", 443)
    assert [(s.local.port, s.remote.port, s.state, s.pid) for s in cut.sockets] == [
        (s.local.port, s.remote.port, s.state, s.pid) for s in wide.sockets
    ]
    assert cut.sockets[0] == wide.sockets[0]  # ::1:8080 fits


def test_grep_colour_codes_are_ignored() -> None:
    text = (
        "$ netstat -tanp | grep --color=always 10050\n"
        "tcp        0      0 0.0.0.0:\x1b[01;31m\x1b[K10050\x1b[m\x1b[K           0.0.0.0:*"
        "               LISTEN      2502/server\n"
    )
    snap = parse_text(text)
    assert snap.warnings == []
    assert snap.sockets[0].local == Addr("0.0.0.0", 10050)
