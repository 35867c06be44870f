"""Every TCP state transition, exactly, from the kernel's own tracepoints through tracefs.

Theory of operation
-------------------
The kernel calls ``trace_inet_sock_set_state()`` in ``inet_sk_set_state()``
(``include/trace/events/sock.h``, Linux 4.16+) on every state change of a
full socket, and ``tcp:tcp_*`` tracepoints (``include/trace/events/tcp.h``)
when it sends or receives a reset, retransmits a segment or a SYN+ACK and
destroys a socket.  tracefs publishes them without eBPF, BCC or headers:

* **A private instance.**  Everything is set up in ``instances/tcplens-PID``
  (its own ring buffer, clock, filters and enable switches), so nothing we do
  touches the top-level buffer another tool may be using.  :class:`TraceSession`
  removes it on exit, Ctrl+C and error; a later run removes instances whose
  PID is not alive (a killed run: SIGKILL leaves no chance to clean up).
  tracefs has one superblock: an instance made through any mount is seen
  through every other, so a private mount (made when none exists) sweeps
  what earlier runs left.
* **Kernel-side filters.**  ``inet_sock_set_state`` also fires for SCTP and
  MPTCP: ``protocol == 6`` (IPPROTO_TCP) is an event filter, so other
  protocols never reach the buffer; ports given to the session are filtered
  there as well (``sport``/``dport`` are host order in these events).
* **The binary per-CPU pipes, not the text pipe.**  ``trace_pipe`` makes the
  kernel format every event with ``printf`` (``%pI6c`` addresses, symbolic
  states) and merges the CPUs' buffers into one stream; ``per_cpu/cpuN/trace_pipe_raw``
  hands out whole ring-buffer pages as they are, read without formatting.
  Measured on 6.18 (36,000 events of 3,000 loopback connections, one
  process): reading the formatted text cost 5.2 µs per event (2.3 µs of
  it in the kernel) and splitting its lines with two regular expressions
  another 6-11 µs, against 0.1 µs to read the raw pages and 4.3-4.8 µs
  to decode them into typed events (benchmarks/README.md).  Page and event
  layouts are not hard-coded: ``events/header_page`` gives the page header's
  fields and each event's ``format`` file its fields' offsets, sizes and
  signedness; only the ring buffer's compressed event header (5-bit type,
  27-bit time delta, ``kernel/trace/ring_buffer.c``) is fixed, and
  ``events/header_event`` is checked to still say so.  When the compiled
  engine is built, ``tcplens._engine.TraceDecoder`` (rust/src/ftrace.rs) walks
  the pages with those same layouts, about 3x cheaper per event;
  :func:`decode_events` is the reference it is held equal to.
* **Time.**  ``trace_clock`` is set to ``mono`` (``ktime_get_mono_fast_ns``,
  CLOCK_MONOTONIC), so each event carries the kernel's own nanosecond
  timestamp; it is mapped to wall time with one CLOCK_REALTIME/CLOCK_MONOTONIC
  pair taken at start.  Events from different CPUs are merged in time order;
  events newer than the start of the current read are held to the next read,
  since another CPU may still commit an earlier one.
* **Loss is counted, never silent.**  Overwrite is off: a full buffer drops
  new events and the kernel counts them in ``per_cpu/cpuN/stats``
  (``dropped events``, plus ``overrun`` should overwrite be on);
  :meth:`TraceSession.lost` sums them and the callers report the number.

What the tracepoint does not see: the TIME_WAIT minisocket.  A full socket
closing into TIME_WAIT (``tcp_time_wait()``) hands over to an
``inet_timewait_sock`` and is itself set to CLOSE: the event reads
FIN_WAIT2 -> CLOSE (FIN_WAIT1 -> CLOSE on the FIN_WAIT1 + FIN/ACK path,
CLOSING -> CLOSE after a simultaneous close).  :func:`time_wait_table` asks
sock_diag which of those 4-tuples the kernel holds as minisockets, so callers
can show TIME_WAIT instead of CLOSED.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import re
import socket
import struct
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from tcplens.errors import InputError, SourceError
from tcplens.model.states import STATE_BY_CODE, State
from tcplens.sources.records import Addr, Proto

__all__ = [
    "DEFAULT_BUFFER_KB",
    "EVENTS",
    "EventFormat",
    "FieldSpec",
    "KernelEvent",
    "Loss",
    "PageLayout",
    "TraceSession",
    "TraceUnavailable",
    "decode_events",
    "decode_events_engine",
    "find_tracefs",
    "owners_by_tuple",
    "parse_format",
    "parse_header_page",
    "parse_page",
    "sweep_instances",
    "sweep_mounts",
    "time_wait_count",
    "time_wait_of",
    "time_wait_table",
    "time_wait_timers",
    "unavailable_reason",
]

#: (system, event) pairs enabled in the instance
EVENTS: Final = (
    ("sock", "inet_sock_set_state"),
    ("tcp", "tcp_send_reset"),
    ("tcp", "tcp_receive_reset"),
    ("tcp", "tcp_retransmit_skb"),
    ("tcp", "tcp_retransmit_synack"),
    ("tcp", "tcp_destroy_sock"),
)
#: per-CPU ring buffer size (the kernel allocates it on every CPU: 4 MB x CPUs in all).
#: A connection is about 12 events of ~80 bytes, so 2,000 connections/s fill ~2 MB/s,
#: read every 0.1 s; what loses events is a reader short of CPU, not a small buffer
DEFAULT_BUFFER_KB: Final = 4096
INSTANCE_PREFIX: Final = "tcplens-"
_MOUNTS: Final = ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")
_IPPROTO_TCP: Final = 6
#: name prefix of the private directories tracefs is mounted on when nothing else is
_PRIVATE_PREFIX: Final = "tcplens-tracefs-"

EventKind = Literal[
    "state", "send_reset", "receive_reset", "retransmit", "retransmit_synack", "destroy"
]
_KINDS: Final[dict[str, EventKind]] = {
    "inet_sock_set_state": "state",
    "tcp_send_reset": "send_reset",
    "tcp_receive_reset": "receive_reset",
    "tcp_retransmit_skb": "retransmit",
    "tcp_retransmit_synack": "retransmit_synack",
    "tcp_destroy_sock": "destroy",
}
#: common_flags bits (kernel/trace/trace.h, enum trace_flag_type): the event fired in
#: hard or soft interrupt context or NMI, where the current pid is not the socket's owner
_IRQ_FLAGS: Final = 0x08 | 0x10 | 0x40


class TraceUnavailable(SourceError):
    """Exact tracing cannot run here; the message is the one line saying why."""


# --------------------------------------------------------------------------- format files


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One ``field:`` line of a tracefs ``format`` file."""

    name: str
    ctype: str
    offset: int
    size: int
    signed: bool
    #: element count for ``type name[N]`` arrays, else None
    count: int | None = None


