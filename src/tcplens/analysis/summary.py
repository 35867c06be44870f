"""This machine at a glance: the numbers behind ``tcplens status``.

Pure: takes a :class:`Snapshot`, returns a :class:`Summary`; views render it
and the doctor may add findings next to it.  Ages of TIME_WAIT and orphaned
FIN_WAIT2 sockets come from their timers: Linux keeps TIME_WAIT for a fixed
``TCP_TIMEWAIT_LEN`` (60 s, ``include/net/tcp.h``) and an orphaned FIN_WAIT2
for ``net.ipv4.tcp_fin_timeout`` (default 60 s), so ``age = lifetime -
remaining``.  A FIN_WAIT2 whose application still holds the socket has no
timer and can stay forever; those are counted separately.

Where a busy state's sockets are: by local port, except in the states only
the side that closed first passes through (:data:`ACTIVE_CLOSE`).  A client
that closes its connections leaves them in TIME_WAIT on thousands of
ephemeral ports, all towards one peer: those are grouped by peer
``ip:port``, and by local port only when that port is a listener's (the
server closed first), as the doctor groups them.

Bounded label sets (``fold``): a metric system wants every port and process
name as a label value, but those are user-controlled and unbounded.  With a
:class:`Fold`, the summary also counts sockets per (port, state) and per
(process, proto, state) with only the top-K ports and processes named and
the rest summed under :data:`OTHER` (:class:`Folded`); the exporter renders
that.  A socket belongs to a port when a TCP listener has that local port:
the server side of accepted connections, which is what users mean by
"connections on port 8080"; outgoing connections (ephemeral local ports)
only show up in the per-state and per-process counts.
"""

from __future__ import annotations

import heapq
import os
import socket
from array import array
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from itertools import compress, repeat
from typing import TYPE_CHECKING, Any, Final, NamedTuple, TypeVar

from tcplens.model.states import STATE_BY_CODE, State
from tcplens.sources.records import Addr, Snapshot, Socket

if TYPE_CHECKING:
    from tcplens.sources.columns import SocketColumns
    from tcplens.sources.processes import Tally
    from tcplens.sources.select import ColumnListing

__all__ = [
    "ACTIVE_CLOSE",
    "NO_PROCESS",
    "OTHER",
    "TIME_WAIT_LEN",
    "UNKNOWN_PROCESS",
    "Fold",
    "Folded",
    "Oldest",
    "StateDetail",
    "Summary",
    "summarize",
]

#: ``TCP_TIMEWAIT_LEN`` in include/net/tcp.h: 60 seconds, not tunable
TIME_WAIT_LEN: Final = 60.0
#: the states of the side that closed first: grouped by peer, not by (ephemeral) local port
ACTIVE_CLOSE: Final = frozenset({State.FIN_WAIT1, State.FIN_WAIT2, State.CLOSING, State.TIME_WAIT})


@dataclass(slots=True)
class StateDetail:
    """Where the sockets of one busy state are: ports, peers and processes."""

    state: State
    count: int
    #: for :data:`ACTIVE_CLOSE` states only the sockets on a listening port
    top_local_ports: list[tuple[int, int]] = field(default_factory=list)
    #: (process name, "?" when unknown or ORPHAN when none holds it, pid or None, count)
    top_processes: list[tuple[str, int | None, int]] = field(default_factory=list)
    #: the process counts are estimates from a sample of file descriptors
    estimated: bool = False
    #: for :data:`ACTIVE_CLOSE` states: peers (``ip:port``) of the sockets not on a listening port
    top_peers: list[tuple[str, int]] = field(default_factory=list)


@dataclass(slots=True)
class Oldest:
    """The socket that has spent longest in a timed state, and how long."""

    state: State
    age: float
    remaining: float
    lifetime: float
    socket: Socket
    #: sockets in this state without a timer (FIN_WAIT2 still held by its application)
    untimed: int = 0


@dataclass(frozen=True, slots=True)
class Fold:
    """How many ports and processes keep their own label (:class:`Folded`); <= 0: none."""

    ports: int = 10
    processes: int = 10


#: label value that collects every port or process outside the top K
OTHER: Final = "other"
#: process label for sockets whose owner could not be identified (not root, vanished)
UNKNOWN_PROCESS: Final = "unknown"
#: process label for sockets no process owns: TIME_WAIT, and sockets orphaned by close()
NO_PROCESS: Final = "none"
#: live sources that report a socket's inode; there, no inode means no owner at all
_INODE_SOURCES: Final = frozenset({"netlink", "procfs"})
_FAMILY_LABEL: Final = {4: "ipv4", 6: "ipv6"}


