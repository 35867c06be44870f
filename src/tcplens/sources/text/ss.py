"""iproute2 ``ss``: ``-tan``, ``-tanp``, ``-tulpen``, ``-a`` with every netid, ``-o``, ``-i``.

Layout (``misc/ss.c``)::

    Netid State  Recv-Q Send-Q Local Address:Port Peer Address:Port Process
    tcp   ESTAB  0      0      10.0.0.5:22        10.0.0.9:51234    users:(("sshd",pid=880,fd=4)) …
          … timer:(keepalive,119min,0) uid:0 ino:1234 sk:1 <->   (one line)
            cubic wscale:7,7 rto:204 rtt:0.5/0.25 mss:1448 cwnd:10 …

* The ``Netid`` column is only printed when more than one kind of socket
  was asked for; ``ss -tan`` rows start with the state.
* ``users:`` lists every process holding the socket; newer ss prints
  ``("name",pid=123,fd=4)``, older ss ``("name",123,4)``.  The lowest pid
  becomes the socket's pid/process, as netstat shows one; when there are
  several (a socket shared after fork()) all go to ``holders``.
* ``timer:(kind,time,retrans)`` uses ss's own duration format
  (``119min``, ``1min30sec``, ``2.500ms``, ``200ms``).
* ``-i`` and ``-m`` print details on an indented continuation line that
  belongs to the socket above.
* Non-inet netids (``u_str``, ``nl``, ``p_raw``, ``mptcp`` …) are counted in
  ``skipped`` by netid, never parsed as inet rows.
"""

from __future__ import annotations

import re
from typing import Final

from tcplens.errors import UnknownStateError
from tcplens.model.states import SPELLINGS, STATE_GROUPS, State
from tcplens.model.words import plural
from tcplens.sources.records import Holder, Proto, Socket, TcpInfo, Timer
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
    make_endpoint,
    new_socket,
    split_colon,
    state_of,
)

__all__ = ["FORMAT", "NETIDS", "STATE_WORDS", "TEXT_FORMAT", "parse", "score"]

FORMAT: Final = "ss"

#: what ss prints in the Netid column (``netid_name[]`` in ss.c, plus older names)
NETIDS: Final = frozenset(
    {
        "nl", "p_raw", "p_dgr", "u_str", "u_dgr", "u_seq", "raw", "udp", "tcp",
        "dccp", "sctp", "mptcp", "tipc", "v_str", "v_dgr", "xdp", "icmp", "icmp6", "udpl",
        "ipv4", "ipv6", "link", "unix", "inet", "inet6", "packet", "netlink", "vsock",
    }
)  # fmt: skip
#: the state words ss prints (``sstate_name[]``), from the model's spelling table
STATE_WORDS: Final = frozenset(
    spelling for tools in SPELLINGS.values() for spelling in tools.get("ss", ())
)

_DURATION: Final = re.compile(
    r"^(?:(?P<min>\d+)min)?(?:(?P<sec>\d+)(?P<sep>sec|\.))?(?:(?P<ms>\d+)ms)?$"
)
_TIMER: Final = re.compile(r"timer:\((?P<kind>[a-z_]+),(?P<time>[^,]*),(?P<retrans>\d+)\)")
_USER_NEW: Final = re.compile(r'\("((?:[^"\\]|\\.)*)",pid=(\d+),fd=(\d+)\)')
_USER_OLD: Final = re.compile(r'\("((?:[^"\\]|\\.)*)",(\d+),(\d+)\)')
_TIMER_KINDS: Final = {
    "on": "on",
    "keepalive": "keepalive",
    "timewait": "timewait",
    "persist": "persist",
    "probe": "probe",
    "off": "off",
}


def duration(text: str) -> float:
    """Seconds from ss's timer format (``print_ms_timer`` in ss.c)."""
    if not text:
        return 0.0
    match = _DURATION.match(text)
    if not match:
        raise ParseProblem(f"bad timer duration {text!r}")
    seconds = 60.0 * int_field(match["min"] or "0", "timer minutes")
    seconds += int_field(match["sec"] or "0", "timer seconds")
    if match["ms"] is not None:
        seconds += int_field(match["ms"], "timer milliseconds") / 1000.0
    return seconds


