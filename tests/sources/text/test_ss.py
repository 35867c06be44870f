"""iproute2 ss dumps: the jc fixture, old and new users:() forms, -a netids, -o timers, -i info."""

from __future__ import annotations

from tcplens import parse_text
from tcplens.model import State
from tcplens.sources.records import Addr, Socket, Timer
from tcplens.sources.text.ss import duration
from tests.contract import check_snapshot
from tests.sources.text.helpers import load


def test_tulpen_fixture_counts_and_records() -> None:
    snap = load("ubuntu18.04-ss-tulpen.txt")
    assert snap.source == "text:ss"
    assert snap.warnings == []
    assert len(snap.sockets) == 73
    assert sum(s.proto == "udp" for s in snap.sockets) == 15
    assert all(s.state is State.CLOSED for s in snap.sockets if s.proto == "udp")  # UNCONN
    assert all(s.state is State.LISTEN for s in snap.sockets if s.proto == "tcp")
    # no users:() at all on the first row
    assert snap.sockets[0] == Socket(
        "udp", 4, Addr("0.0.0.0", 4789), Addr("0.0.0.0", None), State.CLOSED, 0, 0,
        uid=0, inode=58296,
    )  # fmt: skip
    # ss -e prints uid only when it is not 0 (sock_details_print in ss.c)
    assert sum(s.uid == 0 for s in snap.sockets) == 54
    assert snap.sockets[1] == Socket(
        "udp", 4, Addr("0.0.0.0", 5353), Addr("0.0.0.0", None), State.CLOSED, 0, 0,
        uid=112, inode=25147, pid=1510, fd=12, process="avahi-daemon",
    )  # fmt: skip
    resolver = snap.sockets[6]
    assert resolver.local == Addr("127.0.0.53", 53)
    assert resolver.interface == "lo"
    assert (resolver.uid, resolver.pid, resolver.fd) == (101, 1117, 12)
    assert snap.sockets[7].interface == "virbr0"
    assert snap.sockets[7].local == Addr("0.0.0.0", 67)
    # LISTEN: Send-Q is the backlog
    assert snap.sockets[15] == Socket(
        "tcp", 4, Addr("0.0.0.0", 9187), Addr("0.0.0.0", None), State.LISTEN, 0, 4096,
        uid=128, inode=32721, pid=1671, fd=3, process="prometheus-post",
    )  # fmt: skip
    apache = next(s for s in snap.sockets if s.local.port == 80)
    # seven processes share the listener after fork(): all are kept, the master (lowest
    # pid, which ss lists last) first
    assert [h.pid for h in apache.holders] == [2079, 2153, 2154, 2155, 2156, 2157, 24795]
    assert (apache.process, apache.pid, apache.fd, apache.inode) == (
        "/usr/sbin/apach",
        2079,
        3,
        40480,
    )
    assert apache.send_q == 511


TANP_OLD_AND_NEW = """\
State      Recv-Q Send-Q        Local Address:Port          Peer Address:Port
LISTEN     0      128                       *:22                       *:*      users:(("sshd",1234,3))
ESTAB      0      36             192.168.1.10:22            192.168.1.20:53000  users:(("sshd",pid=4321,fd=3),("sshd",pid=4300,fd=3)) timer:(on,200ms,0)
ESTAB      0      0     [::ffff:127.0.0.1]:8080    [::ffff:127.0.0.1]:40000  users:(("Web Content",pid=77,fd=9)) timer:(keepalive,119min,0)
TIME-WAIT  0      0                 127.0.0.1:46360            127.0.0.1:40697  timer:(timewait,48sec,0)
SYN-SENT   0      1                  10.0.0.1:41000             10.0.0.2:443    timer:(on,1min30sec,2)
FIN-WAIT-1 0      1          [fe80::1]%eth0:22          [fe80::2]%eth0:5000   timer:(persist,2.500ms,1)
LISTEN     0      4096                   [::]:http                  [::]:*
"""  # noqa: E501


