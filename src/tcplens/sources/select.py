"""The one place a socket source is chosen.

Order: the explicit ``source`` argument (``--source``), then the
``TCPLENS_SOURCE`` environment variable, then ``auto``: netlink sock_diag on
Linux, ``/proc/net`` if netlink cannot be opened, psutil elsewhere.  Saved
text (``--from FILE``) bypasses live sources altogether.
"""

from __future__ import annotations

import importlib
import os
import socket
import sys
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Final

from tcplens.errors import SourceError
from tcplens.model.states import State
from tcplens.sources.records import Snapshot

if TYPE_CHECKING:
    from tcplens.sources.columns import PendingColumns

__all__ = ["ENV_VAR", "SOURCES", "choose_source", "start_columns", "take_snapshot"]

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


def start_columns(
    source: str | None = "auto",
    *,
    proc_root: str = "/proc",
    protos: Iterable[str] | None = None,
    families: Iterable[int] | None = None,
    states: Iterable[State] | None = None,
) -> PendingColumns | None:
    """Start dumping this machine's sockets as columns, when the source chosen is netlink.

    None when another source is chosen: the columnar dump
    (:mod:`tcplens.sources.columns`) only exists for netlink.  With ``auto``
    a netlink failure surfaces from ``result()`` as :class:`SourceError`;
    callers fall back to :func:`take_snapshot`, which reads /proc/net then.
    ``protos``, ``families`` and ``states`` narrow the dump in the kernel.
    """
    name = choose_source(None if source in (None, "auto") else source)
    if name == "auto" and (proc_root != "/proc" or not sys.platform.startswith("linux")):
        return None
    if name not in ("auto", "netlink"):
        return None
    from tcplens.sources.columns import DEFAULT_KINDS, PendingColumns

    kinds = [
        (family, proto)
        for family, proto in DEFAULT_KINDS
        if (protos is None or proto in set(protos))
        and (families is None or (4 if family == socket.AF_INET else 6) in set(families))
    ]
    return PendingColumns(kinds, states=states)


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
    name = choose_source(None if source in (None, "auto") else source)
    pending = None
    if processes and name != "psutil":
        from tcplens.sources import processes as proc

        pending = proc.start_scan(proc_root)  # beside the dump, in a child process
    try:
        explicit = name != "auto"
        if name == "auto":
            if proc_root != "/proc":
                name = "procfs"
            elif sys.platform.startswith("linux"):
                name = "netlink"
            else:
                name = "psutil"
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
