"""Linux sock_diag over a raw netlink socket: the fast, complete live source.

Theory of operation.  One ``AF_NETLINK``/``NETLINK_SOCK_DIAG`` socket sends an
``inet_diag_req_v2`` dump request per (family, protocol) and reads the replies:
each is an ``nlmsghdr`` followed by an ``inet_diag_msg`` and optional
attributes (``INET_DIAG_INFO`` carries ``struct tcp_info`` when asked).  The
wire structs are declared once below, as named fields with their byte order,
and parsed with :mod:`struct` straight out of the receive buffer.

Why not pyroute2: its diag dump builds a generic attribute tree per message;
measured on a 2-core machine with 100k sockets it took 13 s and 446 MiB, while
this direct parse, records included, takes 0.5-0.85 s idle and about a second
on a loaded machine, under 80 MiB (see ``benchmarks/README.md``).

Kernel references (links are to the uapi headers, stable ABI):

* https://github.com/torvalds/linux/blob/master/include/uapi/linux/inet_diag.h
  (``inet_diag_sockid``, ``inet_diag_req_v2``, ``inet_diag_msg``, ``INET_DIAG_*``)
* https://github.com/torvalds/linux/blob/master/include/uapi/linux/sock_diag.h
  (``SOCK_DIAG_BY_FAMILY``)
* https://github.com/torvalds/linux/blob/master/include/uapi/linux/netlink.h
  (``nlmsghdr``, ``NLMSG_DONE``, ``NLMSG_ERROR``, ``nlmsgerr``)
* https://github.com/torvalds/linux/blob/master/include/uapi/linux/tcp.h
  (``struct tcp_info``)

Minisockets.  TIME_WAIT and NEW_SYN_RECV entries are not full sockets: the
kernel fills ``idiag_uid`` and ``idiag_inode`` with 0 and the queues with 0,
and a TIME_WAIT entry's ``idiag_state`` is its *substate* (an orphaned
FIN_WAIT2 after ``close()`` is a timewait minisocket reporting FIN_WAIT2 with
timer kind 3).  We turn those zeros into ``None`` (unknown) instead of
claiming root owns them.  Orphaned full sockets (FIN_WAIT1, LAST_ACK after
``close()``) also report inode 0.
"""

from __future__ import annotations

import contextlib
import errno
import gc
import os
import socket
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import Final, NamedTuple

from tcplens.errors import InputError, SourceError
from tcplens.model.states import KERNEL_CODES, STATE_BY_CODE, State
from tcplens.sources.records import (
    KERNEL_TIMER_KINDS,
    MINISOCKET_CODES,
    Addr,
    Proto,
    Snapshot,
    Socket,
    TcpInfo,
    Timer,
)

__all__ = [
    "INET_DIAG_MSG",
    "INET_DIAG_REQ_V2",
    "NLMSGHDR",
    "SOCK_DESTROY",
    "TCP_INFO",
    "TIMER_KINDS",
    "SockId",
    "WireStruct",
    "build_destroy",
    "build_request",
    "destroy",
    "dump",
    "dump_ids",
    "ifname",
    "parse",
    "parse_acks",
    "parse_ids",
    "parse_tcp_info",
    "port_filter",
    "snapshot",
    "sockstat",
    "state_mask",
    "tcp6_absent",
]


class Field(NamedTuple):
    """One member of a C struct: name, :mod:`struct` code, network byte order or not."""

    name: str
    code: str
    big_endian: bool = False


@dataclass(frozen=True)
class WireStruct:
    """A C struct declared once; native-order fields with big-endian ones marked.

    ``struct`` cannot mix byte orders in one format, and sock_diag mixes them
    (ports and addresses are network order, everything else host order), so
    the compiled format is native (``=``, no padding) and big-endian integer
    fields are listed in :attr:`swapped` for :meth:`unpack` to fix up.
    Address fields are raw bytes (``16s``), which have no byte order.
    """

    name: str
    fields: tuple[Field, ...]

    # Derived once per struct (cached_property writes the instance dict, which a frozen
    # dataclass allows): the per-message parsers read them for every socket.
    @cached_property
    def format(self) -> str:
        return "=" + "".join(f.code for f in self.fields)

    @cached_property
    def size(self) -> int:
        return struct.calcsize(self.format)

    @cached_property
    def compiled(self) -> struct.Struct:
        return struct.Struct(self.format)

    @cached_property
    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)

    @cached_property
    def swapped(self) -> tuple[int, ...]:
        return tuple(i for i, f in enumerate(self.fields) if f.big_endian)

    @cached_property
    def ends(self) -> dict[str, int]:
        """Each field's end offset: a shorter payload (an older kernel) lacks the fields
        that end past its length."""
        return {
            f.name: struct.calcsize("=" + "".join(g.code for g in self.fields[: i + 1]))
            for i, f in enumerate(self.fields)
        }

    @cached_property
    def offsets(self) -> dict[str, int]:
        """Each field's start offset, for readers that slice many messages at once
        (:mod:`tcplens.sources.columns`)."""
        return {f.name: self.ends[f.name] - struct.calcsize("=" + f.code) for f in self.fields}

    def pack(self, **values: int | bytes) -> bytes:
        """Pack named values (missing ones are zero), converting big-endian fields."""
        out: list[int | bytes] = []
        for f in self.fields:
            value = values.get(f.name, b"" if f.code.endswith("s") else 0)
            if f.big_endian and isinstance(value, int):
                value = _swap16(value) if f.code == "H" else _swap32(value)
            out.append(value)
        return self.compiled.pack(*out)

    def unpack(self, buffer: bytes | memoryview, offset: int = 0) -> dict[str, int | bytes]:
        """Unpack into a name -> value dict (slow path: tests, rare messages)."""
        raw = list(self.compiled.unpack_from(buffer, offset))
        for i in self.swapped:
            raw[i] = _swap16(raw[i]) if self.fields[i].code == "H" else _swap32(raw[i])
        return dict(zip(self.names, raw, strict=True))


