"""Saved ``/proc/net/tcp``, ``tcp6``, ``udp`` and ``udp6`` text (``cat`` or ``head`` of several).

Rows are decoded by the live procfs source's own pure parser
(:func:`tcplens.sources.procfs.parse`), so a recorded file and the live
file give identical records.  What is added here is what a pasted dump
needs and a live file never does:

* the protocol is not in the rows: it comes from the header (UDP headers end
  in ``ref pointer drops``), from ``==> /proc/net/udp6 <==`` markers that
  ``head``/``tail`` print between files, or from the file name;
* the family comes from the address width (8 hex digits IPv4, 32 IPv6);
* a row that does not decode becomes a warning instead of an error.

Addresses are decoded in the byte order of the machine reading the dump;
dumps from big-endian machines (s390x) decode to byte-swapped IPv4 addresses.
"""

from __future__ import annotations

import re
from typing import Final

from tcplens.errors import InputError
from tcplens.sources.records import Proto
from tcplens.sources.text._common import (
    Builder,
    Line,
    TextFormat,
    is_command_echo,
)

__all__ = ["FORMAT", "HEADER", "ROW", "TEXT_FORMAT", "parse", "score"]

FORMAT: Final = "proc"

HEADER: Final = re.compile(r"^\s*sl\s+local_address\s+(?:rem|remote)_address\s+st\b")
ROW: Final = re.compile(
    r"^\s*\d+:\s+(?P<local>[0-9A-Fa-f]{8}(?:[0-9A-Fa-f]{24})?):[0-9A-Fa-f]{4}\s+"
    r"[0-9A-Fa-f]+:[0-9A-Fa-f]{4}\s+[0-9A-Fa-f]{2}\s"
)
_MARKER: Final = re.compile(r"^==> (?P<name>.*?) <==$")


def _proto_of_name(name: str) -> Proto | None:
    base = name.rstrip("/").rsplit("/", 1)[-1]
    if base.startswith("udp"):
        return "udp"
    if base.startswith("tcp"):
        return "tcp"
    return None


def parse(lines: list[Line], out: Builder, *, path: str | None = None) -> None:
    """Parse /proc/net text into ``out``."""
    # imported here so that the other text formats never depend on the live source
    from tcplens.sources import procfs

    proto: Proto = (_proto_of_name(path) if path else None) or "tcp"
    for line in lines:
        stripped = line.text.strip()
        if not stripped or is_command_echo(line.text):
            continue
        marker = _MARKER.match(stripped)
        if marker:
            proto = _proto_of_name(marker["name"]) or proto
            continue
        if HEADER.match(stripped):
            if stripped.endswith("drops"):
                proto = "udp"
            elif stripped.endswith("inode"):
                proto = "tcp"
            continue
        match = ROW.match(stripped)
        if not match:
            out.warn(line, "not a /proc/net row")
            continue
        family = 4 if len(match["local"]) == 8 else 6
        try:
            (sock,) = procfs.parse([stripped], proto, family, path=path or "<text>")
        except (InputError, ValueError) as exc:
            reason = exc.reason if isinstance(exc, InputError) else str(exc)
            out.warn(line, reason)
            continue
        out.add(line, sock)


def score(text: str, words: list[str]) -> int:
    """Detection points for one line (:class:`TextFormat`)."""
    if HEADER.match(text):
        return 5
    return 2 if ROW.match(text) else 0


TEXT_FORMAT: Final = TextFormat(
    FORMAT,
    lambda lines, out, path: parse(lines, out, path=path),
    score,
    aliases=("procfs", "proc-net"),
    listed=5,
    precedence=0,
)
