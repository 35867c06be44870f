"""The two-endpoint harness: the classic pictures, played by the model."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tcplens.errors import ScenarioError
from tcplens.model import Event, State
from tcplens.model.scenarios import SCENARIOS, Pair, run_scenario, run_script

S = State


def _path(pair: Pair, side: str) -> list[State]:
    return [state for _, state, _ in pair.endpoint(side).history]  # type: ignore[arg-type]


def test_three_way_handshake() -> None:
    pair = run_scenario("three-way-handshake")
    assert _path(pair, "client") == [S.CLOSED, S.SYN_SENT, S.ESTABLISHED]
    assert _path(pair, "server") == [S.CLOSED, S.LISTEN, S.SYN_RECV, S.ESTABLISHED]
    flags = [str(step.segment).split()[0] for step in pair.steps if step.kind == "deliver"]
    assert flags == ["SYN", "SYN+ACK", "ACK"]


def test_client_first_close_is_the_four_way_wave() -> None:
    pair = run_scenario("client-close")
    assert _path(pair, "client")[3:] == [S.FIN_WAIT1, S.FIN_WAIT2, S.TIME_WAIT, S.CLOSED]
    assert _path(pair, "server")[4:] == [S.CLOSE_WAIT, S.LAST_ACK, S.CLOSED]


def test_server_first_close_puts_time_wait_on_the_server() -> None:
    pair = run_scenario("server-close")
    assert S.TIME_WAIT in _path(pair, "server")
    assert S.CLOSE_WAIT in _path(pair, "client") and S.TIME_WAIT not in _path(pair, "client")


def test_simultaneous_open_passes_through_syn_recv_on_both_sides() -> None:
    pair = run_scenario("simultaneous-open")
    for side in ("client", "server"):
        assert _path(pair, side) == [S.CLOSED, S.SYN_SENT, S.SYN_RECV, S.ESTABLISHED]


def test_simultaneous_close_passes_through_closing() -> None:
    pair = run_scenario("simultaneous-close")
    for side in ("client", "server"):
        assert _path(pair, side)[-4:] == [S.FIN_WAIT1, S.CLOSING, S.TIME_WAIT, S.CLOSED]


def test_half_close_lets_data_flow_toward_fin_wait2() -> None:
    pair = run_scenario("half-close")
    delivered_to_client = [
        step
        for step in pair.steps
        if step.kind == "deliver" and step.direction == "<-" and step.client is S.FIN_WAIT2
    ]
    assert sum(step.segment.length for step in delivered_to_client if step.segment) == 1500
    assert pair.client.state is S.TIME_WAIT


def test_rst_abort_skips_time_wait() -> None:
    pair = run_scenario("rst-abort")
    assert S.TIME_WAIT not in _path(pair, "client")
    assert pair.server.state is S.CLOSED
    assert any(step.segment and "RST" in str(step.segment) for step in pair.steps)


def test_refused_connection_is_answered_with_rst() -> None:
    pair = run_scenario("refused")
    assert _path(pair, "client") == [S.CLOSED, S.SYN_SENT, S.CLOSED]
    assert "RST+ACK" in str(pair.steps[-1].segment)


def test_lost_final_ack_makes_last_ack_retransmit_its_fin() -> None:
    pair = run_scenario("lost-final-ack")
    fins_from_server = [
        s for s in pair.steps if s.kind in ("deliver", "drop") and s.direction == "<-"
    ]
    assert sum("FIN" in str(s.segment) for s in fins_from_server) == 2
    assert pair.server.state is S.CLOSED and pair.client.state is S.TIME_WAIT
    # The retransmitted FIN re-armed the 2MSL timer.
    assert pair.client.timer_deadline == pytest.approx(pair.now + 60.0)


def test_time_wait_expires_after_2msl() -> None:
    pair = run_scenario("time-wait-expiry")
    assert pair.client.history[-1] == (60.0, S.CLOSED, "2MSL timeout")


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_every_named_scenario_runs_and_its_expectations_hold(name: str) -> None:
    pair = run_scenario(name)
    assert pair.steps
    assert not pair.wire or name in ("connect-timeout",)


def test_unknown_scenario_suggests_names() -> None:
    with pytest.raises(ScenarioError, match="did you mean three-way-handshake"):
        run_scenario("three-way-handshak")


@pytest.mark.parametrize(
    ("script", "message"),
    [
        ("server listen\nclient fly\n", "line 2: unknown action 'fly'"),
        ("client connect\n\n# c\nexpect client LISTEN\n", "line 4: expected client in LISTEN"),
        ("client send 10\n", "line 1: event send is not allowed in state CLOSED"),
        ("deliver\n", "line 1: no segment in flight"),
        ("client connect\nmsl 3\n", "line 2: msl must come before"),
        ("wait soon\n", "line 1: wait takes a number"),
        ("expect client CLOSE_WIAT\n", "did you mean CLOSE_WAIT"),
        ("", "no actions"),
        ('{"steps": [1]}', "'steps' list of strings"),
        ('{"steps": [\n "client connect",\n ]}', "line 3: invalid JSON"),
    ],
)
def test_bad_scripts_name_the_line(script: str, message: str) -> None:
    with pytest.raises(Exception, match=message) as info:
        run_script(script)
    assert info.type.__module__.startswith("tcplens")


def test_json_script_is_the_same_language() -> None:
    text = json.dumps({"msl": 5, "steps": SCENARIOS["client-close"].script.splitlines()[:-2]})
    pair = run_script(text)
    assert pair.msl == 5 and pair.client.state is S.TIME_WAIT
    assert pair.client.timer_deadline == pytest.approx(pair.now + 10)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_any_delivery_order_still_completes_the_close(data: st.DataObject) -> None:
    """Reordering alone (no loss) never strands a close: TCP's numbers sort it out."""
    pair = run_script("server listen\nclient connect\ndeliver all\n")

    def deliver_randomly() -> None:
        for _ in range(50):
            if not pair.wire:
                return
            pair.deliver(None, data.draw(st.integers(0, len(pair.wire) - 1)))

    pair.call("client", Event.SEND, size=10)
    pair.call("client", Event.CLOSE)
    if data.draw(st.booleans()):
        # Simultaneous close with shutdown(): after close() the client's data, still
        # in flight, would be answered with RST (test_close_with_data_in_flight_...).
        pair.call("server", Event.SHUTDOWN)
    deliver_randomly()
    if pair.server.state is S.CLOSE_WAIT:
        pair.call("server", Event.CLOSE)
    deliver_randomly()
    assert pair.client.state is S.TIME_WAIT
    assert pair.server.state in (S.CLOSED, S.TIME_WAIT)