_USERS: Final = re.compile(
    r'users:\((\("(?:[^"\\]|\\.)*",[^()]*\)(?:,\("(?:[^"\\]|\\.)*",[^()]*\))*)\)'
)


def _users(rest: str) -> list[tuple[str, int, int]]:
    start = rest.find("users:(")
    if start < 0:
        return []
    quick = _USERS.match(rest, start)
    if quick:
        found = _USER_NEW.findall(quick[1]) or _USER_OLD.findall(quick[1])
        if found:
            return _processes(found)
    # the slow way, character by character, to say what is wrong with the list
    depth = 0
    in_quote = False
    end = len(rest)
    i = start + len("users:")
    while i < len(rest):
        char = rest[i]
        if in_quote:
            if char == "\\":
                i += 1
            elif char == '"':
                in_quote = False
        elif char == '"':
            in_quote = True
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                end = i + 1
                break
        i += 1
    else:
        raise ParseProblem("unterminated users:(…) list")
    body = rest[start:end]
    found = _USER_NEW.findall(body) or _USER_OLD.findall(body)
    if not found:
        raise ParseProblem(f"unreadable process list {body!r}")
    return _processes(found)


def _processes(found: list[tuple[str, str, str]]) -> list[tuple[str, int, int]]:
    return [
        (name.replace('\\"', '"'), int_field(pid, "pid", U32_MAX), int_field(fd, "fd", U32_MAX))
        for name, pid, fd in found
    ]


def _extras(rest: str, sock: Socket) -> None:
    users = sorted(_users(rest), key=lambda user: (user[1], user[2]))
    if users:
        name, pid, fd = users[0]
        sock.process, sock.pid, sock.fd = name, pid, fd
        if len(users) > 1:  # shared after fork(): every holder, lowest pid first
            sock.holders = tuple(Holder(pid, fd, name) for name, pid, fd in users)
    timer = _TIMER.search(rest)
    if timer:
        kind = _TIMER_KINDS.get(timer["kind"], "other")
        sock.timer = Timer(
            kind, duration(timer["time"]), int_field(timer["retrans"], "retransmits")
        )
    details = dict(re.findall(r"(?:^|\s)(uid|ino):(\d+)", rest))
    if "ino" in details:
        sock.inode = int_field(details["ino"], "inode")
        # sock_details_print() in ss.c prints uid only when it is not 0
        sock.uid = int_field(details.get("uid", "0"), "uid", U32_MAX)
    elif "uid" in details:
        sock.uid = int_field(details["uid"], "uid", U32_MAX)


def _info(text: str, sock: Socket) -> None:
    """Fill TcpInfo from an ``ss -i`` continuation line."""
    info = sock.info or TcpInfo()
    found = False
    for key, value in re.findall(r"(?:^|\s)([a-z_]+):(\S+)", text):
        try:
            if key == "rtt":
                rtt, _, var = value.partition("/")
                info.rtt_ms = float_field(rtt, "rtt")
                info.rttvar_ms = float_field(var, "rttvar") if var else None
            elif key in ("cwnd", "ssthresh", "mss", "bytes_acked", "bytes_received"):
                setattr(info, key, int_field(value, key))
            elif key == "retrans":
                now, _, total = value.partition("/")
                info.retransmits = int_field(now, "retrans")
                info.total_retrans = int_field(total, "retrans") if total else None
            elif key in ("lastsnd", "lastrcv", "lastack"):
                name = {"lastsnd": "last_send_ms", "lastrcv": "last_recv_ms"}.get(
                    key, "last_ack_recv_ms"
                )
                setattr(info, name, int_field(value, key))
            else:
                continue
        except ValueError:
            continue
        found = True
    if found:
        sock.info = info


def _proto_of_command(words: list[str]) -> Proto:
    """``ss -uan`` prints no Netid column: its rows are UDP although nothing says so."""
    short = "".join(w[1:] for w in words if w.startswith("-") and not w.startswith("--"))
    udp = "u" in short or "--udp" in words
    tcp = "t" in short or "--tcp" in words
    return "udp" if udp and not tcp else "tcp"


def _state_of_command(words: list[str]) -> State | None:
    """``ss -tn state established`` prints no State column: the filter names it."""
    lowered = [w.lower() for w in words]
    if lowered.count("state") != 1 or lowered.index("state") + 1 >= len(words):
        return None
    name = words[lowered.index("state") + 1]
    if name.lower() in STATE_GROUPS:
        return None
    try:
        return State.parse(name)
    except UnknownStateError:
        return None


def parse(lines: list[Line], out: Builder) -> None:
    """Parse ``ss`` text into ``out``."""
    last: Socket | None = None
    last_was_row = False
    default_proto: Proto = "tcp"
    filtered: State | None = None
    unknown_states = 0
    for line in lines:
        text = line.text
        stripped = text.strip()
        if not stripped:
            last_was_row = False
            continue
        if is_command_echo(text):
            default_proto = _proto_of_command(stripped.split())
            filtered = _state_of_command(stripped.split())
            last_was_row = False
            continue
        words = stripped.split()
        if words[0] in ("Netid", "State", "Recv-Q") and "Recv-Q" in words:
            last_was_row = False
            continue
        if text[0] == " " and last_was_row:
            # -i / -m detail line for the row above, or the process and -e
            # columns that ss moved to their own line when they did not fit
            if last is not None:
                try:
                    _extras(stripped, last)
                except ParseProblem as exc:
                    out.warn(line, str(exc))
                _info(stripped, last)
            continue
        netid: str | None = None
        if words[0] in NETIDS and len(words) > 1:
            netid = words.pop(0)
        if netid is not None and netid not in ("tcp", "udp"):
            out.skip(netid)
            last, last_was_row = None, True
            continue
        stateless = bool(words) and is_number(words[0])
        last = _row(line, words, netid, default_proto, filtered if stateless else None, out)
        last_was_row = last is not None
        if last is not None and last.state is State.UNKNOWN and stateless:
            unknown_states += 1
    if unknown_states:
        out.note(
            f"state unknown for {plural(unknown_states, 'socket')}: ss prints no State column when "
            "one state is filtered (ss state NAME) and the command line was not pasted"
        )


def _row(
    line: Line,
    words: list[str],
    netid: str | None,
    default_proto: Proto,
    filtered: State | None,
    out: Builder,
) -> Socket | None:
    stateless = bool(words) and is_number(words[0])
    if stateless:
        words = ["UNKNOWN" if filtered is None else filtered.value, *words]
    if len(words) < 5 or (words[0].upper() not in STATE_WORDS and not stateless):
        out.warn(line, "not an ss row")
        return None
    try:
        state_word = words[0].upper()
        state = state_of(state_word)
        if netid is not None:
            proto: Proto = "tcp" if netid == "tcp" else "udp"
        elif state_word == "UNCONN":
            proto = "udp"
        else:
            proto = default_proto
        recv_q = int_field(words[1], "Recv-Q")
        send_q = int_field(words[2], "Send-Q")
        local = make_endpoint(*split_colon(words[3]), proto)
        remote = make_endpoint(*split_colon(words[4]), proto)
        sock = new_socket(proto, None, local, remote, state)
        sock.recv_q, sock.send_q = recv_q, send_q
        before = 5 + (netid is not None) - stateless
        rest = line.text.strip().split(None, before)
        extras = rest[-1] if len(rest) > before else ""
        _extras(extras, sock)
        _info(extras, sock)  # ss -O (--oneline) prints the -i details on the row
    except ParseProblem as exc:
        out.warn(line, str(exc))
        return None
    return out.add(line, sock)


_HEADER: Final = re.compile(r"^(?:Netid\s+)?(?:State\s+)?Recv-Q\s+Send-Q\s+Local Address:Port")


def _looks_like_row(words: list[str]) -> bool:
    if words and is_number(words[0]):
        # ss state NAME: no State column (with a Netid column this would look
        # like a Linux netstat row, so only the rows without one count)
        words = ["UNKNOWN", *words]
    elif words and words[0] in NETIDS:
        words = words[1:]
    return (
        len(words) >= 5
        and words[0] in STATE_WORDS
        and is_number(words[1])
        and is_number(words[2])
        and ":" in words[3]
    )


def score(text: str, words: list[str]) -> int:
    """Detection points for one line (:class:`TextFormat`)."""
    if _HEADER.match(text):
        return 5
    return 1 if _looks_like_row(words) else 0


TEXT_FORMAT: Final = TextFormat(
    FORMAT,
    lambda lines, out, _path: parse(lines, out),
    score,
    listed=1,
    precedence=3,
)