def _swap16(value: int) -> int:
    """Host <-> network order for a 16-bit value (only meaningful on little-endian hosts)."""
    if _BIG_ENDIAN_HOST:
        return value
    return ((value & 0xFF) << 8) | ((value >> 8) & 0xFF)


def _swap32(value: int) -> int:
    if _BIG_ENDIAN_HOST:
        return value
    return int.from_bytes(value.to_bytes(4, "little"), "big")


_BIG_ENDIAN_HOST: Final = struct.pack("=H", 1) == b"\x00\x01"

#: ``struct nlmsghdr`` (include/uapi/linux/netlink.h)
NLMSGHDR: Final = WireStruct(
    "nlmsghdr",
    (
        Field("nlmsg_len", "I"),
        Field("nlmsg_type", "H"),
        Field("nlmsg_flags", "H"),
        Field("nlmsg_seq", "I"),
        Field("nlmsg_pid", "I"),
    ),
)

#: ``struct inet_diag_sockid`` members (include/uapi/linux/inet_diag.h); ``idiag_src``
#: and ``idiag_dst`` are ``__be32[4]``: an IPv4 address uses the first four bytes.
_SOCKID: Final = (
    Field("idiag_sport", "H", big_endian=True),
    Field("idiag_dport", "H", big_endian=True),
    Field("idiag_src", "16s"),
    Field("idiag_dst", "16s"),
    Field("idiag_if", "I"),
    Field("idiag_cookie", "8s"),
)

#: ``struct inet_diag_req_v2`` (include/uapi/linux/inet_diag.h)
INET_DIAG_REQ_V2: Final = WireStruct(
    "inet_diag_req_v2",
    (
        Field("sdiag_family", "B"),
        Field("sdiag_protocol", "B"),
        Field("idiag_ext", "B"),
        Field("pad", "B"),
        Field("idiag_states", "I"),
        *_SOCKID,
    ),
)

#: ``struct inet_diag_msg`` (include/uapi/linux/inet_diag.h)
INET_DIAG_MSG: Final = WireStruct(
    "inet_diag_msg",
    (
        Field("idiag_family", "B"),
        Field("idiag_state", "B"),
        Field("idiag_timer", "B"),
        Field("idiag_retrans", "B"),
        *_SOCKID,
        Field("idiag_expires", "I"),
        Field("idiag_rqueue", "I"),
        Field("idiag_wqueue", "I"),
        Field("idiag_uid", "I"),
        Field("idiag_inode", "I"),
    ),
)

#: The leading part of ``struct tcp_info`` (include/uapi/linux/tcp.h) up to
#: ``tcpi_bytes_received``; older kernels send less and we read what is there.
#: ``tcpi_snd_wscale : 4, tcpi_rcv_wscale : 4`` share one byte (see :func:`wscale`).
TCP_INFO: Final = WireStruct(
    "tcp_info",
    (
        Field("tcpi_state", "B"),
        Field("tcpi_ca_state", "B"),
        Field("tcpi_retransmits", "B"),
        Field("tcpi_probes", "B"),
        Field("tcpi_backoff", "B"),
        Field("tcpi_options", "B"),
        Field("tcpi_wscale", "B"),
        Field("tcpi_flags", "B"),
        Field("tcpi_rto", "I"),
        Field("tcpi_ato", "I"),
        Field("tcpi_snd_mss", "I"),
        Field("tcpi_rcv_mss", "I"),
        Field("tcpi_unacked", "I"),
        Field("tcpi_sacked", "I"),
        Field("tcpi_lost", "I"),
        Field("tcpi_retrans", "I"),
        Field("tcpi_fackets", "I"),
        Field("tcpi_last_data_sent", "I"),
        Field("tcpi_last_ack_sent", "I"),
        Field("tcpi_last_data_recv", "I"),
        Field("tcpi_last_ack_recv", "I"),
        Field("tcpi_pmtu", "I"),
        Field("tcpi_rcv_ssthresh", "I"),
        Field("tcpi_rtt", "I"),
        Field("tcpi_rttvar", "I"),
        Field("tcpi_snd_ssthresh", "I"),
        Field("tcpi_snd_cwnd", "I"),
        Field("tcpi_advmss", "I"),
        Field("tcpi_reordering", "I"),
        Field("tcpi_rcv_rtt", "I"),
        Field("tcpi_rcv_space", "I"),
        Field("tcpi_total_retrans", "I"),
        Field("tcpi_pacing_rate", "Q"),
        Field("tcpi_max_pacing_rate", "Q"),
        Field("tcpi_bytes_acked", "Q"),
        Field("tcpi_bytes_received", "Q"),
    ),
)