@dataclass(slots=True)
class Folded:
    """A snapshot's counts with ports and processes folded to bounded label values."""

    #: (proto, "ipv4"/"ipv6", state)
    sockets: Counter[tuple[str, str, State]] = field(default_factory=Counter)
    #: (listening port or OTHER, state)
    port_sockets: Counter[tuple[str, State]] = field(default_factory=Counter)
    port_accept_queue: Counter[str] = field(default_factory=Counter)
    #: no sample for a label with any listener whose backlog the source does not know
    port_backlog: Counter[str] = field(default_factory=Counter)
    #: (port label, "receive"/"send") -> bytes
    port_queue_bytes: Counter[tuple[str, str]] = field(default_factory=Counter)
    #: (process, proto, state): UDP's CLOSED (unconnected) is not TCP's
    process_sockets: Counter[tuple[str, str, State]] = field(default_factory=Counter)
    #: (proto, "receive"/"send") -> bytes, listeners left out
    queue_bytes: Counter[tuple[str, str]] = field(default_factory=Counter)
    #: sockets per proto whose owner could not be identified
    unattributed: Counter[str] = field(default_factory=Counter)
    source: str = ""
    taken_at: float = 0.0


@dataclass(slots=True)
class Summary:
    source: str
    host: str
    taken_at: float
    total: int
    by_proto: dict[str, int]
    by_family: dict[int, int]
    #: TCP sockets per state, in State order, zero counts omitted
    tcp_states: dict[State, int]
    udp_states: dict[State, int]
    busy: list[StateDetail]
    oldest: dict[State, Oldest]
    untimed: dict[State, int]
    missing: list[str]
    #: the bounded label sets, when :func:`summarize` was given a :class:`Fold`
    folded: Folded | None = None


#: ``top_processes`` name for sockets no process holds any more (TIME_WAIT, and
#: orphans the kernel finishes on a timewait timer after close()).
ORPHAN: Final = "(none)"


def _top_ports(ports: Mapping[int, int], top: int) -> list[tuple[int, int]]:
    """Most sockets first; ties by port number, so the order never depends on dump order.

    C-level selection: a TIME_WAIT crowd has tens of thousands of distinct ports.
    """
    if top <= 0:
        return []
    if len(ports) > top:
        kth = heapq.nlargest(top, ports.values())[-1]
        keys, values = ports.keys(), ports.values()
        above = list(compress(keys, map(kth.__lt__, values)))
        level = heapq.nsmallest(top - len(above), compress(keys, map(kth.__eq__, values)))
        ports = {port: ports[port] for port in above + level}
    return sorted(ports.items(), key=lambda item: (-item[1], item[0]))[:top]


_Key = TypeVar("_Key")


def _top_peers(
    counts: Mapping[_Key, int], text: Callable[[_Key], str], top: int
) -> list[tuple[str, int]]:
    """Most sockets first, ties by the peer's text; only candidates are turned into text."""
    if not counts or top <= 0:
        return []
    kth = heapq.nlargest(top, counts.values())[-1]
    named: Counter[str] = Counter()
    for key, n in counts.items():
        if n >= kth:
            named[text(key)] += n
    return sorted(named.items(), key=lambda item: (-item[1], item[0]))[:top]


def _top_processes(
    procs: Iterable[tuple[str, int | None, int]], top: int
) -> list[tuple[str, int | None, int]]:
    """Most sockets first; ties by pid (none last), then name."""
    return sorted(procs, key=lambda p: (-p[2], p[1] is None, p[1] or 0, p[0]))[:top]


def _no_process(sock: Socket) -> str:
    if sock.state is State.TIME_WAIT or (sock.timer is not None and sock.timer.kind == "timewait"):
        return ORPHAN
    return "?"


def _remaining(sock: Socket) -> float:
    return sock.timer.remaining if sock.timer is not None else float("inf")


def summarize(
    listing: Snapshot | ColumnListing,
    *,
    busy_states: int = 3,
    top: int = 3,
    fin_timeout: float = 60.0,
    fold: Fold | None = None,
) -> Summary:
    """Count sockets and describe the ``busy_states`` most populated TCP states.

    The ``top`` ports, peers and processes of each busy state are named.
    LISTEN is never "busy" (its count is the number of services, not load).
    ``fin_timeout``: ``net.ipv4.tcp_fin_timeout``, an orphaned FIN_WAIT2's
    lifetime.

    ``listing`` is a snapshot's records or a columnar dump
    (:func:`tcplens.sources.select.open_listing`); both give the same
    :class:`Summary` (tests hold them together).  From columns, the
    processes come from the listing's ``tally``: when it sampled
    descriptors, the busy states' process counts are marked ``estimated``.
    ``fold``: also count :class:`Folded` label sets (records only: the
    exporter's listing; columns raise :class:`ValueError`).
    """
    if isinstance(listing, Snapshot):
        summary = _from_records(listing, busy_states=busy_states, top=top, fin_timeout=fin_timeout)
        if fold is not None:
            summary.folded = _fold(listing, fold)
        return summary
    if fold is not None:
        raise ValueError("folded label sets are counted from records, not columns")
    return _from_columns(
        listing.columns,
        source=listing.source,
        host=listing.host,
        taken_at=listing.taken_at,
        missing=listing.missing,
        owners=listing.tally,
        busy_states=busy_states,
        top=top,
        fin_timeout=fin_timeout,
    )


def _top_labels(counts: Counter[Any], k: int) -> set[Any]:
    """The K keys with most sockets; ties broken by the key's text so the choice is stable.

    Why text, not :func:`_top_ports`'s number order: the label is text, and
    the exporter's series have always been chosen this way.
    """
    if k <= 0:
        return set()
    ranked = sorted(counts.items(), key=lambda item: (-item[1], str(item[0])))
    return {key for key, _ in ranked[:k]}


def _fold(snapshot: Snapshot, fold: Fold) -> Folded:
    """Reduce a snapshot to bounded label sets, in one pass over the sockets plus a fold."""
    folded = Folded(source=snapshot.source, taken_at=snapshot.taken_at)
    sockets = snapshot.sockets
    listening: set[int] = {
        s.local.port
        for s in sockets
        if s.proto == "tcp" and s.state is State.LISTEN and s.local.port is not None
    }
    by_port: Counter[tuple[int, State]] = Counter()
    accept_queue: Counter[int] = Counter()
    backlog: Counter[int] = Counter()
    #: ports with a listener whose backlog the source does not know (/proc/net)
    unknown_backlog: set[int] = set()
    port_qbytes: Counter[tuple[int, str]] = Counter()
    # C-level Counters over flat lists, as in _from_records: a Python step
    # per socket with several increments costs ~0.2 s at 100k sockets.
    protos = [s.proto for s in sockets]
    states = [s.state for s in sockets]
    families = [_FAMILY_LABEL.get(f) or str(f) for f in [s.family for s in sockets]]
    folded.sockets.update(zip(protos, families, states, strict=True))
    listen = State.LISTEN
    for which, values in (
        ("receive", [(s.proto, s.recv_q) for s in sockets if s.recv_q and s.state is not listen]),
        ("send", [(s.proto, s.send_q) for s in sockets if s.send_q and s.state is not listen]),
    ):
        for proto, n in values:
            folded.queue_bytes[(proto, which)] += n
    inodes_known = snapshot.source in _INODE_SOURCES
    # the process label: "none" (nobody owns it) is kept apart from "unknown" (cannot see)
    names = [
        s.process
        or (
            NO_PROCESS
            if s.state is State.TIME_WAIT or (inodes_known and s.inode is None)
            else UNKNOWN_PROCESS
        )
        for s in sockets
    ]
    folded.unattributed.update(
        [proto for proto, name in zip(protos, names, strict=True) if name is UNKNOWN_PROCESS]
    )
    by_process = Counter(zip(names, protos, states, strict=True))
    process_totals = Counter(names)
    on_port = [s for s in sockets if s.proto == "tcp" and s.local.port in listening]
    by_port.update([(s.local.port, s.state) for s in on_port])  # type: ignore[misc]
    port_totals: Counter[int] = Counter([s.local.port for s in on_port])  # type: ignore[misc]
    for sock in on_port:
        port = sock.local.port
        assert port is not None  # it is in ``listening``
        if sock.state is listen:
            accept_queue[port] += sock.recv_q or 0
            if sock.send_q is None:
                unknown_backlog.add(port)
            else:
                backlog[port] += sock.send_q
        else:
            port_qbytes[(port, "receive")] += sock.recv_q or 0
            port_qbytes[(port, "send")] += sock.send_q or 0

    kept_ports = _top_labels(port_totals, fold.ports)

    def port_label(port: int) -> str:
        return str(port) if port in kept_ports else OTHER

    for (port, state), n in by_port.items():
        folded.port_sockets[(port_label(port), state)] += n
    for port, n in accept_queue.items():
        folded.port_accept_queue[port_label(port)] += n
    # A sum that misses a listener's backlog would be too small and the fill
    # ratio too high: a label with any unknown backlog gets no sample at all.
    unknown_labels = {port_label(port) for port in unknown_backlog}
    for port, n in backlog.items():
        if port_label(port) not in unknown_labels:
            folded.port_backlog[port_label(port)] += n
    for (port, queue), n in port_qbytes.items():
        folded.port_queue_bytes[(port_label(port), queue)] += n

    special = (UNKNOWN_PROCESS, NO_PROCESS)
    known = Counter({k: v for k, v in process_totals.items() if k not in special})
    kept_processes = _top_labels(known, fold.processes)
    for (name, proto, state), n in by_process.items():
        label = name if name in special or name in kept_processes else OTHER
        folded.process_sockets[(label, proto, state)] += n
    return folded