def test_tanp_old_and_new_users_timers_zones_services() -> None:
    snap = parse_text(TANP_OLD_AND_NEW)
    check_snapshot(snap, text_source=True)
    assert snap.warnings == []
    assert snap.source == "text:ss"
    assert [s.state for s in snap.sockets] == [
        State.LISTEN,
        State.ESTABLISHED,
        State.ESTABLISHED,
        State.TIME_WAIT,
        State.SYN_SENT,
        State.FIN_WAIT1,
        State.LISTEN,
    ]
    assert all(s.proto == "tcp" for s in snap.sockets)
    old = snap.sockets[0]
    assert (old.local, old.remote, old.pid, old.fd, old.process) == (
        Addr("*", 22),
        Addr("*", None),
        1234,
        3,
        "sshd",
    )
    assert snap.sockets[1].pid == 4300  # the lowest pid of the holders
    assert [(h.pid, h.fd) for h in snap.sockets[1].holders] == [(4300, 3), (4321, 3)]
    assert snap.sockets[1].timer == Timer("on", 0.2, 0)
    spaced = snap.sockets[2]
    assert spaced.process == "Web Content"
    assert spaced.family == 6
    assert spaced.timer == Timer("keepalive", 119 * 60.0, 0)
    assert snap.sockets[3].timer == Timer("timewait", 48.0, 0)
    assert snap.sockets[4].timer == Timer("on", 90.0, 2)
    zoned = snap.sockets[5]
    assert (zoned.local, zoned.interface, zoned.family) == (Addr("fe80::1", 22), "eth0", 6)
    assert zoned.timer == Timer("persist", 2.5, 1)
    assert snap.sockets[6].local == Addr("::", 80, "http")


def test_duration_forms_of_print_ms_timer() -> None:
    assert duration("") == 0.0
    assert duration("200ms") == 0.2
    assert duration("2.500ms") == 2.5
    assert duration("59sec") == 59.0
    assert duration("1min30sec") == 90.0
    assert duration("119min") == 7140.0


ALL_NETIDS = """\
Netid State  Recv-Q Send-Q Local Address:Port  Peer Address:Port Process
nl    UNCONN 0      0              rtnl:kernel            *
u_str ESTAB  0      0                 * 21330            * 21331
u_dgr UNCONN 0      0      /run/systemd/notify 13425      * 0
p_raw UNCONN 0      0                 *:eth0              *
icmp6 UNCONN 0      0                 *:ipv6-icmp         *:*
udp   ESTAB  0      0          10.0.0.5:5353       10.0.0.1:53
tcp   ESTAB  0      0          10.0.0.5:22         10.0.0.9:51234
mptcp LISTEN 0      4096        0.0.0.0:8080        0.0.0.0:*
v_str ESTAB  0      0                 2:1234              3:5678
"""


def test_all_netids_skipped_and_counted_inet_kept() -> None:
    snap = parse_text(ALL_NETIDS)
    assert snap.warnings == []
    assert snap.skipped == {"nl": 1, "u_str": 1, "u_dgr": 1, "p_raw": 1, "icmp6": 1, "mptcp": 1,
                            "v_str": 1}  # fmt: skip
    assert [(s.proto, s.state) for s in snap.sockets] == [
        ("udp", State.ESTABLISHED),
        ("tcp", State.ESTABLISHED),
    ]


INFO = (
    "State  Recv-Q Send-Q Local Address:Port Peer Address:Port Process\n"
    'ESTAB  0      0          127.0.0.1:22      127.0.0.1:51234 users:(("sshd",pid=9,fd=4)) '
    "uid:0 ino:4242 sk:1 cgroup:/ <->\n"
    "\t cubic wscale:7,7 rto:204 rtt:0.05/0.025 ato:40 mss:32768 cwnd:10 ssthresh:7 "
    "bytes_acked:100 bytes_received:200 retrans:0/3 lastsnd:10 lastrcv:20 lastack:30\n"
    "UNCONN 0      0            0.0.0.0:68        0.0.0.0:*\n"
)


def test_info_continuation_line_fills_tcpinfo() -> None:
    snap = parse_text(INFO)
    assert snap.warnings == []
    first, second = snap.sockets
    assert first.info is not None
    assert (first.info.rtt_ms, first.info.rttvar_ms) == (0.05, 0.025)
    assert (first.info.cwnd, first.info.ssthresh, first.info.mss) == (10, 7, 32768)
    assert (first.info.retransmits, first.info.total_retrans) == (0, 3)
    assert (first.info.bytes_acked, first.info.bytes_received) == (100, 200)
    assert (first.info.last_send_ms, first.info.last_recv_ms, first.info.last_ack_recv_ms) == (
        10,
        20,
        30,
    )
    assert (first.uid, first.inode) == (0, 4242)
    assert second.proto == "udp" and second.info is None


def test_uan_prompt_makes_rows_udp() -> None:
    text = (
        "$ ss -uan\n"
        "State  Recv-Q Send-Q Local Address:Port Peer Address:Port\n"
        "ESTAB  0      0           10.0.0.5:5353      10.0.0.1:53\n"
    )
    (sock,) = parse_text(text).sockets
    assert sock.proto == "udp"