def wscale(byte: int) -> tuple[int, int]:
    """Split ``tcpi_snd_wscale : 4, tcpi_rcv_wscale : 4`` as GCC lays them out.

    On little-endian hosts the first-declared bitfield takes the low bits.
    Parenthesised on purpose: ``byte & 0xF0 >> 4`` would be ``byte & 0x0F``.
    """
    if _BIG_ENDIAN_HOST:
        return (byte >> 4) & 0x0F, byte & 0x0F
    return byte & 0x0F, (byte >> 4) & 0x0F


# netlink.h / sock_diag.h / inet_diag.h constants
NETLINK_SOCK_DIAG: Final = 4
SOCK_DIAG_BY_FAMILY: Final = 20
NLM_F_REQUEST: Final = 0x01
NLM_F_DUMP: Final = 0x100 | 0x200  # NLM_F_ROOT | NLM_F_MATCH
NLM_F_ACK: Final = 0x04
#: sock_diag.h: close the one socket an ``inet_diag_req_v2`` names (``ss -K``, Linux 4.5)
SOCK_DESTROY: Final = 21
NLMSG_ERROR: Final = 2
NLMSG_DONE: Final = 3
INET_DIAG_INFO: Final = 2
_ALL_STATES: Final = 0xFFFFFFFF

#: ``idiag_timer`` values (net/ipv4/inet_diag.c, ``inet_sk_diag_fill`` and
#: ``inet_twsk_diag_fill``) -> :class:`Timer` kinds as ``ss -o`` names them.
TIMER_KINDS: Final = KERNEL_TIMER_KINDS

_HDR: Final = NLMSGHDR.compiled
_FULL: Final = struct.Struct(NLMSGHDR.format + INET_DIAG_MSG.format[1:])
_ATTR_OFFSET: Final = NLMSGHDR.size + INET_DIAG_MSG.size
_RTA: Final = struct.Struct("=HH")  # struct rtattr { u16 rta_len; u16 rta_type; }
_ERRNO: Final = struct.Struct("=i")  # struct nlmsgerr starts with int error
_RECV_SIZE: Final = 1 << 20

#: state lookup by kernel code, with UNKNOWN for codes newer than our table
_STATES: Final = STATE_BY_CODE
_MINISOCKETS: Final = MINISOCKET_CODES
_PROTO_NUMBERS: Final = {"tcp": socket.IPPROTO_TCP, "udp": socket.IPPROTO_UDP}


#: ``struct inet_diag_bc_op`` (include/uapi/linux/inet_diag.h): one 4-byte
#: instruction of the socket filter the kernel runs before sending a socket
INET_DIAG_BC_OP: Final = WireStruct(
    "inet_diag_bc_op",
    (Field("code", "B"), Field("yes", "B"), Field("no", "H")),
)
INET_DIAG_REQ_BYTECODE: Final = 1
BC_JMP: Final = 1
BC_S_GE: Final = 2
BC_S_LE: Final = 3
BC_D_GE: Final = 4
BC_D_LE: Final = 5

# Theory of the filter bytecode (net/ipv4/inet_diag.c, inet_diag_bc_run and
# inet_diag_bc_audit).  Every instruction is a conditional forward jump by
# ``yes`` or ``no`` bytes; a socket is accepted when execution lands exactly
# on the end of the program and rejected when it jumps past it (to end + 4).
# A port test is two instructions: the compare, then one whose ``no`` holds
# the port.  The audit only accepts ``no`` targets that lie on the chain of
# ``yes`` jumps, so alternatives are laid out as iproute2's ss does:
# ``A or B`` = A, JMP over B, B (A's reject lands on B, its accept on the
# JMP); ``A and B`` = A, B with A's reject exits moved past B.  Equality is
# ``>= p and <= p`` (S_EQ/D_EQ only exist in newer kernels).

_Program = list[list[int]]  # [code, yes, no, is_port_operand]


def _port_equals(local: bool, port: int) -> _Program:
    ge, le = (BC_S_GE, BC_S_LE) if local else (BC_D_GE, BC_D_LE)
    # each compare: yes -> next instruction (8 bytes on), no -> past this test's end + 4
    return [[ge, 8, 20, 0], [0, 0, port, 1], [le, 8, 12, 0], [0, 0, port, 1]]


def _reject_exits(program: _Program, end: int) -> list[list[int]]:
    return [
        op
        for i, op in enumerate(program)
        if not op[3] and op[0] != BC_JMP and i * 4 + op[2] == end + 4
    ]


