"""Windows ``netstat``: ``-an``, ``-ano``, ``-anb`` (also ``-na -p tcp``), CRLF or UTF-16.

Layout::

    Active Connections

      Proto  Local Address          Foreign Address        State           PID
      TCP    0.0.0.0:135            0.0.0.0:0              LISTENING       988
      c:\\windows\\system32\\WS2_32.dll        <- -b: modules, then the service,
      -- unknown component(s) --              <-     then the executable, all
      [svchost.exe]                           <-     belonging to the row above
      UDP    [::]:500               *:*                                    696

* UDP rows have no state; they become CLOSED, as ``ss`` prints UNCONN.
* ``-b`` prints the executable in brackets after the socket it owns, or
  "Can not obtain ownership information" when not elevated.
* IPv6 addresses are bracketed and may carry a numeric zone, ``[fe80::1%7]``;
  the zone is kept as the socket's interface.
* The state is translated on some Windows languages (``ABHÖREN``,
  ``IN ASCOLTO``, ``수신 대기``): spellings come from the model, and a state
  of two or three words is taken whole before the PID.
* PID 0 (the System Idle Process) is what Windows shows for sockets nobody
  owns, TIME_WAIT above all: it becomes "no owner", not a process.

Text copied from web pages sometimes loses its line breaks, leaving every
row on one line after "Active Connections … State"; such lines are split back
into rows where the addresses survived, and reported as a warning either way.
"""

from __future__ import annotations

import re
from typing import Final

from tcplens.model.states import State
from tcplens.model.words import plural
from tcplens.sources.records import Proto, Socket
from tcplens.sources.text._common import (
    U32_MAX,
    Builder,
    Line,
    ParseProblem,
    TextFormat,
    int_field,
    is_command_echo,
    is_number,
    make_endpoint,
    new_socket,
    split_colon,
    state_of,
)

__all__ = ["FORMAT", "ROW", "TEXT_FORMAT", "parse", "score"]

FORMAT: Final = "windows-netstat"

ROW: Final = re.compile(
    # whole tokens with a colon inside, possessively: see linux_netstat.ROW
    r"^\s*(?P<proto>TCP|UDP)\s+(?P<local>(?=\S+:\S)\S++)\s+(?P<remote>(?=\S+:\S)\S++)"
    r"(?:\s+(?P<rest>.*))?$"
)
#: "Active Connections" as printed by English and a few localised Windows
TITLES: Final = frozenset(
    {
        "active connections", "aktive verbindungen", "connexions actives", "conexiones activas",
        "connessioni attive", "conexões ativas", "活动连接", "活動中的連線", "アクティブな接続",
        "활성 연결",
    }
)  # fmt: skip
_HEADER_FIRST: Final = frozenset({"proto", "protokoll", "协议", "協定", "プロトコル", "프로토콜"})
_OFFLOAD: Final = frozenset({"inhost", "offloaded", "offloading", "uploading"})
_NO_OWNER: Final = "can not obtain ownership information"
_ELEVATION: Final = "the requested operation requires elevation"
_COMPONENT: Final = re.compile(
    r"^(?:-- unknown component\(s\) --|[A-Za-z]:\\.*|\\.*|[A-Za-z][\w.-]*|\S+\.(?:dll|exe|sys))$"
)


def _state(words: list[str]) -> State:
    """Take the state off ``words``: one word, or two or three (IN ASCOLTO, 수신 대기 중)."""
    if not words:
        raise ParseProblem("TCP row without a state")
    try:
        state = state_of(words[0])
    except ParseProblem as exc:
        problem = exc
    else:
        del words[0]
        return state
    for n in (3, 2):
        if len(words) >= n and not is_number(words[n - 1]):
            try:
                state = state_of(" ".join(words[:n]))
            except ParseProblem:
                continue
            del words[:n]
            return state
    raise problem


def _fill(sock: Socket, proto: Proto, rest: str) -> None:
    words = rest.split()
    if proto == "tcp":
        sock.state = _state(words)
    if words:
        # PID 0 is the System Idle Process, which Windows names for sockets no
        # process owns any more (TIME_WAIT, closed listeners): no owner, not a pid
        sock.pid = int_field(words.pop(0), "PID", U32_MAX) or None
    # -t adds an "offload state" column (InHost, Offloaded): not a socket field
    if words and words[0].lower() in _OFFLOAD:
        words.pop(0)
    if words:
        raise ParseProblem(f"unexpected columns {' '.join(words)!r}")


