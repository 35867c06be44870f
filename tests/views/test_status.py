"""``tcplens status`` and bare ``tcplens``: counts, busiest, oldest timers; works unprivileged."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tcplens.analysis.summary import summarize
from tcplens.model.states import State
from tcplens.sources.procfs import snapshot as proc_snapshot
from tcplens.views.commands.status import DOCTOR_POINTER, render_status
from tests.sources.live import known_sockets
from tests.unprivileged import cli_as_nobody

PROC = Path(__file__).parent.parent / "fixtures" / "proc"


def tcplens(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HOME": "/tmp", "COLUMNS": "100"}
    return subprocess.run(
        [sys.executable, "-m", "tcplens", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd="/",
        timeout=60,
    )


def test_status_of_recorded_proc_root_counts_every_state() -> None:
    result = tcplens("status", "--proc-root", str(PROC))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "18 sockets: TCP 15, UDP 3 (IPv4 12, IPv6 6)" in lines
    counts = {line.split()[0]: int(line.split()[1]) for line in lines if "█" in line}
    assert counts == {
        "LISTEN": 4,
        "ESTABLISHED": 8,
        "FIN_WAIT2": 1,
        "CLOSE_WAIT": 1,
        "TIME_WAIT": 1,
    }
    assert "  UDP: 2 unconnected, 1 connected" in lines
    assert any(line.startswith("  ESTABLISHED 8: local ports 40697 (2)") for line in lines)
    assert any(line.startswith("  TIME_WAIT: 0.3s of 60s (60s left)") for line in lines), lines
    assert any("FIN_WAIT2: 1 without a timer" in line for line in lines)
    assert lines[-1] == DOCTOR_POINTER


def test_bare_tcplens_is_status_on_live_sockets() -> None:
    with known_sockets():
        result = tcplens()
    assert result.returncode == 0, result.stderr
    assert "TCP sockets per state" in result.stdout
    assert any(line.lstrip().startswith("TIME_WAIT") for line in result.stdout.splitlines())
    assert result.stdout.rstrip().splitlines()[-1] == DOCTOR_POINTER


#: Run the real CLI, then again after dropping to ``nobody``.  The interpreter
#: lives under /root (mode 700) here, so the child imports everything while
#: still root (a first, silenced run), then gives up root for good.
def as_nobody(*args: str) -> subprocess.CompletedProcess[str]:
    return cli_as_nobody(*args, warm_up=True)


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to switch to nobody")
def test_unprivileged_status_and_ls_say_what_is_missing_and_do_not_crash() -> None:
    with known_sockets() as known:
        status = as_nobody("status")
        fast = as_nobody("status", "--fast")  # the columnar path and the descriptor tally
        listing = as_nobody("ls", "--port", str(known.listen_port))
        columnar = as_nobody("ls", "-t", "--json")  # from the columnar dump, scan in children
    assert columnar.returncode == 0, columnar.stderr
    assert "(Not all processes could be identified" in columnar.stderr
    assert "Traceback" not in columnar.stderr and '"sockets":[' in columnar.stdout
    for run in (status, fast):
        assert run.returncode == 0, run.stderr
        assert "Traceback" not in run.stderr
        assert "(Not all processes could be identified" in run.stdout
        assert run.stdout.rstrip().splitlines()[-1] == DOCTOR_POINTER
    assert "Traceback" not in listing.stderr
    assert listing.returncode == 0, listing.stderr
    assert "(Not all processes could be identified" in listing.stderr
    rows = listing.stdout.splitlines()[1:]
    assert len(rows) == 6
    # our root-owned sockets are still listed; their owner is unknown to nobody
    assert all(row.rstrip().endswith(" -") for row in rows), rows


def test_render_status_puts_extra_lines_just_before_the_pointer() -> None:
    summary = summarize(proc_snapshot(str(PROC)))
    lines = [str(line) for line in render_status(summary, extra=["Top finding: none"])]
    assert lines[-2:] == ["Top finding: none", DOCTOR_POINTER]


def test_help_has_an_example() -> None:
    result = tcplens("status", "--help")
    assert any(line.strip().startswith("Example:") for line in result.stdout.splitlines())


def test_estimated_process_counts_are_marked_and_explained() -> None:
    from tcplens.analysis.summary import StateDetail, Summary
    from tcplens.views.commands.status import _estimate_note

    detail = StateDetail(State.ESTABLISHED, 50_000, [(443, 600)], [("nginx", 42, 10_000)], True)
    summary = Summary(
        "netlink", "h", 0.0, 50_000, {"tcp": 50_000}, {4: 50_000},
        {State.ESTABLISHED: 50_000}, {}, [detail], {}, {}, [],
    )  # fmt: skip
    lines = [str(line) for line in render_status(summary, _estimate_note(summary, 2_048, 70_000))]
    assert "    processes nginx[42] (~10000)" in lines
    [note] = [line for line in lines if line.startswith("(~")]
    assert "2,048 of 70,000 file descriptors" in note
    exact = StateDetail(State.ESTABLISHED, 5, [(443, 5)], [("nginx", 42, 5)], False)
    summary.busy = [exact]
    assert not _estimate_note(summary, 10, 10)
    assert "    processes nginx[42] (5)" in [str(x) for x in render_status(summary)]
