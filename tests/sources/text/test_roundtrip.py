"""Round trip: what ``tcplens ls --netstat`` prints (``render_netstat``) parses back equal.

The netstat text carries fewer fields than a Socket; the expected socket is
the generated one reduced to what ``netstat -tuanpW`` prints: no user, inode,
timer or interface, the listener's Send-Q shown as 0 (read back as unknown,
as from real netstat, whose 0 is not a backlog), port 0 shown as ``*``
and the ``pid/program`` column cut to 19 characters.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from tcplens import parse_text
from tcplens.model import State
from tcplens.sources.records import Addr, Snapshot, Socket
from tcplens.views.sockets import render_netstat
from tests.contract import check_snapshot

_NAME_CHARS = st.sampled_from(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:@/ "
)


@st.composite
def sockets(draw: st.DrawFn) -> Socket:
    proto = draw(st.sampled_from(["tcp", "udp"]))
    family = draw(st.sampled_from([4, 6]))
    ip = st.ip_addresses(v=family).map(str) | st.sampled_from(["*", "localhost"])
    if proto == "tcp":
        state = draw(st.sampled_from(list(State)))
    else:
        state = draw(st.sampled_from([State.CLOSED, State.ESTABLISHED]))
    port = st.integers(1, 65535)
    local = Addr(draw(ip), draw(port | st.none()))
    remote_port = None if state is State.LISTEN else draw(port | st.none())
    remote = Addr(draw(ip), remote_port)
    pid = draw(st.none() | st.integers(1, 4_194_304))
    process = None
    if pid is not None:
        process = draw(st.text(_NAME_CHARS, min_size=1, max_size=30).filter(lambda t: t.strip()))
    return Socket(
        proto,  # type: ignore[arg-type]
        family,
        local,
        remote,
        state,
        recv_q=draw(st.integers(0, 2**31)),
        send_q=draw(st.integers(0, 2**31)),
        pid=pid,
        process=process,
        uid=draw(st.none() | st.integers(0, 65535)),
        interface=draw(st.none() | st.sampled_from(["lo", "eth0"])),
    )


def as_printed(sock: Socket) -> Socket:
    """The socket as netstat text can carry it."""
    process = None
    if sock.pid is not None:
        column = f"{sock.pid}/{sock.process}"[:19]
        process = column.partition("/")[2].strip() or None
    return Socket(
        sock.proto,
        sock.family,
        Addr(sock.local.ip, sock.local.port or None),
        Addr(sock.remote.ip, sock.remote.port or None),
        sock.state,
        recv_q=sock.recv_q,
        send_q=None if sock.state is State.LISTEN else sock.send_q,
        pid=sock.pid,
        process=process,
    )


ORDER = {("tcp", 4): 0, ("tcp", 6): 1, ("udp", 4): 2, ("udp", 6): 3}


@settings(max_examples=100, deadline=None)
@given(st.lists(sockets(), max_size=25))
def test_render_netstat_parses_back_equal(socks: list[Socket]) -> None:
    text = render_netstat(Snapshot(socks, source="test"))
    snap = parse_text(text, path="rendered")
    check_snapshot(snap, text_source=True)
    assert snap.warnings == []
    assert snap.source == "text:linux-netstat"
    expected = sorted((as_printed(s) for s in socks), key=lambda s: ORDER[(s.proto, s.family)])
    assert snap.sockets == expected


def test_parsed_fixtures_survive_render_and_parse() -> None:
    from tests.sources.text.helpers import load

    for name in ("ubuntu18.04-ss-tulpen.txt", "ubuntu18.04-netstat-aeep.txt"):
        first = load(name)
        again = parse_text(render_netstat(first))
        assert again.warnings == []
        expected = [as_printed(s) for s in first.sockets]
        expected.sort(key=lambda s: ORDER[(s.proto, s.family)])
        # service names are printed as numbers, so only the port survives
        assert again.sockets == expected