def _and(a: _Program, b: _Program) -> _Program:
    for op in _reject_exits(a, len(a) * 4):
        op[2] += len(b) * 4
    return a + b


def _or(a: _Program, b: _Program) -> _Program:
    return [*a, [BC_JMP, 4, len(b) * 4 + 4, 0], *b]


#: jumps are 16-bit offsets, and the program must fit one netlink attribute
_MAX_BYTECODE: Final = 0xFFFF - 8


def port_filter(
    sports: Iterable[int] = (), dports: Iterable[int] = (), ports: Iterable[int] = ()
) -> bytes:
    """Bytecode accepting sockets whose local port is in ``sports`` and whose
    peer port is in ``dports`` and which have either port in ``ports`` (empty
    sets do not constrain); ``b""`` when nothing constrains.
    """
    sports, dports, ports = set(sports), set(dports), set(ports)
    tests = len(sports) + len(dports) + 2 * len(ports)
    if tests * 20 > _MAX_BYTECODE:  # 16 bytes per test, 4 per JMP between them
        raise ValueError("too many ports for one kernel filter")
    clauses: list[_Program] = []
    for wanted in (
        [_port_equals(True, p) for p in sorted(sports)],
        [_port_equals(False, p) for p in sorted(dports)],
        [t for p in sorted(ports) for t in (_port_equals(True, p), _port_equals(False, p))],
    ):
        if wanted:
            alternative = wanted[-1]
            for test in reversed(wanted[:-1]):
                alternative = _or(test, alternative)
            clauses.append(alternative)
    if not clauses:
        return b""
    program = clauses[0]
    for clause in clauses[1:]:
        program = _and(program, clause)
    return b"".join(INET_DIAG_BC_OP.pack(code=code, yes=yes, no=no) for code, yes, no, _ in program)


def state_mask(states: Iterable[State] | None) -> int:
    """``idiag_states``: bit ``1 << code`` for every kernel code of the given states.

    ``None`` means every state.  SYN_RECV includes NEW_SYN_RECV (12) and
    CLOSED includes BOUND_INACTIVE (13), as :data:`KERNEL_CODES` maps them.
    """
    if states is None:
        return _ALL_STATES
    wanted = set(states)
    return sum(1 << code for code, state in KERNEL_CODES.items() if state in wanted)


def build_request(
    family: int,
    proto: Proto,
    *,
    info: bool = False,
    seq: int = 1,
    states: Iterable[State] | int | None = None,
    bytecode: bytes = b"",
) -> bytes:
    """The dump request for one (address family, protocol); the kernel filters by state
    (states, or a ready :func:`state_mask`) and, with ``bytecode`` (:func:`port_filter`),
    by port."""
    ext = 1 << (INET_DIAG_INFO - 1) if info and proto == "tcp" else 0
    body = INET_DIAG_REQ_V2.pack(
        sdiag_family=family,
        sdiag_protocol=_PROTO_NUMBERS[proto],
        idiag_ext=ext,
        idiag_states=states if isinstance(states, int) else state_mask(states),
    )
    if bytecode:
        body += _RTA.pack(4 + len(bytecode), INET_DIAG_REQ_BYTECODE) + bytecode
    header = NLMSGHDR.pack(
        nlmsg_len=NLMSGHDR.size + len(body),
        nlmsg_type=SOCK_DIAG_BY_FAMILY,
        nlmsg_flags=NLM_F_REQUEST | NLM_F_DUMP,
        nlmsg_seq=seq,
    )
    return header + body


#: the ``tcp_info`` fields a :class:`TcpInfo` carries, in its constructor's order
_INFO_FIELDS: Final = (
    "tcpi_rtt",
    "tcpi_rttvar",
    "tcpi_snd_cwnd",
    "tcpi_snd_ssthresh",
    "tcpi_retransmits",
    "tcpi_total_retrans",
    "tcpi_bytes_acked",
    "tcpi_bytes_received",
    "tcpi_last_data_sent",
    "tcpi_last_data_recv",
    "tcpi_last_ack_recv",
    "tcpi_snd_mss",
)
#: (index in the unpacked tuple, end offset) of each of those fields
_INFO_PICK: Final = tuple((TCP_INFO.names.index(n), TCP_INFO.ends[n]) for n in _INFO_FIELDS)


def parse_tcp_info(payload: bytes | memoryview) -> TcpInfo:
    """Decode an ``INET_DIAG_INFO`` payload, reading only the fields the kernel sent."""
    size = TCP_INFO.size
    data = bytes(payload[:size])
    got = len(payload)
    raw = TCP_INFO.compiled.unpack(data if len(data) == size else data.ljust(size, b"\0"))
    (
        rtt,
        rttvar,
        cwnd,
        ssthresh,
        retransmits,
        total_retrans,
        bytes_acked,
        bytes_received,
        last_send,
        last_recv,
        last_ack_recv,
        mss,
    ) = [raw[index] if end <= got else None for index, end in _INFO_PICK]
    return TcpInfo(
        rtt_ms=None if rtt is None else rtt / 1000.0,
        rttvar_ms=None if rttvar is None else rttvar / 1000.0,
        cwnd=cwnd,
        ssthresh=ssthresh,
        retransmits=retransmits,
        total_retrans=total_retrans,
        bytes_acked=bytes_acked,
        bytes_received=bytes_received,
        last_send_ms=last_send,
        last_recv_ms=last_recv,
        last_ack_recv_ms=last_ack_recv,
        mss=mss,
    )


