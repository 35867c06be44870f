"""sock_diag layer: wire structs match the kernel ABI, parsing is exact, live dumps are complete."""

from __future__ import annotations

import os
import socket
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tcplens.errors import InputError, SourceError
from tcplens.model import State
from tcplens.sources import netlink
from tcplens.sources.records import Addr, Socket
from tests.contract import check_snapshot
from tests.sources.live import known_sockets


def test_struct_sizes_match_the_kernel_headers() -> None:
    # sizeof() of the uapi structs on every Linux ABI (no padding in any of them)
    assert netlink.NLMSGHDR.size == 16
    assert netlink.INET_DIAG_REQ_V2.size == 56
    assert netlink.INET_DIAG_MSG.size == 72
    # tcp_info up to tcpi_bytes_received: 8 u8 + 24 u32 + 4 u64
    assert netlink.TCP_INFO.size == 8 + 24 * 4 + 4 * 8


def test_ports_are_network_order_on_the_wire() -> None:
    raw = netlink.INET_DIAG_MSG.pack(idiag_sport=0x1F90, idiag_dport=443)
    assert raw[4:6] == b"\x1f\x90" and raw[6:8] == b"\x01\xbb"
    back = netlink.INET_DIAG_MSG.unpack(raw)
    assert back["idiag_sport"] == 8080 and back["idiag_dport"] == 443


def test_request_asks_for_every_state_and_info_only_when_asked() -> None:
    req = netlink.build_request(socket.AF_INET6, "tcp", info=True, seq=7)
    hdr = netlink.NLMSGHDR.unpack(req)
    assert hdr["nlmsg_len"] == len(req) == 16 + 56
    assert hdr["nlmsg_type"] == netlink.SOCK_DIAG_BY_FAMILY
    assert hdr["nlmsg_flags"] == netlink.NLM_F_REQUEST | netlink.NLM_F_DUMP
    assert hdr["nlmsg_seq"] == 7
    body = netlink.INET_DIAG_REQ_V2.unpack(req, 16)
    assert body["sdiag_family"] == socket.AF_INET6
    assert body["sdiag_protocol"] == socket.IPPROTO_TCP
    assert body["idiag_ext"] == 1 << (netlink.INET_DIAG_INFO - 1)
    assert body["idiag_states"] == 0xFFFFFFFF
    udp = netlink.INET_DIAG_REQ_V2.unpack(netlink.build_request(2, "udp", info=True), 16)
    assert udp["idiag_ext"] == 0 and udp["sdiag_protocol"] == socket.IPPROTO_UDP


@pytest.mark.parametrize(
    ("byte", "expected"),
    [(0x00, (0, 0)), (0x07, (7, 0)), (0x70, (0, 7)), (0xA7, (7, 10)), (0xFF, (15, 15))],
)
def test_wscale_bitfields_split_low_nibble_first(byte: int, expected: tuple[int, int]) -> None:
    assert netlink.wscale(byte) == expected


def _message(**fields: int | bytes) -> bytes:
    attrs = fields.pop("_attrs", b"")
    assert isinstance(attrs, bytes)
    body = netlink.INET_DIAG_MSG.pack(**fields)
    return (
        netlink.NLMSGHDR.pack(nlmsg_len=16 + len(body) + len(attrs), nlmsg_type=20) + body + attrs
    )


def _done() -> bytes:
    return netlink.NLMSGHDR.pack(nlmsg_len=20, nlmsg_type=netlink.NLMSG_DONE) + b"\0" * 4


def _ip4(text: str) -> bytes:
    return socket.inet_aton(text).ljust(16, b"\0")


