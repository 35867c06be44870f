"""The sock_diag dump as columns, for counting 100k sockets without 100k records.

Why a second reader of the same dump: ``tcplens status`` only needs a few
numbers per socket (state, timer, local port, timer expiry, inode) and then
counts them.  Building a :class:`~tcplens.sources.records.Socket` per socket
costs ~2.5 µs each, more than ``ss -tan`` spends on the whole table.  Here
every field is taken from a receive buffer with one strided slice
(``buf[17::88]`` is the state byte of every message), so the per-socket work
happens in C.

A strided slice needs messages of one length.  A buffer whose messages all
have the same length (full sockets only, TIME_WAIT only) is sliced as it
is; a mixed buffer (TIME_WAIT minisockets interleaved with full sockets, as
the kernel walks its hash table) is first walked once to find the messages
and compacted to their fixed 88-byte heads.  Asking the kernel for
TIME_WAIT separately would make every buffer uniform, but each extra
request walks the whole established hash again, which measured dearer
(~35 ms at 100k sockets) than the compaction (~25 ms).

Message layout: ``nlmsghdr`` (16 bytes) then ``inet_diag_msg`` as declared in
:mod:`tcplens.sources.netlink`; :data:`FIELDS` derives each field's offset from
that one declaration, and :meth:`SocketColumns.field` / :meth:`~SocketColumns.numbers`
hand out any of them by name;
anything other than a ``SOCK_DIAG_BY_FAMILY`` message (``NLMSG_DONE``,
``NLMSG_ERROR``, a malformed length) is handed to :func:`netlink.parse`, so
errors read exactly as they do for the record dump.
"""

from __future__ import annotations

import bisect
import os
import queue
import socket
import struct
import sys
import threading
from array import array
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Final

from tcplens.errors import SourceError
from tcplens.model.states import State
from tcplens.sources import netlink
from tcplens.sources.records import KERNEL_TIMER_KINDS, MINISOCKET_CODES, Proto, Socket

__all__ = ["DEFAULT_KINDS", "FIELDS", "PendingColumns", "SocketColumns", "dump_columns"]

#: Each field of a socket message, named as in ``inet_diag_msg`` without ``idiag_``:
#: (offset from the message start, :mod:`struct` code, network byte order).  Derived
#: from :data:`netlink.INET_DIAG_MSG`, which follows the ``nlmsghdr``.
FIELDS: Final[dict[str, tuple[int, str, bool]]] = {
    f.name.removeprefix("idiag_"): (
        netlink.NLMSGHDR.size + netlink.INET_DIAG_MSG.offsets[f.name],
        f.code,
        f.big_endian,
    )
    for f in netlink.INET_DIAG_MSG.fields
}
_STATE: Final = FIELDS["state"][0]
_TIMER: Final = FIELDS["timer"][0]
_SPORT: Final = FIELDS["sport"][0]
_EXPIRES: Final = FIELDS["expires"][0]
_INODE: Final = FIELDS["inode"][0]
#: ``timer`` code of TIME_WAIT and orphaned FIN_WAIT2 (``KERNEL_TIMER_KINDS``)
TIMEWAIT_TIMER: Final = next(c for c, kind in KERNEL_TIMER_KINDS.items() if kind == "timewait")

#: nlmsghdr + inet_diag_msg: what every socket message starts with
HEAD: Final = netlink.NLMSGHDR.size + netlink.INET_DIAG_MSG.size
_TYPE: Final = netlink.SOCK_DIAG_BY_FAMILY
_LITTLE: Final = sys.byteorder == "little"
_HDR: Final = struct.Struct("=IH")
_LEN: Final = struct.Struct("=I")


@dataclass(slots=True)
class _Block:
    """Sockets stored back to back at a fixed stride (a uniform buffer or a compacted one)."""

    data: bytes
    stride: int
    proto: Proto
    first: int  # index of the block's first socket in the columns