@dataclass(frozen=True, slots=True)
class EventFormat:
    """An event's id and field layout, as its ``format`` file declares them."""

    system: str
    name: str
    id: int
    fields: Mapping[str, FieldSpec]


_FIELD: Final = re.compile(
    r"^\s*field:(?P<decl>[^;]+);\s*offset:(?P<offset>\d+);\s*size:(?P<size>\d+);"
    r"\s*signed:(?P<signed>[01]);\s*$"
)
_DECL: Final = re.compile(r"^(?P<ctype>.*?)\s*(?P<name>[A-Za-z_]\w*)\s*(?:\[(?P<count>\d*)\])?$")


def _field(line: str) -> FieldSpec | None:
    m = _FIELD.match(line)
    if m is None:
        return None
    d = _DECL.match(m["decl"].strip())
    if d is None:
        return None
    count = d["count"]
    return FieldSpec(
        name=d["name"],
        ctype=d["ctype"].strip(),
        offset=int(m["offset"]),
        size=int(m["size"]),
        signed=m["signed"] == "1",
        count=int(count) if count else None,
    )


def parse_format(text: str, *, path: str = "format", system: str = "") -> EventFormat:
    """An event ``format`` file: ``name:``, ``ID:`` and ``field:`` lines.

    Raises :class:`InputError` naming the line for a field line that cannot
    be read, or when the name or id is missing.
    """
    name: str | None = None
    ident: int | None = None
    fields: dict[str, FieldSpec] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if stripped.startswith("name:"):
            name = stripped[5:].strip()
        elif stripped.startswith("ID:"):
            try:
                ident = int(stripped[3:].strip())
            except ValueError:
                raise InputError(f"bad event id {stripped!r}", path=path, line=number) from None
        elif stripped.startswith("field:"):
            spec = _field(line)
            if spec is None:
                shown = stripped if len(stripped) <= 80 else stripped[:77] + "..."
                raise InputError(f"unreadable field line {shown!r}", path=path, line=number)
            fields[spec.name] = spec
    if name is None or ident is None:
        raise InputError("no 'name:' or 'ID:' line", path=path)
    return EventFormat(system, name, ident, fields)


@dataclass(frozen=True, slots=True)
class PageLayout:
    """Where the ring-buffer page header keeps its timestamp, commit and data (header_page)."""

    timestamp: FieldSpec
    commit: FieldSpec
    data: FieldSpec

    @property
    def page_size(self) -> int:
        return self.data.offset + self.data.size


def parse_header_page(text: str, *, path: str = "header_page") -> PageLayout:
    """``events/header_page``: the page header's ``timestamp``, ``commit`` and ``data``."""
    fields: dict[str, FieldSpec] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip().startswith("field:"):
            spec = _field(line)
            if spec is None:
                raise InputError("unreadable field line", path=path, line=number)
            fields.setdefault(spec.name, spec)
    try:
        return PageLayout(fields["timestamp"], fields["commit"], fields["data"])
    except KeyError as exc:
        raise InputError(f"no {exc.args[0]!r} field", path=path) from None


def _check_header_event(text: str, path: str) -> None:
    """The compressed event header we decode: 5-bit type_len, 27-bit delta, types 29-31."""
    want = ("type_len    :    5 bits", "time_delta  :   27 bits", "padding     : type == 29")
    squeezed = " ".join(text.split())
    if not all(" ".join(w.split()) in squeezed for w in want):
        raise TraceUnavailable(f"{path}: unexpected ring-buffer event header layout")


# --------------------------------------------------------------------------- pages


#: ring_buffer.c: RB_MISSED_EVENTS / RB_MISSED_STORED flags in the page's commit word
_MISSED_EVENTS: Final = 1 << 31
_MISSED_STORED: Final = 1 << 30
_TS_MSB: Final = 0xF << 59
_U16: Final = struct.Struct("=H")
_U32: Final = struct.Struct("=I")
_U64: Final = struct.Struct("=Q")
_PADDING, _TIME_EXTEND, _TIME_STAMP = 29, 30, 31


@dataclass(slots=True)
class RawPage:
    """Events of one ring-buffer page: (timestamp ns, start, end) of each event's data."""

    view: memoryview = field(default_factory=lambda: memoryview(b""))
    spans: list[tuple[int, int, int]] = field(default_factory=list)
    #: events the kernel says were lost before this page (-1: lost, count unknown)
    missed: int = 0
    #: byte offset of an event header that could not be decoded, else None
    damaged_at: int | None = None

    @property
    def records(self) -> list[tuple[int, memoryview]]:
        """(timestamp ns, event data) in order."""
        view = self.view
        return [(ts, view[a:b]) for ts, a, b in self.spans]


def _fix_abs_ts(abs_ts: int, saved: int) -> int:
    """rb_fix_abs_ts(): absolute stamps keep only 59 bits; restore the top from the last."""
    if saved & _TS_MSB:
        abs_ts |= saved & _TS_MSB
        if abs_ts < saved:
            abs_ts += 1 << 59
    return abs_ts


def parse_page(page: bytes | memoryview, layout: PageLayout) -> RawPage:
    """Split one ``trace_pipe_raw`` page into timestamped event records.

    Decodes the compressed headers of ``kernel/trace/ring_buffer.c``: data
    events (type_len 1-28: length type_len*4; 0: length in the next word),
    padding (29), time extends (30) and absolute stamps (31).  A header that
    runs past the page's committed length stops the page: what came before
    it is kept and ``damaged_at`` says where.
    """
    view = memoryview(page)
    out = RawPage(view)
    ts_spec, commit_spec, data_spec = layout.timestamp, layout.commit, layout.data
    if len(view) < data_spec.offset:
        out.damaged_at = 0
        return out
    ts = int.from_bytes(view[ts_spec.offset : ts_spec.offset + 8], "little")
    commit = int.from_bytes(
        view[commit_spec.offset : commit_spec.offset + commit_spec.size], "little"
    )
    size = commit & (_MISSED_STORED - 1)
    start = data_spec.offset
    end = start + size
    if end > len(view):
        out.damaged_at = commit_spec.offset
        end = len(view)
    if commit & _MISSED_EVENTS:
        out.missed = -1
        if commit & _MISSED_STORED and end + 8 <= len(view):
            out.missed = int.from_bytes(view[end : end + 8], "little")
    pos = start
    unpack = _U32.unpack_from
    records = out.spans
    while pos + 4 <= end:
        (word,) = unpack(view, pos)
        type_len = word & 0x1F
        delta = word >> 5
        if type_len == 0:
            if pos + 8 > end:
                out.damaged_at = pos
                break
            (length,) = unpack(view, pos + 4)
            if length < 4 or pos + 4 + length > end:
                out.damaged_at = pos
                break
            ts += delta
            records.append((ts, pos + 8, pos + 4 + length))
            pos += 4 + ((length + 3) & ~3)
        elif type_len <= 28:
            length = type_len * 4
            if pos + 4 + length > end:
                out.damaged_at = pos
                break
            ts += delta
            records.append((ts, pos + 4, pos + 4 + length))
            pos += 4 + length
        elif type_len == _PADDING:
            if delta == 0:  # the rest of the page is padding
                break
            if pos + 8 > end:
                break
            (length,) = unpack(view, pos + 4)
            pos += 4 + length if length else 8
        else:
            if pos + 8 > end:
                out.damaged_at = pos
                break
            (array,) = unpack(view, pos + 4)
            value = (array << 27) | delta
            ts = ts + value if type_len == _TIME_EXTEND else _fix_abs_ts(value, ts)
            pos += 8
    return out


