"""Pieces every text parser shares: the result being built, addresses, ports, states.

Each format module walks the lines of one dump and feeds a :class:`Builder`;
the builder is the one place that decides what a warning, a skipped row and
a "missing" note look like, so every format reports them the same way.

Addresses are normalised here, once, for every format:

* IP literals go through :mod:`ipaddress` so the text is the compressed form
  the record contract asks for (``0:0:0:0:0:0:0:1`` becomes ``::1``);
* a ``%zone`` suffix (``fe80::1%eth0``, ss ``127.0.0.53%lo``, Windows
  ``[fe80::1%7]``) is split off into ``Socket.interface``;
* ``*`` stays ``*`` (the dump said "any" and nothing more);
* a host name the dump printed instead of an address (netstat without
  ``-n``) is kept as printed, never resolved: resolving would describe the
  machine reading the dump, not the one that wrote it.

Ports may be numbers, ``*``, or service names (netstat/ss without ``-n``);
names are kept in ``Addr.service`` and mapped to a number from a short table
of names whose numbers never vary, then from the local services database.
"""

from __future__ import annotations

import functools
import ipaddress
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from tcplens.errors import UnknownStateError
from tcplens.model.states import State
from tcplens.sources.records import Addr, ParseWarning, Proto, Socket

__all__ = [
    "U32_MAX",
    "U64_MAX",
    "Builder",
    "Endpoint",
    "Line",
    "ParseProblem",
    "TextFormat",
    "float_field",
    "int_field",
    "is_command_echo",
    "is_number",
    "is_state",
    "lookup_service",
    "make_endpoint",
    "new_socket",
    "normalise",
    "parse_port",
    "settle_family",
    "split_colon",
    "split_dotted",
    "state_of",
]

#: IANA assignments users see as names in netstat/ss without ``-n``; checked
#: before the local services database so a dump parses the same everywhere.
WELL_KNOWN: Final = {
    "ftp-data": 20,
    "ftp": 21,
    "ssh": 22,
    "telnet": 23,
    "smtp": 25,
    "domain": 53,
    "bootps": 67,
    "bootpc": 68,
    "tftp": 69,
    "http": 80,
    "www": 80,
    "kerberos": 88,
    "pop3": 110,
    "sunrpc": 111,
    "rpcbind": 111,
    "ntp": 123,
    "epmap": 135,
    "netbios-ns": 137,
    "netbios-dgm": 138,
    "netbios-ssn": 139,
    "imap": 143,
    "imap2": 143,
    "snmp": 161,
    "ldap": 389,
    "https": 443,
    "microsoft-ds": 445,
    "submissions": 465,
    "isakmp": 500,
    "syslog": 514,
    "submission": 587,
    "ipp": 631,
    "ldaps": 636,
    "rsync": 873,
    "domain-s": 853,
    "imaps": 993,
    "pop3s": 995,
    "nfs": 2049,
    "mysql": 3306,
    "ms-wbt-server": 3389,
    "postgresql": 5432,
    "mdns": 5353,
    "llmnr": 5355,
    "x11": 6000,
    "http-alt": 8080,
    "webcache": 8080,
}


def lookup_service(name: str, proto: str) -> int | None:
    """Map a service name to its port, or None when no table knows it."""
    port = WELL_KNOWN.get(name.lower())
    if port is not None:
        return port
    try:
        return socket.getservbyname(name, proto)
    except (OSError, UnicodeError, ValueError):
        return None


@dataclass(frozen=True, slots=True)
class Line:
    """One input line: its 1-based number, the text as given, and a cleaned copy.

    The cleaned copy has terminal colour codes removed and no-break spaces
    (web pages), tabs and stray carriage returns turned into plain spaces, so
    parsers can split on whitespace.
    """

    number: int
    raw: str
    text: str


_SPACES: Final = str.maketrans({"\xa0": " ", "\t": " ", "\r": " ", "\u3000": " ", "\ufeff": " "})


#: terminal colour codes, as ``grep --color=always`` leaves them in a saved file
_ANSI: Final = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def normalise(text: str) -> list[Line]:
    """Split text into :class:`Line` records (any newline convention)."""
    return [
        Line(number, raw, _ANSI.sub("", raw).translate(_SPACES).rstrip())
        for number, raw in enumerate(text.splitlines(), start=1)
    ]


class ParseProblem(ValueError):
    """A field that does not parse; becomes a warning for its line."""


def is_number(text: str) -> bool:
    """ASCII digits only: ``str.isdigit`` also accepts ``¹`` and ``²``, which int() refuses."""
    return text.isascii() and text.isdigit()


def parse_port(text: str, proto: str) -> tuple[int | None, str | None]:
    """Return ``(port, service)`` for a port field (number, ``*`` or a name)."""
    if text in ("*", ""):
        return None, None
    if is_number(text):
        return int_field(text, "port", 65535), None
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._+/-]*", text):
        raise ParseProblem(f"bad port {text!r}")
    return lookup_service(text, proto), text


