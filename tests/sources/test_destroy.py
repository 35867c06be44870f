"""SOCK_DESTROY on the wire: one socket named exactly, acknowledgements parsed, ids paired.

The live tests run in a network namespace of their own (root): they close
real sockets and check what the kernel did with ``ss``.
"""

from __future__ import annotations

import errno
import socket
import subprocess

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tcplens.errors import InputError
from tcplens.model import State
from tcplens.sources import netlink
from tcplens.sources.records import Socket
from tests.netns import run_in_private_netns

SID = netlink.SockId(
    family=socket.AF_INET6,
    proto="tcp",
    sport=8080,
    dport=443,
    src=socket.inet_pton(socket.AF_INET6, "2001:db8::1"),
    dst=socket.inet_pton(socket.AF_INET6, "2001:db8::2"),
    ifindex=3,
    cookie=bytes(range(1, 9)),
)


def test_destroy_request_is_an_acknowledged_sock_destroy_naming_the_whole_socket_id() -> None:
    request = netlink.build_destroy(SID, seq=9)
    header = netlink.NLMSGHDR.unpack(request)
    assert header["nlmsg_len"] == len(request) == 16 + 56
    assert header["nlmsg_type"] == netlink.SOCK_DESTROY == 21
    assert header["nlmsg_flags"] == netlink.NLM_F_REQUEST | netlink.NLM_F_ACK
    assert header["nlmsg_seq"] == 9
    body = netlink.INET_DIAG_REQ_V2.unpack(request, 16)
    assert body["sdiag_family"] == socket.AF_INET6
    assert body["sdiag_protocol"] == socket.IPPROTO_TCP
    assert body["idiag_states"] == 0 and body["idiag_ext"] == 0
    assert (body["idiag_sport"], body["idiag_dport"]) == (8080, 443)
    assert request[16 + 8 : 16 + 10] == b"\x1f\x90"  # ports travel in network order
    assert body["idiag_src"] == SID.src and body["idiag_dst"] == SID.dst
    assert body["idiag_if"] == 3
    assert body["idiag_cookie"] == SID.cookie


def _diag_message(**fields: int | bytes) -> bytes:
    body = netlink.INET_DIAG_MSG.pack(**fields)
    header = netlink.NLMSGHDR.pack(nlmsg_len=16 + len(body), nlmsg_type=20)
    return header + body


def _done() -> bytes:
    return netlink.NLMSGHDR.pack(nlmsg_len=20, nlmsg_type=netlink.NLMSG_DONE) + b"\0" * 4


def test_ids_pair_with_the_records_parse_builds_from_the_same_buffer() -> None:
    buffer = (
        _diag_message(
            idiag_family=2,
            idiag_state=8,
            idiag_sport=8080,
            idiag_dport=40000,
            idiag_src=socket.inet_aton("127.0.0.1").ljust(16, b"\0"),
            idiag_dst=socket.inet_aton("127.0.0.2").ljust(16, b"\0"),
            idiag_cookie=b"\xaa" * 8,
        )
        + _diag_message(idiag_family=2, idiag_state=6, idiag_sport=1, idiag_cookie=b"\xbb" * 8)
        + _done()
    )
    records: list[Socket] = []
    assert netlink.parse(buffer, "tcp", records) is True
    ids = netlink.parse_ids(buffer, "tcp")
    assert [(r.state, r.local.port) for r in records] == [
        (State.CLOSE_WAIT, 8080),
        (State.TIME_WAIT, 1),
    ]
    assert [(i.sport, i.dport, i.cookie) for i in ids] == [
        (8080, 40000, b"\xaa" * 8),
        (1, 0, b"\xbb" * 8),
    ]
    assert ids[0].src[:4] == socket.inet_aton("127.0.0.1") and ids[0].family == 2


def _ack(seq: int, error: int) -> bytes:
    return netlink.NLMSGHDR.pack(nlmsg_len=36, nlmsg_type=netlink.NLMSG_ERROR, nlmsg_seq=seq) + (
        error.to_bytes(4, "little", signed=True) + b"\0" * 16
    )


def test_acknowledgements_give_each_sequence_its_errno() -> None:
    buffer = _ack(1, 0) + _ack(2, -errno.ENOENT) + _ack(3, -errno.EPERM)
    assert netlink.parse_acks(buffer) == {1: 0, 2: errno.ENOENT, 3: errno.EPERM}


def test_a_truncated_acknowledgement_is_an_input_error_with_its_offset() -> None:
    buffer = _ack(1, 0) + netlink.NLMSGHDR.pack(nlmsg_len=18, nlmsg_type=netlink.NLMSG_ERROR)
    with pytest.raises(InputError, match="byte 36"):
        netlink.parse_acks(buffer + b"\0\0")


@given(st.binary(max_size=400))
def test_parsing_any_bytes_gives_ids_or_acks_or_a_located_input_error(data: bytes) -> None:
    ids = netlink.parse_ids(data, "tcp")
    assert all(len(i.src) == 16 and len(i.cookie) == 8 for i in ids)
    try:
        acks = netlink.parse_acks(data)
    except InputError as exc:
        assert exc.offset is not None
    else:
        assert all(isinstance(k, int) and isinstance(v, int) for k, v in acks.items())


def _ss() -> str:
    return subprocess.run(["ss", "-tanH"], capture_output=True, text=True, check=True).stdout


@pytest.mark.root
def test_a_stale_cookie_closes_nothing_and_the_right_one_resets_the_peer() -> None:
    def body() -> None:
        with socket.socket() as server:
            server.bind(("127.0.0.1", 0))
            server.listen()
            port = server.getsockname()[1]
            client = socket.create_connection(("127.0.0.1", port))
            accepted, _ = server.accept()
            with client, accepted:
                pairs = netlink.dump_ids([(socket.AF_INET, "tcp")], states=[State.ESTABLISHED])
                (target,) = [sid for sock, sid in pairs if sock.local.port == port]
                # the same 4-tuple with another cookie: a newer socket on the same ports
                wrong = target._replace(cookie=bytes(b ^ 0xFF for b in target.cookie))
                assert netlink.destroy([wrong]) == [errno.ENOENT]
                assert _ss().count("ESTAB") == 2
                assert netlink.destroy([target]) == [0]
                with pytest.raises(ConnectionResetError):
                    client.recv(1)
                with pytest.raises(ConnectionAbortedError):
                    accepted.recv(1)
                assert "ESTAB" not in _ss()
                # asked again, the kernel says it has gone
                assert netlink.destroy([target]) == [errno.ENOENT]

    run_in_private_netns(body, required=True)
