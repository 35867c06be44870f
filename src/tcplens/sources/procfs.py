"""The ``/proc/net/{tcp,tcp6,udp,udp6}`` fallback source.

Used where netlink sock_diag is unavailable (some containers, seccomp), and by
tests with recorded files: the proc root is a parameter and :func:`parse` is
pure.  The format is printed by ``tcp4_seq_show``/``get_tcp4_sock`` in
``net/ipv4/tcp_ipv4.c`` (and the tcp6/udp equivalents)::

      sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout …
       0: 0100007F:0277 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 …

Addresses are the kernel's in-memory ``__be32`` words printed as host-order
hex, so on a little-endian host ``0100007F`` is 127.0.0.1; IPv6 addresses
are four such words.  Ports are plain hex.  ``tm->when`` is in clock ticks
(``USER_HZ``).  For LISTEN sockets ``rx_queue`` is the accept queue length
but ``tx_queue`` is ``write_seq - snd_una``, 0 for a listener, not its
backlog (netlink reports the backlog there instead): the record's
``send_q`` of a LISTEN row is therefore ``None``, unknown, never 0.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Iterable
from typing import Final

from tcplens.errors import InputError, SourceError
from tcplens.model.states import KERNEL_CODES, State
from tcplens.sources.records import (
    KERNEL_TIMER_KINDS,
    MINISOCKET_CODES,
    Addr,
    Proto,
    Snapshot,
    Socket,
    Timer,
)

__all__ = ["FILES", "USER_HZ", "decode_address", "parse", "read", "read_fin_timeout", "snapshot"]

#: file name -> (protocol, family)
FILES: Final[dict[str, tuple[Proto, int]]] = {
    "tcp": ("tcp", 4),
    "tcp6": ("tcp", 6),
    "udp": ("udp", 4),
    "udp6": ("udp", 6),
}

#: ``tm->when`` is printed with ``jiffies_delta_to_clock_t``: clock ticks of USER_HZ.
USER_HZ: Final = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

#: ``tr`` column (``timer_active`` in tcp_ipv4.c) -> Timer kind as ``ss -o`` names it
_TIMER_KINDS: Final = KERNEL_TIMER_KINDS
_MINISOCKETS: Final = MINISOCKET_CODES
_LITTLE: Final = sys.byteorder == "little"


def decode_address(text: str, family: int) -> Addr:
    """Decode ``ADDR:PORT`` as printed in /proc/net.

    >>> decode_address("0100007F:0277", 4)
    Addr(ip='127.0.0.1', port=631, service=None)
    >>> decode_address("00000000000000000000000001000000:1F90", 6)
    Addr(ip='::1', port=8080, service=None)
    >>> decode_address("0000000000000000FFFF00000100007F:0016", 6)
    Addr(ip='::ffff:127.0.0.1', port=22, service=None)
    """
    hexip, _, hexport = text.partition(":")
    raw = bytes.fromhex(hexip)
    if len(raw) != (4 if family == 4 else 16):
        raise ValueError(f"address {hexip!r} is not IPv{family}")
    if _LITTLE:
        raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    ip = socket.inet_ntop(socket.AF_INET if family == 4 else socket.AF_INET6, raw)
    return Addr(ip, int(hexport, 16))


def parse(lines: Iterable[str], proto: Proto, family: int, *, path: str = "<proc>") -> list[Socket]:
    """Parse the text of one /proc/net file (header line included).

    A line that does not have the kernel's shape raises :class:`InputError`
    naming ``path`` and the 1-based line number: these files come from the
    kernel, so a bad line means the wrong file was given, not noise to skip.
    """
    out: list[Socket] = []
    for number, line in enumerate(lines, start=1):
        fields = line.split()
        if not fields:
            continue
        if number == 1 and fields[0] == "sl":
            continue
        try:
            out.append(_row(fields, proto, family))
        except (ValueError, IndexError, KeyError) as exc:
            raise InputError(
                f"not a /proc/net/{proto} line ({exc}): {line.strip()[:60]!r}",
                path=path,
                line=number,
            ) from None
    return out


def _number(text: str, base: int, column: str) -> int:
    """A column as the kernel prints it: at most 64 bits, checked before ``int()`` sees it.

    A damaged or hand-edited dump can hold any run of digits: ``int()`` refuses
    more than 4,300 decimal digits with a bare ValueError, and a huge timer
    would overflow the float division into seconds.
    """
    digits = text.lstrip("0") or "0"
    if len(digits) > (16 if base == 16 else 20):
        shown = text if len(text) <= 24 else f"{text[:20]}… ({len(text)} characters)"
        raise ValueError(f"{column} {shown} is out of range")
    return int(digits, base)


def _row(fields: list[str], proto: Proto, family: int) -> Socket:
    if not fields[0].endswith(":") or len(fields) < 10:
        raise ValueError("expected 'sl: local remote st tx:rx tr:when retrnsmt uid timeout inode'")
    local = decode_address(fields[1], family)
    remote = decode_address(fields[2], family)
    code = _number(fields[3], 16, "st")
    state = KERNEL_CODES.get(code, State.UNKNOWN)
    tx, _, rx = fields[4].partition(":")
    tr, _, when = fields[5].partition(":")
    retrans = _number(fields[6], 16, "retrnsmt")
    uid = _number(fields[7], 10, "uid")
    inode = _number(fields[9], 10, "inode")
    sock = Socket(
        proto,
        family,
        local,
        remote,
        state,
        _number(rx, 16, "rx_queue"),
        None if state is State.LISTEN else _number(tx, 16, "tx_queue"),
        None if code in _MINISOCKETS else uid,
        inode or None,
    )
    timer = _number(tr, 16, "tr")
    if timer:
        left = _number(when, 16, "tm->when") / USER_HZ
        sock.timer = Timer(_TIMER_KINDS.get(timer, "other"), left, retrans)
    return sock


def read(proc_root: str = "/proc", name: str = "tcp") -> list[Socket]:
    """Read one of the four files under ``proc_root/net``."""
    proto, family = FILES[name]
    path = os.path.join(proc_root, "net", name)
    try:
        with open(path, encoding="ascii", errors="replace") as fh:
            return parse(fh, proto, family, path=path)
    except FileNotFoundError:
        raise SourceError(f"{path}: no such file (is {proc_root!r} a proc root?)") from None
    except PermissionError:
        raise SourceError(f"{path}: permission denied") from None


def snapshot(proc_root: str = "/proc") -> Snapshot:
    """All four files; a missing tcp6/udp/udp6 (IPv6 disabled) is noted, not fatal."""
    if not os.path.isdir(os.path.join(proc_root, "net")):
        raise SourceError(f"{proc_root}: not a proc root (no net/ directory)")
    sockets: list[Socket] = []
    missing: list[str] = []
    for name in FILES:
        try:
            sockets.extend(read(proc_root, name))
        except SourceError as exc:
            if name == "tcp":
                raise
            missing.append(f"{name} sockets: {exc}")
    return Snapshot(sockets, source="procfs", host=socket.gethostname(), missing=missing)


def read_fin_timeout(proc_root: str = "/proc", default: float = 60.0) -> float:
    """``net.ipv4.tcp_fin_timeout``: how long an orphaned FIN_WAIT2 lives, in seconds."""
    try:
        with open(os.path.join(proc_root, "sys/net/ipv4/tcp_fin_timeout")) as fh:
            return float(fh.read().strip())
    except (OSError, ValueError):
        return default
