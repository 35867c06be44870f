"""Rendering socket lists: rich table, plain text, JSON, CSV and net-tools netstat.

* The table (a terminal) is coloured by state and fits the terminal width;
  piped, the same columns come out as plain, aligned, untruncated text.
* ``--json`` is a versioned contract (:data:`JSON_VERSION`, docs/json.md):
  every key is always present, ``null`` when the source does not know it.
* ``--netstat`` reproduces ``netstat -tuanpW`` from net-tools byte for byte
  (the printf formats of ``tcp_do_one``/``udp_do_one`` and ``prg_cache``'s
  20-column program field), so scripts that parse netstat keep working and
  the saved-text parser reads it back.
* At 100k sockets the plain and JSON listings can be written straight from
  the columnar dump (:func:`write_plain_columns`, :func:`write_json_columns`)
  instead of records; tests hold their text byte-identical to the record
  writers', which remain the reference and serve every other option.
"""

from __future__ import annotations

import csv
import io
import json
import socket as _socket
import sys
from array import array
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import repeat
from typing import TYPE_CHECKING, Any, Final, TextIO

from tcplens.model.states import SPELLINGS, STATE_BY_CODE, UNCONNECTED, State, shown_state
from tcplens.sources.records import (
    KERNEL_TIMER_KINDS,
    MINISOCKET_CODES,
    Addr,
    Holder,
    Proto,
    Snapshot,
    Socket,
    TcpInfo,
    Timer,
)
from tcplens.views.styles import STATE_STYLES

if TYPE_CHECKING:  # rich costs ~20 ms to import; JSON, CSV and pipes never need it
    from rich.table import Table

    from tcplens.sources.columns import SocketColumns
    from tcplens.sources.processes import Owners

__all__ = [
    "CSV_COLUMNS",
    "JSON_KEYS",
    "JSON_VERSION",
    "STATE_STYLES",
    "Columns",
    "Resolver",
    "netstat_state",
    "render_csv",
    "render_json",
    "render_netstat",
    "render_plain",
    "render_table",
    "socket_to_json",
    "write_json",
    "write_plain",
]

#: bump when a key changes meaning or disappears (adding keys keeps the version)
JSON_VERSION: Final = 1


@dataclass(frozen=True, slots=True)
class Columns:
    """Optional column groups, as ``ss -o``, ``-i``, ``-e`` name them."""

    timers: bool = False
    info: bool = False
    extended: bool = False
    cmdline: bool = False
    processes: bool = True


class Resolver:
    """Host and service names for ``--resolve``, each looked up once."""

    def __init__(self) -> None:
        self._hosts: dict[str, str] = {}
        self._services: dict[tuple[int, str], str] = {}

    def host(self, ip: str) -> str:
        if ip not in self._hosts:
            try:
                name = _socket.gethostbyaddr(ip)[0]
            except (OSError, UnicodeError):
                name = ip
            self._hosts[ip] = name
        return self._hosts[ip]

    def service(self, port: int, proto: str) -> str:
        key = (port, proto)
        if key not in self._services:
            try:
                name = _socket.getservbyport(port, proto)
            except OSError:
                name = str(port)
            self._services[key] = name
        return self._services[key]


def _is_any(ip: str) -> bool:
    return ip in ("0.0.0.0", "::", "*")


def show_addr(addr: Addr, proto: str, resolver: Resolver | None = None) -> str:
    """``ss`` style: ``127.0.0.1:80``, ``[::1]:80``, ``*`` for port 0 or unknown."""
    if addr.port in (None, 0):
        port = addr.service or "*"
    elif resolver is not None:
        port = resolver.service(addr.port, proto)
    else:
        port = str(addr.port)
    ip = addr.ip
    if resolver is not None and not _is_any(ip):
        ip = resolver.host(ip)
    if ":" in ip:
        return f"[{ip}]:{port}"
    return f"{ip}:{port}"


def show_timer(timer: Timer | None) -> str:
    if timer is None:
        return ""
    text = f"{timer.kind} {timer.remaining:.1f}s"
    if timer.retransmits:
        text += f" x{timer.retransmits}"
    return text


def show_info(info: TcpInfo | None) -> str:
    if info is None:
        return ""
    parts = []
    if info.rtt_ms is not None:
        parts.append(f"rtt:{info.rtt_ms:g}/{info.rttvar_ms or 0:g}ms")
    if info.cwnd is not None:
        parts.append(f"cwnd:{info.cwnd}")
    if info.ssthresh and info.ssthresh < 0x7FFFFFFF:
        parts.append(f"ssthresh:{info.ssthresh}")
    if info.total_retrans:
        parts.append(f"retrans:{info.retransmits or 0}/{info.total_retrans}")
    if info.bytes_acked is not None:
        parts.append(f"acked:{info.bytes_acked}")
    if info.bytes_received is not None:
        parts.append(f"received:{info.bytes_received}")
    if info.last_send_ms is not None:
        parts.append(f"lastsnd:{info.last_send_ms}ms")
    if info.last_recv_ms is not None:
        parts.append(f"lastrcv:{info.last_recv_ms}ms")
    return " ".join(parts)


def _program(sock: Socket) -> str:
    if sock.pid is None:
        return "-"
    return f"{sock.pid}/{sock.process or '?'}"


def _holders_text(holders: Sequence[Holder]) -> str:
    """Every holder of a socket shared after fork(), as ``ss -p`` names them all."""
    return ",".join(f"{h.pid}/{h.process or '?'}" for h in holders)


_CLOSED: Final = State.CLOSED


def _num(value: int | None) -> str:
    return "-" if value is None else str(value)


def _headers(cols: Columns) -> list[str]:
    head = ["Proto", "Recv-Q", "Send-Q", "Local Address", "Peer Address", "State"]
    if cols.processes:
        head.append("PID/Program")
    if cols.extended:
        head += ["User", "Inode"]
    if cols.timers:
        head.append("Timer")
    if cols.info:
        head.append("TCP info")
    if cols.cmdline:
        head.append("Command")
    return head


def _fast_addr(addr: Addr) -> str:
    """:func:`show_addr` without a resolver, inlined for the 100k-row case."""
    ip, port = addr.ip, addr.port
    port_text = (addr.service or "*") if not port else str(port)
    return f"[{ip}]:{port_text}" if ":" in ip else f"{ip}:{port_text}"


def _zoned(text: str, addr: Addr, zone: str) -> str:
    """``[fe80::1%12]:445``: a link-local address means nothing without its zone."""
    if not addr.ip.lower().startswith("fe80:") or not text.startswith("["):
        return text
    return text.replace("]", f"%{zone}]", 1)


def _row(sock: Socket, cols: Columns, resolver: Resolver | None) -> list[str]:
    proto = sock.proto if sock.family == 4 else sock.proto + "6"
    recv_q, send_q = sock.recv_q, sock.send_q
    if resolver is None:
        local, remote = _fast_addr(sock.local), _fast_addr(sock.remote)
    else:
        local = show_addr(sock.local, sock.proto, resolver)
        remote = show_addr(sock.remote, sock.proto, resolver)
    if sock.interface is not None and sock.family == 6:
        local, remote = (
            _zoned(local, sock.local, sock.interface),
            _zoned(remote, sock.remote, sock.interface),
        )
    row = [
        proto,
        "-" if recv_q is None else str(recv_q),
        "-" if send_q is None else str(send_q),
        local,
        remote,
        # shown_state() inlined (100k rows): UNCONN for unconnected UDP, as ss prints it
        UNCONNECTED if sock.state is _CLOSED and sock.proto == "udp" else str.__str__(sock.state),
    ]
    if cols.processes:
        row.append(_holders_text(sock.holders) if sock.holders else _program(sock))
    if cols.extended:
        row += [sock.user or _num(sock.uid), _num(sock.inode)]
    if cols.timers:
        row.append(show_timer(sock.timer))
    if cols.info:
        row.append(show_info(sock.info))
    if cols.cmdline:
        row.append(sock.cmdline or "")
    return row


_RIGHT: Final = {"Recv-Q", "Send-Q", "Inode"}
#: free text that may fold onto more lines; addresses, queues, state and pid/program never do
_FOLDING: Final = {"TCP info", "Command", "Timer"}
#: narrowest a folding column gets before the table grows past the terminal instead
_FOLD_MIN: Final = 16


#: :data:`STATE_STYLES` as ANSI SGR codes, for the plain writer's ``colour`` mode
_SGR: Final = {
    "bold": "1",
    "dim": "2",
    "red": "31",
    "green": "32",
    "yellow": "33",
    "blue": "34",
    "magenta": "35",
    "cyan": "36",
}
_STATE_COLUMN: Final = 5


def _ansi(style: str) -> str:
    codes = ";".join(_SGR[word] for word in style.split() if word in _SGR)
    return f"\x1b[{codes}m" if codes else ""


def _measured_widths(
    sockets: Sequence[Socket], cols: Columns, resolver: Resolver | None, head: list[str]
) -> list[int]:
    """Column widths from the rows themselves, built a chunk at a time and dropped."""
    widths = [len(name) for name in head]
    for start in range(0, len(sockets), _CHUNK):
        rows = [_row(s, cols, resolver) for s in sockets[start : start + _CHUNK]]
        for i, column in enumerate(zip(*rows, strict=True)):
            widths[i] = max(widths[i], max(map(len, column)))
    return widths


#: column sets whose widths :func:`_counted_widths` computes without building rows
_COUNTED: Final = (Columns(), Columns(processes=True))
#: characters of a port number as text, by port ("*" for port 0)
_PORT_TEXT: Final = bytes(len(str(port)) if port else 1 for port in range(65536))


