"""``tcplens status`` (and ``tcplens`` alone): this machine at a glance.

The command takes a snapshot, summarises it (``tcplens.analysis.summary``)
and renders the :class:`Summary` with :func:`render_status`; both live in
:mod:`tcplens.views.status`, which :mod:`tcplens.cli` runs without click
when no option is given.  This module is the click command around it.
"""

from __future__ import annotations

from typing import Any

import click

from tcplens.views.options import source_options
from tcplens.views.status import (
    DOCTOR_POINTER,
    FULL_LIMIT,
    _estimate_note,
    render_status,
    run,
)

__all__ = ["DOCTOR_POINTER", "_estimate_note", "command", "render_status"]


@click.command("status")
@source_options
@click.option(
    "--full/--fast",
    default=None,
    help="--full: attribute every socket to its process and add the doctor's top finding; "
    f"--fast: count from the kernel dump and sample processes. Default: --full up to "
    f"{FULL_LIMIT:,} sockets, --fast beyond (netlink only).",
)
@click.option(
    "--lang",
    type=click.Choice(["en", "zh"], case_sensitive=False),
    default=None,
    help="Language of the doctor's top finding (default: from the locale, else English).",
)
def command(full: bool | None, lang: str | None, **kwargs: Any) -> int:
    """This machine at a glance: sockets per state, busiest ports and processes.

    Works unprivileged: sockets of other users' processes are counted, only
    their process names are unknown.

    On a host with many sockets (more than 20,000, or with --fast) the counts
    come straight from the kernel's dump without building a record per
    socket, and the processes of the busiest states are estimated from a
    sample of file descriptors (marked ~); the doctor's top finding is left
    to `tcplens doctor`.

    Example: tcplens status --source procfs
    """
    return run(full=full, lang=lang, **kwargs)
