"""The ``tcplens`` console script: ``tcplens`` and ``tcplens status`` before the CLI loads.

Why a module in front of :mod:`tcplens.views.cli`: the bare command is the
one users type most, and its goal is 0.8x the time of ``ss -tan`` on a host
with 100k sockets, where every millisecond before the kernel's dump starts
counts.  Loading click, the verb registry and the shared option groups takes
~10 ms and decides nothing when no argument is given, so with no option the
status screen (:func:`tcplens.views.status.lines_for_status`, which the
click command runs too) is built straight away.  Anything else, and any error
before output starts, goes to :func:`tcplens.views.cli.main`, which parses,
runs and reports as always (an error is then reported once, by it).
"""

from __future__ import annotations

import gc
import io
import os
import signal
import sys
from typing import NoReturn

__all__ = ["discard_stdout", "main", "prepare_process"]

#: the argument lists that mean "status with every option at its default"
_BARE: tuple[list[str], ...] = ([], ["status"])


def prepare_process() -> None:
    """What every ``tcplens`` run sets up first: lenient output streams and Ctrl+C."""
    for stream in (sys.stdout, sys.stderr):
        # a non-UTF-8 terminal or PYTHONIOENCODING=ascii: '?' for 中文 and box
        # drawing rather than a UnicodeEncodeError traceback halfway through a table
        if isinstance(stream, io.TextIOWrapper) and stream.errors == "strict":
            stream.reconfigure(errors="replace")
    # Ctrl+C stops every verb (watch, trace, capture, exporter run until it), as tcpdump
    # does, also when started from a non-interactive shell's background list, which hands
    # its children SIGINT ignored (POSIX): the process would otherwise never stop on it
    signal.signal(signal.SIGINT, signal.default_int_handler)


def main(argv: list[str] | None = None) -> NoReturn:
    """Console entry point: the bare status at once, everything else through the CLI."""
    args = sys.argv[1:] if argv is None else argv
    if args in _BARE:
        _bare_status()
    from tcplens.views.cli import main as cli_main

    cli_main(argv)


def _bare_status() -> None:
    """Run ``tcplens status`` with its defaults and exit; return if the CLI must run it.

    The lines are built before anything is written, so a failure before
    then leaves no output behind and the CLI runs the command again and
    reports it in its words (exit code included).  A reader that went away
    while the lines are written is not an error (exit 0), as in the CLI.
    """
    prepare_process()
    collecting = gc.isenabled()
    gc.disable()  # short-lived and acyclic: no collections while ~60 modules load
    try:
        from tcplens.views import status

        lines = status.lines_for_status(full=None)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception:
        return
    finally:
        if collecting:  # as it was, for a caller running main() in its own process
            gc.enable()
    try:
        from tcplens.views.styles import emit

        emit(lines)
        sys.stdout.flush()
    except BrokenPipeError:
        discard_stdout()
    except KeyboardInterrupt:
        sys.exit(130)
    sys.exit(0)


def discard_stdout() -> None:
    """Point stdout at /dev/null so the final flush at exit cannot fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass
