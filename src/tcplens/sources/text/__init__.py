"""Parsers for saved netstat/ss/proc text of any OS, into the same Snapshot live sources give.

People paste ``netstat`` output from machines tcplens cannot log into; this
package turns it into :class:`~tcplens.sources.records.Snapshot` records so
``ls``, ``status`` and ``doctor`` work on it unchanged.

* :func:`parse_text` is pure: text in, snapshot out.  The format is detected
  from the lines (:mod:`.detect`) unless ``fmt`` names one of :data:`FORMATS`.
  Each format is one module declaring a :class:`TextFormat` (name, aliases,
  detection score, parser); :data:`REGISTRY` finds them all.
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
import stat
import sys
import time
from typing import Final

from tcplens.errors import InputError
from tcplens.sources.records import Snapshot
from tcplens.sources.text._common import Builder, Line, TextFormat, is_command_echo, normalise
from tcplens.sources.text._registry import ALIASES, FORMATS, REGISTRY
from tcplens.sources.text.detect import detect

__all__ = [
    "ALIASES",
    "FORMATS",
    "REGISTRY",
    "TextFormat",
    "decode",
    "parse_text",
    "read_text",
    "sniff",
]

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
        REGISTRY[name].parse(lines, out, path)
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


def _utf16_codec(data: bytes) -> str | None:
    """``utf-16`` (with a BOM), ``utf-16-le``/``-be`` (ASCII text with every other
    byte zero: ``netstat > file`` in PowerShell), or None for an 8-bit encoding."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "utf-16"
    sample = data[:4096]
    if len(sample) >= 4:
        odd_zeros = sample[1::2].count(0)
        even_zeros = sample[0::2].count(0)
        half = len(sample) // 2
        if odd_zeros > 0.4 * half and even_zeros < 0.05 * half:
            return "utf-16-le"
        if even_zeros > 0.4 * half and odd_zeros < 0.05 * half:
            return "utf-16-be"
    return None


def decode(data: bytes) -> str:
    """Decode a saved dump: BOM first, then UTF-16 without BOM, UTF-8, GBK, latin-1.

    GBK is what ``netstat -ano > file`` writes on a Chinese Windows console
    (code page 936); it is accepted only when it decodes cleanly into text
    with Chinese words in it, so other 8-bit text still ends in latin-1.
    """
    if data.startswith(b"\xef\xbb\xbf"):
        return data[3:].decode("utf-8", errors="replace")
    codec = _utf16_codec(data)
    if codec is not None:
        return data.decode(codec, errors="replace")
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


#: how much of the input is looked at before anything else is read
SNIFF_BYTES: Final = 1024

#: magic numbers of files people hand to --from by mistake, and what to do instead
_NOT_TEXT: Final = (
    (
        (b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d",
         b"\x0a\x0d\x0d\x0a"),
        "a packet capture, not netstat/ss text (read it with: tcplens pcap FILE)",
    ),
    ((b"\x1f\x8b",), "gzip data (decompress it first: zcat FILE | tcplens ... --from -)"),
)  # fmt: skip

#: control characters no saved dump contains; tab, newlines, form feed, and the
#: BEL, BS and ESC of a terminal log (script(1), colours) are let through
_CONTROL: Final = re.compile(r"[\x00-\x06\x0e-\x1a\x1c-\x1f]")


def sniff(head: bytes) -> tuple[int, str] | None:
    """Why the first bytes of an input cannot start a text dump: (byte offset, reason).

    Looking at the first KiB turns ``--from /dev/zero`` or ``--from x.pcap``
    into one line at once, instead of reading up to :data:`MAX_TEXT_BYTES`
    and then failing to detect a format.  None when ``head`` may be text.
    """
    for magics, reason in _NOT_TEXT:
        if head.startswith(magics):
            return 0, reason
    codec = _utf16_codec(head)
    if codec is None:
        # in UTF-8, GBK and latin-1 a byte below 0x20 is always that control character
        found = _CONTROL.search(head.decode("latin-1"))
        offset = found.start() if found else 0
    else:
        bom = 2 if codec == "utf-16" else 0  # "utf-16" reads and drops the BOM
        found = _CONTROL.search(head[: len(head) & ~1].decode(codec, errors="replace"))
        offset = bom + 2 * found.start() if found else 0
    if found is None:
        return None
    byte = ord(found.group())
    return offset, f"binary data (byte 0x{byte:02x}), not netstat, ss or /proc/net text"


def _read_up_to(fd: int, limit: int) -> bytes:
    chunks: list[bytes] = []
    left = limit
    while left > 0:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _open(path: str) -> tuple[int, float, bytes]:
    """Open a dump: (fd, modification time or 0 for a pipe, bytes already read).

    Non-blocking first, so that a named FIFO nobody writes to is an error
    now rather than a hang; a writer already waiting in its open() counts,
    so ``ss -tan > fifo & tcplens ls --from fifo`` still works.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise InputError("cannot read: is a directory, not a saved dump", path=path)
        if stat.S_ISREG(info.st_mode) and info.st_size > MAX_TEXT_BYTES:
            raise InputError(
                f"larger than {MAX_TEXT_BYTES >> 20} MiB: not a saved netstat/ss dump",
                path=path,
                offset=MAX_TEXT_BYTES,
            )
        head = b""
        if stat.S_ISFIFO(info.st_mode):
            try:
                head = os.read(fd, SNIFF_BYTES)
            except BlockingIOError:
                pass  # a writer that has not written yet
            else:
                if not head:  # EOF at once: no writer, or one that wrote nothing
                    raise InputError("a FIFO with no writer: nothing to read", path=path)
        os.set_blocking(fd, True)
        return fd, (0.0 if stat.S_ISFIFO(info.st_mode) else info.st_mtime), head
    except BaseException:
        os.close(fd)
        raise


def _check_head(data: bytes, name: str) -> None:
    refused = sniff(data[:SNIFF_BYTES])
    if refused is not None:
        raise InputError(refused[1], path=name, offset=refused[0])


def read_text(path: str, fmt: str | None = None, strict: bool = False) -> Snapshot:
    """Read a saved dump from ``path`` (``-`` is stdin) and parse it.

    The first KiB is sniffed before the rest is read (:func:`sniff`): a
    binary file, a capture or a directory fails at once.  The snapshot's
    time is the file's modification time (when the dump was saved), or now
    for stdin and pipes.
    """
    name = "<stdin>" if path == "-" else path
    try:
        if path == "-":
            data = sys.stdin.buffer.read(SNIFF_BYTES)
            _check_head(data, name)
            if len(data) == SNIFF_BYTES:
                data += sys.stdin.buffer.read(MAX_TEXT_BYTES + 1 - len(data))
            mtime = 0.0
        else:
            fd, mtime, data = _open(path)
            try:
                if len(data) < SNIFF_BYTES:
                    data += _read_up_to(fd, SNIFF_BYTES - len(data))
                _check_head(data, name)
                if len(data) == SNIFF_BYTES:
                    data += _read_up_to(fd, MAX_TEXT_BYTES + 1 - len(data))
            finally:
                os.close(fd)
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