def _counted_widths(sockets: Sequence[Socket], cols: Columns, head: list[str]) -> list[int]:
    """The widths :func:`_measured_widths` finds, from lengths alone (no row strings).

    Building every row only to measure it was half of a 100k-socket plain
    listing; an address's text is ``ip:port`` (``[ip]:port`` for IPv6), so
    its length is the sum of lengths the records already hold.
    """
    widths = [len(name) for name in head]
    if not sockets:
        return widths
    ports = _PORT_TEXT
    kinds = {(s.proto, s.family) for s in sockets}
    widths[0] = max(widths[0], *(len(p) + (f != 4) for p, f in kinds))

    def queue_width(values: set[int | None]) -> int:
        return max(1 if v is None else len(str(v)) for v in values)

    widths[1] = max(widths[1], queue_width({s.recv_q for s in sockets}))
    widths[2] = max(widths[2], queue_width({s.send_q for s in sockets}))
    for i, addrs in ((3, [s.local for s in sockets]), (4, [s.remote for s in sockets])):
        longest = 0
        for ip, port, service in addrs:
            width = len(ip) + (3 if ":" in ip else 1)
            width += len(service or "*") if not port and service else ports[port or 0]
            if width > longest:
                longest = width
        widths[i] = max(widths[i], longest)
    shown = {shown_state(proto, state) for proto, state in {(s.proto, s.state) for s in sockets}}
    widths[5] = max(widths[5], *map(len, shown))
    if cols.processes:
        owners = {(s.pid, s.process) for s in sockets if not s.holders}
        shared = {s.holders for s in sockets if s.holders}
        widths[6] = max(
            widths[6],
            *(1 if pid is None else len(f"{pid}/{name or '?'}") for pid, name in owners),
            *(len(_holders_text(holders)) for holders in shared),
        )
    return widths


def write_plain(
    out: TextIO,
    sockets: Sequence[Socket],
    cols: Columns = Columns(),
    resolver: Resolver | None = None,
    *,
    colour: bool = False,
) -> None:
    """Aligned columns, nothing truncated: for pipes, files and ``grep``.

    Column widths need every row, but keeping 100k formatted rows next to the
    records costs ~50 MiB, so rows are built twice, a chunk at a time: once
    to measure, once to write with one precompiled format string.
    ``colour`` colours the state column with ANSI codes (terminals too big
    for a rich table).
    """
    head = _headers(cols)
    if resolver is None and cols in _COUNTED:
        widths = _counted_widths(sockets, cols, head)
    else:
        widths = _measured_widths(sockets, cols, resolver, head)
    fmt, painted = _formatter(out, head, widths, colour=colour)
    for start in range(0, len(sockets), _CHUNK):
        rows = [_row(s, cols, resolver) for s in sockets[start : start + _CHUNK]]
        if painted:
            for row in rows:
                row[_STATE_COLUMN] = painted[row[_STATE_COLUMN]]
        out.write("\n".join([fmt(*row).rstrip() for row in rows]) + "\n")


def _formatter(
    out: TextIO, head: list[str], widths: list[int], *, colour: bool
) -> tuple[Callable[..., str], dict[str, str]]:
    """Write the header; return the row format and, with ``colour``, the painted states."""
    last = len(head) - 1
    parts = []
    for i, name in enumerate(head):
        if name in _RIGHT:
            parts.append(f"{{{i}:>{widths[i]}}}")
        elif i == last:
            parts.append(f"{{{i}}}")
        else:
            parts.append(f"{{{i}:<{widths[i]}}}")
    fmt = "  ".join(parts).format
    out.write(fmt(*head).rstrip() + "\n")
    painted: dict[str, str] = {}
    if colour:
        # pad first, then wrap in escape codes, so the codes take no width
        width = widths[_STATE_COLUMN] if last != _STATE_COLUMN else 0
        painted = {
            state.value: f"{_ansi(style)}{state.value:<{width}}\x1b[0m"
            for state, style in STATE_STYLES.items()
        }
        unconnected = STATE_STYLES.get(State.CLOSED, "")
        painted[UNCONNECTED] = f"{_ansi(unconnected)}{UNCONNECTED:<{width}}\x1b[0m"
        parts[_STATE_COLUMN] = f"{{{_STATE_COLUMN}}}"
        fmt = "  ".join(parts).format
    return fmt, painted


def _ip_texts(raw: bytes, family: int) -> list[str]:
    """Packed addresses (4 or 16 bytes each) as text, each distinct one converted once."""
    if family == 4:
        keys4 = array("I", raw)
        order = sys.byteorder
        table4 = {k: _socket.inet_ntop(_socket.AF_INET, k.to_bytes(4, order)) for k in set(keys4)}
        return list(map(table4.__getitem__, keys4))
    keys6 = [raw[i : i + 16] for i in range(0, len(raw), 16)]
    table6 = {k: _socket.inet_ntop(_socket.AF_INET6, k) for k in set(keys6)}
    return list(map(table6.__getitem__, keys6))