def _from_records(snapshot: Snapshot, *, busy_states: int, top: int, fin_timeout: float) -> Summary:
    sockets = snapshot.sockets
    # C-level Counters over flat lists: a Python loop with three increments per
    # socket (or one Counter over tuples) costs 0.1-0.3 s at 100k sockets.
    tcp_sockets = [sock for sock in sockets if sock.proto == "tcp"]
    udp_sockets = [sock for sock in sockets if sock.proto != "tcp"]
    by_proto = {"tcp": len(tcp_sockets), "udp": len(udp_sockets)}
    by_family = Counter([sock.family for sock in sockets])
    tcp = Counter([sock.state for sock in tcp_sockets])
    udp = Counter([sock.state for sock in udp_sockets])
    order = list(State)
    tcp_states = {s: tcp[s] for s in order if tcp[s]}
    udp_states = {s: udp[s] for s in order if udp[s]}

    candidates = [(n, s) for s, n in tcp_states.items() if s is not State.LISTEN]
    candidates.sort(key=lambda item: (-item[0], order.index(item[1])))
    listening = {
        sock.local.port
        for sock in tcp_sockets
        if sock.state is State.LISTEN and sock.local.port is not None
    }
    busy: list[StateDetail] = []
    for n, state in candidates[:busy_states]:
        rows = [sock for sock in tcp_sockets if sock.state is state]
        peers: Counter[Addr] = Counter()
        local = [sock.local.port for sock in rows]
        if state in ACTIVE_CLOSE:
            peers = Counter([sock.remote for sock in rows if sock.local.port not in listening])
            ports = Counter([port for port in local if port is not None and port in listening])
        else:
            ports = Counter([port for port in local if port is not None])
        procs = Counter([(sock.process or _no_process(sock), sock.pid) for sock in rows])
        busy.append(
            StateDetail(
                state,
                n,
                _top_ports(ports, top),
                _top_processes(((name, pid, c) for (name, pid), c in procs.items()), top),
                top_peers=_top_peers(peers, str, top),
            )
        )
    oldest: dict[State, Oldest] = {}
    untimed: dict[State, int] = {}
    # Live kernel sources report every timer (None means the kernel has none
    # running); saved text only has timers when the dump was taken with -o / -e;
    # psutil has none at all, so there a missing timer means nothing.
    if snapshot.timers is not None:
        knows_timers = snapshot.timers
    else:
        knows_timers = not snapshot.source.startswith("text:") or any(
            sock.timer is not None for sock in tcp_sockets
        )
    for state, life in ((State.TIME_WAIT, TIME_WAIT_LEN), (State.FIN_WAIT2, fin_timeout)):
        rows = [sock for sock in tcp_sockets if sock.state is state]
        timed = [sock for sock in rows if sock.timer is not None and sock.timer.kind == "timewait"]
        # only a FIN_WAIT2 can be held without a timer; TIME_WAIT never has an owner
        if knows_timers and state is State.FIN_WAIT2 and len(rows) > len(timed):
            untimed[state] = len(rows) - len(timed)
        if timed:
            first = min(timed, key=_remaining)
            left = _remaining(first)
            oldest[state] = Oldest(
                state, max(0.0, life - left), left, life, first, len(rows) - len(timed)
            )
    return Summary(
        source=snapshot.source,
        host=snapshot.host,
        taken_at=snapshot.taken_at,
        total=len(sockets),
        by_proto={proto: n for proto, n in by_proto.items() if n},
        by_family=dict(by_family),
        tcp_states=tcp_states,
        udp_states=udp_states,
        busy=busy,
        oldest=oldest,
        untimed=untimed,
        missing=list(snapshot.missing),
    )


_BY_CODE: Final = STATE_BY_CODE


def _mask(codes: bytes | bytearray, wanted: Iterable[int]) -> bytes:
    """1 where the code is one of ``wanted``, else 0: one C-level translate."""
    table = bytearray(256)
    for code in wanted:
        table[code] = 1
    return bytes(codes).translate(table)


def _both(a: bytes, b: bytes) -> bytes:
    """Element-wise AND of two 0/1 masks, as one big-integer AND."""
    both = int.from_bytes(a, "little") & int.from_bytes(b, "little")
    return both.to_bytes(len(a), "little")


_FLIP: Final = bytes([1, 0]) + bytes(254)


def _zero_mask(values: array[int]) -> bytes:
    """1 where a 32-bit value is 0: OR its four byte columns, then flip."""
    raw = values.tobytes()
    width = values.itemsize
    merged = 0
    for j in range(width):
        merged |= int.from_bytes(raw[j::width], "little")
    nonzero = merged.to_bytes(len(values), "little")
    return nonzero.translate(bytes([1]) + bytes(255))


#: a peer key: family (1 byte), address (16, an IPv4 one in the first 4), port (2, network order)
_KEY: Final = 19


def _peer_keys(columns: SocketColumns) -> bytes:
    """The peer of each TCP socket as a :data:`_KEY`-byte record, in the TCP columns' order.

    Why packed bytes, not a tuple per socket: 100k ``(family, address,
    port)`` tuples cost ~30 ms to build, though only the closing states'
    peers are counted; the records are laid out with strided copies, and
    only the sockets counted are cut out of them.
    """
    dst = columns.field("dst")
    dports = columns.field("dport")
    parts: list[bytes] = []
    for proto, family, start, stop in columns.ranges:
        n = stop - start
        if proto != "tcp" or not n:
            continue
        packed = bytearray(_KEY * n)
        packed[0::_KEY] = bytes((family,)) * n
        addresses = dst[start * 16 : stop * 16]
        for j in range(4 if family == 4 else 16):  # an IPv4 key's other 12 bytes stay 0
            packed[1 + j :: _KEY] = addresses[j::16]
        ports = dports[start * 2 : stop * 2]
        packed[17::_KEY], packed[18::_KEY] = ports[0::2], ports[1::2]
        parts.append(bytes(packed))
    return b"".join(parts)


def _peer_text(key: bytes) -> str:
    """The text :func:`summarize` prints for the same peer (``str(Addr)``)."""
    family = key[0]
    packed = key[1:5] if family == 4 else key[1:17]
    ip = socket.inet_ntop(socket.AF_INET if family == 4 else socket.AF_INET6, packed)
    return str(Addr(ip, int.from_bytes(key[17:19], "big")))


def _tcp_index(parts: list[tuple[int, int]], index: int) -> int:
    """From an index among the TCP sockets back to the columns' own index."""
    for start, stop in parts:
        if index < stop - start:
            return start + index
        index -= stop - start
    raise IndexError(index)


def _round2(value: float) -> int:
    """Two significant digits: what a sample of descriptors can tell."""
    if value < 100:
        return round(value)
    digits = len(str(int(value))) - 2
    return int(round(value, -digits))


class _Busy(NamedTuple):
    """One busy state's counts from the columns, before owners and ranking.

    NamedTuples, not dataclasses, for these two: every ``tcplens status``
    imports this module, and a slotted dataclass costs ~0.3 ms to create.
    """

    #: sockets per local port (for :data:`ACTIVE_CLOSE` states only on listeners); a
    #: subset holding every port :func:`_top_ports` could name is enough
    ports: Mapping[int, int]
    #: sockets per :data:`_KEY`-byte peer (:data:`ACTIVE_CLOSE` states, off listeners);
    #: a subset holding every peer :func:`_top_peers` could name is enough
    peers: Mapping[bytes, int]
    #: sockets without an inode, and of those the ones on a timewait timer
    ownerless: int
    ownerless_timed: int