def test_parse_full_socket_and_minisockets() -> None:
    buf = (
        _message(
            idiag_family=2,
            idiag_state=8,
            idiag_sport=8080,
            idiag_dport=51000,
            idiag_src=_ip4("127.0.0.2"),
            idiag_dst=_ip4("127.0.0.3"),
            idiag_rqueue=12,
            idiag_wqueue=34,
            idiag_uid=1000,
            idiag_inode=4242,
            idiag_timer=2,
            idiag_expires=7200_000,
        )
        + _message(
            idiag_family=10,
            idiag_state=6,
            idiag_sport=443,
            idiag_dport=40000,
            idiag_src=socket.inet_pton(socket.AF_INET6, "2001:db8::1"),
            idiag_dst=socket.inet_pton(socket.AF_INET6, "::ffff:10.0.0.1"),
            idiag_timer=3,
            idiag_expires=59_500,
        )
        + _message(
            idiag_family=2, idiag_state=12, idiag_timer=1, idiag_retrans=2, idiag_expires=800
        )
        + _done()
    )
    out: list[Socket] = []
    assert netlink.parse(buf, "tcp", out) is True
    cw, tw, synrecv = out
    assert cw.state is State.CLOSE_WAIT
    assert (cw.local, cw.remote) == (Addr("127.0.0.2", 8080), Addr("127.0.0.3", 51000))
    assert (cw.recv_q, cw.send_q, cw.uid, cw.inode) == (12, 34, 1000, 4242)
    assert cw.timer is not None and (cw.timer.kind, cw.timer.remaining) == ("keepalive", 7200.0)
    assert tw.state is State.TIME_WAIT and tw.family == 6
    assert tw.local == Addr("2001:db8::1", 443) and tw.remote.ip == "::ffff:10.0.0.1"
    assert tw.uid is None and tw.inode is None  # minisocket: zeros mean unknown
    assert tw.timer is not None and (tw.timer.kind, tw.timer.remaining) == ("timewait", 59.5)
    assert synrecv.state is State.SYN_RECV and synrecv.uid is None  # NEW_SYN_RECV
    assert synrecv.timer is not None and synrecv.timer.retransmits == 2


def test_parse_stops_without_done_and_continues_across_buffers() -> None:
    out: list[Socket] = []
    assert netlink.parse(_message(idiag_family=2, idiag_state=10), "tcp", out) is False
    assert netlink.parse(_done(), "tcp", out) is True
    assert [s.state for s in out] == [State.LISTEN]


def test_tcp_info_attribute_is_decoded_and_short_payloads_stay_unknown() -> None:
    info = netlink.TCP_INFO.pack(
        tcpi_rtt=1500,
        tcpi_rttvar=250,
        tcpi_snd_cwnd=10,
        tcpi_snd_ssthresh=7,
        tcpi_total_retrans=3,
        tcpi_bytes_acked=100,
        tcpi_bytes_received=200,
        tcpi_last_data_sent=40,
        tcpi_snd_mss=65483,
    )
    attr = struct.pack("=HH", 4 + len(info), netlink.INET_DIAG_INFO) + info
    out: list[Socket] = []
    netlink.parse(_message(idiag_family=2, idiag_state=1, _attrs=attr), "tcp", out)
    got = out[0].info
    assert got is not None
    assert (got.rtt_ms, got.rttvar_ms, got.cwnd, got.ssthresh) == (1.5, 0.25, 10, 7)
    assert (got.total_retrans, got.bytes_acked, got.bytes_received) == (3, 100, 200)
    assert (got.last_send_ms, got.mss) == (40, 65483)
    short = netlink.parse_tcp_info(info[:104])  # an old kernel without the u64 counters
    assert short.cwnd == 10 and short.bytes_acked is None


_INFO_ATTRS = {
    "rtt_ms": ("tcpi_rtt", 1000.0),
    "rttvar_ms": ("tcpi_rttvar", 1000.0),
    "cwnd": ("tcpi_snd_cwnd", None),
    "ssthresh": ("tcpi_snd_ssthresh", None),
    "retransmits": ("tcpi_retransmits", None),
    "total_retrans": ("tcpi_total_retrans", None),
    "bytes_acked": ("tcpi_bytes_acked", None),
    "bytes_received": ("tcpi_bytes_received", None),
    "last_send_ms": ("tcpi_last_data_sent", None),
    "last_recv_ms": ("tcpi_last_data_recv", None),
    "last_ack_recv_ms": ("tcpi_last_ack_recv", None),
    "mss": ("tcpi_snd_mss", None),
}


