"""Parsers for saved netstat/ss/proc text of any OS, into the same Snapshot live sources give.

People paste ``netstat`` output from machines tcplens cannot log into; this
package turns it into :class:`~tcplens.sources.records.Snapshot` records so
``ls``, ``status`` and ``doctor`` work on it unchanged.

* :func:`parse_text` is pure: text in, snapshot out.  The format is detected
  from the lines (:mod:`.detect`) unless ``fmt`` names one of :data:`FORMATS`.
* :func:`read_text` only reads a file (``-`` for stdin) and decodes it:
  UTF-8, UTF-16 with a BOM or without one (``netstat > file`` in PowerShell),
  GBK (a Chinese Windows console), latin-1 as the last resort; any newline
  convention.
* Nothing is dropped silently: every line that is not understood becomes a
  :class:`~tcplens.sources.records.ParseWarning` with its line number, rows of
  non-inet sections are counted in ``Snapshot.skipped``, and banners such as
  "(Not all processes could be identified…)" land in ``Snapshot.missing``.
  ``strict=True`` turns the first warning into an :class:`InputError`.
"""

from __future__ import annotations

import gc
import os
import re
import sys
import time
from collections.abc import Callable
from typing import Final

from tcplens.errors import InputError
from tcplens.sources.records import Snapshot
from tcplens.sources.text import bsd, linux_netstat, powershell, proc, solaris, ss, windows
from tcplens.sources.text._common import Builder, Line, is_command_echo, normalise
from tcplens.sources.text.detect import detect

__all__ = ["ALIASES", "FORMATS", "decode", "parse_text", "read_text"]

Parser = Callable[[list[Line], Builder], None]

_PARSERS: Final[dict[str, Parser]] = {
    linux_netstat.FORMAT: linux_netstat.parse,
    ss.FORMAT: ss.parse,
    windows.FORMAT: windows.parse,
    bsd.FORMAT: bsd.parse,
    solaris.FORMAT: solaris.parse,
    powershell.FORMAT: powershell.parse,
}

#: names accepted by ``--format`` (``auto`` detects)
FORMATS: Final = (
    linux_netstat.FORMAT,
    ss.FORMAT,
    windows.FORMAT,
    bsd.FORMAT,
    solaris.FORMAT,
    proc.FORMAT,
    powershell.FORMAT,
)

#: friendlier names users type for the same formats
ALIASES: Final = {
    "linux": linux_netstat.FORMAT,
    "netstat": linux_netstat.FORMAT,
    "windows": windows.FORMAT,
    "win": windows.FORMAT,
    "macos": bsd.FORMAT,
    "darwin": bsd.FORMAT,
    "freebsd": bsd.FORMAT,
    "bsd": bsd.FORMAT,
    "solaris": solaris.FORMAT,
    "illumos": solaris.FORMAT,
    "procfs": proc.FORMAT,
    "proc-net": proc.FORMAT,
    "get-nettcpconnection": powershell.FORMAT,
    "pwsh": powershell.FORMAT,
}

_PROMPT_HOST: Final = re.compile(r"^\s*[\w.-]+@(?P<host>[\w.-]+)[:\s]")


def _format_name(fmt: str | None, lines: list[Line], path: str | None) -> str:
    if fmt is None or fmt == "auto":
        found = detect(lines)
        if found is None:
            raise InputError(
                "not netstat, ss or /proc/net output (no known format matched; "
                f"--format takes {', '.join(FORMATS)})",
                path=path,
            )
        return found
    name = ALIASES.get(fmt.lower(), fmt.lower())
    if name not in FORMATS:
        raise InputError(f"unknown format {fmt!r}; known: {', '.join(FORMATS)}", path=path)
    return name


def _host(lines: list[Line]) -> str:
    """The host name in a ``user@host:~$ netstat …`` prompt, if the paste has one."""
    for line in lines:
        if is_command_echo(line.text):
            match = _PROMPT_HOST.match(line.text)
            if match:
                return match["host"]
    return ""


