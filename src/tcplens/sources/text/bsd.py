"""macOS and FreeBSD ``netstat``: ``-an``, ``-An``, ``-anv``, ``-AanP`` and their sections.

Layout (``usr.bin/netstat/inet.c``)::

    Active Internet connections (including servers)
    Socket           Flowhash Proto Recv-Q Send-Q  Local Address      Foreign Address    (state)
    7fb03cb94d505aed cedd0cbf tcp4       0      0  192.168.1.221.5486 140.82.113.26.443  ESTABLISHED
    Active LOCAL (UNIX) domain sockets
    …

* Ports follow the address after a dot: ``10.0.0.1.443``, ``*.22``, ``*.*``.
* ``tcp4``/``tcp6``/``tcp46``: ``46`` is a dual-stack socket, counted as family 6.
* ``-A`` (and macOS ``-v``) put control-block addresses before ``Proto`` and
  extra columns after the state; columns are found from ``Proto`` on, and an
  extra column named ``pid`` in the header fills ``Socket.pid``.
* Without ``-W`` addresses are cut to the column width (``%-18.18s``); the
  parser cannot restore what was cut, so it counts addresses that fill their
  column and says so in ``Snapshot.missing``.
* ``-L`` prints listen queues (``tcp4  3/0/128  *.80``: queued, incomplete,
  limit); they become LISTEN sockets with Recv-Q = queued and Send-Q = limit,
  which is what Linux reports for a listener.
* UNIX, kernel event, kernel control, multipath and other sections are counted
  in ``skipped`` and never read as inet rows.
"""

from __future__ import annotations

import re
from typing import Final

from tcplens.model.states import State
from tcplens.model.words import plural
from tcplens.sources.records import Proto
from tcplens.sources.text._common import (
    U32_MAX,
    Builder,
    Line,
    ParseProblem,
    TextFormat,
    int_field,
    is_command_echo,
    is_state,
    make_endpoint,
    new_socket,
    split_dotted,
    state_of,
)

__all__ = ["FORMAT", "PROTO", "TEXT_FORMAT", "parse", "score"]

FORMAT: Final = "bsd-netstat"

#: the Proto column of an inet row (tcp4, udp46, icm6, …)
PROTO: Final = re.compile(r"^(?P<name>tcp|udp|icm|icmp|raw|div|sctp|rip)(?P<fam>4|6|46)?$")
_SECTIONS: Final = (
    (re.compile(r"^Active (?:Internet|Internet6) connections\b"), "inet"),
    (re.compile(r"^Active (?:LOCAL \(UNIX\)|UNIX) domain sockets\b"), "unix"),
    (re.compile(r"^Active Multipath Internet connections\b"), "multipath"),
    (re.compile(r"^Active kernel event sockets\b"), "kevt"),
    (re.compile(r"^Active kernel control sockets\b"), "kctl"),
    (re.compile(r"^Registered kernel control modules\b"), "kctl-modules"),
    (re.compile(r"^Current listen queue sizes\b"), "listen"),
    (re.compile(r"^Active (?P<what>.+?) (?:sockets|connections)\b"), ""),
)


class _Header:
    """Column facts read from an inet header line."""

    def __init__(self, text: str) -> None:
        words = text.split()
        after_state = words[words.index("(state)") + 1 :] if "(state)" in words else []
        self.extras = [w.lower() for w in after_state]
        local = text.find("Local Address")
        foreign = text.find("Foreign Address")
        self.width: int | None = None
        if 0 <= local < foreign:
            self.width = foreign - local - 1


def _section(text: str) -> str | None:
    for pattern, key in _SECTIONS:
        match = pattern.match(text)
        if match:
            if key:
                return key
            return match["what"].lower().replace(" ", "-")
    return None


def parse(lines: list[Line], out: Builder) -> None:
    """Parse macOS/FreeBSD ``netstat`` text into ``out``."""
    section = "inet"
    header: _Header | None = None
    expect_header = False
    truncated = 0
    for line in lines:
        stripped = line.text.strip()
        if not stripped or is_command_echo(line.text):
            continue
        new_section = _section(stripped)
        if new_section is not None:
            section, expect_header = new_section, True
            continue
        words = stripped.split()
        if section == "inet" and ("Proto" in words and "Recv-Q" in words):
            header, expect_header = _Header(line.text), False
            continue
        if expect_header and section != "inet":
            expect_header = False
            continue
        if section == "listen":
            _listen_row(line, words, out)
            continue
        if section != "inet":
            out.skip(section)
            continue
        truncated += _row(line, words, header, out)
    if truncated:
        out.note(
            f"{plural(truncated, 'address', 'addresses')} fill netstat's column and may be cut "
            "short (netstat -W prints them whole); their ports may be wrong"
        )