@dataclass(frozen=True, slots=True)
class Endpoint:
    """An address as parsed, before the socket's family is settled."""

    addr: Addr
    version: int | None  # 4 or 6 for IP literals (6 for IPv6-shaped), None for "*" and names
    zone: str | None


def make_endpoint(host: str, port_text: str, proto: str) -> Endpoint:
    """Build an endpoint from a host field and a port field of any format."""
    zone: str | None = None
    if host.startswith("[") and "]" in host:
        inner, _, after = host[1:].partition("]")
        host = inner
        if after.startswith("%"):
            zone = after[1:] or None
        elif after:
            raise ParseProblem(f"bad address {host!r}")
    if "%" in host:
        host, _, zone_text = host.partition("%")
        zone = zone_text or None
    port, service = parse_port(port_text, proto)
    if host in ("*", ""):
        if host == "":
            raise ParseProblem("address has no host part")
        return Endpoint(Addr("*", port, service), None, zone)
    literal = _ip_literal(host)
    if literal is None:
        # a host name (netstat without -n) or an address netstat cut short
        # (macOS ``fe80::aede:48ff:``); digits and dots alone are a broken IP
        if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9._:-]*", host) or not re.search(
            r"[A-Za-z_:]", host
        ):
            raise ParseProblem(f"bad address {host!r}")
        # a colon means IPv6 even when the address is cut short or redacted
        return Endpoint(Addr(host, port, service), 6 if ":" in host else None, zone)
    return Endpoint(Addr(literal[0], port, service), literal[1], zone)


_OCTET: Final = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
#: a dotted quad already in the form ipaddress prints (no leading zeros)
_CANONICAL_V4: Final = re.compile(rf"{_OCTET}(?:\.{_OCTET}){{3}}")


@functools.lru_cache(maxsize=65536)
def _ip_literal(host: str) -> tuple[str, int] | None:
    """Compressed text and version of an IP literal; cached, dumps repeat their peers."""
    if _CANONICAL_V4.fullmatch(host):
        return host, 4  # ipaddress would print it unchanged, at 20x the cost
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    return str(ip), ip.version


def split_colon(field_text: str) -> tuple[str, str]:
    """Split ``host:port`` on the last colon (``:::22``, ``[::]:ssh``, ``*:*``)."""
    host, sep, port = field_text.rpartition(":")
    if not sep:
        raise ParseProblem(f"no port in address {field_text!r}")
    return host, port


def split_dotted(field_text: str) -> tuple[str, str]:
    """Split BSD/Solaris ``host.port`` on the last dot (``10.0.0.1.443``, ``*.*``)."""
    host, sep, port = field_text.rpartition(".")
    if not sep:
        raise ParseProblem(f"no port in address {field_text!r}")
    return host, port


@functools.lru_cache(maxsize=256)
def state_of(text: str) -> State:
    """Resolve a state column through the model's one table of spellings (cached)."""
    try:
        return State.parse(text)
    except UnknownStateError as exc:
        raise ParseProblem(str(exc)) from None


def is_state(text: str) -> bool:
    """True when ``text`` is a state spelling (not a hex kernel code)."""
    if not re.fullmatch(r"[A-Za-z][A-Za-z_-]*[0-9]?", text):
        return False
    try:
        State.parse(text)
    except UnknownStateError:
        return False
    return True


def settle_family(declared: int | None, *ends: Endpoint) -> int:
    """Pick the socket family: what the proto column says, else the addresses."""
    versions = {end.version for end in ends if end.version is not None}
    if 6 in versions:
        return 6
    if declared is not None:
        return declared
    return 4


#: a warning message longer than this is cut (the line itself is kept whole)
_MESSAGE_WIDTH: Final = 200


@dataclass
class Builder:
    """Collects the sockets, warnings, skipped counts and notes of one parse."""

    sockets: list[Socket] = field(default_factory=list)
    warnings: list[ParseWarning] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)

    def warn(self, line: Line, message: str) -> None:
        if len(message) > _MESSAGE_WIDTH:
            # messages quote the field at fault, which may be thousands of characters
            message = f"{message[: _MESSAGE_WIDTH - 40]}… ({len(message)} characters)"
        self.warnings.append(ParseWarning(line.number, line.raw, message))

    def skip(self, kind: str, count: int = 1) -> None:
        self.skipped[kind] = self.skipped.get(kind, 0) + count

    def note(self, message: str) -> None:
        if message not in self.missing:
            self.missing.append(message)

    def add(self, line: Line, sock: Socket) -> Socket | None:
        """Keep a parsed row, unless it contradicts itself (then warn, keep nothing)."""
        problem = _contradiction(sock)
        if problem:
            self.warn(line, problem)
            return None
        self.sockets.append(sock)
        return sock