def parse(
    buffer: bytes | memoryview, proto: Proto, out: list[Socket], *, info: bool = True
) -> bool:
    """Append the sockets in one receive buffer to ``out``; True once NLMSG_DONE is seen.

    Pure: feed it recorded buffers in tests.  Raises :class:`InputError` for a
    malformed message (with its byte offset) and :class:`SourceError` for an
    ``NLMSG_ERROR`` reply.  ``info=False`` skips the attribute walk (the
    kernel always appends a few attributes; only INET_DIAG_INFO is read).

    This is the hot loop (100k sockets on a busy host), so it trades a little
    clarity for speed: header and ``inet_diag_msg`` are unpacked in one call,
    address strings are cached per family (a host repeats few addresses),
    :class:`Addr` tuples are built with ``tuple.__new__`` and no dict is made
    per message.  The field order is that of :data:`NLMSGHDR` followed by
    :data:`INET_DIAG_MSG`.
    """
    full_unpack = _FULL.unpack_from
    hdr_unpack = _HDR.unpack_from
    states = _STATES
    minisockets = _MINISOCKETS
    ntop = socket.inet_ntop
    cache4, cache6 = _ADDR_CACHE4, _ADDR_CACHE6
    if len(cache4) + len(cache6) > _ADDR_CACHE_LIMIT:
        cache4.clear()
        cache6.clear()
    new = tuple.__new__
    addr_cls = Addr
    sock_cls = Socket
    timer_cls = Timer
    timer_kinds = TIMER_KINDS
    append = out.append
    swap = not _BIG_ENDIAN_HOST
    af_inet, af_inet6 = socket.AF_INET, socket.AF_INET6
    end = len(buffer)
    offset = 0
    while offset + 16 <= end:
        if offset + _ATTR_OFFSET <= end:
            (
                length,
                mtype,
                _flags,
                _seq,
                _pid,
                family,
                code,
                timer,
                retrans,
                sport,
                dport,
                src,
                dst,
                ifindex,
                _cookie,
                expires,
                rqueue,
                wqueue,
                uid,
                inode,
            ) = full_unpack(buffer, offset)
        else:
            length, mtype, _flags, _seq, _pid = hdr_unpack(buffer, offset)
        if length < 16 or offset + length > end:
            raise InputError(f"netlink message length {length} is invalid", offset=offset)
        if mtype != SOCK_DIAG_BY_FAMILY:
            if mtype == NLMSG_DONE:
                # A dump that failed part-way (or could not start: no handler for
                # the protocol) reports its errno in the NLMSG_DONE payload.
                if length >= 20:
                    (errcode,) = _ERRNO.unpack_from(buffer, offset + 16)
                    if errcode < 0:
                        raise SourceError(
                            f"sock_diag dump for {proto} failed: {_strerror(errcode)}"
                        )
                return True
            if mtype == NLMSG_ERROR:
                if length < 20:
                    raise InputError("netlink error message too short", offset=offset)
                (errcode,) = _ERRNO.unpack_from(buffer, offset + 16)
                if errcode != 0:  # 0 is an ACK, not an error
                    raise SourceError(f"sock_diag dump for {proto} failed: {_strerror(errcode)}")
            offset += (length + 3) & ~3
            continue
        if length < _ATTR_OFFSET:
            raise InputError(f"inet_diag_msg too short ({length} bytes)", offset=offset)
        if family == af_inet:
            local_ip = cache4.get(src)
            if local_ip is None:
                local_ip = cache4[src] = ntop(af_inet, src[:4])
            remote_ip = cache4.get(dst)
            if remote_ip is None:
                remote_ip = cache4[dst] = ntop(af_inet, dst[:4])
            fam = 4
        else:
            local_ip = cache6.get(src)
            if local_ip is None:
                local_ip = cache6[src] = ntop(af_inet6, src)
            remote_ip = cache6.get(dst)
            if remote_ip is None:
                remote_ip = cache6[dst] = ntop(af_inet6, dst)
            fam = 6
        if swap:
            sport = ((sport & 0xFF) << 8) | (sport >> 8)
            dport = ((dport & 0xFF) << 8) | (dport >> 8)
        sock = sock_cls(
            proto,
            fam,
            new(addr_cls, (local_ip, sport, None)),
            new(addr_cls, (remote_ip, dport, None)),
            states[code],
            rqueue,
            wqueue,
            None if code in minisockets else uid,
            inode or None,
        )
        if timer:
            sock.timer = timer_cls(timer_kinds.get(timer, "other"), expires / 1000.0, retrans)
        if ifindex:
            sock.interface = ifname(ifindex)
        if info and length > _ATTR_OFFSET:
            _attributes(buffer, offset + _ATTR_OFFSET, offset + length, proto, sock)
        append(sock)
        offset += (length + 3) & ~3
    return False