# --------------------------------------------------------------------------- typed events


@dataclass(slots=True)  # not frozen: a frozen dataclass's __init__ costs 2x per event
class KernelEvent:
    """One tracepoint hit, decoded: a state change or a reset, retransmission or destroy.

    ``local``/``remote`` are the socket's own ends.  ``old``/``new`` are set
    for ``state`` events (CLOSED stands for the kernel's TCP_CLOSE, SYN_RECV
    for NEW_SYN_RECV); ``state`` is the socket state a reset or
    retransmission happened in; ``reason`` is the kernel's reset reason
    (``enum sk_rst_reason``, Linux 6.10+).  ``pid`` is whoever was current
    on the CPU: meaningful only when ``in_irq`` is False.
    """

    kind: EventKind
    mono_ns: int
    at: float
    cpu: int
    pid: int
    in_irq: bool
    sk: int
    family: int
    local: Addr
    remote: Addr
    old: State | None = None
    new: State | None = None
    state: State | None = None
    reason: str | None = None

    @property
    def key(self) -> tuple[str, int | None, str, int | None]:
        return (self.local.ip, self.local.port, self.remote.ip, self.remote.port)


_STRUCT_CODES: Final = {
    (1, False): "B", (1, True): "b", (2, False): "H", (2, True): "h",
    (4, False): "I", (4, True): "i", (8, False): "Q", (8, True): "q",
}  # fmt: skip


def _decoder(fmt: EventFormat, names: Sequence[str]) -> struct.Struct:
    """A struct reading ``names`` (in that order) at the offsets the format declares."""
    specs = sorted((fmt.fields[n] for n in names), key=lambda s: s.offset)
    order = [s.name for s in specs]
    if order != list(names):
        raise TraceUnavailable(f"{fmt.system}/{fmt.name}: fields out of the expected order")
    parts = ["="]
    pos = 0
    for spec in specs:
        if spec.offset < pos:
            raise TraceUnavailable(f"{fmt.system}/{fmt.name}: overlapping field {spec.name}")
        if spec.offset > pos:
            parts.append(f"{spec.offset - pos}x")
        if spec.count is not None or (spec.size, spec.signed) not in _STRUCT_CODES:
            parts.append(f"{spec.size}s")
        else:
            parts.append(_STRUCT_CODES[spec.size, spec.signed])
        pos = spec.offset + spec.size
    return struct.Struct("".join(parts))


#: fields read from each event, in layout order (checked against the format file)
_WANTED: Final[dict[str, tuple[str, ...]]] = {
    "inet_sock_set_state": ("common_flags", "common_pid", "skaddr", "oldstate", "newstate",
                            "sport", "dport", "family", "protocol", "saddr", "daddr",
                            "saddr_v6", "daddr_v6"),
    "tcp_send_reset": ("common_flags", "common_pid", "skaddr", "state", "reason", "saddr",
                       "daddr"),
    "tcp_receive_reset": ("common_flags", "common_pid", "skaddr", "sport", "dport", "family",
                          "saddr", "daddr", "saddr_v6", "daddr_v6"),
    "tcp_retransmit_skb": ("common_flags", "common_pid", "skaddr", "state", "sport", "dport",
                           "family", "saddr", "daddr", "saddr_v6", "daddr_v6"),
    "tcp_retransmit_synack": ("common_flags", "common_pid", "skaddr", "sport", "dport",
                              "family", "saddr", "daddr", "saddr_v6", "daddr_v6"),
    "tcp_destroy_sock": ("common_flags", "common_pid", "skaddr", "sport", "dport", "family",
                         "saddr", "daddr", "saddr_v6", "daddr_v6"),
}  # fmt: skip
_SYMBOL: Final = re.compile(r"\{\s*(\d+)\s*,\s*\"(\w+)\"\s*\}")


def _reset_reasons(format_text: str) -> dict[int, str]:
    """``enum sk_rst_reason`` names from the print fmt's ``__print_symbolic(REC->reason …)``."""
    at = format_text.find("REC->reason,")
    if at < 0:
        return {}
    return {int(n): name for n, name in _SYMBOL.findall(format_text[at:])}


_Key = tuple[int, int]  # (family, protocol)
#: kinds in the order the engine numbers them (rust/src/ftrace.rs ``Kind``)
_KIND_NAMES: Final[tuple[EventKind, ...]] = tuple(_KINDS.values())
_ntop = socket.inet_ntop
_AF_INET: Final = socket.AF_INET
_AF_INET6: Final = socket.AF_INET6


def _ip(family: int, v4: bytes, v6: bytes, cache: dict[bytes, str]) -> str:
    raw = v4 if family == _AF_INET else v6
    text = cache.get(raw)
    if text is None:
        text = _ntop(_AF_INET if family == _AF_INET else _AF_INET6, raw)
        if len(cache) > 65536:
            cache.clear()
        cache[raw] = text
    return text


def _sockaddr(raw: bytes, cache: dict[bytes, str]) -> tuple[int, Addr]:
    """A ``struct sockaddr_in``/``sockaddr_in6`` copied into a 28-byte array (tcp_send_reset)."""
    family = int.from_bytes(raw[0:2], "little" if struct.pack("=H", 1)[0] else "big")
    port = int.from_bytes(raw[2:4], "big")
    if family == _AF_INET:
        return 4, Addr(_ip(family, raw[4:8], b"", cache), port)
    if family == _AF_INET6:
        return 6, Addr(_ip(family, b"", raw[8:24], cache), port)
    return 0, Addr("", None)


def _state(code: int) -> State:
    return STATE_BY_CODE[code] if 0 <= code < 256 else State.UNKNOWN


class _StateTable(dict[int, State]):
    """Kernel state code -> State; a code the kernel should never send is UNKNOWN."""

    def __missing__(self, code: int) -> State:
        return State.UNKNOWN


_STATES: Final = _StateTable(enumerate(STATE_BY_CODE))


