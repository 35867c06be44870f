"""The one place a socket source is chosen, and the listing route with it.

Order: the explicit ``source`` argument (``--source``), then the
``TCPLENS_SOURCE`` environment variable, then ``auto``: netlink sock_diag on
Linux, ``/proc/net`` if netlink cannot be opened, psutil elsewhere.  Saved
text (``--from FILE``) bypasses live sources altogether.

A listing comes as records (:func:`take_snapshot`, every source) or, for
100k-socket hosts, as columns of the netlink dump
(:mod:`tcplens.sources.columns`).  :func:`open_listing` takes the kind a
caller asks for and holds the one rule for when columns cannot be had
(another source, recorded files, another platform, netlink failing under
``auto``): the records instead, read as :func:`take_snapshot` reads them.
"""

from __future__ import annotations

import importlib
import os
import socket
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Literal

from tcplens.errors import SourceError
from tcplens.model.states import State
from tcplens.sources.records import Snapshot

if TYPE_CHECKING:
    from tcplens.sources.columns import SocketColumns
    from tcplens.sources.processes import Owners, PendingScan, Tally

__all__ = [
    "ENV_VAR",
    "SOURCES",
    "ColumnListing",
    "choose_source",
    "columns_unavailable",
    "open_listing",
    "take_snapshot",
]

ENV_VAR: Final = "TCPLENS_SOURCE"
SOURCES: Final = ("auto", "netlink", "procfs", "psutil")


def choose_source(source: str | None = None) -> str:
    """Resolve flag, then environment, then ``auto``; validate the name."""
    name = (source or os.environ.get(ENV_VAR) or "auto").strip().lower()
    if name not in SOURCES:
        origin = "--source" if source else ENV_VAR
        raise SourceError(f"{origin}: unknown source {name!r} (choose from {', '.join(SOURCES)})")
    return name


def _live(name: str, *, info: bool, proc_root: str, narrow: dict[str, Any]) -> Snapshot:
    if name == "netlink":
        from tcplens.sources import netlink

        return netlink.snapshot(info=info, **narrow)
    if name == "procfs":
        from tcplens.sources import procfs

        snap = procfs.snapshot(proc_root)
        if info:
            snap.missing.append("the procfs source has no TCP info (-i needs netlink)")
        return snap
    from tcplens.sources import portable

    return portable.snapshot()


def _read_text() -> Callable[..., Snapshot]:
    try:
        module = importlib.import_module("tcplens.sources.text")
        reader: Callable[..., Snapshot] = module.read_text
    except (ImportError, AttributeError):
        raise SourceError("saved-text parsing is not available") from None
    return reader


def _route(source: str | None, proc_root: str) -> tuple[str, bool]:
    """The live source to read (``auto`` resolved), and whether it was chosen explicitly."""
    name = choose_source(None if source in (None, "auto") else source)
    if name != "auto":
        return name, True
    if proc_root != "/proc":
        return "procfs", False
    return ("netlink" if sys.platform.startswith("linux") else "psutil"), False


def columns_unavailable(source: str | None = None, proc_root: str = "/proc") -> str | None:
    """Why the columnar dump cannot serve this source, in words for a message; None if it can.

    The dump only exists for netlink: an explicit other source, recorded
    files under ``auto`` (``proc_root``) and other platforms read records.
    """
    name, explicit = _route(source, proc_root)
    if name == "netlink":
        return None
    if explicit:
        return f"the {name} source"
    return "recorded files (--proc-root)" if name == "procfs" else "this platform"


@dataclass(slots=True)
class ColumnListing:
    """A columnar dump (:class:`~tcplens.sources.columns.SocketColumns`) and what a
    :class:`Snapshot` would say about it; owners come on demand, from the scan
    that ran beside the dump."""

    columns: SocketColumns
    source: str
    host: str
    taken_at: float
    missing: list[str]
    #: ``processes="sample"``: the socket inodes each process holds, maybe estimated
    tally: Tally | None = None
    proc_root: str = "/proc"
    wants_owners: bool = False
    _scan: PendingScan | None = None
    _owners: Owners | None = field(default=None, repr=False)

    def owners(self) -> Owners | None:
        """Who holds each socket (``processes=True``); None when not asked for.

        Waits for the ``/proc/*/fd`` scan that ran in forked children while
        the dump was received, so render what needs no owner first.  Its
        notes go to ``missing``.
        """
        if not self.wants_owners:
            return None
        if self._owners is None:
            from tcplens.sources import processes as proc

            scan = self._scan
            found = scan.result() if scan is not None else proc.scan(None, self.proc_root)
            self._scan = None
            columns = self.columns
            self._owners = proc.owners_of(columns.inode, columns.uids(), found, self.proc_root)
            self.missing += self._owners.notes
        return self._owners

    def header(self) -> Snapshot:
        """A snapshot without sockets: the header a JSON listing starts with."""
        meta = Snapshot([], source=self.source, host=self.host, taken_at=self.taken_at)
        meta.missing = self.missing
        return meta


