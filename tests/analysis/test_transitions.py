"""The exact tracer on synthetic kernel events: identity, timing, TIME_WAIT, causes, owners."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from tcplens.analysis.diff import model_path
from tcplens.analysis.transitions import TIMEWAIT_LEN, ExactTracer, Transition
from tcplens.model.states import State as S
from tcplens.sources.records import Addr, Socket
from tcplens.sources.tracepoints import KernelEvent
from tcplens.views.exact import exact_json

CLIENT = (Addr("127.0.0.1", 40000), Addr("127.0.0.1", 80))
SERVER = (Addr("127.0.0.1", 80), Addr("127.0.0.1", 40000))
TW_KEY = ("127.0.0.1", 40000, "127.0.0.1", 80)


def ev(
    ns: int, sk: int, old: S, new: S, ends: tuple[Addr, Addr] = CLIENT, *, irq: bool = True,
    pid: int = 7, kind: str = "state",
) -> KernelEvent:  # fmt: skip
    return KernelEvent(
        kind, ns, 1000.0 + ns / 1e9, 0, pid, irq, sk, 4, ends[0], ends[1],  # type: ignore[arg-type]
        old if kind == "state" else None, new if kind == "state" else None,
    )  # fmt: skip


def client_close(start: int = 0) -> list[KernelEvent]:
    unbound = (Addr("127.0.0.1", 0), CLIENT[1])
    return [
        ev(start + 0, 1, S.CLOSED, S.SYN_SENT, unbound, irq=False, pid=42),
        ev(start + 40_000, 1, S.SYN_SENT, S.ESTABLISHED),
        ev(start + 70_000, 1, S.ESTABLISHED, S.FIN_WAIT1, irq=False, pid=42),
        ev(start + 90_000, 1, S.FIN_WAIT1, S.FIN_WAIT2),
        ev(start + 93_000, 1, S.FIN_WAIT2, S.CLOSED),
    ]


def test_a_connection_is_its_socket_and_times_come_from_the_kernel_stamps() -> None:
    tracer = ExactTracer(name_of=lambda pid: f"proc{pid}")
    out = tracer.feed(client_close())
    assert [(t.old, t.new) for t in out] == [
        (S.CLOSED, S.SYN_SENT), (S.SYN_SENT, S.ESTABLISHED), (S.ESTABLISHED, S.FIN_WAIT1),
        (S.FIN_WAIT1, S.FIN_WAIT2),
    ]  # fmt: skip
    assert {t.conn for t in out} == {1}
    assert out[0].sock.local.port == 40000  # the port connect() chose later
    assert [t.spent for t in out] == [None, 40e-6, 30e-6, 20e-6]
    assert all(t.in_model for t in out)
    assert (out[0].pid, out[0].process) == (42, "proc42")
    assert tracer.pending == 1  # FIN_WAIT2 -> CLOSE waits for the TIME_WAIT table


def test_a_close_held_by_a_minisocket_is_time_wait_and_its_end_is_polled() -> None:
    tracer = ExactTracer()
    tracer.feed(client_close())
    (tw,) = tracer.settle({TW_KEY: S.TIME_WAIT}, 1001.0)
    assert (tw.old, tw.new, tw.spent, tw.exact) == (S.FIN_WAIT2, S.TIME_WAIT, 3e-6, True)
    assert tw.at == 1000.0 + 93_000 / 1e9  # the kernel's time of the handover
    assert tracer.settle({TW_KEY: S.TIME_WAIT}, 1030.0) == []
    (gone,) = tracer.settle({}, 1061.0)
    assert (gone.old, gone.new, gone.exact) == (S.TIME_WAIT, S.CLOSED, False)
    assert gone.spent is not None and abs(gone.spent - (1061.0 - tw.at)) < 1e-9
    assert gone.since == 1030.0  # the last look that still found it
    assert tracer.in_time_wait == 0


def test_a_minisocket_is_asked_for_again_when_its_timer_fires() -> None:
    tracer = ExactTracer()
    tracer.feed(client_close())
    (tw,) = tracer.settle({TW_KEY: S.TIME_WAIT}, 1001.0, partial=True, timers={TW_KEY: 59.0})
    assert tw.new is S.TIME_WAIT and tracer.due(1059.9) == []
    assert tracer.due(1060.0) == [TW_KEY] and tracer.due(1060.0) == []  # once per due time
    # still there (a timer the kernel re-armed): asked again when it says
    assert tracer.settle({TW_KEY: S.TIME_WAIT}, 1060.1, partial=True, asked=[TW_KEY],
                         timers={TW_KEY: 2.0}) == []  # fmt: skip
    assert tracer.due(1062.0) == [] and tracer.due(1062.1) == [TW_KEY]
    (gone,) = tracer.settle({}, 1062.2, partial=True, asked=[TW_KEY])
    assert (gone.old, gone.new, gone.exact, gone.at, gone.since) == (
        S.TIME_WAIT, S.CLOSED, False, 1062.2, 1060.1
    )  # fmt: skip
    assert tracer.in_time_wait == 0 and tracer.due(2000.0) == []


def test_without_a_timer_a_minisocket_is_asked_for_timewait_len_after_its_handover() -> None:
    tracer = ExactTracer()
    tracer.feed(client_close())
    (tw,) = tracer.settle({TW_KEY: S.TIME_WAIT}, 1001.0)
    assert tracer.due(tw.at + TIMEWAIT_LEN - 0.001) == []
    assert tracer.due(tw.at + TIMEWAIT_LEN) == [TW_KEY]


def test_a_minisocket_found_after_its_expected_end_is_asked_for_again_soon() -> None:
    """A whole-table read (no timers) that still finds a minisocket past its estimated
    end: the kernel's timer fires a little later, so it is asked for again within a
    second or two, not a whole TIMEWAIT_LEN later (a minute-late end)."""
    tracer = ExactTracer()
    tracer.feed(client_close())
    (tw,) = tracer.settle({TW_KEY: S.TIME_WAIT}, 1001.0)
    due = tw.at + TIMEWAIT_LEN
    assert tracer.due(due) == [TW_KEY]
    assert tracer.settle({TW_KEY: S.TIME_WAIT}, due + 0.2) == []  # still held by the kernel
    assert tracer.due(due + 1.5) == [TW_KEY]


def test_a_new_connection_on_a_minisockets_4_tuple_ends_it() -> None:
    tracer = ExactTracer()
    tracer.feed(client_close())
    tracer.settle({TW_KEY: S.TIME_WAIT}, 1001.0)
    unbound = (Addr("127.0.0.1", 0), CLIENT[1])
    again = tracer.feed(
        [
            ev(2 * 10**9, 5, S.CLOSED, S.SYN_SENT, unbound, irq=False),
            ev(2 * 10**9 + 50, 5, S.SYN_SENT, S.ESTABLISHED),  # tcp_tw_reuse took the port
        ]
    )
    moves = [(t.conn, t.old, t.new) for t in again]
    assert moves == [(2, S.CLOSED, S.SYN_SENT), (1, S.TIME_WAIT, S.CLOSED),
                     (2, S.SYN_SENT, S.ESTABLISHED)]  # fmt: skip
    end = again[1]
    assert (end.exact, end.since, end.at) == (False, 1001.0, 1000.0 + (2 * 10**9 + 50) / 1e9)
    assert end.cause is not None and "new connection" in end.cause
    assert tracer.in_time_wait == 0
    # the same on the passive side: a listener's new child with the 4-tuple (a SYN the
    # minisocket of a server that closed first accepted)
    server = ExactTracer()
    server.feed([ev(0, 9, S.FIN_WAIT2, S.CLOSED, SERVER)])
    server.settle({("127.0.0.1", 80, "127.0.0.1", 40000): S.TIME_WAIT}, 1001.0)
    moves = [(t.old, t.new) for t in server.feed([ev(10**9, 11, S.LISTEN, S.SYN_RECV, SERVER)])]
    assert moves == [(S.TIME_WAIT, S.CLOSED), (S.LISTEN, S.SYN_RECV)]
    assert server.in_time_wait == 0


def test_a_close_without_a_minisocket_is_closed_with_its_cause() -> None:
    tracer = ExactTracer()
    events = client_close()
    events.insert(4, ev(92_000, 1, S.FIN_WAIT2, S.FIN_WAIT2, kind="receive_reset"))
    tracer.feed(events)
    (closed,) = tracer.settle({}, 1001.0)
    assert (closed.old, closed.new, closed.cause) == (S.FIN_WAIT2, S.CLOSED, "RST received")


def test_softirq_events_never_name_a_process() -> None:
    tracer = ExactTracer(name_of=lambda pid: "x")
    out = tracer.feed(
        [
            ev(0, 9, S.LISTEN, S.SYN_RECV, SERVER, pid=1234),
            ev(5, 9, S.SYN_RECV, S.ESTABLISHED, SERVER, pid=1234),
            ev(9, 9, S.ESTABLISHED, S.CLOSE_WAIT, SERVER, pid=1234),
            ev(20, 9, S.CLOSE_WAIT, S.LAST_ACK, SERVER, irq=False, pid=55),
        ]
    )
    assert [t.pid for t in out] == [None, None, None, 55]
    assert out[0].spent is None  # a listener's child has no stay in LISTEN to time


def test_an_off_model_kernel_transition_is_reported_with_the_models_path() -> None:
    tracer = ExactTracer()
    (t,) = tracer.feed([ev(0, 3, S.ESTABLISHED, S.TIME_WAIT)])
    assert not t.in_model and t.path == model_path(S.ESTABLISHED, S.TIME_WAIT)
    assert t.path is not None and len(t.path) > 2


def test_a_reused_socket_address_is_a_new_connection() -> None:
    tracer = ExactTracer()
    first = tracer.feed(client_close())
    tracer.settle({}, 1001.0)
    second = tracer.feed(client_close(start=10**9))
    assert {t.conn for t in second} == {first[0].conn + 1}
    assert second[0].spent is None


@given(
    process=st.one_of(st.none(), st.text(max_size=20)),
    cause=st.one_of(st.none(), st.text(max_size=20)),
    spent=st.one_of(st.none(), st.floats(min_value=0, max_value=1e6)),
    exact=st.booleans(),
    pid=st.one_of(st.none(), st.integers(1, 2**22)),
    port=st.one_of(st.none(), st.integers(0, 65535)),
    since=st.one_of(st.none(), st.floats(min_value=1.6e9, max_value=1.7e9)),
)
def test_json_lines_equal_json_dumps_of_the_documented_object(
    process: str | None,
    cause: str | None,
    spent: float | None,
    exact: bool,
    pid: int | None,
    port: int | None,
    since: float | None,
) -> None:
    sock = Socket("tcp", 6, Addr("::1", port), Addr("::ffff:10.0.0.1", 80), S.TIME_WAIT)
    path = model_path(S.FIN_WAIT2, S.TIME_WAIT)
    t = Transition(3, 1700000000.25, None if not exact else 12345, sock, S.FIN_WAIT2,
                   S.TIME_WAIT, spent, exact, cause, path, pid, process, since)  # fmt: skip
    want = {
        "version": 1, "type": "change", "mode": "exact", "time": t.at,
        "time_iso": datetime.fromtimestamp(t.at, UTC).isoformat(),
        "since": since if not exact and since is not None else t.at, "mono_ns": t.mono_ns,
        "conn": 3, "event": "changed", "proto": "tcp", "family": 6,
        "local": {"ip": "::1", "port": port}, "remote": {"ip": "::ffff:10.0.0.1", "port": 80},
        "old": "FIN_WAIT2", "new": "TIME_WAIT", "spent": spent,
        "spent_complete": spent is not None, "exact": exact, "cause": cause, "in_model": True,
        "model_path": ["FIN_WAIT2", "TIME_WAIT"], "unseen": [], "inode": None, "pid": pid,
        "process": process,
    }  # fmt: skip
    line = exact_json(t)
    assert "\n" not in line
    assert json.loads(line) == want
    assert list(json.loads(line)) == list(want)  # key order too


def test_closes_looked_up_one_by_one_never_end_the_minisockets_already_followed() -> None:
    tracer = ExactTracer()
    tracer.feed(client_close())
    tracer.settle({TW_KEY: S.TIME_WAIT}, 1001.0)  # the first connection is in TIME_WAIT
    other = (Addr("127.0.0.1", 40001), Addr("127.0.0.1", 80))
    second = [
        KernelEvent("state", n, 1002.0, 0, 7, True, 2, 4, other[0], other[1], a, b)
        for n, a, b in ((1, S.ESTABLISHED, S.FIN_WAIT1), (2, S.FIN_WAIT1, S.FIN_WAIT2),
                        (3, S.FIN_WAIT2, S.CLOSED))
    ]  # fmt: skip
    tracer.feed(second)
    assert tracer.held_keys() == [("127.0.0.1", 40001, "127.0.0.1", 80)]
    (tw,) = tracer.settle({tracer.held_keys()[0]: S.TIME_WAIT}, 1003.0, partial=True)
    assert (tw.conn, tw.new) == (2, S.TIME_WAIT)
    assert tracer.in_time_wait == 2  # the first one, absent from the lookup, is still held


def test_whole_table_settles_alone_keep_the_due_times_to_the_minisockets_followed() -> None:
    """A caller that never asks for due times (the live map, the lab) leaks no heap."""
    tracer = ExactTracer()
    for n in range(3000):
        ends = (Addr("127.0.0.1", 10000 + n), Addr("127.0.0.1", 80))
        key = ("127.0.0.1", 10000 + n, "127.0.0.1", 80)
        tracer.feed([ev(n * 1000, 100 + n, S.FIN_WAIT2, S.CLOSED, ends)])
        tracer.settle({key: S.TIME_WAIT}, 1001.0 + n)  # the one before it is gone
    assert tracer.in_time_wait == 1
    assert len(tracer._due) <= 2 * tracer.in_time_wait + 1024
    assert tracer.due(1e9) == [("127.0.0.1", 12999, "127.0.0.1", 80)]
