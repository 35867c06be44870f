"""The rich console every verb prints through.

rich handles a closed stdout (``tcplens status | head -1``) by raising
``SystemExit(1)`` itself, which would bypass the CLI's exit codes: a reader
that went away is not an error (exit 0, see :func:`tcplens.views.cli.main`).
"""

from __future__ import annotations

from rich.console import Console as _RichConsole

__all__ = ["Console"]


class Console(_RichConsole):
    """rich's Console, except a closed pipe is left to the CLI to handle."""

    def on_broken_pipe(self) -> None:
        self.quiet = True
        raise BrokenPipeError