class Decoder:
    """Turns raw records into :class:`KernelEvent` with the layouts the format files give."""

    def __init__(self, formats: Iterable[EventFormat], reasons: Mapping[int, str] = {}) -> None:
        self.by_id: dict[int, tuple[EventKind, struct.Struct]] = {}
        #: (id, kind index, wanted fields as (offset, size, signed, array)): the engine's
        self._layouts: list[tuple[int, int, list[tuple[int, int, bool, bool]]]] = []
        self.reasons = dict(reasons)
        self.type_field: FieldSpec | None = None
        for fmt in formats:
            wanted = _WANTED.get(fmt.name)
            if wanted is None:
                continue
            missing = [n for n in wanted if n not in fmt.fields]
            if missing:
                raise TraceUnavailable(
                    f"{fmt.system}/{fmt.name}: no field {missing[0]!r} in its format file"
                )
            self.by_id[fmt.id] = (_KINDS[fmt.name], _decoder(fmt, wanted))
            self.type_field = fmt.fields.get("common_type", self.type_field)
            specs = [fmt.fields[n] for n in wanted]
            self._layouts.append(
                (fmt.id, _KIND_NAMES.index(_KINDS[fmt.name]),
                 [(f.offset, f.size, f.signed, f.count is not None) for f in specs])
            )  # fmt: skip
        if self.type_field is None:
            raise TraceUnavailable("no common_type field in the event formats")
        self._ips: dict[bytes, str] = {}
        self._addrs: dict[tuple[bytes, bytes, int, int], Addr] = {}
        self._by_raw: dict[tuple[bytes, int], Addr] = {}

    def engine(self, layout: PageLayout) -> Any | None:
        """The compiled page decoder (``tcplens._engine.TraceDecoder``) for these layouts.

        None when the engine is not built or refuses a layout it would not
        read as the numbers and addresses :meth:`decode` expects: this
        decoder then does the work, so the two never disagree on an event.
        """
        try:
            from tcplens._engine import TraceDecoder
        except ImportError:
            return None
        assert self.type_field is not None
        page = (layout.timestamp.offset, layout.commit.offset, layout.commit.size,
                layout.data.offset)  # fmt: skip
        try:
            return TraceDecoder(page, self.type_field.offset, self._layouts)
        except (ValueError, OverflowError):
            return None

    @functools.cached_property
    def objects(self) -> tuple[Any, ...]:
        """What the engine makes state events with: the same classes, tables and caches."""
        ips = self._ips
        return (
            KernelEvent,
            Addr,
            lambda family, raw: _ip(family, raw, raw, ips),
            (*STATE_BY_CODE, State.UNKNOWN),  # _STATES: any code past 255 is UNKNOWN
            lambda row, wall: self.from_rows((row,), wall)[0],
            _KIND_NAMES,
        )

    def from_rows(self, rows: Iterable[tuple[Any, ...]], wall_offset: float) -> list[KernelEvent]:
        """The engine's rows as :class:`KernelEvent`, exactly as :meth:`decode` makes them.

        The engine did the page walk and the field reads; names (states,
        address text, reset reasons) come from the same tables as here.
        """
        out: list[KernelEvent] = []
        append = out.append
        ips, addrs, states, names = self._ips, self._by_raw, _STATES, _KIND_NAMES
        for k, ts, cpu, pid, irq, sk, family, lraw, lport, rraw, rport, a, b in rows:
            at = ts / 1e9 + wall_offset
            if k == 0:  # state: the bulk, with its addresses cached
                local = addrs.get((lraw, lport))
                if local is None:
                    local = addrs[(lraw, lport)] = Addr(_ip(family, lraw, lraw, ips), lport)
                remote = addrs.get((rraw, rport))
                if remote is None:
                    remote = addrs[(rraw, rport)] = Addr(_ip(family, rraw, rraw, ips), rport)
                if len(addrs) > 65536:
                    addrs.clear()
                fam = 4 if family == _AF_INET else 6
                append(KernelEvent("state", ts, at, cpu, pid, irq, sk, fam, local, remote,
                                   states[a], states[b]))  # fmt: skip
            elif k == 1:  # send_reset: whole sockaddrs
                fam, local = _sockaddr(lraw, ips)
                _, remote = _sockaddr(rraw, ips)
                append(KernelEvent(
                    "send_reset", ts, at, cpu, pid, irq, sk, fam, local, remote,
                    state=_state(a) if a else None, reason=self.reasons.get(b, str(b)),
                ))  # fmt: skip
            else:
                append(KernelEvent(
                    names[k], ts, at, cpu, pid, irq, sk, 4 if family == _AF_INET else 6,
                    Addr(_ip(family, lraw, lraw, ips), lport),
                    Addr(_ip(family, rraw, rraw, ips), rport),
                    state=None if a is None else _state(a),
                ))  # fmt: skip
        return out

    def decode(
        self,
        ts: int,
        data: memoryview,
        cpu: int,
        wall_offset: float,
        start: int = 0,
        end: int | None = None,
    ) -> KernelEvent | None:
        """The event whose data is ``data[start:end]`` (offsets spare a slice per event)."""
        spec = self.type_field
        assert spec is not None
        stop = len(data) if end is None else end
        if stop - start < spec.offset + 2:
            return None
        (ident,) = _U16.unpack_from(data, start + spec.offset)
        known = self.by_id.get(ident)
        if known is None:
            return None
        kind, decoder = known
        if stop - start < decoder.size:
            return None
        values = decoder.unpack_from(data, start)
        at = ts / 1e9 + wall_offset
        flags, pid, sk = values[0], values[1], values[2]
        irq = bool(flags & _IRQ_FLAGS)
        ips = self._ips
        if kind == "state":
            old, new, sport, dport, family, proto, s4, d4, s6, d6 = values[3:]
            if proto != _IPPROTO_TCP:
                return None
            fam = 4 if family == _AF_INET else 6
            addrs = self._addrs
            # keyed with the family: a dual-stack socket has the same saddr/saddr_v6 bytes
            # (1.2.3.4, ::ffff:1.2.3.4) as an AF_INET one, but is shown in v6
            local = addrs.get((s4, s6, sport, family))
            if local is None:
                local = addrs[(s4, s6, sport, family)] = Addr(_ip(family, s4, s6, ips), sport)
            remote = addrs.get((d4, d6, dport, family))
            if remote is None:
                remote = addrs[(d4, d6, dport, family)] = Addr(_ip(family, d4, d6, ips), dport)
            if len(addrs) > 65536:
                addrs.clear()
            return KernelEvent(
                kind, ts, at, cpu, pid, irq, sk, fam, local, remote, _STATES[old], _STATES[new]
            )
        if kind == "send_reset":
            state, reason, src, dst = values[3:]
            fam, local = _sockaddr(src, ips)
            _, remote = _sockaddr(dst, ips)
            return KernelEvent(
                kind, ts, at, cpu, pid, irq, sk, fam, local, remote,
                state=_state(state) if state else None,
                reason=self.reasons.get(reason, str(reason)),
            )  # fmt: skip
        state_code: int | None = None
        if kind == "retransmit":
            state_code = values[3]
            sport, dport, family, s4, d4, s6, d6 = values[4:]
        else:
            sport, dport, family, s4, d4, s6, d6 = values[3:]
        fam = 4 if family == _AF_INET else 6
        return KernelEvent(
            kind, ts, at, cpu, pid, irq, sk, fam,
            Addr(_ip(family, s4, s6, ips), sport), Addr(_ip(family, d4, d6, ips), dport),
            state=None if state_code is None else _state(state_code),
        )  # fmt: skip


