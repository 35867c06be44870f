"""One root exception for the whole package, leaves named by cause.

Every error carries the data a user needs to find the problem (path, line,
byte offset, state, event) so that the CLI can print a single line and choose
an exit code without parsing messages.  Layers raise these; only the CLI
decides how they are shown.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tcplens.model.states import State


class TcplensError(Exception):
    """Root of every error tcplens raises on purpose."""

    #: exit code the CLI uses for this kind of error (2: usage or input error)
    exit_code: int = 2


class UnknownStateError(TcplensError, ValueError):
    """A state spelling that no table knows; carries the closest known names."""

    def __init__(self, text: str, suggestions: list[str]) -> None:
        self.text = text
        self.suggestions = suggestions
        hint = f"; did you mean {', '.join(suggestions)}?" if suggestions else ""
        shown = text if len(text) <= 60 else text[:57] + "..."
        super().__init__(f"unknown TCP state {shown!r}{hint}")


class IllegalTransition(TcplensError):
    """An event the state machine does not accept in the current state."""

    def __init__(self, state: State, event: str, detail: str = "") -> None:
        self.state = state
        self.event = event
        extra = f": {detail}" if detail else ""
        super().__init__(f"event {event} is not allowed in state {state}{extra}")


class InputError(TcplensError):
    """Bad input read from a file, stream or buffer, located as precisely as known."""

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        line: int | None = None,
        offset: int | None = None,
        record: int | None = None,
    ) -> None:
        self.path = path
        self.line = line
        self.offset = offset
        self.record = record
        self.reason = message
        where = []
        if path is not None:
            where.append(str(path))
        if line is not None:
            where.append(f"line {line}")
        if record is not None:
            where.append(f"record {record}")
        if offset is not None:
            where.append(f"byte {offset}")
        prefix = ": ".join([" ".join(where)]) + ": " if where else ""
        super().__init__(f"{prefix}{message}")


class TruncatedInput(InputError):
    """Input stops being readable at a record; what came before it is still valid.

    Either the input ended in the middle of the record, or (:class:`CorruptRecord`)
    the record's length is impossible, so no later record can be found either.
    """

    exit_code = 1


class CorruptRecord(TruncatedInput):
    """A record whose length cannot be right (a damaged or fuzzed capture).

    A capture has no resynchronisation marks: once one length is wrong, the
    rest of the file cannot be split into records.  That is a truncation at
    this record, in everything but the message, so readers handle it as one.
    """


class SourceError(TcplensError):
    """A live source could not be read at all (missing proc root, no netlink)."""


class ActionError(TcplensError):
    """An action on live sockets (``tcplens kill``) refused or impossible before it began.

    ``cause`` names why, for callers that choose what to say next:
    ``refused`` (a selection too wide to act on safely), ``not-permitted``
    (EPERM: no CAP_NET_ADMIN), ``unsupported`` (this platform or kernel
    cannot close sockets).
    """

    def __init__(self, message: str, *, cause: str) -> None:
        self.cause = cause
        super().__init__(message)


class ScenarioError(TcplensError):
    """A simulation or lab scenario is unknown or malformed."""


class Terminated(KeyboardInterrupt):
    """A signal (SIGTERM, or SIGINT) stopping a command that unwinds through its cleanup.

    A KeyboardInterrupt, so every ``finally`` and cleanup that handles Ctrl+C
    handles it too; it carries the signal so the CLI exits ``128 + signum``
    as a shell reports a process ended by it (143 for SIGTERM, 130 for SIGINT).
    """

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum
