"""Scenario definitions against the model alone: fast, no privileges, no sockets."""

from __future__ import annotations

import pytest

from tcplens.errors import ScenarioError
from tcplens.lab.runner import choose_rig
from tcplens.lab.scenarios import LAB_SCENARIOS, get
from tcplens.model.scenarios import Pair
from tcplens.model.states import State


@pytest.mark.parametrize("name", list(LAB_SCENARIOS))
def test_model_steps_predict_every_checkpoint(name: str) -> None:
    """Played alone, the model reaches each state the kernel is expected to reach."""
    pair = Pair()
    for number, step in enumerate(LAB_SCENARIOS[name].steps, start=1):
        step.model(pair)
        if step.expect is not None:
            assert (pair.client.state, pair.server.state) == step.expect, f"step {number}"


def test_every_state_is_shown_by_some_scenario() -> None:
    shown = {state for sc in LAB_SCENARIOS.values() for state in sc.shows}
    expected = {
        State.LISTEN,
        State.SYN_SENT,
        State.SYN_RECV,
        State.ESTABLISHED,
        State.FIN_WAIT1,
        State.FIN_WAIT2,
        State.CLOSE_WAIT,
        State.CLOSING,
        State.LAST_ACK,
        State.TIME_WAIT,
        State.CLOSED,
    }
    assert shown == expected


def test_blind_spots_have_reasons_and_name_a_side() -> None:
    for sc in LAB_SCENARIOS.values():
        for step in sc.steps:
            assert set(step.blind) <= {"client", "server"}
            assert all(len(reason) > 20 for reason in step.blind.values())
            if step.blind:
                assert step.expect is not None


def test_namespace_scenarios_refuse_the_loopback_rig_with_a_clear_reason() -> None:
    with pytest.raises(ScenarioError, match=r"syn-sent needs --rig netns \(root\)"):
        choose_rig(LAB_SCENARIOS["syn-sent"], "loopback")
    assert choose_rig(LAB_SCENARIOS["closing"], "loopback") == "loopback"


def test_unknown_scenario_lists_the_known_ones() -> None:
    with pytest.raises(ScenarioError, match="known: listen, handshake"):
        get("no-such-thing")