def decode_events(
    pages: Iterable[tuple[int, bytes]],
    layout: PageLayout,
    decoder: Decoder,
    *,
    wall_offset: float = 0.0,
) -> tuple[list[KernelEvent], int]:
    """Events of (cpu, page) pairs in time order, and how many the pages say were missed."""
    out: list[KernelEvent] = []
    missed = 0
    decode = decoder.decode
    append = out.append
    for cpu, page in pages:
        raw = parse_page(page, layout)
        missed += max(raw.missed, 0)
        view = raw.view
        for ts, start, end in raw.spans:
            event = decode(ts, view, cpu, wall_offset, start, end)
            if event is not None:
                append(event)
    out.sort(key=lambda e: e.mono_ns)
    return out, missed


def decode_events_engine(
    pages: Iterable[tuple[int, bytes]],
    engine: Any,
    decoder: Decoder,
    *,
    wall_offset: float = 0.0,
) -> tuple[list[KernelEvent], int]:
    """:func:`decode_events` through the compiled decoder (:meth:`Decoder.engine`).

    Same events in the same order and the same missed count; the page walk
    and field reads run in Rust, about 3x cheaper per event (benchmarks/README.md).
    """
    events, missed = engine.events(list(pages), wall_offset, decoder.objects)
    return events, missed


# --------------------------------------------------------------------------- tracefs


