"""PowerShell ``Get-NetTCPConnection`` and ``Get-NetUDPEndpoint`` tables (Windows 8+).

Newer Windows how-tos use these cmdlets instead of ``netstat``::

    LocalAddress      LocalPort RemoteAddress    RemotePort State       AppliedSetting OwningProcess
    ------------      --------- -------------    ---------- -----       -------------- -------------
    ::                49669     ::               0          Listen                     3136
    192.168.1.5       50435     20.42.65.90      443        Established Internet       4712

Columns are named by the header (``Format-Table`` may choose others, in any
order).  ``AppliedSetting`` is often blank, which shifts the columns after
it; a row one column short of the header is read without it.  The state
names (``Listen``, ``TimeWait``, ``SynReceived``, ``Bound``, ``DeleteTCB``)
are resolved by the model like every other spelling.
"""

from __future__ import annotations

import re
from typing import Final

from tcplens.model.states import State
from tcplens.sources.records import Proto, Socket
from tcplens.sources.text._common import (
    U32_MAX,
    Builder,
    Line,
    ParseProblem,
    TextFormat,
    int_field,
    is_command_echo,
    make_endpoint,
    new_socket,
    state_of,
)

__all__ = ["FORMAT", "HEADER", "TEXT_FORMAT", "parse", "score"]

FORMAT: Final = "powershell"

HEADER: Final = re.compile(r"^(?=.*\bLocalAddress\b)(?=.*\bLocalPort\b)[A-Za-z ]+$")


def parse(lines: list[Line], out: Builder) -> None:
    """Parse ``Get-NetTCPConnection``/``Get-NetUDPEndpoint`` tables into ``out``."""
    names: list[str] | None = None
    for line in lines:
        stripped = line.text.strip()
        if not stripped or is_command_echo(line.text):
            continue
        if HEADER.match(stripped):
            names = [w.lower() for w in stripped.split()]
            continue
        if set(stripped) <= {"-", " "}:
            continue
        if names is None:
            out.warn(line, "row before a LocalAddress/LocalPort header")
            continue
        try:
            out.add(line, _row(stripped.split(), names))
        except ParseProblem as exc:
            out.warn(line, str(exc))


def _row(words: list[str], names: list[str]) -> Socket:
    if len(words) == len(names) - 1 and "appliedsetting" in names:
        names = [n for n in names if n != "appliedsetting"]
    if "creationtime" in names and len(words) > len(names):
        # "11/21/2026 11:40:28 PM": the date and time are several words
        at = names.index("creationtime")
        extra = len(words) - len(names)
        words = [*words[:at], " ".join(words[at : at + extra + 1]), *words[at + extra + 1 :]]
    if len(words) != len(names):
        raise ParseProblem(f"{len(words)} columns under a header of {len(names)}")
    row = dict(zip(names, words, strict=True))
    proto: Proto = "tcp" if "state" in row or "remoteaddress" in row else "udp"
    local = make_endpoint(row["localaddress"], row["localport"], proto)
    remote = make_endpoint(row.get("remoteaddress", "*"), row.get("remoteport", "*"), proto)
    state = state_of(row["state"]) if "state" in row else State.CLOSED
    sock = new_socket(proto, None, local, remote, state)
    if "owningprocess" in row:
        # 0 is the System Idle Process: Windows' "no owner" (TIME_WAIT), not a pid
        sock.pid = int_field(row["owningprocess"], "OwningProcess", U32_MAX) or None
    return sock


def score(text: str, words: list[str]) -> int:
    """Detection points for one line (:class:`TextFormat`)."""
    return 5 if HEADER.match(text) else 0


TEXT_FORMAT: Final = TextFormat(
    FORMAT,
    lambda lines, out, _path: parse(lines, out),
    score,
    aliases=("get-nettcpconnection", "pwsh"),
    listed=6,
    precedence=2,
)