@dataclass(slots=True)
class ColumnText:
    """The text of a columnar listing that needs no owner: made while the owners are scanned."""

    #: (proto label, start, stop, local address texts, peer address texts), record order
    parts: list[tuple[str, int, int, list[str], list[str]]]
    recv_q: array[int]
    send_q: array[int]


def _addresses(
    columns: SocketColumns,
) -> tuple[list[tuple[Proto, int, int, int, list[str], list[str]]], array[int]]:
    """Per dumped kind, in the record dump's order (tcp, tcp6, udp, udp6): its
    (proto, family, start, stop, local IP texts, peer IP texts); and every peer port."""
    raw_src4, raw_dst4 = columns.field("src", 4), columns.field("dst", 4)
    dports = columns.numbers("dport")
    raw6: tuple[bytes, bytes] | None = None
    kinds: list[tuple[Proto, int, int, int, list[str], list[str]]] = []
    for proto, family, start, stop in sorted(columns.ranges, key=lambda r: (r[0], r[1])):
        if stop == start:
            continue
        if family == 4:
            local_ips = _ip_texts(raw_src4[start * 4 : stop * 4], 4)
            peer_ips = _ip_texts(raw_dst4[start * 4 : stop * 4], 4)
        else:
            if raw6 is None:
                raw6 = columns.field("src"), columns.field("dst")
            local_ips = _ip_texts(raw6[0][start * 16 : stop * 16], 6)
            peer_ips = _ip_texts(raw6[1][start * 16 : stop * 16], 6)
        kinds.append((proto, family, start, stop, local_ips, peer_ips))
    return kinds, dports


def column_text(columns: SocketColumns) -> ColumnText:
    """Addresses (each distinct one converted once), ports and queues of every socket."""
    kinds, dports = _addresses(columns)
    parts: list[tuple[str, int, int, list[str], list[str]]] = []
    for proto, family, start, stop, local_ips, peer_ips in kinds:
        if family == 6:
            local_ips = [f"[{ip}]" for ip in local_ips]
            peer_ips = [f"[{ip}]" for ip in peer_ips]
        local = [
            f"{ip}:{port}" if port else f"{ip}:*"
            for ip, port in zip(local_ips, columns.sport[start:stop], strict=True)
        ]
        peer = [
            f"{ip}:{port}" if port else f"{ip}:*"
            for ip, port in zip(peer_ips, dports[start:stop], strict=True)
        ]
        parts.append((proto + ("" if family == 4 else "6"), start, stop, local, peer))
    return ColumnText(parts, columns.numbers("rqueue"), columns.numbers("wqueue"))


def write_plain_columns(
    out: TextIO,
    columns: SocketColumns,
    *,
    colour: bool = False,
    owners: Owners | None = None,
    text: ColumnText | None = None,
) -> None:
    """What :func:`write_plain` prints for the default columns, from columns.

    With ``owners`` (:func:`tcplens.sources.processes.owners_of`, one entry
    per socket of ``columns``) the PID/Program column follows, as with
    processes.  ``text`` is :func:`column_text` made beforehand.

    The 100k-socket listing without records (``ls -P`` piped): addresses,
    ports, queues and states are taken from the dump a field at a time and
    each distinct address is converted to text once; a test holds the text
    equal to the record path's.
    """
    names = [str.__str__(state) for state in STATE_BY_CODE]
    udp_names = [shown_state("udp", state) for state in STATE_BY_CODE]
    if text is None:
        text = column_text(columns)
    parts, recv_q, send_q = text.parts, text.recv_q, text.send_q
    head = _headers(Columns(processes=owners is not None))
    widths = [len(name) for name in head]
    programs: list[str] = []
    if owners is not None:
        programs = [
            "-" if pid is None else f"{pid}/{name or '?'}"
            for pid, name in zip(owners.pid, owners.process, strict=True)
        ]
        for index, holders in owners.holders.items():
            programs[index] = _holders_text(holders)
        widths[6] = max(widths[6], max(map(len, programs), default=0))
    for label, start, stop, local, peer in parts:
        widths[0] = max(widths[0], len(label))
        widths[1] = max(widths[1], len(str(max(recv_q[start:stop]))))
        widths[2] = max(widths[2], len(str(max(send_q[start:stop]))))
        widths[3] = max(widths[3], max(map(len, local)))
        widths[4] = max(widths[4], max(map(len, peer)))
        states = set(columns.state[start:stop])
        named = udp_names if label.startswith("udp") else names
        widths[5] = max(widths[5], *(len(named[code]) for code in states))
    _fmt, painted = _formatter(out, head, widths, colour=colour)
    shown = [painted.get(name, name) for name in names] if painted else names
    udp_shown = [painted.get(name, name) for name in udp_names] if painted else udp_names
    # the padding _formatter's format would do, a column at a time (C-level maps)
    w = widths
    for label, start, stop, local, peer in parts:
        for at in range(start, stop, _CHUNK):  # a chunk of lines at a time: bounded memory
            end = min(at + _CHUNK, stop)
            texts = udp_shown if label.startswith("udp") else shown
            state_texts = map(texts.__getitem__, columns.state[at:end])
            columns_of_rows: list[Iterable[str]] = [
                repeat(label.ljust(w[0])),
                map(str.rjust, map(str, recv_q[at:end]), repeat(w[1])),
                map(str.rjust, map(str, send_q[at:end]), repeat(w[2])),
                map(str.ljust, local[at - start : end - start], repeat(w[3])),
                map(str.ljust, peer[at - start : end - start], repeat(w[4])),
            ]
            if programs:  # the state is padded then, and the program is last
                width = w[5] if not painted else 0
                columns_of_rows.append(map(str.ljust, state_texts, repeat(width)))
                columns_of_rows.append(iter(programs[at:end]))
            else:
                columns_of_rows.append(state_texts)
            rows = map("  ".join, zip(*columns_of_rows, strict=False))  # repeat() is endless
            out.write("\n".join(map(str.rstrip, rows) if programs else rows) + "\n")