def parse_text(
    text: str,
    fmt: str | None = None,
    *,
    path: str | None = None,
    strict: bool = False,
) -> Snapshot:
    """Parse saved netstat/ss/proc text into a Snapshot (see the module docstring).

    ``path`` only names the input in errors (and tells /proc dumps whether
    they are tcp or udp).  Raises :class:`InputError` when no format matches,
    ``fmt`` is unknown, or ``strict`` is set and a line is not understood.
    """
    lines = normalise(text)
    name = _format_name(fmt, lines, path)
    out = Builder()
    # Hundreds of thousands of small records and no cycles among them: the
    # cyclic collector would rescan them again and again (20-25% of the time).
    collecting = gc.isenabled()
    gc.disable()
    try:
        if name == proc.FORMAT:
            proc.parse(lines, out, path=path)
        else:
            _PARSERS[name](lines, out)
    finally:
        if collecting:
            gc.enable()
    if strict and out.warnings:
        first = out.warnings[0]
        raise InputError(
            f"{first.message}: {first.text.strip()[:80]!r}", path=path, line=first.line
        )
    if out.warnings:
        # views that only summarise (status, doctor) show `missing`, not every warning
        noun = "line" if len(out.warnings) == 1 else "lines"
        out.note(
            f"{len(out.warnings)} {noun} of the input not understood (first: line "
            f"{out.warnings[0].line}); any sockets there are not counted"
        )
    return Snapshot(
        out.sockets,
        source=f"text:{name}",
        host=_host(lines),
        taken_at=time.time(),
        missing=out.missing,
        warnings=out.warnings,
        skipped=out.skipped,
    )


#: Chinese words are runs of ideographs; a lone one is a Western 8-bit byte pair
_CJK: Final = re.compile(r"[\u4e00-\u9fff]{2,}")


def decode(data: bytes) -> str:
    """Decode a saved dump: BOM first, then UTF-16 without BOM, UTF-8, GBK, latin-1.

    GBK is what ``netstat -ano > file`` writes on a Chinese Windows console
    (code page 936); it is accepted only when it decodes cleanly into text
    with Chinese words in it, so other 8-bit text still ends in latin-1.
    """
    if data.startswith(b"\xef\xbb\xbf"):
        return data[3:].decode("utf-8", errors="replace")
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16", errors="replace")
    sample = data[:4096]
    if len(sample) >= 4:
        odd_zeros = sample[1::2].count(0)
        even_zeros = sample[0::2].count(0)
        half = len(sample) // 2
        if odd_zeros > 0.4 * half and even_zeros < 0.05 * half:
            return data.decode("utf-16-le", errors="replace")
        if even_zeros > 0.4 * half and odd_zeros < 0.05 * half:
            return data.decode("utf-16-be", errors="replace")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    try:
        text = data.decode("gbk")
    except UnicodeDecodeError:
        return data.decode("latin-1")
    return text if _CJK.search(text) else data.decode("latin-1")


#: A million sockets of ``ss -tanp`` is about 200 MB; anything past this is not a
#: dump (``--from /dev/zero`` would otherwise read until memory runs out).
MAX_TEXT_BYTES: Final = 512 * 1024 * 1024


def read_text(path: str, fmt: str | None = None, strict: bool = False) -> Snapshot:
    """Read a saved dump from ``path`` (``-`` is stdin) and parse it.

    The snapshot's time is the file's modification time (when the dump was
    saved), or now for stdin.
    """
    name = "<stdin>" if path == "-" else path
    try:
        if path == "-":
            data = sys.stdin.buffer.read(MAX_TEXT_BYTES + 1)
            mtime = time.time()
        else:
            with open(path, "rb") as fh:
                data = fh.read(MAX_TEXT_BYTES + 1)
                mtime = os.fstat(fh.fileno()).st_mtime
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror or exc}", path=name) from None
    if len(data) > MAX_TEXT_BYTES:
        raise InputError(
            f"larger than {MAX_TEXT_BYTES >> 20} MiB: not a saved netstat/ss dump",
            path=name,
            offset=MAX_TEXT_BYTES,
        )
    snapshot = parse_text(decode(data), fmt, path=name, strict=strict)
    if mtime > 0:
        snapshot.taken_at = mtime
    return snapshot
