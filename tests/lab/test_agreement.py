"""Every lab scenario on the real kernel: kernel = model = capture, except where the wire is blind.

Each scenario runs in two fresh network namespaces joined by veth (root; CI
runs as root), with an AF_PACKET capture on the client's end.  At every
checkpoint the kernel's state (read through the netlink live source) must
equal the model's prediction, TIME_WAIT timers must agree within a second,
and the capture's reconstruction must equal the kernel's state at exactly
the checkpoints the scenario declares blind, and nowhere else.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tcplens.lab.netns import PREFIX
from tcplens.lab.runner import LabRun, run
from tcplens.lab.scenarios import LAB_SCENARIOS, LabScenario
from tcplens.model.states import State

ROOT = os.geteuid() == 0


def _our_namespaces() -> list[str]:
    netns = Path("/run/netns")
    if not netns.is_dir():
        return []
    return [p.name for p in netns.iterdir() if p.name.startswith(f"{PREFIX}{os.getpid()}-")]


def _check(result: LabRun, scenario: LabScenario) -> None:
    assert result.error is None, result.error
    assert len(result.checkpoints) == sum(1 for s in scenario.steps if s.expect is not None)
    for cp in result.checkpoints:
        assert cp.reached, f"step {cp.step}: kernel {cp.kernel} never reached {cp.expect}"
        assert cp.kernel == cp.expect
        assert cp.kernel == cp.model, f"step {cp.step}: kernel {cp.kernel} != model {cp.model}"
    assert not [m for m in result.mismatches() if m.against == "timer"]
    seen = set(result.states_seen("client")) | set(result.states_seen("server"))
    assert set(scenario.shows) <= seen


_RUNS: dict[str, LabRun] = {}


def netns_run(name: str) -> LabRun:
    """One namespace run per scenario per session, shared by the tests that read it."""
    if name not in _RUNS:
        _RUNS[name] = run(LAB_SCENARIOS[name], rig="netns")
    return _RUNS[name]


@pytest.mark.root
@pytest.mark.skipif(not ROOT, reason="network namespaces, nftables and AF_PACKET need root")
@pytest.mark.parametrize("name", list(LAB_SCENARIOS))
def test_scenario_kernel_model_and_capture_agree(name: str) -> None:
    scenario = LAB_SCENARIOS[name]
    result = netns_run(name)
    _check(result, scenario)
    assert result.capture is not None, result.capture_note
    assert (result.capture.connection is None) == (name == "listen")
    if scenario.zeek is not None:
        assert result.capture.connection is not None
        assert result.capture.connection.conn_state == scenario.zeek
    declared = {(cp.step, side) for cp in result.checkpoints for side in cp.blind}
    disagreed = {(m.step, m.side) for m in result.mismatches() if m.against == "capture"}
    # exactly the declared blind spots, nothing more and nothing less
    assert disagreed == declared, [str(m) for m in result.mismatches()]
    assert result.ok
    assert not _our_namespaces()


@pytest.mark.root
@pytest.mark.skipif(not ROOT, reason="needs root for namespaces")
def test_closing_is_held_while_the_window_stays_closed() -> None:
    result = netns_run("closing")
    held = [cp for cp in result.checkpoints if cp.kernel == (State.CLOSING, State.FIN_WAIT2)]
    assert len(held) == 2  # right after the server's FIN, and 0.3 s later
    assert held[1].at - held[0].at >= 0.3
    sock = held[1].sockets[0]
    assert sock is not None and sock.timer is not None
    assert sock.timer.kind == "persist"  # zero-window probing keeps the FIN queued
    assert sock.send_q is not None and sock.send_q > 0


@pytest.mark.root
@pytest.mark.skipif(not ROOT, reason="needs root for namespaces")
def test_time_wait_timer_counts_down_with_the_model() -> None:
    result = netns_run("time-wait")
    _check(result, LAB_SCENARIOS["time-wait"])
    left, at = [], []
    for cp in result.checkpoints:
        if cp.kernel[0] is State.TIME_WAIT:
            sock = cp.sockets[0]
            assert sock is not None and sock.timer is not None
            assert sock.timer.kind == "timewait"
            predicted = cp.model_timers[0]
            assert predicted is not None
            assert abs(sock.timer.remaining - predicted) < 1.0
            left.append(sock.timer.remaining)
            at.append(cp.at)
    assert len(left) == 3
    assert left[0] > left[1] > left[2]
    # the timer runs down in real time: what it lost is the time that passed
    assert at[2] - at[0] >= 2.0
    assert abs((left[0] - left[2]) - (at[2] - at[0])) < 0.5


@pytest.mark.root
@pytest.mark.skipif(not ROOT, reason="needs root for namespaces")
def test_half_closed_side_still_receives_data_in_fin_wait2() -> None:
    """shutdown(SHUT_WR) stops only sending: the kernel queues the peer's data for reading."""
    result = netns_run("half-close")
    _check(result, LAB_SCENARIOS["half-close"])
    sent, read = result.checkpoints[3], result.checkpoints[4]
    assert sent.kernel == read.kernel == (State.FIN_WAIT2, State.CLOSE_WAIT)
    client = sent.sockets[0]
    assert client is not None and client.recv_q == 1000  # queued, not reset
    after = read.sockets[0]
    assert after is not None and after.recv_q == 0  # and the client read it
    assert result.capture is not None and result.capture.connection is not None
    segs = result.capture.connection.segments
    assert segs and any(s.length == 1000 and not s.from_orig for s in segs)
    assert not any(s.flags & 0x04 for s in segs)  # no RST anywhere


@pytest.mark.root
@pytest.mark.skipif(not ROOT, reason="needs root for namespaces")
def test_data_after_close_is_answered_with_rst_by_the_closed_side() -> None:
    result = netns_run("data-after-close")
    _check(result, LAB_SCENARIOS["data-after-close"])
    assert result.capture is not None and result.capture.connection is not None
    segs = result.capture.connection.segments or []
    data = next(i for i, s in enumerate(segs) if s.length and not s.from_orig)
    rst = [s for s in segs[data + 1 :] if s.flags & 0x04]
    assert [s.from_orig for s in rst] == [True]  # the client, which had called close()
    assert not any(s.flags & 0x01 for s in segs if not s.from_orig)  # the server never FINs