def _mounted_tracefs(mounts: str = "/proc/self/mounts") -> str | None:
    try:
        with open(mounts, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                parts = line.split()
                if len(parts) > 2 and parts[2] == "tracefs" and os.path.isdir(parts[1]):
                    path = parts[1].replace("\\040", " ")
                    # another run's private mount goes away when that run ends
                    if not os.path.basename(path).startswith(_PRIVATE_PREFIX):
                        return path
    except OSError:
        return None
    return None


def _libc() -> Any:
    # imported here: an unprivileged caller (which never mounts) may not be able to
    # import ctypes at all once it dropped privileges (the exporter's test user)
    import ctypes
    import ctypes.util

    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def _mount_tracefs(target: str) -> None:
    import ctypes

    libc = _libc()
    if libc.mount(b"nodev", target.encode(), b"tracefs", 0, None) != 0:
        err = ctypes.get_errno()
        raise TraceUnavailable(f"cannot mount tracefs on {target}: {os.strerror(err)}")


def _umount(target: str) -> None:
    libc = _libc()
    libc.umount2(target.encode(), 2)  # MNT_DETACH: never blocks on a busy mount


def find_tracefs() -> tuple[str, bool]:
    """A tracefs directory, and whether we mounted it (``mount -t tracefs nodev DIR``).

    An existing mount is used as it is; without one, tracefs is mounted on a
    private directory (unmounted again by the session) rather than on
    ``/sys/kernel/tracing``, so no other program sees a mount appear.  Other
    runs' private mounts are not borrowed: they are detached when that run
    ends, under whoever borrowed them.
    """
    found = _mounted_tracefs()
    if found is not None:
        return found, False
    for path in _MOUNTS:
        if os.path.isfile(os.path.join(path, "trace_clock")):
            return path, False
    sweep_mounts()
    import tempfile

    target = tempfile.mkdtemp(prefix=f"{_PRIVATE_PREFIX}{os.getpid()}-")
    try:
        _mount_tracefs(target)
    except TraceUnavailable:
        os.rmdir(target)
        raise
    return target, True


def unavailable_reason() -> str | None:
    """Why exact tracing cannot run here (one line), or None when it may."""
    if os.geteuid() != 0:
        return "not root: tracefs and its instances need root (CAP_SYS_ADMIN)"
    if not os.path.exists("/proc/self/mounts"):
        return "no /proc: cannot find tracefs"
    try:
        with open("/proc/filesystems", encoding="utf-8") as fh:
            if not any(line.split()[-1:] == ["tracefs"] for line in fh):
                return "this kernel has no tracefs (CONFIG_TRACING off)"
    except OSError:
        return "cannot read /proc/filesystems"
    return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_mounts(mounts: str = "/proc/self/mounts") -> list[str]:
    """Detach private tracefs mounts (``tcplens-tracefs-PID-…``) of runs whose PID is dead.

    A run killed with SIGKILL cannot unmount what it mounted; the next one
    does, so mounts do not pile up.  Returns the directories removed.
    """
    removed: list[str] = []
    try:
        with open(mounts, encoding="utf-8", errors="replace") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return removed
    for line in lines:
        parts = line.split()
        if len(parts) < 3 or parts[2] != "tracefs":
            continue
        path = parts[1].replace("\\040", " ")
        name = os.path.basename(path)
        if not name.startswith(_PRIVATE_PREFIX):
            continue
        pid = name[len(_PRIVATE_PREFIX) :].split("-", 1)[0]
        if not pid.isdigit() or _alive(int(pid)):
            continue
        _umount(path)
        with contextlib.suppress(OSError):
            os.rmdir(path)
            removed.append(path)
    return removed


def sweep_instances(tracefs: str) -> list[str]:
    """Remove ``instances/tcplens-PID[-N]`` left by runs whose PID is dead; return their names."""
    base = os.path.join(tracefs, "instances")
    removed: list[str] = []
    try:
        names = os.listdir(base)
    except OSError:
        return removed
    for name in names:
        if not name.startswith(INSTANCE_PREFIX):
            continue
        pid = name[len(INSTANCE_PREFIX) :].split("-", 1)[0]  # tcplens-PID or tcplens-PID-N
        if not pid.isdigit() or _alive(int(pid)):
            continue
        with contextlib.suppress(OSError):
            os.rmdir(os.path.join(base, name))
            removed.append(name)
    return removed


@dataclass(frozen=True, slots=True)
class Loss:
    """Events the kernel could not keep, per CPU, from ``per_cpu/cpuN/stats``."""

    overrun: dict[int, int]
    dropped: dict[int, int]

    @property
    def total(self) -> int:
        return sum(self.overrun.values()) + sum(self.dropped.values())


def _stats(text: str) -> tuple[int, int]:
    overrun = dropped = 0
    for line in text.splitlines():
        name, _, value = line.partition(":")
        value = value.strip()
        if name.strip() == "overrun" and value.isdigit():
            overrun = int(value)
        elif name.strip() == "dropped events" and value.isdigit():
            dropped = int(value)
    return overrun, dropped


def _write(path: str, value: str) -> None:
    try:
        with open(path, "w", encoding="ascii") as fh:
            fh.write(value)
    except OSError as exc:
        raise TraceUnavailable(f"{path}: {exc.strerror or exc}") from exc


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.read()
    except OSError as exc:
        raise TraceUnavailable(f"{path}: {exc.strerror or exc}") from exc


def _port_filter(ports: Sequence[int]) -> str:
    if not ports:
        return ""
    return "(" + " || ".join(f"sport == {p} || dport == {p}" for p in sorted(set(ports))) + ")"


class TraceSession:
    """A private tracefs instance with the TCP tracepoints on; a context manager.

    ``ports`` narrows every event with ports to those (either end) in the
    kernel; ``buffer_kb`` is the per-CPU ring buffer size.  :meth:`read`
    returns the events committed since the last call, in time order.
    """

    def __init__(
        self,
        *,
        ports: Sequence[int] = (),
        buffer_kb: int = DEFAULT_BUFFER_KB,
        tracefs: str | None = None,
    ) -> None:
        self.ports = tuple(ports)
        self.buffer_kb = buffer_kb
        self._tracefs = tracefs
        self.mounted = False
        self.root = ""
        self.instance = ""
        self.swept: list[str] = []
        self._fds: dict[int, int] = {}
        self._held: list[KernelEvent] = []
        self._layout: PageLayout | None = None
        self._decoder: Decoder | None = None
        #: the compiled page decoder, when built (else the Python one decodes)
        self._engine: Any | None = None
        self._page = 4096
        self._wall = 0.0
        self.missed_in_pages = 0
        self.pages = 0

    # -- lifecycle ---------------------------------------------------------
    def __enter__(self) -> TraceSession:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self) -> None:
        """Set the instance up and start tracing; on any failure, undo what was done."""
        try:
            self._open()
        except BaseException:
            self.close()
            raise

    def _open(self) -> None:
        reason = unavailable_reason() if self._tracefs is None else None
        if reason is not None:
            raise TraceUnavailable(reason)
        if self._tracefs is None:
            sweep_mounts()
            self.root, self.mounted = find_tracefs()
        else:
            self.root = self._tracefs
        self.swept = sweep_instances(self.root)
        events = os.path.join(self.root, "events")
        self._layout = parse_header_page(
            _read(os.path.join(events, "header_page")), path=f"{events}/header_page"
        )
        _check_header_event(_read(os.path.join(events, "header_event")), f"{events}/header_event")
        formats: list[EventFormat] = []
        reasons: dict[int, str] = {}
        for system, name in EVENTS:
            path = os.path.join(events, system, name, "format")
            if not os.path.exists(path):
                raise TraceUnavailable(f"this kernel has no {system}:{name} tracepoint")
            text = _read(path)
            formats.append(parse_format(text, path=path, system=system))
            if name == "tcp_send_reset":
                reasons = _reset_reasons(text)
        self._decoder = Decoder(formats, reasons)
        self._engine = self._decoder.engine(self._layout)
        # tcplens-PID; a second session of the same process (lab runs in threads, the
        # exporter and a trace) gets tcplens-PID-2 and so on: never a shared buffer
        base = os.path.join(self.root, "instances", f"{INSTANCE_PREFIX}{os.getpid()}")
        inst = base
        for n in range(2, 1000):
            try:
                os.mkdir(inst)
                break
            except FileExistsError:
                inst = f"{base}-{n}"
            except OSError as exc:
                raise TraceUnavailable(f"cannot create {inst}: {exc.strerror}") from exc
        else:
            raise TraceUnavailable(f"cannot create {base}: too many instances")
        self.instance = inst
        _write(f"{inst}/tracing_on", "0")
        _write(f"{inst}/trace_clock", "mono")
        with contextlib.suppress(TraceUnavailable):  # not every kernel has the option file
            _write(f"{inst}/options/overwrite", "0")
        _write(f"{inst}/buffer_size_kb", str(self.buffer_kb))
        sub = os.path.join(inst, "buffer_subbuf_size_kb")
        if os.path.exists(sub):
            with contextlib.suppress(TraceUnavailable, ValueError):
                self._page = int(_read(sub).split()[0]) * 1024
        self._page = max(self._page, self._layout.page_size)
        ports = _port_filter(self.ports)
        for system, name in EVENTS:
            base = f"{inst}/events/{system}/{name}"
            clauses = []
            if name == "inet_sock_set_state":
                clauses.append(f"protocol == {_IPPROTO_TCP}")
            if ports and name != "tcp_send_reset":  # its ports are inside sockaddr arrays
                clauses.append(ports)
            if clauses:
                _write(f"{base}/filter", " && ".join(clauses))
            _write(f"{base}/enable", "1")
        cpus = sorted(
            int(n[3:])
            for n in os.listdir(f"{inst}/per_cpu")
            if n.startswith("cpu") and n[3:].isdigit()
        )
        for cpu in cpus:
            path = f"{inst}/per_cpu/cpu{cpu}/trace_pipe_raw"
            try:
                self._fds[cpu] = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            except OSError as exc:
                raise TraceUnavailable(f"{path}: {exc.strerror}") from exc
        self._wall = time.time() - time.clock_gettime(time.CLOCK_MONOTONIC)
        _write(f"{inst}/tracing_on", "1")

    def close(self) -> None:
        """Stop tracing and remove the instance (and the private mount, if ours)."""
        for fd in self._fds.values():
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds.clear()
        if self.instance:
            with contextlib.suppress(OSError), open(f"{self.instance}/tracing_on", "w") as fh:
                fh.write("0")
            for _ in range(50):
                try:
                    os.rmdir(self.instance)
                    break
                except FileNotFoundError:
                    break
                except OSError as exc:
                    if exc.errno != errno.EBUSY:
                        break
                    time.sleep(0.01)
            self.instance = ""
        if self.mounted and self.root:
            _umount(self.root)
            with contextlib.suppress(OSError):
                os.rmdir(self.root)
            self.mounted = False

    # -- reading -----------------------------------------------------------
    @property
    def wall_offset(self) -> float:
        """Add to a CLOCK_MONOTONIC time in seconds to get wall-clock time."""
        return self._wall

    @property
    def cpus(self) -> list[int]:
        return sorted(self._fds)

    def _pages(self) -> Iterator[tuple[int, bytes]]:
        size = self._page
        for cpu, fd in self._fds.items():
            while True:
                try:
                    page = os.read(fd, size)
                except BlockingIOError:
                    break
                except InterruptedError:  # pragma: no cover - PEP 475 retries
                    continue
                except OSError as exc:
                    raise SourceError(f"tracefs cpu{cpu}: {exc.strerror}") from exc
                if not page:
                    break
                self.pages += 1
                yield cpu, page

    def read(self, *, flush: bool = False) -> list[KernelEvent]:
        """Events committed since the last call, oldest first.

        Events stamped after this read began are held back for the next call
        (another CPU may still commit an earlier one) unless ``flush``.
        """
        assert self._layout is not None and self._decoder is not None
        horizon = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
        if self._engine is not None:
            fresh, missed = decode_events_engine(
                self._pages(), self._engine, self._decoder, wall_offset=self._wall
            )
        else:
            fresh, missed = decode_events(
                self._pages(), self._layout, self._decoder, wall_offset=self._wall
            )
        self.missed_in_pages += missed
        if self._held:
            fresh = sorted(self._held + fresh, key=lambda e: e.mono_ns)
            self._held = []
        if flush:
            return fresh
        cut = len(fresh)
        while cut and fresh[cut - 1].mono_ns > horizon:
            cut -= 1
        self._held = fresh[cut:]
        return fresh[:cut]

    def lost(self) -> Loss:
        """Events the kernel dropped so far, per CPU (``per_cpu/cpuN/stats``)."""
        overrun: dict[int, int] = {}
        dropped: dict[int, int] = {}
        for cpu in self._fds:
            with contextlib.suppress(TraceUnavailable):
                over, drop = _stats(_read(f"{self.instance}/per_cpu/cpu{cpu}/stats"))
                overrun[cpu], dropped[cpu] = over, drop
        return Loss(overrun, dropped)