class _Details(NamedTuple):
    busy: list[_Busy]
    #: socket inode -> rank of its busy state, for the inodes the tally found
    rank: dict[int, int]
    #: (state's sockets, of them timed, (ms left, socket) of the first with the fewest)
    oldest: dict[State, tuple[int, int, tuple[int, Socket] | None]]


#: the states whose oldest timed socket is shown, and their slot in the engine's answer
_TIMED: Final = (State.TIME_WAIT, State.FIN_WAIT2)


def _codes_of(state: State) -> list[int]:
    return [code for code in range(256) if _BY_CODE[code] is state]


def _engine_counter() -> tuple[Callable[..., Any], Callable[..., Any]] | None:
    """The engine's two counting passes (rust/src/diag.rs), or None for the Python ones.

    Why: the per-socket counting (states, ports, peers, owners, timers) is
    ~50 ms at 100k sockets in C-level Python and ~2 ms compiled.  The
    Python passes (:func:`_python_codes`, :func:`_python_details`) are the
    reference; ``tests/analysis/test_summary_engine.py`` holds the two
    equal.  ``TCPLENS_DIAG=python`` (as for the dump's walk) picks Python.
    """
    if os.environ.get("TCPLENS_DIAG", "").strip().lower() == "python":
        return None
    try:
        from tcplens._engine import socket_details, socket_state_counts
    except ImportError:  # not built, or built before the functions existed
        return None
    return socket_state_counts, socket_details


def _python_codes(columns: SocketColumns) -> tuple[Counter[int], Counter[int], Counter[int]]:
    """Sockets per state code (TCP, UDP) and per family: the reference pass."""
    tcp_parts = [(a, b) for proto, _fam, a, b in columns.ranges if proto == "tcp"]
    udp_parts = [(a, b) for proto, _fam, a, b in columns.ranges if proto != "tcp"]
    out: list[Counter[int]] = []
    for parts in (tcp_parts, udp_parts):
        codes = b"".join(bytes(columns.state[a:b]) for a, b in parts)
        out.append(Counter({code: codes.count(code) for code in set(codes)}))
    by_family: Counter[int] = Counter()
    for _proto, fam, a, b in columns.ranges:
        by_family[fam] += b - a
    return out[0], out[1], by_family


def _python_details(columns: SocketColumns, chosen: list[State], owners: Tally | None) -> _Details:
    """Ports, peers and owners of the ``chosen`` states, and the oldest timers: the reference.

    C-level slices, translations and ``Counter`` s instead of a Python step
    per socket.
    """
    from tcplens.sources.columns import TIMEWAIT_TIMER  # loaded: it made ``columns``

    tcp_parts = [(a, b) for proto, _fam, a, b in columns.ranges if proto == "tcp"]

    def cut(values: bytearray | bytes) -> bytes:
        return b"".join(bytes(values[a:b]) for a, b in tcp_parts)

    def tcp_column(values: array[int]) -> array[int]:
        out = array(values.typecode)
        for a, b in tcp_parts:
            out.extend(values[a:b])
        return out

    tcp_codes = cut(columns.state)
    ports = tcp_column(columns.sport)
    inodes = tcp_column(columns.inode)
    expires = tcp_column(columns.expires)
    timewait_timer = _mask(cut(columns.timer), (TIMEWAIT_TIMER,))
    no_inode = _zero_mask(inodes)
    masks = {state: _mask(tcp_codes, _codes_of(state)) for state in chosen}
    rank: dict[int, int] = {}
    if owners is not None and owners.inodes:
        found = {inode for inodes_of in owners.inodes.values() for inode in inodes_of}
        member = bytes(map(found.__contains__, inodes))
        for k, state in enumerate(chosen):
            rank.update(zip(compress(inodes, _both(masks[state], member)), repeat(k)))

    on_listener = b""
    peer_keys = b""
    if any(state in ACTIVE_CLOSE for state in chosen):
        listening = set(compress(ports, _mask(tcp_codes, _codes_of(State.LISTEN))))
        on_listener = bytes(map(listening.__contains__, ports))
        peer_keys = _peer_keys(columns)

    busy: list[_Busy] = []
    for state in chosen:
        mask = masks[state]
        peers: Counter[bytes] = Counter()
        if state in ACTIVE_CLOSE:
            port_counts = Counter(compress(ports, _both(mask, on_listener)))
            elsewhere = _both(mask, on_listener.translate(_FLIP))
            at = compress(range(0, _KEY * len(elsewhere), _KEY), elsewhere)
            peers = Counter([peer_keys[i : i + _KEY] for i in at])
        else:
            port_counts = Counter(compress(ports, mask))
        ownerless = _both(mask, no_inode)
        timed = _both(ownerless, timewait_timer).count(1)
        busy.append(_Busy(port_counts, peers, ownerless.count(1), timed))

    oldest: dict[State, tuple[int, int, tuple[int, Socket] | None]] = {}
    for state in _TIMED:
        mask = masks.get(state) or _mask(tcp_codes, _codes_of(state))
        timed_mask = _both(mask, timewait_timer)
        first: tuple[int, Socket] | None = None
        if n_timed := timed_mask.count(1):
            values = list(compress(expires, timed_mask))
            where = values.index(min(values))
            index = list(compress(range(len(timed_mask)), timed_mask))[where]
            first = (values[where], columns.socket_at(_tcp_index(tcp_parts, index)))
        oldest[state] = (mask.count(1), n_timed, first)
    return _Details(busy, rank, oldest)