@given(st.data(), st.integers(min_value=0, max_value=netlink.TCP_INFO.size + 16))
@settings(max_examples=200, deadline=None)
def test_tcp_info_of_any_length_reads_each_field_it_holds(data: st.DataObject, cut: int) -> None:
    """Against a field-at-a-time reference: a field is read iff the payload covers it."""
    widths = {"B": 8, "I": 32, "Q": 64}
    values = {
        f.name: data.draw(st.integers(0, 2 ** widths[f.code] - 1), label=f.name)
        for f in netlink.TCP_INFO.fields
    }
    payload = (netlink.TCP_INFO.pack(**values) + b"\xff" * 16)[:cut]
    got = netlink.parse_tcp_info(payload)
    assert not netlink.TCP_INFO.swapped  # host order throughout: no field needs a swap
    offset = 0
    ends: dict[str, int] = {}
    for f in netlink.TCP_INFO.fields:
        offset += struct.calcsize("=" + f.code)
        ends[f.name] = offset
    for attr, (name, scale) in _INFO_ATTRS.items():
        expected = None
        if ends[name] <= len(payload):
            expected = values[name] / scale if scale else values[name]
        assert getattr(got, attr) == expected, attr


def test_error_reply_is_a_source_error_and_bad_length_an_input_error() -> None:
    err = netlink.NLMSGHDR.pack(nlmsg_len=36, nlmsg_type=netlink.NLMSG_ERROR)
    err += struct.pack("=i", -2) + b"\0" * 16
    with pytest.raises(SourceError, match="No such file or directory"):
        netlink.parse(err, "udp", [])
    done = netlink.NLMSGHDR.pack(nlmsg_len=20, nlmsg_type=netlink.NLMSG_DONE)
    with pytest.raises(SourceError, match="Operation not supported"):
        netlink.parse(done + struct.pack("=i", -95), "tcp", [])
    bad = netlink.NLMSGHDR.pack(nlmsg_len=4000, nlmsg_type=20) + b"\0" * 72
    with pytest.raises(InputError, match="byte 0"):
        netlink.parse(bad, "tcp", [])
    short = netlink.NLMSGHDR.pack(nlmsg_len=40, nlmsg_type=20) + b"\0" * 24
    with pytest.raises(InputError, match="too short"):
        netlink.parse(short, "tcp", [])


def test_live_dump_sees_known_sockets_with_uid_inode_and_timers() -> None:
    with known_sockets() as known:
        snap = netlink.snapshot(info=True)
    check_snapshot(snap)
    seen = known.select(snap.sockets)
    assert set(seen) == set(known.expected)
    for key, expected in known.expected.items():
        sock = seen[key]
        assert sock.state is expected.state, key
        assert sock.inode == expected.inode, key
        if expected.inode is not None:
            assert sock.uid == os.geteuid(), key
    [tw] = [s for s in seen.values() if s.state is State.TIME_WAIT]
    assert tw.timer is not None and tw.timer.kind == "timewait" and 50 < tw.timer.remaining <= 60
    [listener] = [s for k, s in seen.items() if s.state is State.LISTEN and s.family == 4]
    assert listener.send_q == 16  # netlink reports the listen() backlog for LISTEN
    established = [s for s in seen.values() if s.state is State.ESTABLISHED and s.proto == "tcp"]
    assert established and all(s.info is not None and s.info.cwnd for s in established)
    assert all(s.info is None for s in snap.sockets if s.proto == "udp")


def test_dump_of_many_sockets_spans_several_receive_buffers() -> None:
    # 600 sockets need more than one 32 KiB netlink skb
    listener = socket.socket()
    held = [listener]
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1024)
        port = listener.getsockname()[1]
        for _ in range(300):
            c = socket.socket()
            held.append(c)
            c.connect(("127.0.0.1", port))
            held.append(listener.accept()[0])
        snap = netlink.snapshot()
        mine = [
            s
            for s in snap.sockets
            if s.proto == "tcp" and port in (s.local.port, s.remote.port) and s.family == 4
        ]
        assert len(mine) == 601
    finally:
        for s in held:
            s.close()


def test_state_mask_covers_every_kernel_code_of_a_state() -> None:
    assert netlink.state_mask(None) == 0xFFFFFFFF
    assert netlink.state_mask([State.SYN_RECV]) == (1 << 3) | (1 << 12)
    assert netlink.state_mask([State.CLOSE_WAIT, State.LISTEN]) == (1 << 8) | (1 << 10)
    assert netlink.state_mask([]) == 0


def test_kernel_side_filter_returns_only_the_asked_states_protocols_and_families() -> None:
    with known_sockets() as known:
        only = netlink.snapshot(states=[State.CLOSE_WAIT, State.TIME_WAIT])
        udp6 = netlink.snapshot(protos=["udp"], families=[6])
    assert {s.state for s in only.sockets} <= {State.CLOSE_WAIT, State.TIME_WAIT}
    mine = known.select(only.sockets)
    assert sorted(s.state.value for s in mine.values()) == ["CLOSE_WAIT", "TIME_WAIT"]
    assert {(s.proto, s.family) for s in udp6.sockets} == {("udp", 6)}
    assert len(known.select(udp6.sockets)) == 1


def test_a_protocol_the_kernel_cannot_dump_is_noted_not_fatal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Ask the real kernel for a protocol no inet_diag handler serves (as on a
    # kernel without udp_diag): it answers NLMSG_ERROR, the TCP dump survives.
    monkeypatch.setitem(netlink._PROTO_NUMBERS, "udp", 254)
    missing: list[str] = []
    kinds = [(socket.AF_INET, "udp"), (socket.AF_INET, "tcp")]
    with known_sockets() as known:
        got = netlink.dump(kinds, missing=missing)  # type: ignore[arg-type]
    assert missing == [
        "udp sockets (sock_diag dump for udp failed: No such file or directory;"
        " is the udp_diag module loaded?)"
    ]
    assert {s.proto for s in got} == {"tcp"}
    assert any(key[0] == "tcp" for key in known.select(got))
    with pytest.raises(SourceError):
        netlink.dump([(socket.AF_INET, "udp")])


def test_port_filter_bytecode_layout() -> None:
    assert netlink.port_filter() == b""
    code = netlink.port_filter(sports=[80])
    ops = [netlink.INET_DIAG_BC_OP.unpack(code, i) for i in range(0, len(code), 4)]
    # S_GE 80 then S_LE 80; a failed compare jumps past the end (reject)
    assert [(o["code"], o["yes"], o["no"]) for o in ops] == [
        (netlink.BC_S_GE, 8, 20), (0, 0, 80), (netlink.BC_S_LE, 8, 12), (0, 0, 80)
    ]  # fmt: skip
    two = netlink.port_filter(dports=[1, 2])
    jmp = netlink.INET_DIAG_BC_OP.unpack(two, 16)
    assert (jmp["code"], jmp["yes"], jmp["no"]) == (netlink.BC_JMP, 4, 20)  # over the 2nd test
    with pytest.raises(ValueError, match="too many ports"):
        netlink.port_filter(ports=range(1, 5000))


def test_kernel_port_filter_selects_local_peer_and_either_port() -> None:
    with known_sockets() as known:
        port = known.listen_port
        peer = next(
            int(k[2].rsplit(":", 1)[1]) for k in known.expected if k[3].endswith(f":{port}")
        )
        local = {key for key in known.select(netlink.snapshot(sports=[port]).sockets)}
        remote = {key for key in known.select(netlink.snapshot(dports=[port]).sockets)}
        either = {key for key in known.select(netlink.snapshot(ports=[port]).sockets)}
        both = netlink.snapshot(sports=[peer], dports=[port]).sockets
        many = netlink.snapshot(ports=range(1, 5000)).sockets  # falls back to no filter
    assert local and all(k[2].endswith(f":{port}") for k in local)
    assert remote and all(k[3].endswith(f":{port}") for k in remote)
    assert either == local | remote
    assert [(s.local.port, s.remote.port) for s in both] == [(peer, port)]
    assert len(known.select(many)) == len(known.expected)
