"""State spellings: every form users paste resolves, unknown ones suggest names."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tcplens.errors import UnknownStateError
from tcplens.model import KERNEL_CODES, SPELLINGS, STATE_GROUPS, State, parse_state_filter

DISPLAY = [
    "LISTEN", "SYN_SENT", "SYN_RECV", "ESTABLISHED", "FIN_WAIT1", "FIN_WAIT2",
    "CLOSE_WAIT", "CLOSING", "LAST_ACK", "TIME_WAIT", "CLOSED", "UNKNOWN",
]  # fmt: skip


def test_enum_displays_as_linux_netstat_prints() -> None:
    assert [str(s) for s in State] == DISPLAY


@pytest.mark.parametrize(
    ("text", "state"),
    [
        # Linux netstat
        ("SYN_RECV", State.SYN_RECV), ("FIN_WAIT1", State.FIN_WAIT1), ("CLOSE", State.CLOSED),
        # ss
        ("ESTAB", State.ESTABLISHED), ("SYN-RECV", State.SYN_RECV),
        ("FIN-WAIT-1", State.FIN_WAIT1), ("TIME-WAIT", State.TIME_WAIT),
        ("UNCONN", State.CLOSED), ("CLOSE-WAIT", State.CLOSE_WAIT),
        # RFC 9293
        ("SYN-RECEIVED", State.SYN_RECV), ("LAST-ACK", State.LAST_ACK),
        # Windows
        ("LISTENING", State.LISTEN), ("FIN_WAIT_1", State.FIN_WAIT1),
        ("SYN_RECEIVED", State.SYN_RECV), ("DELETE_TCB", State.CLOSED),
        # BSD/macOS
        ("SYN_RCVD", State.SYN_RECV), ("FIN_WAIT_2", State.FIN_WAIT2),
        # Solaris
        ("IDLE", State.CLOSED), ("BOUND", State.CLOSED),
        # seeds' lower case
        ("syn_rcvd", State.SYN_RECV), ("fin_wait_1", State.FIN_WAIT1),
        ("close-wait", State.CLOSE_WAIT), ("time wait", State.TIME_WAIT),
        # kernel codes
        ("01", State.ESTABLISHED), ("08", State.CLOSE_WAIT), ("0A", State.LISTEN),
        ("0a", State.LISTEN), ("0B", State.CLOSING), ("0C", State.SYN_RECV),
        (6, State.TIME_WAIT),
        # psutil
        ("NONE", State.CLOSED),
    ],
)  # fmt: skip
def test_parse_accepts_every_spelling(text: str | int, state: State) -> None:
    assert State.parse(text) is state


#: include/net/tcp_states.h, written out here so the model's table is checked, not echoed
TCP_STATES_H = {
    1: State.ESTABLISHED, 2: State.SYN_SENT, 3: State.SYN_RECV, 4: State.FIN_WAIT1,
    5: State.FIN_WAIT2, 6: State.TIME_WAIT, 7: State.CLOSED, 8: State.CLOSE_WAIT,
    9: State.LAST_ACK, 10: State.LISTEN, 11: State.CLOSING, 12: State.SYN_RECV,  # NEW_SYN_RECV
    13: State.CLOSED,  # TCP_BOUND_INACTIVE (Linux 6.7+)
}  # fmt: skip


def test_every_kernel_code_from_proc_resolves() -> None:
    assert dict(KERNEL_CODES) == TCP_STATES_H
    for code, state in TCP_STATES_H.items():
        assert State.parse(f"{code:02X}") is state
        assert State.parse(f"{code:02x}") is state


def test_every_listed_spelling_parses_back_to_its_state() -> None:
    for state, tools in SPELLINGS.items():
        for spellings in tools.values():
            for spelling in spellings:
                assert State.parse(spelling.split(" ")[0]) is state, spelling


def test_unknown_spelling_suggests_closest_names() -> None:
    with pytest.raises(UnknownStateError) as info:
        State.parse("CLOSE_WIAT")
    assert "CLOSE_WAIT" in info.value.suggestions
    assert "CLOSE_WIAT" in str(info.value)


def test_unknown_hex_code_is_an_error() -> None:
    with pytest.raises(UnknownStateError):
        State.parse("0F")


@given(st.text(max_size=20))
def test_parse_never_raises_anything_but_unknown_state(text: str) -> None:
    with contextlib.suppress(UnknownStateError):
        assert isinstance(State.parse(text), State)


@given(st.sampled_from(list(State)), st.sampled_from(["-", "_", " "]), st.booleans())
def test_separators_and_case_do_not_matter(state: State, sep: str, lower: bool) -> None:
    text = state.value.replace("_", sep)
    assert State.parse(text.lower() if lower else text) is state


def test_ss_groups() -> None:
    assert parse_state_filter("bucket") == {State.SYN_RECV, State.TIME_WAIT}
    assert State.LISTEN not in STATE_GROUPS["connected"]
    assert State.SYN_SENT not in STATE_GROUPS["synchronized"]
    assert parse_state_filter("estab") == {State.ESTABLISHED}
    assert State.ESTABLISHED.synchronized and not State.SYN_SENT.synchronized