def _engine_details(
    columns: SocketColumns,
    chosen: list[State],
    owners: Tally | None,
    top: int,
    passes: Callable[..., Any],
) -> _Details:
    """:func:`_python_details` through ``tcplens._engine.socket_details``."""
    from tcplens.sources.columns import ENGINE_LAYOUT, HEAD, TIMEWAIT_TIMER, head_socket

    rank_of_code = bytearray(b"\xff" * 256)
    for k, state in enumerate(chosen):
        for code in _codes_of(state):
            rank_of_code[code] = k
    oldest_of_code = bytearray(b"\xff" * 256)
    for slot, state in enumerate(_TIMED):
        for code in _codes_of(state):
            oldest_of_code[code] = slot
    found: list[int] = []
    if owners is not None and owners.inodes:
        # an inode the dump cannot hold (its field is 32 bits) never matches
        everyone = {inode for inodes_of in owners.inodes.values() for inode in inodes_of}
        found = [inode for inode in everyone if 0 <= inode < 1 << 32]
    busy, rank, oldest = passes(
        columns.blocks(),
        ENGINE_LAYOUT,
        bytes(rank_of_code),
        [state in ACTIVE_CLOSE for state in chosen],
        _mask(bytes(range(256)), _codes_of(State.LISTEN)),
        bytes(oldest_of_code),
        TIMEWAIT_TIMER,
        top,
        found,
        HEAD,
    )
    timed: dict[State, tuple[int, int, tuple[int, Socket] | None]] = {}
    for slot, state in enumerate(_TIMED):
        total, n_timed, first = oldest[slot] if slot < len(oldest) else (0, 0, None)
        if first is not None:
            first = (first[0], head_socket(first[1], "tcp"))
        timed[state] = (total, n_timed, first)
    return _Details(
        [_Busy(dict(ports), dict(peers), a, b) for ports, peers, a, b in busy],
        dict(rank),
        timed,
    )


