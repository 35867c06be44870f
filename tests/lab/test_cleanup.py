"""A lab run leaves nothing behind: not on success, not on a failing step, not on Ctrl+C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tcplens.errors import ScenarioError
from tcplens.lab.netns import PREFIX, Namespace, sweep_stale
from tcplens.lab.rig import Lab
from tcplens.lab.runner import run
from tcplens.lab.scenarios import LabScenario, LabStep
from tcplens.model.states import State

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root"),
]


def _namespaces(pid: int) -> list[str]:
    netns = Path("/run/netns")
    if not netns.is_dir():
        return []
    return [p.name for p in netns.iterdir() if p.name.startswith(f"{PREFIX}{pid}-")]


def _peers(since: float) -> list[psutil.Process]:
    out = []
    for proc in psutil.process_iter(["cmdline", "create_time"]):
        cmd = proc.info["cmdline"] or []
        if any(part.endswith("tcplens/lab/peer.py") for part in cmd) and (
            proc.info["create_time"] >= since - 1
        ):
            out.append(proc)
    return out


def test_a_failing_step_still_removes_namespaces_and_processes() -> None:
    pids: list[int] = []

    def boom(lab: Lab) -> None:
        pids.append(lab.procs["server"].pid)
        raise ScenarioError("this step fails on purpose")

    scenario = LabScenario(
        "broken",
        "a step that fails",
        "",
        (
            LabStep(
                "server process listens",
                lambda lab: lab.spawn_server(),
                lambda p: None,
                None,
            ),
            LabStep("fails", boom, lambda p: None, (State.CLOSED, State.CLOSED)),
        ),
        shows=(),
    )
    result = run(scenario, rig="netns")
    assert result.error == "this step fails on purpose"
    assert not result.ok
    assert pids and not psutil.pid_exists(pids[0])
    assert not _namespaces(os.getpid())


def test_a_checkpoint_never_reached_ends_the_run_with_what_the_kernel_showed() -> None:
    scenario = LabScenario(
        "wrong",
        "expects the impossible",
        "",
        (
            LabStep(
                "listen",
                lambda lab: lab.listen(),
                lambda p: None,
                (State.CLOSED, State.ESTABLISHED),
                timeout=0.3,
            ),
            LabStep("never run", lambda lab: lab.close_listener(), lambda p: None),
        ),
        shows=(),
    )
    result = run(scenario, rig="netns")
    assert result.error is not None
    assert "did not reach client/server CLOSED/ESTABLISHED" in result.error
    assert "it shows CLOSED/LISTEN" in result.error
    assert len(result.checkpoints) == 1 and not result.checkpoints[0].reached
    assert not _namespaces(os.getpid())


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupting_the_cli_mid_scenario_cleans_up(sig: signal.Signals) -> None:
    started = time.time()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tcplens", "lab", "server-killed"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and len(_peers(started)) < 2:
            time.sleep(0.02)
        assert _namespaces(proc.pid), "the run never created its namespaces"
        assert len(_peers(started)) >= 1
        proc.send_signal(sig)
        _out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 128 + sig, err  # as a shell reports it: 130 SIGINT, 143 SIGTERM
    assert "Traceback" not in err
    assert not _namespaces(proc.pid)
    time.sleep(0.2)
    assert not [p for p in _peers(started) if p.is_running()]


def test_sweep_removes_namespaces_of_dead_lab_processes() -> None:
    # a pid that no longer exists: a child we already reaped
    child = subprocess.Popen(["true"])
    child.wait()
    name = f"{PREFIX}{child.pid}-1c"
    subprocess.run(["ip", "netns", "add", name], check=True)
    mine = Namespace.create("x")
    try:
        removed = sweep_stale()
        assert name in removed
        assert mine.name not in removed  # ours: this process is alive
        assert Path("/run/netns", mine.name).exists()
    finally:
        mine.delete()
        subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True)