def _strerror(errcode: int) -> str:
    """The text of the kernel's negative errno; a value no errno has is shown as a number.

    ``os.strerror`` raises OverflowError past a C int (``-errcode`` of INT_MIN).
    """
    try:
        return os.strerror(-errcode)
    except (OverflowError, ValueError):
        return f"error {errcode}"


def _attributes(
    buffer: bytes | memoryview, attr: int, stop: int, proto: Proto, sock: Socket
) -> None:
    """Walk the ``struct rtattr`` list after an ``inet_diag_msg``; keep INET_DIAG_INFO."""
    while attr + 4 <= stop:
        rta_len, rta_type = _RTA.unpack_from(buffer, attr)
        if rta_len < 4:
            raise InputError(f"attribute length {rta_len} is invalid", offset=attr)
        if rta_type == INET_DIAG_INFO and proto == "tcp":
            sock.info = parse_tcp_info(buffer[attr + 4 : attr + rta_len])
        attr += (rta_len + 3) & ~3


#: packed address -> text, per family (an IPv4 address padded to 16 bytes can
#: equal an IPv6 one); bounded so a host with many peers does not grow them forever
_ADDR_CACHE4: dict[bytes, str] = {}
_ADDR_CACHE6: dict[bytes, str] = {}
_ADDR_CACHE_LIMIT: Final = 1 << 16


def ifname(index: int) -> str:
    """An interface's name, or its number when it has gone."""
    try:
        return socket.if_indextoname(index)
    except OSError:
        return str(index)


def _open() -> socket.socket:
    try:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_SOCK_DIAG)
    except (OSError, AttributeError) as exc:
        raise SourceError(f"cannot open a sock_diag netlink socket: {exc}") from exc
    return sock


def sockstat(proc_net: str = "/proc/thread-self/net") -> dict[str, int]:
    """``sockstat`` and ``sockstat6`` as ``{"TCP.inuse": 12, "TCP.tw": 3, "TCP6.inuse": 0, ...}``.

    The kernel's own counters, read in microseconds: cheap enough to decide
    how to dump before dumping.  ``thread-self``, not ``/proc/net`` (``self``):
    a thread may have entered another network namespace than its process's.
    Unreadable files give an empty dict.
    """
    out: dict[str, int] = {}
    for name in ("sockstat", "sockstat6"):
        try:
            with open(f"{proc_net}/{name}", "rb") as fh:
                text = fh.read().decode("ascii", "replace")
        except OSError:
            return {}
        for line in text.splitlines():
            proto, _, rest = line.partition(":")
            words = rest.split()
            for key, value in zip(words[::2], words[1::2], strict=False):
                if value.isdigit():
                    out[f"{proto}.{key}"] = int(value)
    return out


def tcp6_absent(v4_time_wait: int | None, proc_net: str = "/proc/thread-self/net") -> bool:
    """True when this network namespace certainly has no IPv6 TCP socket.

    Dumping an empty family still walks the whole established hash (~40 ms at
    100k sockets).  ``sockstat6`` counts IPv6 full sockets (``TCP6: inuse``);
    request sockets need an IPv6 listener, which is one of those; TIME_WAIT is
    only counted for both families together (``sockstat``: ``tw``), so all of
    it must be IPv4 ones already seen (``v4_time_wait``; ``None`` when the
    dump does not ask for TIME_WAIT at all).  Unreadable files mean "don't
    know".
    """
    counts = sockstat(proc_net)
    if "TCP6.inuse" not in counts or "TCP.tw" not in counts:
        return False
    time_wait = counts["TCP.tw"]
    return counts["TCP6.inuse"] == 0 and v4_time_wait in (None, time_wait)


def dump(
    kinds: Iterable[tuple[int, Proto]] = (
        (socket.AF_INET, "tcp"),
        (socket.AF_INET6, "tcp"),
        (socket.AF_INET, "udp"),
        (socket.AF_INET6, "udp"),
    ),
    *,
    info: bool = False,
    missing: list[str] | None = None,
    states: Iterable[State] | None = None,
    bytecode: bytes = b"",
) -> list[Socket]:
    """Dump sockets of every (family, protocol) over one netlink socket.

    ``states`` asks the kernel to send only sockets in those states (what
    ``ss state close-wait`` does), which is much cheaper than filtering here.

    A protocol the kernel cannot dump (``udp_diag`` module absent: ENOENT)
    is noted in ``missing`` rather than failing the whole snapshot; TCP
    failing is a :class:`SourceError` since nothing useful is left.
    """
    out: list[Socket] = []
    wanted = None if states is None else frozenset(states)
    buf = bytearray(_RECV_SIZE)
    view = memoryview(buf)
    # TIME_WAIT sockets of IPv4 seen, to tell whether IPv6 has any (tcp6_absent)
    v4_time_wait: int | None = -1
    if wanted is not None and State.TIME_WAIT not in wanted:
        v4_time_wait = None
    with _open() as nl, _no_gc():
        for seq, (family, proto) in enumerate(kinds, start=1):
            if proto == "tcp" and family == socket.AF_INET6 and tcp6_absent(v4_time_wait):
                continue
            start = len(out)
            request = build_request(
                family, proto, info=info, seq=seq, states=wanted, bytecode=bytecode
            )
            nl.send(request)
            try:
                for chunk in _receive(nl, buf, view):
                    if parse(chunk, proto, out, info=info):
                        break
            except SourceError as exc:
                if proto == "tcp" or missing is None:
                    raise
                name = proto if family == socket.AF_INET else proto + "6"
                missing.append(f"{name} sockets ({exc}; is the {proto}_diag module loaded?)")
                _drain(nl, buf)
            if proto == "tcp" and family == socket.AF_INET and v4_time_wait is not None:
                # with a port filter the count is partial: -1 never matches sockstat
                tw = State.TIME_WAIT
                seen = sum(1 for sock in out[start:] if sock.state is tw)
                v4_time_wait = -1 if bytecode else seen
    return out


@contextlib.contextmanager
def _no_gc() -> Iterator[None]:
    """Pause the cyclic GC while building records.

    The records hold no reference cycles, but 100k new container objects
    make CPython's generational collector rescan everything allocated so far
    again and again: measured at 100k sockets, the dump took 2.4x longer.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _receive(nl: socket.socket, buf: bytearray, view: memoryview) -> Iterator[memoryview]:
    while True:
        try:
            n = nl.recv_into(buf)
        except InterruptedError:  # pragma: no cover - PEP 475 retries for us
            continue
        if n == 0:
            raise SourceError("sock_diag: netlink socket closed mid-dump")
        yield view[:n]


def _drain(nl: socket.socket, buf: bytearray) -> None:
    """After an error reply nothing else follows for that request; make sure."""
    nl.setblocking(False)
    try:
        while True:
            nl.recv_into(buf)
    except (BlockingIOError, OSError) as exc:
        if isinstance(exc, OSError) and exc.errno not in (errno.EAGAIN, errno.EWOULDBLOCK):
            raise SourceError(f"sock_diag: {exc}") from exc
    finally:
        nl.setblocking(True)


def snapshot(
    *,
    info: bool = False,
    states: Iterable[State] | None = None,
    protos: Iterable[Proto] | None = None,
    families: Iterable[int] | None = None,
    sports: Iterable[int] | None = None,
    dports: Iterable[int] | None = None,
    ports: Iterable[int] | None = None,
) -> Snapshot:
    """Every TCP and UDP socket, IPv4 and IPv6, in every state, unless narrowed.

    ``states``, ``protos`` (``tcp``/``udp``), ``families`` (4/6) and the
    ports (local, peer, either) narrow the dump in the kernel; ``None`` means
    all.
    """
    try:
        bytecode = port_filter(sports or (), dports or (), ports or ())
    except ValueError:  # more ports than one filter holds: the caller filters them
        bytecode = b""
    missing: list[str] = []
    both: tuple[Proto, ...] = ("tcp", "udp")
    kinds = [
        (int(af), proto)
        for proto in both
        for fam, af in ((4, socket.AF_INET), (6, socket.AF_INET6))
        if (protos is None or proto in set(protos)) and (families is None or fam in set(families))
    ]
    sockets = dump(kinds, info=info, missing=missing, states=states, bytecode=bytecode)
    return Snapshot(sockets, source="netlink", host=socket.gethostname(), missing=missing)


# --------------------------------------------------------------------------- SOCK_DESTROY
#
# Theory of operation (what ``ss -K`` does, net/core/sock_diag.c and
# net/ipv4/inet_diag.c).  A ``SOCK_DESTROY`` message carries the same
# ``inet_diag_req_v2`` as a dump request, but names one socket exactly: family,
# protocol and the whole ``inet_diag_sockid`` as the dump reported it (ports,
# addresses, interface and the cookie).  The kernel looks the 4-tuple up and
# answers ENOENT when the socket it finds has another cookie (measured on 6.18),
# so a socket that closed and was replaced by a new one on the same ports is
# never hit.
# The answer is an ``NLMSG_ERROR`` acknowledgement (``NLM_F_ACK``) whose error
# is 0 or a negative errno: EPERM without CAP_NET_ADMIN in the socket's network
# namespace, EOPNOTSUPP from a kernel built without CONFIG_INET_DIAG_DESTROY (or,
# for a TIME_WAIT entry, from one whose tcp_abort() does not handle them yet),
# ENOENT when the socket has gone meanwhile.  TCP answers by tcp_abort(): an
# RST to the peer when the state calls for one, ECONNABORTED to the owner.


class SockId(NamedTuple):
    """One dumped socket's ``inet_diag_sockid``, raw, with its family and protocol.

    Kept as the kernel sent it (addresses as 16 bytes, the cookie as 8) so a
    destroy request names exactly the socket that was listed.
    """

    family: int
    proto: Proto
    sport: int
    dport: int
    src: bytes
    dst: bytes
    ifindex: int
    cookie: bytes


def parse_ids(buffer: bytes | memoryview, proto: Proto) -> list[SockId]:
    """The :class:`SockId` of every ``inet_diag_msg`` in a receive buffer, in order.

    Runs beside :func:`parse` over the same buffer (which reports malformed
    messages), so entry ``i`` here belongs to the ``i``-th socket it appended.
    """
    out: list[SockId] = []
    end = len(buffer)
    offset = 0
    while offset + NLMSGHDR.size <= end:
        length, mtype, _flags, _seq, _pid = _HDR.unpack_from(buffer, offset)
        if length < NLMSGHDR.size or offset + length > end or mtype == NLMSG_DONE:
            break
        if mtype == SOCK_DIAG_BY_FAMILY and length >= _ATTR_OFFSET:
            msg = INET_DIAG_MSG.unpack(buffer, offset + NLMSGHDR.size)
            out.append(
                SockId(
                    int(msg["idiag_family"]),
                    proto,
                    int(msg["idiag_sport"]),
                    int(msg["idiag_dport"]),
                    bytes(msg["idiag_src"]),
                    bytes(msg["idiag_dst"]),
                    int(msg["idiag_if"]),
                    bytes(msg["idiag_cookie"]),
                )
            )
        offset += (length + 3) & ~3
    return out


def build_destroy(sock_id: SockId, *, seq: int = 1) -> bytes:
    """The ``SOCK_DESTROY`` request for one socket, acknowledged with its errno."""
    body = INET_DIAG_REQ_V2.pack(
        sdiag_family=sock_id.family,
        sdiag_protocol=_PROTO_NUMBERS[sock_id.proto],
        idiag_states=0,
        idiag_sport=sock_id.sport,
        idiag_dport=sock_id.dport,
        idiag_src=sock_id.src,
        idiag_dst=sock_id.dst,
        idiag_if=sock_id.ifindex,
        idiag_cookie=sock_id.cookie,
    )
    header = NLMSGHDR.pack(
        nlmsg_len=NLMSGHDR.size + len(body),
        nlmsg_type=SOCK_DESTROY,
        nlmsg_flags=NLM_F_REQUEST | NLM_F_ACK,
        nlmsg_seq=seq,
    )
    return header + body


def parse_acks(buffer: bytes | memoryview) -> dict[int, int]:
    """``NLMSG_ERROR`` acknowledgements in a receive buffer: sequence -> errno (0: done)."""
    acks: dict[int, int] = {}
    end = len(buffer)
    offset = 0
    while offset + NLMSGHDR.size <= end:
        length, mtype, _flags, seq, _pid = _HDR.unpack_from(buffer, offset)
        if length < NLMSGHDR.size or offset + length > end:
            raise InputError(f"netlink message length {length} is invalid", offset=offset)
        if mtype == NLMSG_ERROR:
            if length < NLMSGHDR.size + _ERRNO.size:
                raise InputError("netlink acknowledgement too short", offset=offset)
            (errcode,) = _ERRNO.unpack_from(buffer, offset + NLMSGHDR.size)
            acks[seq] = -errcode
        offset += (length + 3) & ~3
    return acks


def destroy(ids: Iterable[SockId]) -> list[int]:
    """Ask the kernel to close each socket; its answer per socket, 0 or an errno.

    One request at a time, each waiting for its acknowledgement, so a caller
    reads the answers in order and can stop early (EPERM answers every one).
    """
    answers: list[int] = []
    buf = bytearray(1 << 16)
    view = memoryview(buf)
    with _open() as nl:
        for seq, sock_id in enumerate(ids, start=1):
            nl.send(build_destroy(sock_id, seq=seq))
            answer: int | None = None
            while answer is None:
                n = nl.recv_into(buf)
                if n == 0:
                    raise SourceError("sock_diag: netlink socket closed before acknowledging")
                answer = parse_acks(view[:n]).get(seq)
            answers.append(answer)
    return answers


def dump_ids(
    kinds: Iterable[tuple[int, Proto]],
    *,
    states: Iterable[State] | None = None,
    bytecode: bytes = b"",
) -> list[tuple[Socket, SockId]]:
    """Like :func:`dump`, each socket paired with the id a destroy request needs."""
    out: list[Socket] = []
    ids: list[SockId] = []
    wanted = None if states is None else frozenset(states)
    buf = bytearray(_RECV_SIZE)
    view = memoryview(buf)
    with _open() as nl:
        for seq, (family, proto) in enumerate(kinds, start=1):
            nl.send(build_request(family, proto, seq=seq, states=wanted, bytecode=bytecode))
            for chunk in _receive(nl, buf, view):
                done = parse(chunk, proto, out, info=False)
                ids.extend(parse_ids(chunk, proto))
                if done:
                    break
    if len(ids) != len(out):  # pragma: no cover - both walk the same messages
        raise SourceError("sock_diag: socket ids and records disagree")
    return list(zip(out, ids, strict=True))