def _socket(proto_col: str, local_text: str, remote_text: str, rest: str) -> Socket:
    proto: Proto = "tcp" if proto_col == "TCP" else "udp"
    local = make_endpoint(*split_colon(local_text), proto)
    remote = make_endpoint(*split_colon(remote_text), proto)
    sock = new_socket(proto, None, local, remote, State.CLOSED)
    _fill(sock, proto, rest)
    return sock


def parse(lines: list[Line], out: Builder) -> None:
    """Parse Windows ``netstat`` text into ``out``."""
    last: Socket | None = None
    unowned = 0
    for line in lines:
        stripped = line.text.strip()
        lowered = stripped.lower()
        if lowered in TITLES:
            last = None
            continue
        if any(title in lowered for title in TITLES) and _flattened(line, out):
            continue
        if not stripped or is_command_echo(line.text):
            continue
        words = stripped.split()
        if words[0].lower() in _HEADER_FIRST and not ROW.match(stripped):
            last = None
            continue
        match = ROW.match(stripped)
        if match:
            try:
                last = out.add(
                    line,
                    _socket(match["proto"], match["local"], match["remote"], match["rest"] or ""),
                )
            except ParseProblem as exc:
                out.warn(line, str(exc))
                last = None
            continue
        if stripped.startswith("[") and stripped.endswith("]") and last is not None:
            last.process = stripped[1:-1].strip() or None
            continue
        if lowered.startswith(_NO_OWNER) and last is not None:
            unowned += 1
            continue
        if lowered.startswith(_ELEVATION):
            out.note("netstat -b needs an elevated prompt: no process names (" + stripped + ")")
            continue
        if last is not None and _COMPONENT.match(stripped):
            continue  # -b module or service line of the socket above
        out.warn(line, "not a Windows netstat row")
    if unowned:
        out.note(
            f"owning process unknown for {plural(unowned, 'socket')}: netstat -b said "
            '"Can not obtain ownership information" (run it elevated)'
        )


def _flattened(line: Line, out: Builder) -> bool:
    """Recover rows from a line whose line breaks were lost; True if it was one."""
    words = line.text.split()
    rows = 0
    damaged: list[str] = []
    i = 0
    while i < len(words):
        if words[i] not in ("TCP", "UDP") or i + 2 >= len(words):
            i += 1
            continue
        proto_col, local_text, remote_text = words[i], words[i + 1], words[i + 2]
        rest_words: list[str] = []
        j = i + 3
        if proto_col == "TCP" and j < len(words):
            rest_words.append(words[j])
            j += 1
        if j < len(words) and is_number(words[j]):
            rest_words.append(words[j])
            j += 1
        rows += 1
        try:
            out.add(line, _socket(proto_col, local_text, remote_text, " ".join(rest_words)))
        except ParseProblem as exc:
            damaged.append(f"{' '.join(words[i:j])} ({exc})")
        i = j
    if not rows:
        return False
    message = f"{rows} netstat rows run together on one line (line breaks lost in a paste)"
    if damaged:
        message += f"; {len(damaged)} unreadable, first: {damaged[0]}"
        out.note(
            f"{plural(len(damaged), 'socket')} on line {line.number} "
            f"{'is' if len(damaged) == 1 else 'are'} not counted: the paste lost "
            "their line breaks and part of their addresses"
        )
    out.warn(line, message)
    return True


def score(text: str, words: list[str]) -> int:
    """Detection points for one line (:class:`TextFormat`)."""
    lowered = text.lower()
    if lowered in TITLES:
        return 3
    if ROW.match(text):
        return 1
    return 2 if "active connections" in lowered and " TCP " in text else 0  # rows run together


TEXT_FORMAT: Final = TextFormat(
    FORMAT,
    lambda lines, out, _path: parse(lines, out),
    score,
    aliases=("windows", "win"),
    listed=2,
    precedence=4,
)
