"""Guess which tool and OS printed a dump, from the shape of its lines.

Each format scores the lines it would recognise: a few points for a banner
or header only that tool prints, one point per data row of its shape.  The
highest score wins; ties go to the earlier format in :data:`ORDER`.  Data
rows outweigh banners as soon as there are a handful, so a grep'd paste with
no header at all is still recognised, and prose around the output (web
pages, chat logs) only costs warnings later, not the detection.
"""

from __future__ import annotations

import re
from typing import Final

from tcplens.sources.text import bsd, linux_netstat, powershell, proc, solaris, ss, windows
from tcplens.sources.text._common import Line, is_number

__all__ = ["ORDER", "detect", "scores"]

#: tie-break order: the most specific signatures first
ORDER: Final = (proc.FORMAT, solaris.FORMAT, powershell.FORMAT, ss.FORMAT, windows.FORMAT,
                bsd.FORMAT, linux_netstat.FORMAT)  # fmt: skip

_LINUX_BANNER: Final = re.compile(
    r"^Active (?:Internet connections \((?:servers and established|only servers|w/o servers)\)"
    r"|UNIX domain sockets \((?:servers and established|only servers|w/o servers)\))"
)
_LINUX_HEADER: Final = re.compile(
    r"^Proto\s+Recv-Q\s+Send-Q\s+Local Address\s+Foreign Address\s+State\b"
)
_BSD_BANNER: Final = re.compile(
    r"^Active (?:Internet connections(?: \(including servers\))?$|LOCAL \(UNIX\) domain sockets"
    r"|kernel (?:event|control) sockets|Multipath Internet connections)"
    r"|^Current listen queue sizes"
)
_BSD_LISTEN_ROW: Final = re.compile(r"^tcp(?:4|6|46)?\s+\d+/\d+/\d+\s+\S+\.(?:\*|\d+)$")
_BSD_HEADER: Final = re.compile(
    r"\bProto\s+Recv-Q\s+Send-Q\s+Local Address\s+Foreign Address\s+\(state\)"
)
_BSD_ADDR: Final = re.compile(r"^(?:\*|[0-9A-Fa-f:.%\w]+)\.(?:\*|\d+|[a-z][\w-]*)$")
_SS_HEADER: Final = re.compile(r"^(?:Netid\s+)?(?:State\s+)?Recv-Q\s+Send-Q\s+Local Address:Port")
_SOLARIS_HEADER: Final = re.compile(r"^\s*Local Address\s+Remote Address\s+(?:Swind|State)")


def _bsd_row(words: list[str]) -> bool:
    for i, word in enumerate(words[:3]):
        if bsd.PROTO.match(word) and len(words) >= i + 5:
            return bool(_BSD_ADDR.match(words[i + 3]) and _BSD_ADDR.match(words[i + 4]))
    return False


def _ss_row(words: list[str]) -> bool:
    if words and is_number(words[0]):
        # ss state NAME: no State column (with a Netid column this would look
        # like a Linux netstat row, so only the rows without one count)
        words = ["UNKNOWN", *words]
    elif words and words[0] in ss.NETIDS:
        words = words[1:]
    return (
        len(words) >= 5
        and words[0] in ss.STATE_WORDS
        and is_number(words[1])
        and is_number(words[2])
        and ":" in words[3]
    )


def scores(lines: list[Line]) -> dict[str, int]:
    """Points per format (see the module docstring)."""
    points = dict.fromkeys(ORDER, 0)
    for line in lines:
        text = line.text.strip()
        if not text:
            continue
        words = text.split()
        lowered = text.lower()
        if powershell.HEADER.match(text):
            points[powershell.FORMAT] += 5
        if proc.HEADER.match(text):
            points[proc.FORMAT] += 5
        elif proc.ROW.match(text):
            points[proc.FORMAT] += 2
        if solaris.SECTION.match(text) and ":" in text:
            points[solaris.FORMAT] += 5
        elif _SOLARIS_HEADER.match(text):
            points[solaris.FORMAT] += 3
        if _SS_HEADER.match(text):
            points[ss.FORMAT] += 5
        elif _ss_row(words):
            points[ss.FORMAT] += 1
        if lowered in windows.TITLES:
            points[windows.FORMAT] += 3
        elif windows.ROW.match(text):
            points[windows.FORMAT] += 1
        elif "active connections" in lowered and " TCP " in text:
            points[windows.FORMAT] += 2  # rows run together on one line
        if _BSD_HEADER.search(text) or _BSD_BANNER.match(text):
            points[bsd.FORMAT] += 3
        elif _bsd_row(words) or _BSD_LISTEN_ROW.match(text):
            points[bsd.FORMAT] += 1
        if _LINUX_BANNER.match(text) or _LINUX_HEADER.match(text):
            points[linux_netstat.FORMAT] += 3
        elif linux_netstat.ROW.match(text):
            points[linux_netstat.FORMAT] += 1
    return points


#: lines scored; enough to get past a page of prose, cheap for 100k-row dumps
SAMPLE: Final = 5000


def detect(lines: list[Line]) -> str | None:
    """The best-scoring format, or None when nothing looks like socket output."""
    points = scores(lines[:SAMPLE])
    best = max(ORDER, key=lambda name: (points[name], -ORDER.index(name)))
    return best if points[best] > 0 else None