def render_plain(
    sockets: Sequence[Socket], cols: Columns = Columns(), resolver: Resolver | None = None
) -> str:
    """The plain-text listing as a string (see :func:`write_plain`)."""
    buf = io.StringIO()
    write_plain(buf, sockets, cols, resolver)
    return buf.getvalue()


def render_table(
    sockets: Sequence[Socket],
    cols: Columns = Columns(),
    resolver: Resolver | None = None,
    *,
    width: int | None = None,
) -> Table:
    """A rich table coloured by state that never splits an address:port or a pid/program.

    Fitting ``width`` (the terminal's), the free-text columns (timer, TCP
    info, command) fold first, then the gap between columns narrows to one
    space.  A table that still does not fit is as wide as its rows: print it
    with ``crop=False`` and the terminal wraps its lines as it wraps ss's,
    which keeps each address whole for copying, unlike a column folded at
    ``127.0.0.1:180`` / ``90``.
    """
    from rich.cells import cell_len
    from rich.table import Table
    from rich.text import Text

    head = _headers(cols)
    rows = [_row(sock, cols, resolver) for sock in sockets]
    natural = [cell_len(name) for name in head]
    for cells in rows:
        natural = [max(w, cell_len(cell)) for w, cell in zip(natural, cells, strict=True)]
    least = [
        min(w, max(_FOLD_MIN, cell_len(name))) if name in _FOLDING else w
        for name, w in zip(head, natural, strict=True)
    ]
    gaps = len(head) - 1

    def needed(gap: int) -> int:
        return sum(least) + gap * gaps

    table = Table(box=None, pad_edge=False, header_style="bold", show_edge=False)
    if width is not None and needed(2) > width:
        table.padding = (0, 1, 0, 0)  # one space between columns
        if needed(1) > width:
            table.width = needed(1)
    for name in head:
        folding = name in _FOLDING
        table.add_column(
            name,
            justify="right" if name in _RIGHT else "left",
            no_wrap=not folding,
            overflow="fold" if folding else "ellipsis",  # "ignore" loses right-justify
            min_width=None if folding else cell_len(name),
        )
    for sock, cells in zip(sockets, rows, strict=True):
        row: list[Text | str] = list(cells)
        row[_STATE_COLUMN] = Text(cells[_STATE_COLUMN], style=STATE_STYLES.get(sock.state, ""))
        table.add_row(*row, style="dim" if sock.state is State.TIME_WAIT else None)
    return table


def _info_json(info: TcpInfo | None) -> dict[str, Any] | None:
    if info is None:
        return None
    return {name: getattr(info, name) for name in TcpInfo.__slots__}


def socket_to_json(sock: Socket) -> dict[str, Any]:
    """One socket as the JSON contract spells it (docs/json.md), parsed from the row text."""
    row: dict[str, Any] = json.loads(_socket_json_text(sock))
    return row


def snapshot_to_json(snapshot: Snapshot, count: int) -> dict[str, Any]:
    return {
        "source": snapshot.source,
        "host": snapshot.host,
        "taken_at": snapshot.taken_at,
        "taken_at_iso": datetime.fromtimestamp(snapshot.taken_at, UTC).isoformat(),
        "missing": list(snapshot.missing),
        "warnings": [
            {"line": w.line, "text": w.text, "message": w.message} for w in snapshot.warnings
        ],
        "skipped": dict(snapshot.skipped),
        "total": len(snapshot.sockets),
        "count": count,
    }