def test_bad_ss_rows_warn() -> None:
    text = (
        "State  Recv-Q Send-Q Local Address:Port Peer Address:Port\n"
        "ESTAB  x      0           10.0.0.5:22        10.0.0.1:5000\n"
        "ESTAB  0      0           10.0.0.5           10.0.0.1:5000\n"
        'LISTEN 0      5           10.0.0.5:22        0.0.0.0:*     users:(("x\n'
        "ESTAB  0      0           10.0.0.5:22        10.0.0.1:5000\n"
    )
    snap = parse_text(text)
    assert [w.line for w in snap.warnings] == [2, 3, 4]
    assert len(snap.sockets) == 1


def test_ss_prints_long_ipv6_whole_and_agrees_with_netstat_W() -> None:
    ss_snap = load("linux-ss-tanp-ipv6.txt")
    netstat = load("linux-netstat-tanpW-ipv6.txt")
    assert ss_snap.warnings == []
    assert [(s.local, s.remote, s.state, s.pid, s.process) for s in ss_snap.sockets] == [
        (s.local, s.remote, s.state, s.pid, s.process) for s in netstat.sockets
    ]
    assert [s.fd for s in ss_snap.sockets] == [6, 3, 4, 5]
    assert ss_snap.sockets[1].send_q == 128  # the listener's backlog


def test_process_columns_wrapped_onto_their_own_line() -> None:
    text = (
        "Netid State Recv-Q Send-Q Local Address:Port Peer Address:Port Process\n"
        "tcp   ESTAB 0      0      [2001:db8:aaaa:bbbb:cccc:dddd:eeee:1]:443 "
        "[2001:db8:aaaa:bbbb:cccc:dddd:eeee:2]:50000\n"
        '\t users:(("nginx",pid=42,fd=7)) timer:(keepalive,4min,0) uid:33 ino:999 sk:5 <->\n'
    )
    snap = parse_text(text)
    assert snap.warnings == []
    (sock,) = snap.sockets
    assert (sock.pid, sock.process, sock.fd, sock.uid, sock.inode) == (42, "nginx", 7, 33, 999)
    assert sock.timer == Timer("keepalive", 240.0, 0)


def test_long_options_do_not_confuse_the_protocol_hint() -> None:
    row = "ESTAB  0      0           10.0.0.5:5353      10.0.0.1:53\n"
    assert parse_text("$ ss -nu --extended\n" + row).sockets[0].proto == "udp"
    assert parse_text("ss --udp --numeric\n" + row).sockets[0].proto == "udp"
    assert parse_text("$ ss -tun\n" + row).sockets[0].proto == "tcp"


STATE_FILTERED = """\
$ ss -tnp state established '( dport = :443 )'
Recv-Q Send-Q  Local Address:Port   Peer Address:Port Process
0      0           10.0.0.5:50000  93.184.216.34:443   users:(("curl",pid=77,fd=5))
0      517         10.0.0.5:50002  93.184.216.34:443
"""


def test_single_state_filter_has_no_state_column() -> None:
    snap = parse_text(STATE_FILTERED)
    assert snap.source == "text:ss"
    assert snap.warnings == []
    assert snap.missing == []
    assert [(s.state, s.proto, s.local.port, s.send_q, s.pid) for s in snap.sockets] == [
        (State.ESTABLISHED, "tcp", 50000, 0, 77),
        (State.ESTABLISHED, "tcp", 50002, 517, None),
    ]
    # without the command line nobody can tell which state was filtered
    headless = parse_text(STATE_FILTERED.split("\n", 1)[1])
    assert [s.state for s in headless.sockets] == [State.UNKNOWN, State.UNKNOWN]
    assert headless.missing[0].startswith("state unknown for 2 sockets")


def test_oneline_info_on_the_row_itself() -> None:
    text = (
        "State Recv-Q Send-Q Local Address:Port Peer Address:Port Process\n"
        "ESTAB 0      0      10.0.0.5:22        10.0.0.9:5000     ino:7 sk:1 <-> cubic "
        "rtt:1.5/0.75 cwnd:42 retrans:0/1\n"
    )
    (sock,) = parse_text(text).sockets
    assert sock.info is not None
    assert (sock.info.rtt_ms, sock.info.cwnd, sock.info.total_retrans) == (1.5, 42, 1)
    assert (sock.inode, sock.uid) == (7, 0)
