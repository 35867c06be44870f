"""Linux net-tools ``netstat``: ``-an``, ``-anp``, ``-tulpn``, ``-e``/``-ee``, ``-o``.

The layout comes from ``netstat.c`` (net-tools): one "Active …" banner per
address family, a ``Proto Recv-Q Send-Q …`` header, then rows::

    tcp   0   0 127.0.0.1:25   0.0.0.0:*   LISTEN   0  1234  880/master  off (0.00/0/0)
    proto q   q local          foreign     state    user inode pid/prog  timer

* ``State`` is always printed for TCP, only ``ESTABLISHED`` for a connected
  UDP socket and left blank otherwise (an unconnected UDP socket becomes
  CLOSED, as ``ss`` prints UNCONN), and a number for raw sockets.
* ``-e`` adds ``User`` (a name, or the uid with ``-n``) and ``Inode``.
* ``-p`` adds ``PID/Program name``: ``-`` when the process belongs to
  another user, and the name is cut at about 20 characters and may contain
  spaces (``2322/sshd: kbrazil``), so it is "everything up to the timer".
* ``-o`` adds ``Timer``: ``off (0.00/0/0)``, ``on (0.20/1/0)``,
  ``keepalive (7175.32/0/0)``, ``timewait (59.97/0/0)``, ``probe (…)`` —
  seconds left, retransmits, probes.

Rows are parsed by tokens, not by column offsets, because long user names
push columns right and pasted output (grep, web pages) has no header.

Without ``-W`` netstat cuts the *host* of an address so that ``host:port``
fits 23 characters (the port survives): ``2001:db8:aaaa:bbb:49806``.  What
was cut cannot be restored; addresses that fill the column are counted and
reported in ``Snapshot.missing``.
"""

from __future__ import annotations

import re
from typing import Final

from tcplens.model.states import State
from tcplens.model.words import plural
from tcplens.sources.records import Proto, Timer
from tcplens.sources.text._common import (
    U32_MAX,
    Builder,
    Line,
    ParseProblem,
    TextFormat,
    float_field,
    int_field,
    is_command_echo,
    is_number,
    is_state,
    make_endpoint,
    new_socket,
    split_colon,
    state_of,
)

__all__ = ["FORMAT", "ROW", "TEXT_FORMAT", "parse", "score"]

FORMAT: Final = "linux-netstat"

#: a data row of the inet section; also used by the detector
ROW: Final = re.compile(
    r"^(?P<proto>tcp6?|udp6?|udpl6?|raw6?)\s+(?P<recvq>\d+)\s+(?P<sendq>\d+)\s+"
    # each address is one whole token with a colon inside, matched possessively:
    # ``\S+:\S+`` backtracked through every colon of a token that did not fit,
    # in time growing with the square of its length (1 s at 24,000 characters)
    r"(?P<local>(?=\S+:\S)\S++)\s+(?P<remote>(?=\S+:\S)\S++)(?:\s+(?P<rest>.*))?$"
)
_TIMER: Final = re.compile(
    r"(?:^|\s)(?P<kind>off|on|keepalive|timewait|probe|unkn-\d+)\s*"
    r"\((?P<left>\d+(?:\.\d+)?)/(?P<retrans>\d+)/(?P<probes>\d+)\)$"
)
_PIDPROG: Final = re.compile(r"^(?:-|(?P<pid>\d+)/(?P<prog>.*))$")
_SECTION: Final = re.compile(r"^Active (?P<what>.+?)(?: \(.*\))?\s*$")
_BANNER_START: Final = "(Not all processes could be identified"
_NO_INFO: Final = re.compile(r"^\(No info could be read for .*\)$")


def _timer(match: re.Match[str]) -> Timer:
    kind = match["kind"]
    if kind.startswith("unkn"):
        kind = "other"
    return Timer(
        kind, float_field(match["left"], "timer"), int_field(match["retrans"], "retransmits")
    )


def _section_key(what: str) -> str:
    lowered = what.lower()
    if lowered.startswith("internet"):
        return "inet"
    if lowered.startswith("unix"):
        return "unix"
    return lowered.split()[0] if lowered.split() else "other"


#: ``netstat.c`` without ``-W``: host and port are cut to fit this many characters
ADDRESS_WIDTH: Final = 23


def parse(lines: list[Line], out: Builder) -> None:
    """Parse Linux ``netstat`` text into ``out``."""
    section = "inet"
    banner: list[str] | None = None
    cut = 0
    for line in lines:
        text = line.text
        stripped = text.strip()
        if banner is not None:
            banner.append(stripped)
            if stripped.endswith(")") or len(banner) > 3:
                out.note(" ".join(banner).strip("()"))
                banner = None
            continue
        if not stripped or is_command_echo(text):
            continue
        if stripped.startswith(_BANNER_START):
            banner = [stripped]
            if stripped.endswith(")"):
                out.note(stripped.strip("()"))
                banner = None
            continue
        if _NO_INFO.match(stripped):
            out.note(stripped.strip("()"))
            continue
        if stripped.startswith("netstat: "):
            out.note(stripped)
            continue
        section_match = _SECTION.match(stripped)
        if section_match:
            section = _section_key(section_match["what"])
            continue
        if stripped.startswith("Proto "):
            continue
        first = stripped.split()[0]
        if first == "unix":
            out.skip("unix")
            continue
        if section not in ("inet",):
            out.skip(section)
            continue
        cut += _row(line, out)
    if cut:
        out.note(
            f"{plural(cut, 'address', 'addresses')} fill netstat's {ADDRESS_WIDTH}-character "
            "column and may have lost the end of their host part (netstat -W prints them whole; "
            "ports are intact)"
        )


def _row(line: Line, out: Builder) -> int:
    """Parse one inet row; return how many of its addresses may have been cut."""
    match = ROW.match(line.text.strip())
    if not match:
        out.warn(line, "not a netstat row")
        return 0
    proto_col = match["proto"]
    if proto_col.startswith(("raw", "udpl")):
        out.skip(proto_col)
        return 0
    proto: Proto = "tcp" if proto_col.startswith("tcp") else "udp"
    try:
        local = make_endpoint(*split_colon(match["local"]), proto)
        remote = make_endpoint(*split_colon(match["remote"]), proto)
        rest = match["rest"] or ""
        timer = None
        timer_match = _TIMER.search(rest)
        if timer_match:
            timer = _timer(timer_match)
            rest = rest[: timer_match.start()].strip()
        words = rest.split()
        state = State.CLOSED
        if proto == "tcp":
            if not words:
                raise ParseProblem("TCP row without a state")
            state = state_of(words.pop(0))
        elif words and is_state(words[0]) and words[0].isupper():
            state = state_of(words.pop(0))
        sock = new_socket(proto, 6 if proto_col.endswith("6") else None, local, remote, state)
        sock.recv_q = int_field(match["recvq"], "Recv-Q")
        send_q = int_field(match["sendq"], "Send-Q")
        # netstat reads /proc/net/tcp, whose tx_queue is 0 for a listener: the
        # backlog is unknown there, and 0 would read as "a full accept queue"
        sock.send_q = None if state is State.LISTEN else send_q
        sock.timer = timer
        if len(words) >= 2 and is_number(words[1]) and not _PIDPROG.match(words[0]):
            user = words.pop(0)
            sock.inode = int_field(words.pop(0), "inode")
            if is_number(user):
                sock.uid = int_field(user, "uid", U32_MAX)
            else:
                sock.user = user
        if words:
            # the program name as printed, inner runs of spaces included
            consumed = len(rest.split()) - len(words)
            program = rest.split(None, consumed)[consumed] if consumed else rest
            pidprog = _PIDPROG.match(program.strip())
            if not pidprog:
                raise ParseProblem(f"unexpected columns {program.strip()!r}")
            if pidprog["pid"] is not None:
                sock.pid = int_field(pidprog["pid"], "pid", U32_MAX)
                sock.process = pidprog["prog"].strip() or None
    except ParseProblem as exc:
        out.warn(line, str(exc))
        return 0
    if out.add(line, sock) is None:
        return 0
    return sum(len(match[end]) == ADDRESS_WIDTH for end in ("local", "remote"))


_BANNER: Final = re.compile(
    r"^Active (?:Internet connections \((?:servers and established|only servers|w/o servers)\)"
    r"|UNIX domain sockets \((?:servers and established|only servers|w/o servers)\))"
)
_HEADER: Final = re.compile(r"^Proto\s+Recv-Q\s+Send-Q\s+Local Address\s+Foreign Address\s+State\b")


def score(text: str, words: list[str]) -> int:
    """Detection points for one line (:class:`TextFormat`)."""
    if _BANNER.match(text) or _HEADER.match(text):
        return 3
    return 1 if ROW.match(text) else 0


TEXT_FORMAT: Final = TextFormat(
    FORMAT,
    lambda lines, out, _path: parse(lines, out),
    score,
    aliases=("linux", "netstat"),
    listed=0,
    precedence=6,
)