_encode_str = json.encoder.encode_basestring_ascii

#: The keys of a JSON socket row (docs/json.md), in order.  :func:`socket_to_json` is the
#: record writer's row parsed back, so two writers remain: :func:`_socket_json_text` and
#: :func:`write_json_columns`.  They keep their inline f-strings: a row function generated
#: from one template cost +12 % (columns) and +7 % (records) per 100k rows, measured.
#: Tests hold both to these keys and byte for byte to each other.
JSON_KEYS: Final = (
    "proto",
    "family",
    "local",
    "remote",
    "state",
    "recv_q",
    "send_q",
    "uid",
    "user",
    "inode",
    "pid",
    "fd",
    "process",
    "cmdline",
    "timer",
    "info",
    "interface",
    "holders",
)


def _socket_json_text(sock: Socket, enc: Any = _encode_str, null: str = "null") -> str:
    """``json.dumps(socket_to_json(sock))`` without building the dict (3x faster at 100k).

    Every nullable value is an inline conditional rather than a helper call:
    at 100k sockets ~1.4M helper calls were a third of the time.  Kept
    byte-identical to the dict form by ``tests/views/test_ls.py``.
    """
    local, remote, timer, info = sock.local, sock.remote, sock.timer, sock.info
    lport, rport, lsvc, rsvc = local.port, remote.port, local.service, remote.service
    recv_q, send_q, uid, user = sock.recv_q, sock.send_q, sock.uid, sock.user
    inode, pid, fd, process = sock.inode, sock.pid, sock.fd, sock.process
    cmdline, interface = sock.cmdline, sock.interface
    if timer is None:
        timer_text = null
    else:
        timer_text = (
            f'{{"kind":{enc(timer.kind)},"remaining":{float(timer.remaining)!r},'
            f'"retransmits":{timer.retransmits}}}'
        )
    info_text = null if info is None else json.dumps(_info_json(info), separators=_SEP)
    process_text = null if process is None else enc(process)
    if sock.holders:
        holders_text = ",".join(
            f'{{"pid":{h.pid},"fd":{null if h.fd is None else h.fd},'
            f'"process":{null if h.process is None else enc(h.process)}}}'
            for h in sock.holders
        )
    elif pid is None:
        holders_text = ""
    else:
        holders_text = f'{{"pid":{pid},"fd":{null if fd is None else fd},"process":{process_text}}}'
    return (
        f'{{"proto":"{sock.proto}","family":{sock.family},'
        f'"local":{{"ip":{enc(local.ip)},"port":{null if lport is None else lport},'
        f'"service":{null if lsvc is None else enc(lsvc)}}},'
        f'"remote":{{"ip":{enc(remote.ip)},"port":{null if rport is None else rport},'
        f'"service":{null if rsvc is None else enc(rsvc)}}},'
        f'"state":"{str.__str__(sock.state)}",'
        f'"recv_q":{null if recv_q is None else recv_q},'
        f'"send_q":{null if send_q is None else send_q},'
        f'"uid":{null if uid is None else uid},"user":{null if user is None else enc(user)},'
        f'"inode":{null if inode is None else inode},"pid":{null if pid is None else pid},'
        f'"fd":{null if fd is None else fd},'
        f'"process":{process_text},'
        f'"cmdline":{null if cmdline is None else enc(cmdline)},'
        f'"timer":{timer_text},"info":{info_text},'
        f'"interface":{null if interface is None else enc(interface)},'
        f'"holders":[{holders_text}]}}'
    )


_SEP: Final = (",", ":")


def write_json_columns(
    out: TextIO, columns: SocketColumns, snapshot: Snapshot, owners: Owners | None = None
) -> None:
    """What :func:`write_json` streams, from columns (``owners`` as for the plain text).

    ``snapshot`` carries the header (source, host, time, missing); its
    socket list is not used.  Every row is the text
    :func:`_socket_json_text` gives for the record the dump would have made
    (a test holds the two byte-identical).
    """
    from tcplens.sources.netlink import ifname

    enc = _encode_str
    header = snapshot_to_json(snapshot, len(columns))
    header["total"] = len(columns)
    head = json.dumps({"version": JSON_VERSION, "snapshot": header}, separators=_SEP)
    out.write(head[:-1] + ',"sockets":[')
    names = [str.__str__(state) for state in STATE_BY_CODE]
    kinds = {
        code: f'{{"kind":{_encode_str(kind)},"remaining":'
        for code, kind in KERNEL_TIMER_KINDS.items()
    }
    other = f'{{"kind":{_encode_str("other")},"remaining":'
    parts, dports = _addresses(columns)
    recv_q = columns.numbers("rqueue")
    send_q = columns.numbers("wqueue")
    uids = columns.numbers("uid")
    ifindex = columns.numbers("if")
    retrans = columns.field("retrans")
    none = [None] * len(columns)
    pids, fds = (owners.pid, owners.fd) if owners else (none, none)
    processes, users = (owners.process, owners.user) if owners else (none, none)
    holders = owners.holders if owners else {}
    shared_at: dict[int, list[int]] = {}  # the chunk each shared socket is written in
    for _proto, _family, start, stop, _l, _p in parts:
        for index in sorted(i for i in holders if start <= i < stop):
            shared_at.setdefault(start + (index - start) // _CHUNK * _CHUNK, []).append(index)
    interfaces: dict[int, str] = {0: "null"}
    first = True
    for proto, family, start, stop, local_ips, peer_ips in parts:
        for index in set(ifindex[start:stop]):
            if index not in interfaces:
                interfaces[index] = _encode_str(ifname(index))
        for at in range(start, stop, _CHUNK):  # a chunk of rows at a time: bounded memory
            end = min(at + _CHUNK, stop)
            timers = [
                "null"
                if not kind
                else f'{kinds.get(kind, other)}{expires / 1000.0!r},"retransmits":{again}}}'
                for kind, expires, again in zip(
                    columns.timer[at:end], columns.expires[at:end], retrans[at:end], strict=True
                )
            ]
            held = [
                ""
                if pid is None
                else f'{{"pid":{pid},"fd":{"null" if fd is None else fd},'
                f'"process":{"null" if name is None else enc(name)}}}'
                for pid, fd, name in zip(pids[at:end], fds[at:end], processes[at:end], strict=True)
            ]
            for shared in shared_at.get(at, ()):
                held[shared - at] = ",".join(
                    f'{{"pid":{h.pid},"fd":{"null" if h.fd is None else h.fd},'
                    f'"process":{"null" if h.process is None else enc(h.process)}}}'
                    for h in holders[shared]
                )
            rows = [
                f'{{"proto":"{proto}","family":{family},'
                f'"local":{{"ip":"{lip}","port":{lport},"service":null}},'
                f'"remote":{{"ip":"{rip}","port":{rport},"service":null}},'
                f'"state":"{names[code]}","recv_q":{rq},"send_q":{sq},'
                f'"uid":{"null" if code in MINISOCKET_CODES else uid},'
                f'"user":{"null" if user is None else enc(user)},'
                f'"inode":{inode or "null"},"pid":{"null" if pid is None else pid},'
                f'"fd":{"null" if fd is None else fd},'
                f'"process":{"null" if name is None else enc(name)},"cmdline":null,'
                f'"timer":{timer},"info":null,"interface":{interfaces[index]},'
                f'"holders":[{holding}]}}'
                for (
                    lip,
                    lport,
                    rip,
                    rport,
                    code,
                    rq,
                    sq,
                    uid,
                    inode,
                    timer,
                    index,
                    pid,
                    fd,
                    name,
                    user,
                    holding,
                ) in zip(
                    local_ips[at - start : end - start],
                    columns.sport[at:end],
                    peer_ips[at - start : end - start],
                    dports[at:end],
                    columns.state[at:end],
                    recv_q[at:end],
                    send_q[at:end],
                    uids[at:end],
                    columns.inode[at:end],
                    timers,
                    ifindex[at:end],
                    pids[at:end],
                    fds[at:end],
                    processes[at:end],
                    users[at:end],
                    held,
                    strict=True,
                )
            ]
            if not first:
                out.write(",")
            first = False
            out.write(",".join(rows))
    out.write("]}\n")


def write_json(
    out: TextIO,
    snapshot: Snapshot,
    sockets: Sequence[Socket] | None = None,
    resolver: Resolver | None = None,
) -> None:
    """Stream ``{"version": 1, "snapshot": {...}, "sockets": [...]}`` as one line.

    Rows are written in chunks so 100k sockets never exist as one big string.
    """
    chosen = snapshot.sockets if sockets is None else sockets
    head = json.dumps(
        {"version": JSON_VERSION, "snapshot": snapshot_to_json(snapshot, len(chosen))},
        separators=_SEP,
    )
    out.write(head[:-1] + ',"sockets":[')
    for start in range(0, len(chosen), _CHUNK):
        part = chosen[start : start + _CHUNK]
        if resolver is None:
            rows = [_socket_json_text(s) for s in part]
        else:
            rows = [json.dumps(_resolved_json(s, resolver), separators=_SEP) for s in part]
        if start:
            out.write(",")
        out.write(",".join(rows))
    out.write("]}\n")


_CHUNK: Final = 4096


def _resolved_json(sock: Socket, resolver: Resolver) -> dict[str, Any]:
    row = socket_to_json(sock)
    for end, addr in (("local", sock.local), ("remote", sock.remote)):
        if addr.port:
            name = resolver.service(addr.port, sock.proto)
            row[end]["service"] = None if name == str(addr.port) else name
        if not _is_any(addr.ip):
            host = resolver.host(addr.ip)
            row[end]["host"] = None if host == addr.ip else host
    return row


def render_json(
    snapshot: Snapshot, sockets: Sequence[Socket] | None = None, resolver: Resolver | None = None
) -> str:
    """The JSON document as a string (see :func:`write_json`)."""
    buf = io.StringIO()
    write_json(buf, snapshot, sockets, resolver)
    return buf.getvalue()


#: CSV header; one row per socket, empty cells for unknown values
CSV_COLUMNS: Final = (
    "proto",
    "family",
    "local_ip",
    "local_port",
    "remote_ip",
    "remote_port",
    "state",
    "recv_q",
    "send_q",
    "uid",
    "user",
    "inode",
    "pid",
    "fd",
    "process",
    "timer_kind",
    "timer_remaining",
    "timer_retransmits",
    "rtt_ms",
    "cwnd",
    "interface",
    "cmdline",
)


def render_csv(sockets: Iterable[Socket]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for s in sockets:
        t = s.timer
        writer.writerow(
            [
                s.proto,
                s.family,
                s.local.ip,
                s.local.port,
                s.remote.ip,
                s.remote.port,
                s.state.value,
                s.recv_q,
                s.send_q,
                s.uid,
                s.user,
                s.inode,
                s.pid,
                s.fd,
                s.process,
                t.kind if t else None,
                t.remaining if t else None,
                t.retransmits if t else None,
                s.info.rtt_ms if s.info else None,
                s.info.cwnd if s.info else None,
                s.interface,
                s.cmdline,
            ]
        )
    return buf.getvalue()


# --- net-tools netstat -------------------------------------------------------------------

NETSTAT_TITLE: Final = "Active Internet connections (servers and established)"
#: net-tools ``netstat.c`` prints this header with ``-p``; widths follow its printf formats
NETSTAT_HEADER: Final = (
    "Proto Recv-Q Send-Q Local Address           Foreign Address         State       "
    "PID/Program name    "
)
#: ``PROGNAME_WIDTH`` in netstat.c: "pid/name" is cut to 19 characters plus NUL
PROGNAME_WIDTH: Final = 20


def netstat_state(sock: Socket) -> str:
    """The state column as Linux netstat prints it (``udp_do_one``: blank when unconnected)."""
    if sock.proto == "udp" and sock.state is State.CLOSED:
        return ""
    return SPELLINGS[sock.state]["netstat (Linux)"][0]


def _netstat_addr(addr: Addr, resolver: Resolver | None, proto: str) -> str:
    port = "*" if addr.port in (None, 0) else str(addr.port)
    ip = addr.ip
    if ip[:7].lower() == "::ffff:" and "." in ip:
        # net-tools prints an IPv4-mapped peer of a dual-stack socket as plain IPv4
        # (tcp6 ... 127.0.0.1:18095), checked against netstat 2.10 on Debian 12
        ip = ip[7:]
    if resolver is not None:
        if addr.port:
            port = resolver.service(addr.port, proto)
        if not _is_any(ip):
            ip = resolver.host(ip)
    return f"{ip}:{port}"


def render_netstat(
    snapshot: Snapshot, sockets: Sequence[Socket] | None = None, resolver: Resolver | None = None
) -> str:
    """``netstat -tuanpW`` output: title, header, one line per socket (tcp, tcp6, udp, udp6).

    Addresses are never truncated (as with ``-W``); a listener's Send-Q is 0
    as in ``/proc/net/tcp`` (not the backlog netlink reports); everything else matches
    ``printf("%-4s  %6ld %6ld %-*s %-*s %-11s", ...)`` followed by the
    program column ``" %-20s"`` (cut to 19 characters) (``-`` when the owner is unknown).
    """
    chosen = list(snapshot.sockets if sockets is None else sockets)
    order = {("tcp", 4): 0, ("tcp", 6): 1, ("udp", 4): 2, ("udp", 6): 3}
    chosen.sort(key=lambda s: order[(s.proto, s.family)])
    lines = [NETSTAT_TITLE, NETSTAT_HEADER]
    for s in chosen:
        proto = s.proto if s.family == 4 else s.proto + "6"
        local = _netstat_addr(s.local, resolver, s.proto)
        remote = _netstat_addr(s.remote, resolver, s.proto)
        program = _program(s)[: PROGNAME_WIDTH - 1]
        # /proc/net/tcp, which netstat reads, has tx_queue 0 for a listener
        send_q = 0 if s.state is State.LISTEN else s.send_q or 0
        lines.append(
            f"{proto:<4s}  {s.recv_q or 0:6d} {send_q:6d} "
            f"{local:<{max(23, len(local))}s} {remote:<{max(23, len(remote))}s} "
            f"{netstat_state(s):<11s} {program:<{PROGNAME_WIDTH}s}"
        )
    return "\n".join(lines) + "\n"
