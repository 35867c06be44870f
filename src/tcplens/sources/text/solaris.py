"""Solaris and illumos ``netstat -n`` / ``-an``: one section per protocol and family.

Layout::

    TCP: IPv4
       Local Address        Remote Address    Swind Send-Q Rwind Recv-Q    State
    -------------------- -------------------- ----- ------ ----- ------ -----------
    10.0.0.4.22          10.0.0.9.51234       64128      0 64128      0 ESTABLISHED
          *.22                 *.*                0      0 128000     0 LISTEN

    UDP: IPv4
       Local Address        Remote Address      State
    -------------------- -------------------- ----------
    127.0.0.1.32859      127.0.0.1.514        Connected
          *.111                               Idle

IPv6 sections add an ``If`` column.  TCP states are the BSD names plus
``IDLE`` and ``BOUND`` (resolved by the model).  UDP endpoints print their
own words instead of TCP states: ``Idle`` and ``Unbound`` (not connected,
which tcplens shows as CLOSED like ``ss`` UNCONN) and ``Connected`` (shown as
ESTABLISHED, as Linux ``netstat`` and ``ss`` print connected UDP sockets).
UNIX-domain and SCTP sections are counted in ``skipped``.
"""

from __future__ import annotations

import re
from typing import Final

from tcplens.model.states import State
from tcplens.sources.records import Proto
from tcplens.sources.text._common import (
    Builder,
    Line,
    ParseProblem,
    TextFormat,
    int_field,
    is_command_echo,
    make_endpoint,
    new_socket,
    split_dotted,
    state_of,
)

__all__ = ["FORMAT", "SECTION", "TEXT_FORMAT", "parse", "score"]

FORMAT: Final = "solaris-netstat"

SECTION: Final = re.compile(
    r"^(?P<proto>TCP|UDP|SCTP|ICMP|RAWIP)(?::\s*(?:IPv(?P<fam>[46]))?)?\s*$"
)
#: Solaris UDP endpoint words that are no TCP state's spelling (TS_DATA_XFER,
#: TS_UNBND); "Idle" is one (Solaris column of the model's table)
_UDP_WORDS: Final = {"connected": State.ESTABLISHED, "unbound": State.CLOSED}


def parse(lines: list[Line], out: Builder) -> None:
    """Parse Solaris ``netstat`` text into ``out``."""
    proto: str | None = None
    family: int | None = None
    for line in lines:
        stripped = line.text.strip()
        if not stripped or is_command_echo(line.text):
            continue
        section = SECTION.match(stripped)
        if section:
            proto = section["proto"].lower()
            family = int(section["fam"]) if section["fam"] else None
            continue
        if stripped.startswith("Active ") and "UNIX" in stripped:
            proto, family = "unix", None
            continue
        if stripped.startswith(("Local Address", "Address ")) or set(stripped) <= {"-", " "}:
            continue
        if proto in ("tcp", "udp"):
            _row(line, "tcp" if proto == "tcp" else "udp", family, out)
        elif proto is None:
            out.warn(line, "row outside any TCP:/UDP: section")
        else:
            out.skip(proto)


def _row(line: Line, proto: Proto, family: int | None, out: Builder) -> None:
    words = line.text.split()
    try:
        local = make_endpoint(*split_dotted(words[0]), proto)
        if proto == "tcp":
            if len(words) < 7:
                raise ParseProblem("too few columns for a TCP row")
            remote = make_endpoint(*split_dotted(words[1]), proto)
            send_q: int | None = int_field(words[3], "Send-Q")
            recv_q: int | None = int_field(words[5], "Recv-Q")
            state = state_of(words[6])
            rest = words[7:]
        else:
            rest = words[1:]
            remote_text = "*.*"
            if rest and "." in rest[0]:
                remote_text = rest.pop(0)
            remote = make_endpoint(*split_dotted(remote_text), proto)
            if not rest:
                raise ParseProblem("UDP row without a state")
            word = rest.pop(0)
            state = _UDP_WORDS.get(word.lower()) or state_of(word)
            send_q = recv_q = None
        sock = new_socket(proto, family, local, remote, state)
        if state is State.LISTEN:
            send_q = None  # the send buffer of a listener, 0, not its backlog
        sock.send_q, sock.recv_q = send_q, recv_q
        if rest:
            sock.interface = rest.pop(0)
        if rest:
            raise ParseProblem(f"unexpected columns {' '.join(rest)!r}")
    except ParseProblem as exc:
        out.warn(line, str(exc))
        return
    out.add(line, sock)


_HEADER: Final = re.compile(r"^\s*Local Address\s+Remote Address\s+(?:Swind|State)")


def score(text: str, words: list[str]) -> int:
    """Detection points for one line (:class:`TextFormat`)."""
    if SECTION.match(text) and ":" in text:
        return 5
    return 3 if _HEADER.match(text) else 0


TEXT_FORMAT: Final = TextFormat(
    FORMAT,
    lambda lines, out, _path: parse(lines, out),
    score,
    aliases=("solaris", "illumos"),
    listed=4,
    precedence=1,
)
