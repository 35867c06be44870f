"""Summary: counts per state, busiest states with ports and processes, oldest timed sockets."""

from __future__ import annotations

import pytest

from tcplens.analysis.summary import (
    NO_PROCESS,
    ORPHAN,
    OTHER,
    TIME_WAIT_LEN,
    UNKNOWN_PROCESS,
    Fold,
    summarize,
)
from tcplens.model import State
from tcplens.sources.records import Addr, Snapshot, Socket, Timer


def tcp(state: State, lport: int, *, pid: int | None = None, timer: Timer | None = None) -> Socket:
    return Socket(
        "tcp", 4, Addr("10.0.0.1", lport), Addr("10.0.0.2", 5000), state,
        pid=pid, process=None if pid is None else f"p{pid}", timer=timer,
    )  # fmt: skip


def snapshot() -> Snapshot:
    rows = [tcp(State.LISTEN, 80, pid=1), tcp(State.LISTEN, 443, pid=1)]
    rows += [tcp(State.ESTABLISHED, 443, pid=7) for _ in range(5)]
    rows += [tcp(State.ESTABLISHED, 80, pid=8) for _ in range(2)]
    rows += [tcp(State.CLOSE_WAIT, 8080, pid=9) for _ in range(3)]
    rows += [tcp(State.TIME_WAIT, 80, timer=Timer("timewait", r)) for r in (59.0, 12.5, 30.0)]
    rows += [tcp(State.FIN_WAIT2, 80, timer=Timer("timewait", 40.0)), tcp(State.FIN_WAIT2, 81)]
    rows.append(Socket("udp", 6, Addr("::", 53), Addr("::", 0), State.CLOSED))
    return Snapshot(rows, source="test", host="h", missing=["something"])


def test_counts_per_protocol_family_and_state_in_state_order() -> None:
    s = summarize(snapshot())
    assert s.total == 18 and s.by_proto == {"tcp": 17, "udp": 1}
    assert s.by_family == {4: 17, 6: 1}
    assert list(s.tcp_states.items()) == [
        (State.LISTEN, 2),
        (State.ESTABLISHED, 7),
        (State.FIN_WAIT2, 2),
        (State.CLOSE_WAIT, 3),
        (State.TIME_WAIT, 3),
    ]
    assert s.udp_states == {State.CLOSED: 1}
    assert s.missing == ["something"]


def test_busiest_states_exclude_listen_and_name_ports_and_processes() -> None:
    s = summarize(snapshot(), busy_states=2, top=2)
    assert [(d.state, d.count) for d in s.busy] == [(State.ESTABLISHED, 7), (State.CLOSE_WAIT, 3)]
    est = s.busy[0]
    assert est.top_local_ports == [(443, 5), (80, 2)]
    assert est.top_processes == [("p7", 7, 5), ("p8", 8, 2)]
    assert s.busy[1].top_local_ports == [(8080, 3)]


def test_ties_in_ports_and_processes_go_to_the_lower_number_not_the_dump_order() -> None:
    rows = [tcp(State.ESTABLISHED, port, pid=pid) for port, pid in ((90, 9), (80, 8), (70, 7))]
    rows.append(tcp(State.ESTABLISHED, 60))
    est = summarize(Snapshot(rows, source="test"), top=4).busy[0]
    assert est.top_local_ports == [(60, 1), (70, 1), (80, 1), (90, 1)]
    assert est.top_processes == [("p7", 7, 1), ("p8", 8, 1), ("p9", 9, 1), ("?", None, 1)]


def test_ties_are_broken_by_state_order() -> None:
    s = summarize(snapshot(), busy_states=3)
    # CLOSE_WAIT and TIME_WAIT both have 3: CLOSE_WAIT comes first in the diagram
    assert [d.state for d in s.busy] == [State.ESTABLISHED, State.CLOSE_WAIT, State.TIME_WAIT]
    assert s.busy[2].top_processes == [(ORPHAN, None, 3)]  # TIME_WAIT: no process holds it


def test_oldest_time_wait_and_fin_wait2_come_from_their_timers() -> None:
    s = summarize(snapshot(), fin_timeout=45.0)
    tw = s.oldest[State.TIME_WAIT]
    assert tw.remaining == 12.5 and tw.age == TIME_WAIT_LEN - 12.5 and tw.lifetime == 60.0
    fw = s.oldest[State.FIN_WAIT2]
    assert (fw.age, fw.lifetime, fw.untimed) == (5.0, 45.0, 1)
    assert s.untimed == {State.FIN_WAIT2: 1}


def test_empty_snapshot() -> None:
    s = summarize(Snapshot([], source="test"))
    assert (s.total, s.tcp_states, s.busy, s.oldest) == (0, {}, [], {})


def test_closing_states_count_peers_and_listening_ports_not_ephemeral_ports() -> None:
    rows = [tcp(State.LISTEN, 80, pid=1)]
    rows += [
        Socket("tcp", 4, Addr("10.0.0.1", 32768 + i), Addr("10.0.0.9", 5432), State.TIME_WAIT)
        for i in range(6)
    ]
    rows += [tcp(State.TIME_WAIT, 80) for _ in range(2)]  # this server closed first
    rows.append(Socket("tcp", 6, Addr("::1", 40000), Addr("::1", 443), State.TIME_WAIT))
    rows += [tcp(State.ESTABLISHED, 40001 + i) for i in range(2)]
    busy = {d.state: d for d in summarize(Snapshot(rows, source="test")).busy}
    tw = busy[State.TIME_WAIT]
    assert tw.top_peers == [("10.0.0.9:5432", 6), ("[::1]:443", 1)]
    assert tw.top_local_ports == [(80, 2)]
    # other states keep their local ports
    assert busy[State.ESTABLISHED].top_local_ports == [(40001, 1), (40002, 1)]
    assert busy[State.ESTABLISHED].top_peers == []


def test_fold_names_the_top_ports_and_processes_and_sums_the_rest_as_other() -> None:
    """The exporter's label sets come from the one summary; ties go to the smaller text."""
    rows = [tcp(State.LISTEN, port, pid=1) for port in (9, 10, 80)]
    rows += [tcp(State.ESTABLISHED, 80, pid=2) for _ in range(3)]
    rows += [tcp(State.ESTABLISHED, 9, pid=3), tcp(State.ESTABLISHED, 10, pid=4)]
    rows.append(tcp(State.ESTABLISHED, 40000))  # outgoing: no listener on its port
    rows.append(tcp(State.TIME_WAIT, 40001))
    folded = summarize(Snapshot(rows, source="netlink"), fold=Fold(ports=2, processes=1)).folded
    assert folded is not None
    # 80 has 4 sockets; 9 and 10 have 2 each and "10" < "9" as text
    assert folded.port_sockets == {
        ("80", State.LISTEN): 1,
        ("80", State.ESTABLISHED): 3,
        ("10", State.LISTEN): 1,
        ("10", State.ESTABLISHED): 1,
        (OTHER, State.LISTEN): 1,
        (OTHER, State.ESTABLISHED): 1,
    }
    assert folded.process_sockets == {
        ("p1", "tcp", State.LISTEN): 3,  # p1 and p2 hold 3 each: "p1" < "p2"
        (OTHER, "tcp", State.ESTABLISHED): 5,
        (NO_PROCESS, "tcp", State.ESTABLISHED): 1,  # netlink: no inode, nobody holds it
        (NO_PROCESS, "tcp", State.TIME_WAIT): 1,
    }
    assert folded.sockets[("tcp", "ipv4", State.ESTABLISHED)] == 6
    assert summarize(Snapshot(rows, source="netlink")).folded is None


def test_fold_counts_unknown_owners_where_the_source_has_no_inodes() -> None:
    rows = [tcp(State.ESTABLISHED, 40000), tcp(State.TIME_WAIT, 40001)]
    folded = summarize(Snapshot(rows, source="psutil"), fold=Fold()).folded
    assert folded is not None
    assert folded.process_sockets == {
        (UNKNOWN_PROCESS, "tcp", State.ESTABLISHED): 1,
        (NO_PROCESS, "tcp", State.TIME_WAIT): 1,
    }
    assert folded.unattributed == {"tcp": 1}


def test_fold_is_counted_from_records_not_columns() -> None:
    from tcplens.sources.columns import SocketColumns
    from tcplens.sources.select import ColumnListing

    listing = ColumnListing(
        SocketColumns(), source="netlink", host="h", taken_at=0.0, missing=[], tally=None
    )
    assert summarize(listing).folded is None
    with pytest.raises(ValueError, match="from records"):
        summarize(listing, fold=Fold())
