"""The one route from a capture to connections, chosen here, never in a view.

Two implementations do the per-packet work, with one answer:

* the **engine**, ``tcplens._engine`` (Rust, ``rust/`` in the repository):
  reader, decoder and tracker in one compiled loop that hands finished
  connections to Python in batches.  A regular file (a path, or an open file
  object, read from where it stands) is read and tracked by threads of the
  engine's own while Python writes the batch before; a pipe or any other file
  object is read through its ``read``, between batches;
* the **reference**, :func:`tcplens.packets.tracker.reconstruct` over
  :func:`tcplens.packets.pcap.read_frames`: readable Python that the engine
  is held equal to by differential tests.

:func:`reconstruct_capture` picks the engine whenever it is built and can do
the job, the reference otherwise; ``TCPLENS_PACKETS=python`` (or ``engine``)
forces one, for tests, benchmarks and bug reports.  A file, stdin, a pipe and
a live interface (:func:`reconstruct_frames`) all go through the same route, so
they give the same answer.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO, Literal

from tcplens.errors import InputError, TruncatedInput
from tcplens.packets.decode import DecodeStats
from tcplens.packets.pcap import Frame, read_frames
from tcplens.packets.tracker import CaptureSummary, Connection, Tracker, reconstruct

__all__ = [
    "ROUTE_ENV",
    "ROW_SEPARATORS",
    "Rendering",
    "Route",
    "TableLayout",
    "engine_available",
    "reconstruct_capture",
    "reconstruct_frames",
    "render_capture",
    "route",
]

Route = Literal["engine", "python"]
#: the streamed outputs: ``json.dumps(Connection.as_dict())``, one conn.log row, or
#: one row of the piped table (laid out by a :class:`TableLayout`)
Rendering = Literal["json", "zeek", "table"]
#: how :func:`render_capture` joins the rows of one block, as the view writes them
ROW_SEPARATORS: dict[Rendering, str] = {"json": ",\n", "zeek": "\n", "table": "\n"}
#: environment variable that forces a route ("engine" or "python")
ROUTE_ENV = "TCPLENS_PACKETS"


def engine_available() -> bool:
    """Whether the compiled engine is built and has the whole capture loop."""
    try:
        from tcplens import _engine
    except ImportError:
        return False
    return hasattr(_engine, "Capture") and hasattr(_engine, "FrameTracker")


def route(tracker: Tracker, *, reports_changes: bool = False) -> Route:
    """The route a capture takes with this tracker (see the module docstring).

    ``reports_changes``: the caller's engine route passes state changes on to
    ``tracker.on_change``; without it a watched tracker takes the reference.
    """
    forced = os.environ.get(ROUTE_ENV, "").strip().lower()
    if forced == "python" or (tracker.on_change is not None and not reports_changes):
        return "python"
    if forced == "engine":
        if not engine_available():
            raise InputError(
                f"{ROUTE_ENV}=engine, but the capture engine is not built "
                "(reinstall tcplens: python3 -m pip install .)"
            )
        return "engine"
    if forced:
        raise InputError(f"{ROUTE_ENV} must be 'engine' or 'python', not {forced!r}")
    return "engine" if engine_available() else "python"


def reconstruct_capture(
    source: str | BinaryIO,
    tracker: Tracker,
    summary: CaptureSummary,
    path: str | None = None,
) -> Iterator[Connection]:
    """Every connection of a capture, yielded as it finishes.

    ``source`` is a path or a binary file object (stdin, a pipe, a wrapper
    that counts bytes for a progress bar); ``path`` names it in errors.
    ``summary`` and the tracker's counters (``now``, ``count``, ``peak``,
    ``evicted``) are filled in as with :func:`~tcplens.packets.tracker.reconstruct`.
    A truncated or corrupt capture yields the connections before the fault,
    then raises :class:`~tcplens.errors.TruncatedInput` naming record and offset.
    """
    if route(tracker) == "engine":
        return _engine_connections(source, tracker, summary, path)
    if isinstance(source, str):
        return _reference_from_path(source, tracker, summary, path)
    return reconstruct(read_frames(source, path), tracker, summary, path)


@dataclass(frozen=True)
class TableLayout:
    """The piped ``tcplens pcap`` table, declared by the view that owns it.

    The engine writes the same rows in Rust (no Python object per connection),
    laid out by ``columns``; ``rows`` is the view's own writer, which the
    reference route uses and the differential tests hold the engine's rows to.
    """

    #: (right-aligned, starting width) of each column, as the view lays them out
    columns: tuple[tuple[bool, int], ...]
    #: the rows of these connections, in capture order, as the view writes them
    rows: Callable[[Iterable[Connection]], Iterator[str]]


def render_capture(
    source: str | BinaryIO,
    tracker: Tracker,
    summary: CaptureSummary,
    path: str | None,
    rendering: Rendering,
    table: TableLayout | None = None,
) -> Iterator[str]:
    """The connections of a capture as the text ``tcplens pcap --json`` or ``--zeek`` writes.

    ``"json"`` gives ``json.dumps(conn.as_dict())``, ``"zeek"`` the conn.log row
    (``"\\t".join(conn.zeek.values())``), ``"table"`` the rows of ``table`` (in
    capture order, so not one per connection as it finishes).  Yielded in blocks
    of one or more rows joined by ``ROW_SEPARATORS[rendering]`` (",\\n" between
    JSON objects, a newline otherwise), so that writing them as the view writes
    rows gives the same text.  On the engine route a block holds about 32 KiB
    of rows, written in Rust with no Python object per connection (a Python
    string, loop step and write per row cost ~0.5 µs, a third of a
    million-connection flood's Python time); otherwise one row, as
    :func:`reconstruct_capture` gives them.
    """
    if rendering == "table" and table is None:
        raise ValueError("rendering='table' needs the table's layout")
    if route(tracker) == "engine":
        columns = table.columns if table is not None else None
        return _engine_connections(source, tracker, summary, path, rendering, columns)
    conns = reconstruct_capture(source, tracker, summary, path)
    if table is not None and rendering == "table":
        return table.rows(conns)
    if rendering == "json":
        return (json.dumps(c.as_dict()) for c in conns)
    return ("\t".join(c.zeek.values()) for c in conns)


def reconstruct_frames(
    frames: Iterable[Frame],
    tracker: Tracker,
    summary: CaptureSummary,
    path: str | None = None,
) -> Iterator[Connection]:
    """Like :func:`reconstruct_capture`, for frames read elsewhere (a live interface).

    Every state change reaches ``tracker.on_change`` as the frame causing it
    is fed, before the connections that frame finished are yielded.
    """
    if route(tracker, reports_changes=True) == "engine":
        return _engine_frames(frames, tracker, summary, path)
    return reconstruct(frames, tracker, summary, path)


def _engine_frames(
    frames: Iterable[Frame], tracker: Tracker, summary: CaptureSummary, path: str | None
) -> Iterator[Connection]:
    from tcplens import _engine

    feeder = _engine.FrameTracker(tracker, path)
    on_change = tracker.on_change
    try:
        for f in frames:
            changes, done = feeder.feed(f.ts_ns, f.linktype, f.data, f.wire_len, f.record, f.offset)
            if on_change is not None:
                for change in changes:
                    on_change(change)
            if done:
                _summarise(feeder.counters(), summary)
                yield from done
    except TruncatedInput as exc:
        summary.truncated = exc
        summary.status = "truncated"
        yield from _finish_frames(feeder, on_change, summary)
        raise
    except InputError:
        _summarise(feeder.counters(), summary)
        raise
    yield from _finish_frames(feeder, on_change, summary)


def _finish_frames(feeder: Any, on_change: Any, summary: CaptureSummary) -> Iterator[Connection]:
    changes, rest = feeder.finish()
    if on_change is not None:
        for change in changes:
            on_change(change)
    _summarise(feeder.counters(), summary, finished=True)
    yield from rest


def _reference_from_path(
    source: str, tracker: Tracker, summary: CaptureSummary, path: str | None
) -> Iterator[Connection]:
    try:
        fh = open(source, "rb")  # noqa: SIM115 - closed below, after the generator ends
    except OSError as exc:
        raise InputError(f"cannot open: {exc.strerror}", path=path or source) from None
    with fh:
        yield from reconstruct(read_frames(fh, path), tracker, summary, path)


def _engine_connections(
    source: str | BinaryIO,
    tracker: Tracker,
    summary: CaptureSummary,
    path: str | None,
    rendering: Rendering | None = None,
    columns: tuple[tuple[bool, int], ...] | None = None,
) -> Iterator[Any]:
    from tcplens import _engine

    # the engine keeps the tracker's own counters (now, count, peak, evicted) current
    capture = _engine.Capture(source, tracker, path, rendering, columns)
    try:
        while True:
            batch = capture.next_batch()
            _summarise(capture.counters(), summary)
            if not batch:
                break
            yield from batch
    except TruncatedInput as exc:
        # the tracker was flushed, as CaptureSummary.finish does on the reference route
        _summarise(capture.counters(), summary, finished=True)
        summary.truncated = exc
        summary.status = "truncated"
        raise
    except InputError:
        _summarise(capture.counters(), summary)
        raise
    _summarise(capture.counters(), summary, finished=True)


def _summarise(counters: dict[str, Any], summary: CaptureSummary, finished: bool = False) -> None:
    summary.frames = counters["frames"]
    summary.decode = DecodeStats(**counters["decode"])
    summary.connections = counters["connections"]
    if finished:
        summary.peak_live = counters["peak"]
