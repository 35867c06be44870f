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


# --- the bare command's route (tcplens.cli): no click, the one status, errors said once ----

_BARE_PROBE = """
import sys
import tcplens.views.status as status
status.FULL_LIMIT = {limit}  # this namespace's few hundred sockets count as many
from tcplens.cli import main
try:
    main({argv!r})
except SystemExit as exc:
    loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('click', 'rich'))
    print('exit', exc.code, 'loaded', loaded, file=sys.stderr)
"""


def _probe(argv: list[str], limit: int = 10) -> subprocess.CompletedProcess[str]:
    code = _BARE_PROBE.format(limit=limit, argv=argv)
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd="/"
    )


@pytest.mark.root
def test_bare_status_on_a_busy_host_loads_no_click_and_prints_the_fast_status() -> None:
    """``tcplens`` and ``tcplens status`` skip the CLI's imports and say what ``--fast`` says."""
    from tests.netns import run_in_private_netns
    from tests.sources.test_columns import population

    def body() -> None:
        with population():
            bare, word = _probe([]), _probe(["status"])
            fast = _probe(["status", "--fast"])  # through click: the same run()
        for result in (bare, word):
            assert result.stderr.strip() == "exit 0 loaded []", result.stderr
        assert "loaded ['click" in fast.stderr

        # ages and the clock move between runs; everything else is the same text
        def steady(text: str) -> list[str]:
            lines = text.splitlines()[1:]
            # the estimate note counts every process's descriptors, this test's included
            moving = ("  TIME_WAIT: ", "  FIN", "(~: ")
            return [line for line in lines if not line.startswith(moving)]

        assert steady(bare.stdout) == steady(word.stdout) == steady(fast.stdout)
        # the fast status (it takes --fast's route): counts from the columns, no top finding
        assert "Busiest states" in bare.stdout and "Top finding" not in bare.stdout

    run_in_private_netns(body, required=True)


def test_an_error_of_the_bare_status_is_said_once_as_the_cli_says_it() -> None:
    """A failure before output goes to the CLI, which reports it (once, in one line, exit 2)."""
    env = {**os.environ, "TCPLENS_SOURCE": "bogus"}
    runs = [
        subprocess.run(
            [sys.executable, "-m", "tcplens", *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            cwd="/",
        )
        for args in ([], ["status"], ["status", "--full"])
    ]
    for run in runs:
        assert run.returncode == 2 and run.stdout == ""
        assert run.stderr.splitlines() == [
            "tcplens: error: TCPLENS_SOURCE: unknown source 'bogus' "
            "(choose from auto, netlink, procfs, psutil)"
        ]


def test_a_reader_that_goes_away_ends_the_bare_status_quietly() -> None:
    """``tcplens | head -1`` where head is gone before the screen is written: the write
    fails (EPIPE), and the bare status still exits 0 with nothing on stderr, as every
    verb through the CLI does. (A pipe read at all would take the whole screen in its
    64 KiB buffer and never fail the write.)"""
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the child starts
    try:
        done = subprocess.run(
            [sys.executable, "-m", "tcplens"],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            cwd="/",
        )
    finally:
        os.close(write_end)
    assert (done.returncode, done.stderr) == (0, "")
