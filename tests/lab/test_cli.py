"""``tcplens lab`` as users run it: the real command in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tcplens.lab.scenarios import LAB_SCENARIOS
from tcplens.packets.tracker import reconstruct_file
from tests.unprivileged import cli_as_nobody

ROOT = os.geteuid() == 0


def tcplens(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tcplens", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "100"},
    )


def test_list_names_every_scenario_and_marks_the_root_ones() -> None:
    done = tcplens("lab", "--list")
    assert done.returncode == 0
    lines = done.stdout.splitlines()
    assert [line.split()[0] for line in lines] == list(LAB_SCENARIOS)
    root = {line.split()[0] for line in lines if line.endswith("(needs --rig netns: root)")}
    assert root == {
        "orphan-timeout",
        "simultaneous-close",
        "syn-sent",
        "syn-recv",
        "syn-ack-lost",
    }


def test_list_json_is_the_list_as_json() -> None:
    done = tcplens("lab", "--list", "--json")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["version"] == 1
    assert [sc["name"] for sc in doc["scenarios"]] == list(LAB_SCENARIOS)
    needs = {sc["name"] for sc in doc["scenarios"] if sc["needs_root"]}
    assert needs == {n for n, sc in LAB_SCENARIOS.items() if sc.rig == "netns"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--list", "listen"), "--list runs nothing"),
        (("listen", "--step", "--json"), "choose one of --step / --json"),
        (("listen", "--no-capture", "--pcap", "x.pcap"), "choose one of --pcap / --no-capture"),
        (("syn-sent", "--rig", "loopback"), "syn-sent needs --rig netns (root)"),
    ],
)
def test_options_that_would_be_ignored_are_one_line_errors(
    args: tuple[str, ...], message: str
) -> None:
    done = tcplens("lab", *args)
    assert done.returncode == 2, done.stdout
    assert done.stdout == ""
    assert [line for line in done.stderr.splitlines() if line] == [
        next(line for line in done.stderr.splitlines() if message in line)
    ]


def test_namespace_problem_names_the_missing_privilege_or_package(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tcplens.errors import ScenarioError
    from tcplens.lab import netns

    monkeypatch.setattr(netns.os, "geteuid", lambda: 1000)
    assert netns.namespace_problem() == ("--rig netns needs root (CAP_SYS_ADMIN): run it with sudo")
    monkeypatch.setattr(netns.os, "geteuid", lambda: 0)
    monkeypatch.setattr(netns, "_which", lambda tool: None)
    assert netns.namespace_problem() == "--rig netns needs the ip command: install iproute2"
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(ScenarioError, match="nft: command not found: install nftables"):
        netns.run(["nft", "-f", "-"], stdin="")


def test_help_has_an_example() -> None:
    done = tcplens("lab", "--help")
    assert done.returncode == 0
    assert any(line.strip().startswith("Example:") for line in done.stdout.splitlines())


def test_unknown_scenario_is_one_line_and_exit_2() -> None:
    done = tcplens("lab", "no-such-scenario")
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "unknown lab scenario 'no-such-scenario'" in lines[0]
    assert "Traceback" not in done.stderr


@pytest.mark.root
@pytest.mark.skipif(not ROOT, reason="namespaces and capture need root")
def test_text_report_shows_kernel_model_capture_and_the_ladder() -> None:
    done = tcplens("lab", "last-ack")
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "LAST_ACK (persist," in out  # kernel state with the ss-style timer
    assert "wire cannot show it: FIN queued behind unsent data" in out
    assert "◆ kernel after step 5" in out
    assert "FIN+PSH+ACK" in out or "FIN+ACK" in out
    assert out.rstrip().splitlines()[-1].startswith("OK  kernel = model: yes at 7 checkpoints")


@pytest.mark.root
@pytest.mark.skipif(not ROOT, reason="namespaces and capture need root")
def test_json_and_saved_pcap_of_a_refused_connection(tmp_path: Path) -> None:
    pcap = tmp_path / "refused.pcap"
    done = tcplens("lab", "refused", "--json", "--pcap", str(pcap))
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["version"] == 1 and doc["ok"] is True and doc["rig_kind"] == "netns"
    assert doc["agreement"]["model"] is True and doc["agreement"]["capture"] is True
    assert doc["capture"]["conn_state"] == "REJ"
    assert [s["flags"] for s in doc["capture"]["segments"]] == ["SYN", "RST+ACK"]
    assert doc["checkpoints"][0]["kernel"]["client"]["state"] == "CLOSED"
    with pcap.open("rb") as fh:
        conns = reconstruct_file(fh, str(pcap))
    assert [c.conn_state for c in conns] == ["REJ"]


def as_nobody(*args: str) -> subprocess.CompletedProcess[str]:
    return cli_as_nobody(
        *args,
        preload=(
            "tcplens.views.commands.lab",
            "tcplens.lab.runner",
            "tcplens.sources.netlink",
            "tcplens.sources.select",
            "tcplens.packets.tracker",
        ),
    )


@pytest.mark.root
@pytest.mark.skipif(not ROOT, reason="needs root to switch to nobody")
def test_without_root_loopback_scenarios_run_and_namespace_ones_say_why_not() -> None:
    refused = as_nobody("lab", "syn-sent")
    assert refused.returncode == 2
    assert "syn-sent needs root" in refused.stderr
    assert "Traceback" not in refused.stderr
    ran = as_nobody("lab", "client-close")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "rig: loopback 127.0.0.1" in ran.stdout
    assert "not captured: AF_PACKET capture needs root" in ran.stdout
    assert "FIN_WAIT2" in ran.stdout and "CLOSE_WAIT" in ran.stdout


@pytest.mark.root
@pytest.mark.skipif(not ROOT, reason="namespaces and capture need root")
def test_step_mode_waits_for_enter_before_each_step() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tcplens", "lab", "handshake", "--step"],
        input="\n\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert out.count("press Enter to run it") == 2
    assert "while paused, look for yourself: ip netns exec tcplens-lab-" in out
    # each step's kernel and model states are shown as soon as it has run
    first = out.index("step 1  server: socket(), bind(), listen()")
    second = out.index("step 2  client: connect()")
    assert "LISTEN" in out[first:second]
    assert "the whole run, with the capture:" in out
    assert "OK  kernel = model: yes at 2 checkpoints" in out


@pytest.mark.root
@pytest.mark.skipif(not ROOT, reason="namespaces and capture need root")
def test_step_mode_with_closed_stdin_stops_cleanly() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tcplens", "lab", "handshake", "--step"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 130
    assert "Traceback" not in done.stderr


def test_all_on_loopback_runs_every_unprivileged_scenario_and_names_the_rest() -> None:
    """The unprivileged path, every scenario that has one: 127.0.0.1, no capture, kernel = model."""
    done = tcplens("lab", "--all", "--rig", "loopback", "--json")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    ran = {r["scenario"]: r for r in doc["runs"]}
    needs_root = {n for n, sc in LAB_SCENARIOS.items() if sc.needs_root}
    assert set(ran) == set(LAB_SCENARIOS) - needs_root
    assert {s["scenario"] for s in doc["skipped"]} == needs_root
    for name, r in ran.items():
        assert r["ok"] and r["rig_kind"] == "loopback" and r["capture"] is None, name
        assert r["agreement"]["model"] and r["agreement"]["timer"], name
        for cp in r["checkpoints"]:
            assert cp["reached"] and cp["capture"] is None
            assert {s: cp["kernel"][s]["state"] for s in ("client", "server")} == {
                s: cp["model"][s]["state"] for s in ("client", "server")
            }
        seen = set(r["states_seen"]["client"]) | set(r["states_seen"]["server"])
        assert {str(s) for s in LAB_SCENARIOS[name].shows} <= seen, name


def test_all_takes_no_scenario_name() -> None:
    done = tcplens("lab", "--all", "closing")
    assert done.returncode == 2
    assert "--all runs every scenario" in done.stderr