def _contradiction(sock: Socket) -> str | None:
    """What no tool prints for a real socket: only a damaged line says it."""
    if sock.proto == "tcp" and sock.state is State.LISTEN and sock.remote.port not in (None, 0):
        return f"a listening socket with a peer port ({sock.remote})"
    return None


def new_socket(
    proto: Proto,
    declared_family: int | None,
    local: Endpoint,
    remote: Endpoint,
    state: State,
) -> Socket:
    """A socket from two endpoints; the zone of either end becomes the interface."""
    family = settle_family(declared_family, local, remote)
    return Socket(
        proto=proto,
        family=family,
        local=local.addr,
        remote=remote.addr,
        state=state,
        interface=local.zone or remote.zone,
    )


#: the largest value any numeric column of these tools can hold (a 64-bit counter)
U64_MAX: Final = 2**64 - 1
#: pids and uids are 32-bit on every system these dumps come from (Linux
#: ``pid_t``/``uid_t``, Windows ``DWORD`` process ids)
U32_MAX: Final = 2**32 - 1


def _shown(text: str) -> str:
    """A field as quoted in a warning: a 5,000-digit run would drown the message."""
    return repr(text) if len(text) <= 24 else f"{text[:20]!r}… ({len(text)} characters)"


def int_field(text: str, name: str, maximum: int = U64_MAX) -> int:
    """A non-negative decimal column (queues, pids, inodes, ports, timers).

    The value is range-checked on its digits *before* ``int()`` sees it:
    ``int()`` refuses strings of more than 4,300 digits with a bare
    ``ValueError`` (CVE-2020-10735's limit, Python 3.11), and a damaged dump
    can hold any run of digits.  Leading zeros are allowed, as ``int()`` does.
    """
    if not is_number(text):
        raise ParseProblem(f"{name} {_shown(text)} is not a number")
    digits = text.lstrip("0") or "0"
    if len(digits) > len(str(maximum)) or int(digits) > maximum:
        raise ParseProblem(f"{name} {_shown(text)} is out of range (at most {maximum})")
    return int(digits)


#: a float column (seconds, milliseconds): digits, an optional fraction, and the
#: short exponent C's ``%g`` prints for large values (ss: ``rtt:1.23457e+06/…``)
_DECIMAL: Final = re.compile(r"[0-9]{1,20}(?:\.[0-9]{1,20})?(?:e[+-]?[0-9]{1,2})?")


def float_field(text: str, name: str) -> float:
    """A non-negative decimal number with a fraction (timers, RTTs), range-checked.

    ``float()`` takes 5,000 digits and returns ``inf``, and takes ``nan``
    and ``1e999`` too; none of them is a time any tool prints.
    """
    if not _DECIMAL.fullmatch(text):
        raise ParseProblem(f"{name} {_shown(text)} is not a number (or out of range)")
    return float(text)


_PROMPT: Final = re.compile(
    r"^\s*(?:\S*[$#%>]\s*|[A-Za-z]:\\[^>]*>\s*|PS [^>]*>\s*)"
    r"(?:sudo\s+)?(?:netstat|ss|cat|type|more|less|grep|head|tail|Get-NetTCPConnection)\b"
    # or the command alone, pasted without its prompt
    r"|^\s*(?:sudo\s+)?(?:netstat|ss)(?:\s+-\S+)+(?:\s*\|.*)?$"
)


def is_command_echo(text: str) -> bool:
    """True for a shell prompt with the command that produced the dump."""
    return bool(_PROMPT.match(text))


@dataclass(frozen=True, slots=True)
class TextFormat:
    """Everything tcplens knows about one saved-text format, declared in its own module.

    A module of :mod:`tcplens.sources.text` that sets ``TEXT_FORMAT`` to one
    of these is a format: ``--format`` accepts its name and aliases, the
    detector (:mod:`tcplens.sources.text.detect`) adds up its ``score``, and
    :func:`tcplens.sources.text.parse_text` calls its ``parse``.  Adding a
    format is adding a module; nothing else lists them.
    """

    #: the ``--format`` name, and ``Snapshot.source`` as ``text:<name>``
    name: str
    #: ``(lines, out, path)``: every socket into ``out``, every line not understood a warning
    parse: Callable[[list[Line], Builder, str | None], None]
    #: points for one non-blank line (stripped text, its words): a few for a banner or
    #: header only this tool prints, one per data row of its shape, 0 otherwise
    score: Callable[[str, list[str]], int]
    #: other names users type for it (``--format macos``)
    aliases: tuple[str, ...] = ()
    #: where ``--format`` lists it (help and error messages), smallest first
    listed: int = 100
    #: detection tie-break: the highest score wins, then the smallest ``precedence``
    #: (the most specific signatures first)
    precedence: int = 100