def open_listing(
    kind: Literal["records", "columns"] = "records",
    source: str | None = "auto",
    *,
    from_file: str | None = None,
    fmt: str | None = None,
    strict: bool = False,
    processes: bool | Literal["sample"] = True,
    info: bool = False,
    cmdline: bool = False,
    proc_root: str = "/proc",
    states: Iterable[State] | None = None,
    protos: Iterable[str] | None = None,
    families: Iterable[int] | None = None,
    sports: Iterable[int] | None = None,
    dports: Iterable[int] | None = None,
    ports: Iterable[int] | None = None,
    fallback: bool = True,
) -> Snapshot | ColumnListing:
    """This machine's sockets (or saved text's) as ``kind`` asks, else as records.

    ``columns`` is a :class:`ColumnListing` when the chosen source is
    netlink (see :func:`columns_unavailable`), read in the kernel's order and
    narrowed there by ``states``/``protos``/``families``; ``info``,
    ``cmdline`` and the ports need records.  Otherwise, and when netlink
    fails under ``auto``, the records :func:`take_snapshot` gives for the
    same arguments; ``fallback=False`` raises :class:`SourceError` instead.
    ``processes``: attribute every socket (the ``/proc`` scan runs in forked
    children beside the dump), ``"sample"`` (columns: a sampled
    :func:`~tcplens.sources.processes.tally`; records: every socket), or not.
    """
    # read once: the columns and a fallback to records may both need them
    protos = None if protos is None else frozenset(protos)
    families = None if families is None else frozenset(families)
    states = None if states is None else frozenset(states)
    records: dict[str, Any] = {
        "from_file": from_file,
        "fmt": fmt,
        "strict": strict,
        "processes": bool(processes),
        "info": info,
        "cmdline": cmdline,
        "proc_root": proc_root,
        "states": states,
        "protos": protos,
        "families": families,
        "sports": sports,
        "dports": dports,
        "ports": ports,
    }
    narrowed = sports is not None or dports is not None or ports is not None
    if kind == "records" or from_file is not None or info or cmdline or narrowed:
        return take_snapshot(source, **records)
    reason = columns_unavailable(source, proc_root)
    if reason is not None:
        if not fallback:
            raise SourceError(f"the columnar dump is netlink's, which {reason} cannot give")
        return take_snapshot(source, **records)
    explicit = _route(source, proc_root)[1]
    from tcplens.sources import processes as proc
    from tcplens.sources.columns import DEFAULT_KINDS, PendingColumns

    # fork before the receiving threads start: a child of a threaded process is unsafe
    scanning = proc.start_scan(proc_root) if processes is True else None
    taken_at = time.time()
    missing: list[str] = []
    tally = None
    try:
        pending = PendingColumns(
            [
                (family, proto)
                for family, proto in DEFAULT_KINDS
                if (protos is None or proto in protos)
                and (families is None or (4 if family == socket.AF_INET else 6) in families)
            ],
            states=states,
        )
        if processes == "sample":
            tally = proc.tally(proc_root)  # in this thread while the dump is received
        columns = pending.result(missing)
    except BaseException as exc:
        if scanning is not None:
            scanning.cancel()
        if isinstance(exc, SourceError) and fallback and not explicit:
            return take_snapshot(source, **records)  # auto: /proc/net instead
        raise
    if tally is not None and tally.denied:
        missing.append(proc.NOT_ALL_IDENTIFIED)
    return ColumnListing(
        columns,
        source="netlink",
        host=socket.gethostname(),
        taken_at=taken_at,
        missing=missing,
        tally=tally,
        proc_root=proc_root,
        wants_owners=processes is True,
        _scan=scanning,
    )


def take_snapshot(
    source: str | None = "auto",
    *,
    from_file: str | None = None,
    fmt: str | None = None,
    strict: bool = False,
    processes: bool = True,
    info: bool = False,
    cmdline: bool = False,
    proc_root: str = "/proc",
    states: Iterable[State] | None = None,
    protos: Iterable[str] | None = None,
    families: Iterable[int] | None = None,
    sports: Iterable[int] | None = None,
    dports: Iterable[int] | None = None,
    ports: Iterable[int] | None = None,
) -> Snapshot:
    """Read sockets from saved text (``from_file``, ``-`` for stdin) or a live source.

    ``source="auto"`` still honours ``TCPLENS_SOURCE``; pass ``None`` for the
    same effect.  ``processes`` fills pid/process (the slow part, skip it when
    not shown); ``info`` asks netlink for ``tcp_info``.  A ``proc_root`` other
    than ``/proc`` (recorded files) makes ``auto`` mean ``procfs``.

    ``states``/``protos``/``families`` and the ports (local ``sports``, peer
    ``dports``, either ``ports``) are hints: netlink asks the kernel for only
    those sockets; other sources may return more, so callers still filter.
    ``None`` (the default) means everything.
    """
    narrow: dict[str, Any] = {
        "states": states,
        "protos": protos,
        "families": families,
        "sports": sports,
        "dports": dports,
        "ports": ports,
    }
    if from_file is not None:
        return _read_text()(from_file, fmt=fmt, strict=strict)
    name, explicit = _route(source, proc_root)
    pending = None
    if processes and name != "psutil":
        from tcplens.sources import processes as proc

        pending = proc.start_scan(proc_root)  # beside the dump, in a child process
    try:
        if name == "netlink":
            try:
                snap = _live("netlink", info=info, proc_root=proc_root, narrow=narrow)
            except SourceError as exc:
                if explicit:
                    raise
                snap = _live("procfs", info=info, proc_root=proc_root, narrow=narrow)
                snap.missing.append(f"netlink unavailable ({exc}); read /proc/net instead")
        else:
            snap = _live(name, info=info, proc_root=proc_root, narrow=narrow)
    except BaseException:
        if pending is not None:
            pending.cancel()
        raise
    if processes and snap.source != "psutil":
        from tcplens.sources import processes as proc

        notes = proc.attribute(snap.sockets, proc_root=proc_root, cmdline=cmdline, pending=pending)
        snap.missing.extend(notes)
    elif pending is not None:
        pending.result()  # psutil after all (auto off Linux): reap the child
    elif not processes and snap.source == "psutil":
        for sock in snap.sockets:
            sock.pid = sock.fd = None
    return snap