@dataclass(slots=True)
class SocketColumns:
    """One entry per socket, in dump order.

    ``state`` and ``timer`` are the kernel's codes (``KERNEL_CODES``,
    ``KERNEL_TIMER_KINDS``); ``inode`` is 0 for minisockets and orphans;
    ``expires`` is the timer's remaining time in milliseconds.
    """

    state: bytearray = field(default_factory=bytearray)
    timer: bytearray = field(default_factory=bytearray)
    sport: array[int] = field(default_factory=lambda: array("H"))
    expires: array[int] = field(default_factory=lambda: array("I"))
    inode: array[int] = field(default_factory=lambda: array("I"))
    #: (proto, family 4|6, start, stop): where each dumped kind's sockets are
    ranges: list[tuple[Proto, int, int, int]] = field(default_factory=list)
    _blocks: list[_Block] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.state)

    def socket_at(self, index: int) -> Socket:
        """The record of one socket (for the few a summary names), attributes aside."""
        block = self._blocks[bisect.bisect_right([b.first for b in self._blocks], index) - 1]
        offset = (index - block.first) * block.stride
        return head_socket(block.data[offset : offset + HEAD], block.proto)

    def blocks(self) -> list[tuple[bytes, int, int, bool, int]]:
        """The stored messages as (data, stride, count, is TCP, family 4|6), in dump order.

        For the engine's counting passes (``tcplens._engine.socket_state_counts``,
        ``socket_details``), which read the fields of :data:`ENGINE_LAYOUT` from them.
        """
        starts = [start for _proto, _fam, start, _stop in self.ranges]
        out = []
        for index, block in enumerate(self._blocks):
            stop = self._blocks[index + 1].first if index + 1 < len(self._blocks) else len(self)
            # the last range starting at or before the block (an empty one never holds it)
            kind = bisect.bisect_right(starts, block.first) - 1
            family = self.ranges[kind][1] if kind >= 0 else 4
            count = stop - block.first
            out.append((block.data, block.stride, count, block.proto == "tcp", family))
        return out

    def field(self, name: str, width: int | None = None) -> bytes:
        """The field ``name`` (:data:`FIELDS`) of every socket, packed in dump order.

        For the columns a listing needs beyond the counted ones (addresses,
        the peer's port, queues): gathered on demand, C-level like the rest.
        Bytes as on the wire; ``width`` keeps only the first bytes of each
        (4: the IPv4 address in ``src``/``dst``).
        """
        offset, code, _big = FIELDS[name]
        size = struct.calcsize(code)
        return self._gather(offset, size if width is None else min(width, size))

    def numbers(self, name: str) -> array[int]:
        """The integer field ``name`` of every socket as values (network order undone)."""
        offset, code, big = FIELDS[name]
        if code not in ("B", "H", "I"):
            raise ValueError(f"inet_diag_msg field {name!r} is not an integer")
        values = array(code, self._gather(offset, struct.calcsize(code)))
        if big and _LITTLE:
            values.byteswap()
        return values

    def _gather(self, offset: int, width: int) -> bytes:
        out = bytearray()
        for index, block in enumerate(self._blocks):
            stop = self._blocks[index + 1].first if index + 1 < len(self._blocks) else len(self)
            end = (stop - block.first) * block.stride
            out += _fields(block.data, offset, end, block.stride, width)
        return bytes(out)

    def uids(self) -> list[int | None]:
        """Each socket's uid; None for minisockets, whose uid the kernel leaves 0 (unknown)."""
        raw = self.numbers("uid")
        pairs = zip(raw, self.state, strict=True)
        return [None if code in MINISOCKET_CODES else uid for uid, code in pairs]

    def _add(self, data: bytes, stride: int, count: int, proto: Proto) -> None:
        end = stride * count
        self._blocks.append(_Block(data, stride, proto, len(self.state)))
        self.state += data[_STATE:end:stride]
        self.timer += data[_TIMER:end:stride]
        self.sport.frombytes(_fields(data, _SPORT, end, stride, 2, swap=_LITTLE))
        self.expires.frombytes(_fields(data, _EXPIRES, end, stride, 4))
        self.inode.frombytes(_fields(data, _INODE, end, stride, 4))


def head_socket(head: bytes, proto: Proto) -> Socket:
    """The record of a socket message's first :data:`HEAD` bytes (its attributes aside)."""
    message = bytearray(head[:HEAD])
    _LEN.pack_into(message, 0, HEAD)  # the attributes were not kept
    out: list[Socket] = []
    netlink.parse(bytes(message), proto, out, info=False)
    return out[0]


#: the offsets ``tcplens._engine``'s counting passes read, from :data:`FIELDS` (state,
#: timer, sport, dport, dst, expires, inode); the engine takes the ports in network
#: order and ``expires``/``inode`` in the host's, as the one declaration says
ENGINE_LAYOUT: Final = tuple(
    FIELDS[name][0] for name in ("state", "timer", "sport", "dport", "dst", "expires", "inode")
)
assert FIELDS["sport"][2] and FIELDS["dport"][2], "ports are in network order"
assert not FIELDS["expires"][2] and not FIELDS["inode"][2], "timer and inode: host order"


def _fields(
    data: bytes, first: int, end: int, stride: int, width: int, *, swap: bool = False
) -> bytes:
    """The ``width``-byte field at ``first`` of every message, packed together.

    ``swap`` reverses each field's bytes (a big-endian port on a little-endian host).
    """
    count = len(range(first, end, stride))
    out = bytearray(count * width)
    for j in range(width):
        out[j::width] = data[first + (width - 1 - j if swap else j) : end : stride]
    return bytes(out)


def _control(buf: bytes, offset: int, proto: Proto) -> tuple[int | None, bool]:
    """The message at ``offset``, which is not a socket's: (where the walk goes on, done).

    DONE, ERROR, another type or malformed: the record parser says what it
    is, and the walk goes on where it goes on there (an ACK or a message of
    another type is skipped); None: the walk ends.
    """
    length, mtype = _HDR.unpack_from(buf, offset)
    rest: list[Socket] = []
    if length < 16 or offset + length > len(buf) or mtype == _TYPE:
        # malformed (a socket message shorter than HEAD too): parse raises
        return None, netlink.parse(memoryview(buf)[offset:], proto, rest, info=False)
    if netlink.parse(memoryview(buf)[offset : offset + length], proto, rest, info=False):
        return None, True
    return offset + ((length + 3) & ~3), False


def _messages(buf: bytes, proto: Proto) -> tuple[list[int], bool]:
    """Offsets of the socket messages in one receive buffer; True once the dump is done."""
    offsets: list[int] = []
    append = offsets.append
    unpack = _HDR.unpack_from
    n = len(buf)
    offset: int | None = 0
    while offset is not None and offset + 16 <= n:
        length, mtype = unpack(buf, offset)
        if mtype != _TYPE or length < HEAD or offset + length > n:
            offset, done = _control(buf, offset, proto)
            if done:
                return offsets, True
            continue
        append(offset)
        offset += (length + 3) & ~3
    return offsets, False


def _engine_heads() -> Callable[[bytes, int, int, int], tuple[bytes, int, int]] | None:
    """The compiled walk (``tcplens._engine.socket_heads``, rust/src/diag.rs), or None.

    Why: the walk over a mixed buffer is the one step per socket message
    left in this reader (~0.4 µs each in Python).  Held equal to
    :func:`_messages` by ``tests/sources/test_diag_engine.py``; without the
    engine (or with ``TCPLENS_DIAG=python``) the Python walk does the work.
    """
    if os.environ.get("TCPLENS_DIAG", "").strip().lower() == "python":
        return None
    try:
        from tcplens._engine import socket_heads
    except ImportError:  # not built, or built before the function existed
        return None
    return socket_heads


_HEADS: Final = _engine_heads()


def _uniform(buf: bytes) -> tuple[int, int]:
    """(stride, count) when the buffer starts with messages of one length; count 0 if not.

    The check is C-speed: the header bytes of every would-be message are
    strided slices, and ``lstrip`` tells how many in a row match the first.
    """
    n = len(buf)
    if n < HEAD:
        return 0, 0
    length, mtype = _HDR.unpack_from(buf, 0)
    if mtype != _TYPE or length < HEAD or length > n:
        return 0, 0
    stride = (length + 3) & ~3
    limit = n // stride + (n % stride >= length)
    top = limit * stride
    same = min(
        limit - len(buf[i:top:stride].lstrip(bytes((value,))))
        for i, value in enumerate(_HDR.pack(length, mtype))
    )
    return stride, same


def _take(columns: SocketColumns, buf: bytes, proto: Proto) -> bool:
    """Add one receive buffer's sockets; True once the dump is done."""
    stride, count = _uniform(buf)
    rest = len(buf) - count * stride
    if count and (rest < _HDR.size or _HDR.unpack_from(buf, count * stride)[1] != _TYPE):
        columns._add(buf, stride, count, proto)
        buf = buf[count * stride :]  # the control message after them, and what follows it
        if not buf:
            return False
    if _HEADS is not None:
        return _take_heads(columns, buf, proto, _HEADS)
    offsets, done = _messages(buf, proto)
    if offsets:
        heads = itemgetter(*[slice(o, o + HEAD) for o in offsets])(buf)
        data = b"".join(heads) if len(offsets) > 1 else heads
        columns._add(data, HEAD, len(offsets), proto)
    return done


def _take_heads(
    columns: SocketColumns,
    buf: bytes,
    proto: Proto,
    heads: Callable[[bytes, int, int, int], tuple[bytes, int, int]],
) -> bool:
    """:func:`_take`'s walk with the compiled run of socket messages; the rest as in Python."""
    offset: int | None = 0
    parts: list[bytes] = []
    count = 0
    done = False
    while offset is not None and offset + 16 <= len(buf):
        data, taken, offset = heads(buf, offset, HEAD, _TYPE)
        if taken:
            parts.append(data)
            count += taken
        if offset + 16 <= len(buf):
            offset, done = _control(buf, offset, proto)
            if done:
                break
    if count:
        columns._add(b"".join(parts), HEAD, count, proto)
    return done


DEFAULT_KINDS: Final[tuple[tuple[int, Proto], ...]] = (
    (socket.AF_INET, "tcp"),
    (socket.AF_INET, "udp"),
    (socket.AF_INET6, "udp"),
    (socket.AF_INET6, "tcp"),  # last: whether it is needed is known after IPv4 TCP
)


#: from how many TCP sockets (``sockstat``) the dump is split in two concurrent requests
SPLIT_MIN: Final = 20_000
#: the state the split sets apart: usually the largest, and a full socket (the dearer fill)
_SPLIT_STATE: Final = State.ESTABLISHED


#: one dump request: address family, protocol, and the states (or a ready state mask)
_Request = tuple[int, Proto, frozenset[State] | int | None]


def split_states(
    states: frozenset[State] | None, tcp_sockets: int | None, *, spare_core: bool = True
) -> tuple[int, int] | None:
    """The state masks (``netlink.state_mask``) a large TCP dump is split into, or None.

    Why: the kernel fills the dump inside ``recv`` (~1 µs per full socket), so
    two requests on two netlink sockets, received by two threads, fill on two
    cores.  ESTABLISHED goes to one, every other state asked for to the other
    (on the benchmark's mix: 50k sockets each; 0.13 -> 0.09 s at 100k).  Each
    request walks the whole established hash (~0.15 µs a socket), which is
    why small tables are dumped at once.  ``tcp_sockets``: ``TCP.inuse`` plus
    ``TCP.tw`` from ``sockstat``, None when unknown.  ``spare_core``: whether
    another core is free to fill on (:func:`_spare_core`); on a machine whose
    cores are all busy the two fills take turns, and the extra walk and the two
    walks' contention only add CPU time (at 100k sockets with the load average
    at 5-7 on 2 cores: 111 -> 134 ms CPU, and no faster).
    """
    if tcp_sockets is None or tcp_sockets < SPLIT_MIN or not spare_core:
        return None
    apart = netlink.state_mask([_SPLIT_STATE])
    wanted = netlink.state_mask(states)  # None: every code, also ones newer than this table
    if not wanted & apart or not wanted & ~apart:
        return None
    return apart, wanted & ~apart


def _spare_core() -> bool:
    """Whether a core is likely free for the second fill, from the 1-minute load average.

    The load counts runnable tasks, this command (or a benchmark's loop of
    commands) included, so one busy task on a 2-core host reads ~1.0-1.3 and
    leaves the other core idle; at more than half a core beyond that
    (``cores - 0.5``), two fills would mostly take turns.
    """
    try:
        return os.getloadavg()[0] < len(os.sched_getaffinity(0)) - 0.5
    except (OSError, AttributeError):  # no load average, or no affinity call here
        return True


def _tcp_sockets() -> int | None:
    counts = netlink.sockstat()
    if "TCP.inuse" not in counts:
        return None
    return counts["TCP.inuse"] + counts.get("TCP.tw", 0)


class PendingColumns:
    """A columnar dump under way: threads receive, the caller cuts columns.

    Why threads: the kernel fills each batch inside ``recv`` (~0.1 s of the
    ~0.13 s a 100k-socket dump takes), which releases the GIL, so the
    receiving overlaps with cutting the previous batches, and with whatever
    the caller does before :meth:`result` (imports, the descriptor tally).
    A large TCP dump is split by state (:func:`split_states`) into two
    requests on two sockets, each with its own receiving thread, so the
    kernel fills on two cores; the columns then hold ESTABLISHED first and
    the other states after it, each part in the kernel's order.  No dump is
    one instant (the kernel walks the table batch by batch, and a socket
    opened or closed meanwhile may or may not be in it); with two walks, a
    socket that leaves or enters ESTABLISHED while both run can be seen by
    both or by neither, a few sockets on a busy host.
    The receivers do not parse: a dump is over when a non-blocking ``recv``
    finds nothing queued (the kernel queues the next batch before ``recv``
    returns, until NLMSG_DONE), and :meth:`result` checks that DONE was seen.

    ``split``: True or False forces the choice; None decides from ``sockstat``
    and the load average (:func:`split_states`).
    """

    def __init__(
        self,
        kinds: Iterable[tuple[int, Proto]] = DEFAULT_KINDS,
        *,
        states: Iterable[State] | None = None,
        split: bool | None = None,
    ) -> None:
        self.kinds = list(kinds)
        self.states = None if states is None else frozenset(states)
        tcp = any(proto == "tcp" for _family, proto in self.kinds)
        #: the two state masks of a split TCP dump (:func:`split_states`), or None
        self.parts: tuple[int, int] | None = None
        if split is not False and tcp:
            self.parts = split_states(
                self.states,
                SPLIT_MIN if split else _tcp_sockets(),
                spare_core=bool(split) or _spare_core(),
            )
        self._ipv6_tcp = threading.Event()
        self._skip_ipv6_tcp = False
        v4, v6 = (socket.AF_INET, "tcp"), (socket.AF_INET6, "tcp")
        if (
            v4 not in self.kinds
            or v6 not in self.kinds
            or self.kinds.index(v6) < self.kinds.index(v4)
        ):
            self._ipv6_tcp.set()  # nothing to learn from IPv4 first: dump IPv6 TCP as asked
        first = self.states if self.parts is None else self.parts[0]
        self._queues: list[queue.SimpleQueue[bytes | BaseException | None]] = []
        self._threads: list[threading.Thread] = []
        self._start(
            [
                (family, proto, first if proto == "tcp" else self.states)
                for family, proto in self.kinds
            ]
        )
        if self.parts is not None:
            self._start(
                [(family, proto, self.parts[1]) for family, proto in self.kinds if proto == "tcp"]
            )

    def _start(self, requests: list[_Request]) -> None:
        box: queue.SimpleQueue[bytes | BaseException | None] = queue.SimpleQueue()
        thread = threading.Thread(
            target=self._receive, args=(box, requests), name="sock-diag", daemon=True
        )
        self._queues.append(box)
        self._threads.append(thread)
        thread.start()

    def _receive(
        self,
        box: queue.SimpleQueue[bytes | BaseException | None],
        requests: list[_Request],
    ) -> None:
        put = box.put
        try:
            with netlink._open() as nl:
                buf = bytearray(1 << 16)  # a dump batch is at most 32 KiB
                for seq, (family, proto, states) in enumerate(requests, start=1):
                    if proto == "tcp" and family == socket.AF_INET6:
                        self._ipv6_tcp.wait()
                        if self._skip_ipv6_tcp:
                            put(None)  # the end of this request's replies
                            continue
                    nl.send(netlink.build_request(family, proto, seq=seq, states=states))
                    n = nl.recv_into(buf)  # the first batch is queued by send itself
                    while n:
                        put(bytes(buf[:n]))
                        try:
                            n = nl.recv_into(buf, 0, socket.MSG_DONTWAIT)
                        except BlockingIOError:
                            break
                    else:
                        raise SourceError("sock_diag: netlink socket closed mid-dump")
                    put(None)  # the end of this request's replies
        except BaseException as exc:  # handed to the caller, raised there
            put(exc)

    @staticmethod
    def _next(box: queue.SimpleQueue[bytes | BaseException | None]) -> bytes | None:
        item = box.get()
        if isinstance(item, BaseException):
            raise item
        return item

    def _cut(
        self,
        columns: SocketColumns,
        box: queue.SimpleQueue[bytes | BaseException | None],
        proto: Proto,
    ) -> tuple[bool, SourceError | None]:
        """One request's replies into ``columns``: (DONE seen, error reply)."""
        done = False
        error: SourceError | None = None
        while (buf := self._next(box)) is not None:
            if done or error is not None:
                continue  # nothing is expected after DONE or an error reply
            try:
                done = _take(columns, buf, proto)
            except SourceError as exc:
                error = exc
        return done, error

    def result(self, missing: list[str] | None = None) -> SocketColumns:
        """The columns; as :func:`netlink.dump`, a missing UDP module goes to ``missing``."""
        columns = SocketColumns()
        try:
            for family, proto in self.kinds:
                fam = 4 if family == socket.AF_INET else 6
                start = len(columns)
                skipped = (proto, fam) == ("tcp", 6) and self._skip_ipv6_tcp
                boxes = self._queues if proto == "tcp" else self._queues[:1]
                error: SourceError | None = None
                for box in boxes:
                    done, error = self._cut(columns, box, proto)
                    if error is None and not done and not skipped:
                        error = SourceError(f"sock_diag: the {proto} dump ended without NLMSG_DONE")
                    if error is not None:
                        break
                if error is not None:
                    if proto == "tcp" or missing is None:
                        raise error
                    name = proto if fam == 4 else proto + "6"
                    missing.append(f"{name} sockets ({error}; is the {proto}_diag module loaded?)")
                columns.ranges.append((proto, fam, start, len(columns)))
                if (proto, fam) == ("tcp", 4):
                    wanted = self.states is None or State.TIME_WAIT in self.states
                    seen = columns.state.count(6, start) if wanted else None
                    self._skip_ipv6_tcp = netlink.tcp6_absent(seen)
                    self._ipv6_tcp.set()
        finally:
            self._ipv6_tcp.set()  # never leave a receiver waiting
            for thread in self._threads:
                thread.join()
        return columns


def dump_columns(
    kinds: Iterable[tuple[int, Proto]] = DEFAULT_KINDS,
    *,
    missing: list[str] | None = None,
    states: Iterable[State] | None = None,
) -> SocketColumns:
    """Every socket of the given kinds (and ``states``) as :class:`SocketColumns`.

    See :class:`PendingColumns`; the kernel does the state filtering.
    """
    return PendingColumns(kinds, states=states).result(missing)