def _from_columns(
    columns: SocketColumns,
    *,
    source: str,
    host: str,
    taken_at: float,
    missing: list[str],
    owners: Tally | None,
    busy_states: int,
    top: int,
    fin_timeout: float,
    engine: bool = True,
) -> Summary:
    """The summary of a columnar dump (:mod:`tcplens.sources.columns`).

    Gives the same :class:`Summary` as building every record and
    summarising those (tests hold the two together).  Two counting passes
    over the sockets (state codes; then the busy states' ports, peers and
    owners and the oldest timers) run in the engine when it is built
    (``engine``, :func:`_engine_counter`), else in Python; what follows
    them is one code for both.  ``owners`` says which process holds which
    socket inode (:func:`tcplens.sources.processes.tally`); when it sampled
    descriptors, the busy states' process counts are marked ``estimated``
    and the estimates are scaled to the exact number of sockets that have
    an owner.
    """
    counter = _engine_counter() if engine else None
    if counter is not None:
        from tcplens.sources.columns import ENGINE_LAYOUT  # loaded: it made ``columns``

        tcp_list, udp_list, v4, v6 = counter[0](columns.blocks(), ENGINE_LAYOUT)
        tcp_codes = Counter({code: n for code, n in enumerate(tcp_list) if n})
        udp_codes = Counter({code: n for code, n in enumerate(udp_list) if n})
        by_family = Counter({4: v4, 6: v6})
    else:
        tcp_codes, udp_codes, by_family = _python_codes(columns)
    order = list(State)

    def per_state(codes: Counter[int]) -> dict[State, int]:
        counts: Counter[State] = Counter()
        for code, n in codes.items():
            counts[_BY_CODE[code]] += n
        return {s: counts[s] for s in order if counts[s]}

    tcp_states = per_state(tcp_codes)
    udp_states = per_state(udp_codes)
    by_proto = {"tcp": sum(tcp_codes.values()), "udp": sum(udp_codes.values())}

    candidates = [(n, s) for s, n in tcp_states.items() if s is not State.LISTEN]
    candidates.sort(key=lambda item: (-item[0], order.index(item[1])))
    chosen = candidates[:busy_states]
    states: list[State] = [state for _n, state in chosen]
    if counter is not None:
        details = _engine_details(columns, states, owners, top, counter[1])
    else:
        details = _python_details(columns, states, owners)

    held: dict[tuple[int, int], float] = {}  # (busy state's rank, pid) -> sockets
    if owners is not None and owners.inodes:
        seen: set[int] = set()  # a shared socket counts once, for the lowest pid
        for pid in sorted(owners.inodes):
            weight = owners.scale.get(pid, 1.0)
            for inode in owners.inodes[pid]:
                k = details.rank.get(inode, -1)
                if k >= 0 and inode not in seen:
                    seen.add(inode)
                    held[(k, pid)] = held.get((k, pid), 0.0) + weight

    busy: list[StateDetail] = []
    for k, ((n, state), counted) in enumerate(zip(chosen, details.busy, strict=True)):
        top_peers = _top_peers(counted.peers, _peer_text, top) if state in ACTIVE_CLOSE else []
        orphans = counted.ownerless_timed
        if state is State.TIME_WAIT:
            orphans = counted.ownerless
        unheld = counted.ownerless - orphans  # inode 0 but not a timewait orphan: "?"
        with_inode = n - counted.ownerless
        procs: list[tuple[str, int | None, float]] = []
        estimated = False
        if owners is not None:
            mine = {pid: c for (label, pid), c in held.items() if label == k}
            estimated = not owners.exact
            attributed = sum(mine.values())
            if estimated and not owners.denied and attributed:
                mine = {pid: c * with_inode / attributed for pid, c in mine.items()}
                attributed = with_inode
            procs = [(owners.names.get(pid) or "?", pid, c) for pid, c in mine.items()]
            unheld += max(0, round(with_inode - attributed))
        else:
            unheld += with_inode
        if orphans:
            procs.append((ORPHAN, None, orphans))
        if unheld:
            procs.append(("?", None, unheld))
        rounded = [
            (name, pid, _round2(c) if estimated and pid is not None else round(c))
            for name, pid, c in procs
        ]
        busy.append(
            StateDetail(
                state,
                n,
                _top_ports(counted.ports, top),
                _top_processes([p for p in rounded if p[2]], top),
                estimated,
                top_peers,
            )
        )

    oldest: dict[State, Oldest] = {}
    untimed: dict[State, int] = {}
    for state, life in ((State.TIME_WAIT, TIME_WAIT_LEN), (State.FIN_WAIT2, fin_timeout)):
        total, n_timed, first = details.oldest[state]
        if state is State.FIN_WAIT2 and total > n_timed:
            untimed[state] = total - n_timed
        if first is not None:
            left = first[0] / 1000.0
            oldest[state] = Oldest(
                state, max(0.0, life - left), left, life, first[1], total - n_timed
            )
    return Summary(
        source=source,
        host=host,
        taken_at=taken_at,
        total=len(columns),
        by_proto={proto: n for proto, n in by_proto.items() if n},
        by_family={fam: n for fam, n in by_family.items() if n},
        tcp_states=tcp_states,
        udp_states=udp_states,
        busy=busy,
        oldest=oldest,
        untimed=untimed,
        missing=list(missing),
    )
