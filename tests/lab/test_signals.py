"""Signals during a lab run: cleanup is atomic, SIGTERM exits 143, stale namespaces are swept.

Issue 20, item 5: a second SIGTERM used to abort the cleanup of the first
(7 of 8 runs left both namespaces, with their veth pair and nftables rules),
and a SIGTERM'd lab exited 130 as if it had been Ctrl+C.  These tests run
the real CLI as a subprocess and signal it at several moments.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tcplens.lab.netns import PREFIX
from tcplens.lab.runner import _Deferred

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root"),
]

ROOT = Path(__file__).resolve().parents[2]


def leftovers(pid: int) -> list[str]:
    """What ``ip netns list`` still shows of the run with this pid."""
    listing = subprocess.run(
        ["ip", "netns", "list"], capture_output=True, text=True, check=True, timeout=10
    ).stdout
    return [line.split()[0] for line in listing.splitlines() if line.startswith(f"{PREFIX}{pid}-")]


def peers(pid: int) -> list[psutil.Process]:
    """Peer processes the run started that are still alive."""
    out = []
    for proc in psutil.process_iter(["cmdline", "ppid"]):
        cmd = proc.info["cmdline"] or []
        if proc.info["ppid"] == pid and any(p.endswith("tcplens/lab/peer.py") for p in cmd):
            out.append(proc)
    return out


def start(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tcplens", "lab", *args],
        stdin=subprocess.PIPE,  # never written: a --step run waits at its first prompt
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(ROOT / "src")),
    )


def wait_for_namespaces(proc: subprocess.Popen[str], count: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while len(leftovers(proc.pid)) < count:
        assert proc.poll() is None, "the run ended before making its namespaces"
        assert time.monotonic() < deadline, "the run never made its namespaces"
        time.sleep(0.005)


def finish(proc: subprocess.Popen[str]) -> str:
    try:
        _out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return err


def test_deferred_signals_arrive_once_after_release() -> None:
    got: list[int] = []
    old = signal.signal(signal.SIGTERM, lambda signum, frame: got.append(signum))
    try:
        deferred = _Deferred().hold()
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.05)
        assert got == []  # held back
        deferred.release()
        assert got == [signal.SIGTERM]  # then delivered, once
        os.kill(os.getpid(), signal.SIGTERM)
        assert got == [signal.SIGTERM, signal.SIGTERM]  # and the old handler is back
    finally:
        signal.signal(signal.SIGTERM, old)


@pytest.mark.parametrize("gap", [0.0, 0.002, 0.01, 0.03, 0.06, 0.1, 0.2])
def test_two_quick_sigterms_mid_run_leave_nothing_and_exit_143(gap: float) -> None:
    proc = start("time-wait")  # about 3 s: the signals land mid-run or in its cleanup
    wait_for_namespaces(proc, 2)
    time.sleep(0.3)  # steps under way, capture running
    proc.send_signal(signal.SIGTERM)
    time.sleep(gap)
    with_second = proc.poll() is None
    if with_second:
        proc.send_signal(signal.SIGTERM)
    err = finish(proc)
    assert leftovers(proc.pid) == [], err
    assert peers(proc.pid) == []
    assert "Traceback" not in err, err
    assert proc.returncode == 143, err


@pytest.mark.parametrize("gap", [0.0, 0.005, 0.02])
def test_sigterms_while_the_namespaces_are_being_made(gap: float) -> None:
    proc = start("time-wait")
    wait_for_namespaces(proc, 1)  # the first exists: the rig is half made
    proc.send_signal(signal.SIGTERM)
    time.sleep(gap)
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    err = finish(proc)
    assert leftovers(proc.pid) == [], err
    assert "Traceback" not in err, err
    assert proc.returncode == 143, err


def test_sigint_then_sigterm_exits_130_and_leaves_nothing() -> None:
    proc = start("time-wait")
    wait_for_namespaces(proc, 2)
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.01)
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    err = finish(proc)
    assert leftovers(proc.pid) == [], err
    assert "Traceback" not in err, err
    assert proc.returncode == 130, err  # the first signal decides


def test_sigterm_at_a_step_prompt_exits_143_and_leaves_nothing() -> None:
    proc = start("server-killed", "--step")
    wait_for_namespaces(proc, 2)
    time.sleep(0.5)  # at the first "press Enter" prompt, reading stdin
    proc.send_signal(signal.SIGTERM)
    proc.send_signal(signal.SIGTERM)
    err = finish(proc)
    assert leftovers(proc.pid) == [], err
    assert "Traceback" not in err, err
    assert proc.returncode == 143, err


def test_a_loopback_run_sweeps_namespaces_of_killed_runs() -> None:
    child = subprocess.Popen(["true"])
    child.wait()  # its pid names no process now: like a lab run killed with SIGKILL
    stale = f"{PREFIX}{child.pid}-1c"
    subprocess.run(["ip", "netns", "add", stale], check=True, timeout=10)
    try:
        proc = start("listen", "--rig", "loopback", "--no-capture")
        err = finish(proc)
        assert proc.returncode == 0, err
        assert leftovers(child.pid) == []
    finally:
        subprocess.run(["ip", "netns", "del", stale], capture_output=True, check=False)