# --------------------------------------------------------------------------- TIME_WAIT


TupleKey = tuple[str, int | None, str, int | None]


def time_wait_table(ports: Sequence[int] = ()) -> dict[TupleKey, State]:
    """4-tuple -> state of every TCP minisocket in a timewait state (sock_diag).

    The kernel keeps a closed connection's TIME_WAIT as an
    ``inet_timewait_sock``; one that timed out in FIN_WAIT2 as an orphan is
    kept the same way with substate FIN_WAIT2.  sock_diag reports both (with
    the substate); a dump asks only for those states, narrowed by ``ports``.
    """
    from tcplens.sources import netlink

    try:
        bytecode = netlink.port_filter(ports=ports)
    except ValueError:
        bytecode = b""
    kinds: list[tuple[int, Proto]] = [(int(socket.AF_INET), "tcp"), (int(socket.AF_INET6), "tcp")]
    socks = netlink.dump(kinds, states=(State.TIME_WAIT, State.FIN_WAIT2), bytecode=bytecode)
    out: dict[TupleKey, State] = {}
    for s in socks:
        timewait_kind = s.timer is not None and s.timer.kind == "timewait"
        if s.state is State.TIME_WAIT or (timewait_kind and not s.inode):
            out[(s.local.ip, s.local.port, s.remote.ip, s.remote.port)] = s.state
    return out


def time_wait_count() -> int:
    """Timewait minisockets the kernel holds in this namespace (``sockstat``'s ``tw``).

    Read in about 0.1 ms, where dumping them costs ~14 µs each: callers
    decide with it whether a :func:`time_wait_table` is affordable now.
    """
    from tcplens.sources import netlink

    return netlink.sockstat().get("TCP.tw", 0)


#: ``idiag_cookie`` that skips the cookie check of an exact request (INET_DIAG_NOCOOKIE)
_NOCOOKIE: Final = b"\xff" * 8
#: ``idiag_timer`` of a timewait minisocket (inet_twsk_diag_fill)
_TIMER_TIMEWAIT: Final = 3
#: exact requests sent before reading their answers: each answer is one message,
#: and the kernel drops answers that do not fit the socket's receive buffer
_LOOKUP_BATCH: Final = 64
_LOOKUP_RCVBUF: Final = 1 << 20
_SO_RCVBUFFORCE: Final = 33  # include/uapi/asm-generic/socket.h


def time_wait_of(keys: Iterable[TupleKey]) -> dict[TupleKey, State]:
    """:func:`time_wait_table`, asked only for these 4-tuples: one exact request each.

    A dump sends every minisocket on the traced ports, a hundred thousand on
    a busy host, to confirm the few closes of the last quarter second; an
    exact ``SOCK_DIAG_BY_FAMILY`` request (no ``NLM_F_DUMP``, the cookie
    ignored) names one connection, and the kernel answers with its
    ``inet_diag_msg`` (a minisocket's state is its substate) or ENOENT.
    The answer may also be a listener on the same local address and port:
    only timewait answers are kept.
    """
    return {k: state for k, (state, _left) in time_wait_timers(keys).items()}


def time_wait_timers(keys: Iterable[TupleKey]) -> dict[TupleKey, tuple[State, float]]:
    """:func:`time_wait_of` with each minisocket's timer: (state, seconds until it fires).

    ``idiag_expires`` of a minisocket is the time left on its timewait timer
    in milliseconds (``inet_twsk_diag_fill``): when the kernel will free it
    unless something ends it first.  A tracer following thousands of
    minisockets asks again for each only when its timer is due, instead of
    dumping the whole table every second.
    """
    wanted = list(dict.fromkeys(keys))
    try:
        answers = _lookups(wanted)
    except OSError as exc:
        if exc.errno != errno.ENOBUFS:
            raise SourceError(f"sock_diag: {exc.strerror or exc}") from exc
        # answers did not fit the receive buffer and were dropped: ask the whole table
        table = time_wait_table()
        return {k: (table[k], 0.0) for k in wanted if k in table}
    out: dict[TupleKey, tuple[State, float]] = {}
    for key, (state, timer, expires, inode) in answers.items():
        # a minisocket's state is its substate; an orphan's FIN_WAIT2 has no inode either
        if state is State.TIME_WAIT or (timer == _TIMER_TIMEWAIT and not inode):
            out[key] = (state, expires / 1000)
    return out


def _inodes_of(keys: Iterable[TupleKey]) -> dict[TupleKey, int]:
    """The socket inode of each of these connections (exact lookups); 0 or absent: none."""
    wanted = list(dict.fromkeys(keys))
    try:
        answers = _lookups(wanted)
    except OSError as exc:
        raise SourceError(f"sock_diag: {exc.strerror or exc}") from exc
    return {key: inode for key, (_s, _t, _e, inode) in answers.items() if inode}


@functools.cache
def _wire() -> tuple[struct.Struct, dict[str, int]]:
    """A lookup request, ``nlmsghdr`` + ``inet_diag_req_v2`` as one native struct (ports
    passed pre-swapped), and the ``inet_diag_msg`` field offsets an answer is read at.

    Derived from the structs netlink.py declares, once: packing by field name
    and unpacking into a dict cost most of a lookup (20 µs each under load).
    """
    from tcplens.sources import netlink as nl

    request = struct.Struct(nl.NLMSGHDR.format + nl.INET_DIAG_REQ_V2.format[1:])
    return request, nl.INET_DIAG_MSG.offsets


#: an exact lookup's answer: state (a minisocket's substate), idiag_timer, idiag_expires
#: (ms), idiag_inode
_Answer = tuple[State, int, int, int]


def _lookups(wanted: list[TupleKey]) -> dict[TupleKey, _Answer]:
    """One exact ``SOCK_DIAG_BY_FAMILY`` request per 4-tuple, 64 per send; the answers.

    Only answers for the very 4-tuple asked are kept: the kernel may answer
    with a listener on the same local address and port.
    """
    from tcplens.sources import netlink as nl

    out: dict[TupleKey, _Answer] = {}
    request = _wire()[0]
    pack, size = request.pack, request.size
    request_type, flags = nl.SOCK_DIAG_BY_FAMILY, nl.NLM_F_REQUEST
    htons, pton = socket.htons, socket.inet_pton
    with nl._open() as sock:
        with contextlib.suppress(OSError):  # root may pass net.core.rmem_max
            sock.setsockopt(socket.SOL_SOCKET, _SO_RCVBUFFORCE, _LOOKUP_RCVBUF)
        for first in range(0, len(wanted), _LOOKUP_BATCH):
            batch = wanted[first : first + _LOOKUP_BATCH]
            requests = []
            for seq, (lip, lport, rip, rport) in enumerate(batch, start=1):
                family = _AF_INET6 if ":" in lip else _AF_INET
                try:
                    src = pton(family, lip)
                    dst = pton(family, rip)
                except OSError:
                    continue
                # nlmsghdr, then inet_diag_req_v2: family, protocol, ext, pad, states, the
                # sockid (ports in network order, addresses padded to 16 bytes by pack)
                requests.append(
                    pack(size, request_type, flags, seq, 0, family, _IPPROTO_TCP, 0, 0, 0,
                         htons(lport or 0), htons(rport or 0), src, dst, 0, _NOCOOKIE)
                )  # fmt: skip
            if not requests:
                continue
            sock.sendall(b"".join(requests))
            out.update(_lookup_answers(sock, batch, len(requests)))
    return out


def _lookup_answers(
    sock: socket.socket, batch: list[TupleKey], expected: int
) -> dict[TupleKey, _Answer]:
    from tcplens.sources import netlink as nl

    out: dict[TupleKey, _Answer] = {}
    answered = 0
    sock.settimeout(2.0)  # an answer the kernel could not queue never comes
    buf = bytearray(1 << 16)
    head, hsize, attrs = nl._HDR.unpack_from, nl.NLMSGHDR.size, nl._ATTR_OFFSET
    at = _wire()[1]
    o_state, o_timer = hsize + at["idiag_state"], hsize + at["idiag_timer"]
    o_expires, o_inode = hsize + at["idiag_expires"], hsize + at["idiag_inode"]
    o_dport = hsize + at["idiag_dport"]
    u32 = _U32.unpack_from
    try:
        while answered < expected:
            n = sock.recv_into(buf)
            offset = 0
            while offset + hsize <= n:
                length, mtype, _flags, seq, _pid = head(buf, offset)
                if length < hsize or offset + length > n:
                    break
                if mtype == nl.NLMSG_ERROR:
                    answered += 1
                elif mtype == nl.SOCK_DIAG_BY_FAMILY and length >= attrs:
                    answered += 1
                    key = batch[seq - 1] if 0 < seq <= len(batch) else None
                    rport = (buf[offset + o_dport] << 8) | buf[offset + o_dport + 1]
                    if key is not None and rport == (key[3] or 0):
                        out[key] = (
                            STATE_BY_CODE[buf[offset + o_state]],
                            buf[offset + o_timer],
                            u32(buf, offset + o_expires)[0],
                            u32(buf, offset + o_inode)[0],
                        )
                offset += (length + 3) & ~3
    except TimeoutError as exc:
        raise SourceError(f"sock_diag: {expected - answered} lookups unanswered") from exc
    return out


#: connections whose owner is looked up one by one (~4 µs each on 6.18); more are
#: found in a dump of every socket with a file on the ports (0.1-0.2 s under load)
_OWNER_LOOKUPS: Final = 20_000


def _inodes_by_dump(wanted: set[TupleKey], ports: Sequence[int]) -> dict[TupleKey, int]:
    from tcplens.sources import netlink

    try:
        bytecode = netlink.port_filter(ports=ports)
    except ValueError:
        bytecode = b""
    kinds: list[tuple[int, Proto]] = [(int(socket.AF_INET), "tcp"), (int(socket.AF_INET6), "tcp")]
    inodes: dict[TupleKey, int] = {}
    # only sockets attached to a file have an owner: not the TIME_WAIT minisockets a
    # busy host holds by the hundred thousand (parsing them was most of this call's
    # time under load), nor the request sockets of SYN_RECV
    with_files = [st for st in State if st not in (State.TIME_WAIT, State.SYN_RECV)]
    for s in netlink.dump(kinds, bytecode=bytecode, states=with_files):
        key = (s.local.ip, s.local.port, s.remote.ip, s.remote.port)
        if key in wanted and s.inode:
            inodes[key] = s.inode
    return inodes


def owners_by_tuple(
    keys: Iterable[TupleKey], ports: Sequence[int] = (), proc_root: str = "/proc"
) -> dict[TupleKey, tuple[int, str | None]]:
    """Who holds each of these connections now: (pid, process name) by 4-tuple.

    The tracepoints carry no owner; sock_diag gives the socket's inode for
    its 4-tuple and :func:`tcplens.sources.processes.scan` the process
    holding that inode (the lowest pid when shared).  A connection that is
    gone, orphaned or whose owner may not be read is left out: unknown.
    """
    from tcplens.sources import processes

    wanted = set(keys)
    if not wanted:
        return {}
    inodes: dict[TupleKey, int] | None = None
    if len(wanted) <= _OWNER_LOOKUPS:
        with contextlib.suppress(SourceError):  # ENOBUFS: the dump below
            inodes = _inodes_of(wanted)
    if inodes is None:
        inodes = _inodes_by_dump(wanted, ports)
    if not inodes:
        return {}
    found = processes.scan(set(inodes.values()), proc_root)
    out: dict[TupleKey, tuple[int, str | None]] = {}
    names: dict[int, str | None] = {}
    for key, inode in inodes.items():
        owner = found.owners.get(inode)
        if owner is None:
            continue
        if owner.pid not in names:
            try:
                with open(f"{proc_root}/{owner.pid}/comm", "rb") as fh:
                    names[owner.pid] = fh.read().decode("utf-8", "replace").rstrip("\n")
            except OSError:
                names[owner.pid] = None
        out[key] = (owner.pid, names[owner.pid])
    return out