def _listen_row(line: Line, words: list[str], out: Builder) -> None:
    """``netstat -L``: ``tcp4  0/0/128  *.22`` (queued/incomplete/limit)."""
    proto_match = PROTO.match(words[0])
    if proto_match is None or proto_match["name"] != "tcp":
        if proto_match is not None or words[0] == "unix":
            out.skip(words[0] if proto_match is None else f"{words[0]} (listen queues)")
        else:
            out.warn(line, "not a listen queue row")
        return
    try:
        if len(words) != 3:
            raise ParseProblem("expected 'proto qlen/incqlen/maxqlen address'")
        queues = words[1].split("/")
        if len(queues) != 3:
            raise ParseProblem(f"bad queue sizes {words[1]!r}")
        qlen, _, maxqlen = (int_field(q, "queue size") for q in queues)
        local = make_endpoint(*split_dotted(words[2]), "tcp")
        remote = make_endpoint("*", "*", "tcp")
        family = {"4": 4, "6": 6, "46": 6}.get(proto_match["fam"] or "")
        sock = new_socket("tcp", family, local, remote, State.LISTEN)
        # the same meaning Linux gives a listener's queues: waiting, and the limit
        sock.recv_q, sock.send_q = qlen, maxqlen
    except ParseProblem as exc:
        out.warn(line, str(exc))
        return
    out.add(line, sock)


def _row(line: Line, words: list[str], header: _Header | None, out: Builder) -> int:
    """Parse one inet row; return how many of its addresses may be truncated."""
    index = next((i for i, w in enumerate(words[:3]) if PROTO.match(w)), None)
    if index is None:
        out.warn(line, "not a netstat row")
        return 0
    proto_match = PROTO.match(words[index])
    assert proto_match is not None
    name = proto_match["name"]
    if name not in ("tcp", "udp"):
        out.skip(words[index])
        return 0
    proto: Proto = "tcp" if name == "tcp" else "udp"
    fields = words[index + 1 :]
    try:
        if len(fields) < 4:
            raise ParseProblem("too few columns")
        recv_q = int_field(fields[0], "Recv-Q")
        send_q = int_field(fields[1], "Send-Q")
        local = make_endpoint(*split_dotted(fields[2]), proto)
        remote = make_endpoint(*split_dotted(fields[3]), proto)
        extras = fields[4:]
        state = State.CLOSED
        if extras and is_state(extras[0]):
            state = state_of(extras.pop(0))
        elif proto == "tcp":
            raise ParseProblem("TCP row without a state")
        family = {"4": 4, "6": 6, "46": 6}.get(proto_match["fam"] or "")
        sock = new_socket(proto, family, local, remote, state)
        # a listener's Send-Q here is its send buffer (0), not its backlog (``-L`` has that)
        sock.recv_q, sock.send_q = recv_q, None if state is State.LISTEN else send_q
        if header is not None and "pid" in header.extras:
            # UDP rows leave the state column empty; count extras from the right
            names = header.extras[header.extras.index("pid") :]
            if len(extras) >= len(names):
                sock.pid = int_field(extras[len(extras) - len(names)], "pid", U32_MAX)
    except ParseProblem as exc:
        out.warn(line, str(exc))
        return 0
    if out.add(line, sock) is None or header is None or header.width is None:
        return 0
    return sum(1 for f in fields[2:4] if len(f) >= header.width and f != "*.*")


_BANNER: Final = re.compile(
    r"^Active (?:Internet connections(?: \(including servers\))?$|LOCAL \(UNIX\) domain sockets"
    r"|kernel (?:event|control) sockets|Multipath Internet connections)"
    r"|^Current listen queue sizes"
)
_LISTEN_ROW: Final = re.compile(r"^tcp(?:4|6|46)?\s+\d+/\d+/\d+\s+\S+\.(?:\*|\d+)$")
_HEADER: Final = re.compile(
    r"\bProto\s+Recv-Q\s+Send-Q\s+Local Address\s+Foreign Address\s+\(state\)"
)
_ADDR: Final = re.compile(r"^(?:\*|[0-9A-Fa-f:.%\w]+)\.(?:\*|\d+|[a-z][\w-]*)$")


def _looks_like_row(words: list[str]) -> bool:
    for i, word in enumerate(words[:3]):
        if PROTO.match(word) and len(words) >= i + 5:
            return bool(_ADDR.match(words[i + 3]) and _ADDR.match(words[i + 4]))
    return False


def score(text: str, words: list[str]) -> int:
    """Detection points for one line (:class:`TextFormat`)."""
    if _HEADER.search(text) or _BANNER.match(text):
        return 3
    return 1 if _looks_like_row(words) or _LISTEN_ROW.match(text) else 0


TEXT_FORMAT: Final = TextFormat(
    FORMAT,
    lambda lines, out, _path: parse(lines, out),
    score,
    aliases=("macos", "darwin", "freebsd", "bsd"),
    listed=3,
    precedence=5,
)