def test_a_held_segment_is_annotated_as_held_not_with_a_stale_row() -> None:
    pair = run_scenario("reordered-fin")
    fin = next(s for s in pair.steps if s.kind == "deliver" and "FIN" in str(s.segment))
    assert "held until the gap" in fin.note
    assert "handshake" not in fin.note and not fin.changed
    data = next(s for s in pair.steps if s.kind == "deliver" and "len=200" in str(s.segment))
    assert data.changed == ("server",)
    assert "200 bytes" in data.note and "peer closed" in data.note


def test_every_delivery_note_comes_from_what_the_segment_did() -> None:
    for name in SCENARIOS:
        for step in run_scenario(name).steps:
            if step.kind == "deliver":
                assert step.note, (name, step.action)
                if not step.changed:
                    assert "handshake complete" not in step.note, (name, step.action)


def test_timers_fire_when_due_not_at_the_end_of_a_wait() -> None:
    pair = run_script(SCENARIOS["client-close"].script.replace("wait 60", "wait 100"))
    fired = [s for s in pair.steps if s.kind == "timer"]
    assert [(s.time, s.side) for s in fired] == [(60.0, "client")]
    assert pair.client.history[-1] == (60.0, S.CLOSED, "2MSL timeout")
    assert pair.now == 100.0


def test_two_timers_fire_in_deadline_order() -> None:
    pair = run_script(SCENARIOS["simultaneous-close"].script.replace("wait 60", "wait 75"))
    assert [s.time for s in pair.steps if s.kind == "timer"] == [60.0, 60.0]
    assert pair.now == 75.0


def test_shutdown_is_a_half_close_and_close_is_not() -> None:
    half = run_scenario("half-close")
    assert any(s.action == "client: shutdown(SHUT_WR)" for s in half.steps)
    assert half.client.state is S.TIME_WAIT
    after_close = run_scenario("data-after-close")
    rst = [s for s in after_close.steps if s.kind == "deliver" and "RST" in str(s.segment)]
    assert [s.direction for s in rst] == ["->"]  # the client (which closed) resets
    assert after_close.client.state is S.CLOSED and after_close.server.state is S.CLOSED
    assert S.TIME_WAIT not in _path(after_close, "client")


def test_close_with_data_in_flight_toward_it_resets() -> None:
    pair = run_script(
        "server listen\nclient connect\ndeliver all\n"
        "client send 10\nserver close\ndeliver to server\n"
    )
    assert pair.server.state is S.CLOSED
    assert "RST" in str(pair.wire[-1].segment)


def test_lost_data_is_retransmitted_and_fills_the_gap() -> None:
    pair = run_scenario("lost-data")
    retransmit = next(s for s in pair.steps if s.kind == "timer")
    assert retransmit.action == "client: retransmit timeout"
    assert [str(seg) for _, seg in retransmit.sent] == ["PSH+ACK seq=1 ack=1 len=150"]
    assert pair.server.rcv_nxt == 151 and not pair.server.out_of_order


def test_retransmit_in_established_needs_data_outstanding() -> None:
    with pytest.raises(ScenarioError, match=r"line 4: .*no data is unacknowledged"):
        run_script("server listen\nclient connect\ndeliver all\nclient timeout retransmit\n")


def test_give_up_and_keepalive_end_in_closed() -> None:
    assert run_scenario("retries-exhausted").client.history[-1][1:] == (S.CLOSED, "give up")
    keepalive = run_scenario("keepalive-timeout")
    assert keepalive.client.history[-1][1:] == (S.CLOSED, "keepalive timeout")
    assert "RST" in str(keepalive.steps[-1].segment)
