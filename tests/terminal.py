"""``tcplens`` run in a real pseudo-terminal, as a person at a terminal would run it.

Tests of what a terminal shows (table widths, colours, a confirmation
prompt) need the command to see a tty: stdin, stdout and stderr are the pty's
slave side, its window size is set with ``TIOCSWINSZ``, and the test reads the
master side until the command ends or the time runs out.
"""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Mapping
from dataclasses import dataclass

#: escape sequences a terminal program writes: SGR colours, cursor moves, titles, charsets
ANSI = re.compile(r"\x1b(?:\[[0-9;?]*[A-Za-z]|\][^\x07]*\x07|[()][A-Z0-9])")


@dataclass
class Screen:
    """What a terminal run left: its exit code (None if it had to be killed) and plain text."""

    code: int | None
    text: str
    answered: bool


def run_in_terminal(
    args: list[str],
    *,
    columns: int = 120,
    lines: int = 40,
    env: Mapping[str, str] | None = None,
    answer: bytes | None = None,
    prompt: bytes = b"[y/N]",
    timeout: float = 30.0,
) -> Screen:
    """Run ``tcplens ARGS`` in a pty ``columns`` wide; type ``answer`` at ``prompt`` if given."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", lines, columns, 0, 0))
    proc = subprocess.Popen(
        [sys.executable, "-m", "tcplens", *args],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=dict(os.environ if env is None else env),
        close_fds=True,
    )
    os.close(slave)
    out = b""
    answered = False
    ended = False  # the command closed the terminal or exited (not cut off by the timeout)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.1)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: the child closed the terminal
                    ended = True
                    break
                if not data:
                    ended = True
                    break
                out += data
                if answer is not None and not answered and prompt in out:
                    os.write(master, answer + b"\n")
                    answered = True
            elif proc.poll() is not None:
                ended = True
                break
        code: int | None = proc.wait(timeout=10) if ended else None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    text = ANSI.sub("", out.decode("utf-8", "replace")).replace("\r", "")
    return Screen(code, text, answered)
