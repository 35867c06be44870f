"""The engine's tracker must give exactly what the Python reference tracker gives.

The reference (``tcplens.packets.tracker``) is fed the same decoded segments
as the engine (``tcplens._engine.track_segments``): every fixture capture,
hand-built scenarios and random segment soups (hypothesis) with small
timeouts, a small connection cap and a short MSL, so eviction, port reuse,
TIME_WAIT expiry and replays all happen. The connections are compared as
objects (every field: histories with causes and frame numbers, stats, Zeek
row, notes, kept segments) *and* batch by batch, so a connection must leave
the engine at the same packet it leaves the reference; ``--json``,
``--zeek``, ``--states`` and ``--flow`` render these objects, so equal objects
give byte-identical output. Live views' state changes are compared too.

The engine's transition table is built from ``tcplens.model``; the first
tests prove it equals ``TRANSITIONS``, and that the copy ``cargo test`` reads
(``rust/tests/data/transitions.tsv``) is the model's too.
"""

from __future__ import annotations

import dataclasses
import io
import json
import random
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tcplens import _engine
from tcplens.errors import IllegalTransition, TcplensError
from tcplens.model.machine import TRANSITIONS, Endpoint, Event, Flags, Segment
from tcplens.model.states import STATE_GROUPS, State
from tcplens.packets.decode import DecodeStats, Segment4, decode
from tcplens.packets.engine import ROUTE_ENV, reconstruct_capture
from tcplens.packets.pcap import read_frames
from tcplens.packets.tracker import (
    REPLAY_LIMIT,
    CaptureSummary,
    Change,
    Connection,
    Timeouts,
    Tracker,
)
from tcplens.views.cli import cli

from .build import ACK, FIN, PSH, RST, SYN

ROOT = Path(__file__).parent.parent.parent
FIXTURE_DIRS = [ROOT / "tests" / "fixtures" / "pcap", Path("/work/shared/fixtures/pcap")]
FIXTURES = sorted(
    {p.name: p for d in FIXTURE_DIRS if d.is_dir() for p in d.glob("*.pcap*")}.items()
)
TABLE_TSV = ROOT / "rust" / "tests" / "data" / "transitions.tsv"

#: (record, ts_ns, frame_len, Segment4 fields)
Row = tuple[int, int, int, tuple[Any, ...]]


# -- the one transition table ---------------------------------------------------------
def model_rows() -> list[tuple[str, str, str | None, str, tuple[int, ...]]]:
    """TRANSITIONS as (state, event, context, next, sends): context ``Class.NAME`` or None."""
    out = []
    for state, rows in TRANSITIONS.items():
        for key, tr in rows.items():
            event, ctx = key if isinstance(key, tuple) else (key, None)
            context = None if ctx is None else f"{type(ctx).__name__}.{ctx.name}"
            sends = tuple(int(f) for f in tr.send)
            out.append((state.name, event.name, context, tr.next.name, sends))
    return sorted(out, key=repr)


def table_tsv() -> str:
    """The model's table in the form ``cargo test`` reads (``Table::from_tsv``)."""
    lines = [f"state\t{s.name}\t{s}" for s in State]
    lines += [f"event\t{e.name}\t{e.value}" for e in Event]
    lines += [f"synchronized\t{s.name}" for s in State if s in STATE_GROUPS["synchronized"]]
    for state, event, context, nxt, sends in model_rows():
        send = ",".join(str(f) for f in sends)
        lines.append(f"row\t{state}\t{event}\t{context or '-'}\t{nxt}\t{send}")
    return "\n".join(lines) + "\n"


def write_table_tsv() -> None:
    """Regenerate the cargo test copy after a model change."""
    TABLE_TSV.write_text(table_tsv())


def test_engine_transition_table_equals_the_models() -> None:
    engine = sorted(
        ((s, e, c, n, tuple(send)) for s, e, c, n, send in _engine.transition_rows()), key=repr
    )
    assert engine == model_rows()
    assert len(engine) == sum(len(rows) for rows in TRANSITIONS.values())


def test_cargo_test_table_is_the_models() -> None:
    assert TABLE_TSV.read_text() == table_tsv(), (
        "the model changed: run python3 -c 'from tests.packets.test_engine_diff import "
        "write_table_tsv; write_table_tsv()' and re-run cargo test"
    )


# -- the endpoint machine beyond the table ------------------------------------------------
Op = tuple[str, str, int, int, int, int, float]
LOCAL, PEER = 2**32 - 20, 5000  # our numbers wrap inside a trace


def model_trace(state: str, msl: float, ops: list[Op]) -> tuple[list[Any], list[Any]]:
    """What ``_engine.endpoint_trace`` returns, from the model's own ``Endpoint``."""
    ep = Endpoint(State[state], msl=msl, isn=LOCAL, now=0.0)
    steps = []
    for kind, name, a, seq, ack, length, when in ops:
        error = None
        try:
            if kind == "call":
                ep.handle(Event[name], when, size=a)
            elif kind == "recv":
                ep.receive(Segment(Flags(a), seq, ack, length), when)
            else:
                setattr(ep, name, a)
        except IllegalTransition as exc:
            error = str(exc)
        fields = (ep.rcv_nxt, ep.fin_seq, ep.peer_fin_seq, ep.data_end, ep.timer_deadline)
        steps.append((ep.state.name, *fields, ep.snd_una, ep.snd_nxt, error))
    return steps, [(t, s.name, cause) for t, s, cause in ep.history]


def near(base: int) -> st.SearchStrategy[int]:
    # few distinct numbers, so segments often land exactly on rcv_nxt, snd_nxt or a FIN
    return st.sampled_from([0, 0, 1, 10, 11, 40]).map(lambda d: (base + d) % 2**32)


ops = st.lists(
    st.one_of(
        st.tuples(
            st.just("call"),
            st.sampled_from(
                [e.name for e in Event if not e.name.startswith("RCV_")] + ["CLOSE", "SHUTDOWN"] * 3
            ),
            st.sampled_from([0, 1, 100]),
            st.just(0),
            st.just(0),
            st.just(0),
            st.floats(0, 200),
        ),
        st.tuples(
            st.just("recv"),
            st.just(""),
            st.sampled_from([SYN, SYN | ACK, ACK, PSH | ACK, FIN | ACK, FIN, RST, RST | ACK, 0]),
            near(PEER),
            near(LOCAL),
            st.sampled_from([0, 0, 1, 10]),
            st.floats(0, 200),
        ),
        st.tuples(  # in sequence: the next expected number, with or without data
            st.just("recv"),
            st.just(""),
            st.sampled_from([ACK, PSH | ACK, FIN | ACK, FIN | PSH | ACK]),
            st.just(PEER),
            near(LOCAL),
            st.sampled_from([0, 10]),
            st.floats(0, 200),
        ),
        st.tuples(
            st.just("set"),
            st.sampled_from(["snd_una", "snd_nxt", "rcv_nxt"]),
            st.one_of(near(LOCAL), near(PEER)),
            st.just(0),
            st.just(0),
            st.just(0),
            st.just(0.0),
        ),
    ),
    min_size=5,
    max_size=40,
).map(lambda xs: sorted(xs, key=lambda op: op[6]))  # time moves forward


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(["CLOSED", "LISTEN", "ESTABLISHED", "TIME_WAIT"]), ops)
@example(  # close(), then the peer's FIN carrying new data: RST and CLOSED (Closing.CLOSE rows)
    "ESTABLISHED",
    [("call", "CLOSE", 0, 0, 0, 0, 1.0), ("recv", "", FIN | ACK, PEER, LOCAL, 10, 2.0)],
)
def test_engine_endpoint_behaves_as_the_models(state: str, trace: list[Op]) -> None:
    if state == "ESTABLISHED":  # as the tracker sets up a connection picked up mid-stream
        trace = [("set", "rcv_nxt", PEER, 0, 0, 0, 0.0), *trace]
    got_steps, got_history = _engine.endpoint_trace(state, LOCAL, 30.0, 0.0, trace)
    want_steps, want_history = model_trace(state, 30.0, trace)
    assert got_history == want_history
    for got, want in zip(got_steps, want_steps, strict=True):
        assert got[:-1] == want[:-1]
        # the engine names state, event and segment; the model may add why (a timer's due time)
        assert (got[-1] is None) == (want[-1] is None)
        assert got[-1] is None or want[-1].startswith(got[-1])


# -- running both trackers ---------------------------------------------------------------
def reference(rows: Iterable[Row], tr: Tracker) -> list[list[Connection]]:
    out = []
    for record, ts_ns, frame_len, fields in rows:
        out.append(tr.feed(ts_ns / 1e9, Segment4(*fields), frame_len, record))
    out.append(tr.finish())
    return out


def assert_same(rows: list[Row], **kwargs: Any) -> tuple[list[Connection], Tracker]:
    """Both trackers over ``rows``; every batch, field, counter and change equal."""
    ref_changes: list[Change] = []
    eng_changes: list[Change] = []
    watch = kwargs.pop("watch", False)
    ref = Tracker(**kwargs, on_change=ref_changes.append if watch else None)
    eng = Tracker(**kwargs, on_change=eng_changes.append if watch else None)
    want = reference(rows, ref)
    got = _engine.track_segments(rows, eng)

    def text(batches: list[list[Connection]]) -> list[list[str]]:
        return [[json.dumps(c.as_dict(), sort_keys=True) for c in b] for b in batches]

    assert text(got) == text(want)  # readable diff first
    assert got == want  # then every field: frames, kept segments, Zeek row
    assert [c.zeek.values() for b in got for c in b] == [c.zeek.values() for b in want for c in b]
    counters = ("count", "peak", "evicted", "now")
    assert [getattr(eng, k) for k in counters] == [getattr(ref, k) for k in counters]
    assert eng_changes == ref_changes
    return [c for b in want for c in b], ref


def decoded(path: Path) -> list[Row]:
    stats = DecodeStats()
    rows: list[Row] = []
    with path.open("rb") as fh:
        for f in read_frames(fh):
            seg = decode(f.linktype, f.data, stats)
            if seg is not None:
                rows.append((f.record, f.ts_ns, f.wire_len, dataclasses.astuple(seg)))
    return rows


@pytest.mark.parametrize("name", [name for name, _ in FIXTURES])
def test_every_fixture_gives_the_same_connections(name: str) -> None:
    rows = decoded(dict(FIXTURES)[name])
    conns, _ = assert_same(rows)
    assert conns
    assert_same(rows, keep_segments=True, watch=True)  # --flow and live views
    # a 100000 s close timeout follows TIME_WAIT to CLOSED (issue 14's stdin/file split)
    long = Timeouts(attempt=1e5, closed=1e5, reset=1e5, inactivity=1e5)
    assert_same(rows, timeouts=long)


def test_fixture_connections_evicted_by_a_cap_of_one() -> None:
    rows = decoded(dict(FIXTURES)["200722_tcp_anon.pcapng"])
    _, ref = assert_same(rows, max_connections=1)
    assert ref.evicted >= 1


# -- hand-built scenarios ------------------------------------------------------------------
C = (bytes([10, 0, 0, 1]), 40000)
S = (bytes([10, 0, 0, 2]), 80)
C6 = (bytes.fromhex("20010db8000000000000000000000001"), 40001)
S6 = (bytes.fromhex("20010db8000000000000000000000002"), 443)
MAPPED = (bytes.fromhex("00000000000000000000ffff0a000009"), 5)
FLOWS = [(C, S), (S, C), (C6, S6), (S6, C6), (MAPPED, S6), ((bytes([10, 0, 0, 9]), 5), S)]


def seg(
    frm: tuple[bytes, int], to: tuple[bytes, int], flags: int, seq: int, ack: int, n: int, win: int
) -> tuple[Any, ...]:
    header = 40 if len(frm[0]) == 16 else 20
    fields = (
        frm[0],
        to[0],
        frm[1],
        to[1],
        seq % 2**32,
        ack % 2**32,
        flags,
        win,
        n,
        header + 20 + n,
    )
    return (*fields, (), False)  # no tunnel, checksum fine


def timed(segs: list[tuple[float, tuple[Any, ...]]]) -> list[Row]:
    return [(i + 1, round(t * 1e9), s[9] + 14, s) for i, (t, s) in enumerate(segs)]


def test_losses_zero_windows_reuse_and_simultaneous_close_agree() -> None:
    rows = [
        (C, S, SYN, 100, 0, 0, 500),
        (S, C, SYN | ACK, 900, 101, 0, 500),
        (C, S, ACK, 101, 901, 0, 500),
        (S, C, SYN | ACK, 900, 101, 0, 500),  # the ACK was lost
        (C, S, PSH | ACK, 101, 901, 50, 500),
        (C, S, PSH | ACK, 101, 901, 50, 500),  # retransmission
        (S, C, ACK, 901, 151, 0, 0),  # zero window
        (S, C, PSH | ACK, 901, 151, 30, 500),
        (C6, S6, SYN, 1, 0, 0, 100),
        (S6, C6, SYN | ACK, 7, 2, 0, 100),
        (C6, S6, ACK, 2, 8, 0, 100),
        (C, S, FIN | ACK, 151, 931, 0, 500),
        (S, C, FIN | ACK, 931, 151, 0, 500),  # simultaneous close: FIN not acking ours
        (C, S, ACK, 152, 932, 0, 500),
        (S, C, ACK, 932, 152, 0, 500),
        (C, S, FIN | ACK, 151, 932, 0, 500),  # FIN retransmitted after its ACK
        (C6, S6, RST | ACK, 2, 8, 0, 0),
        (C, S, SYN, 5000, 0, 0, 500),  # port reuse
        (S, C, SYN | ACK, 7000, 5001, 0, 500),
        (C, S, ACK, 5001, 7001, 0, 500),
        (C, S, PSH | ACK, 5001, 7001, 100, 500),
        (S, C, ACK, 7001, 5101, 0, 500),
    ]
    data = timed([(i * 0.01, seg(*row)) for i, row in enumerate(rows)])
    conns, _ = assert_same(data, keep_segments=True, watch=True)
    assert len(conns) == 3
    assert any("did not arrive" in n for c in conns for n in c.notes)


def test_an_endpoint_is_replayed_at_most_replay_limit_times() -> None:
    """Each replay is a pass over the endpoint's inputs: a crafted capture repeating
    "ACK, then the SYN+ACK again" must not make the cost quadratic. Both trackers
    replay 32 times, then say once that they stopped, and agree on every field."""
    rows = [(C, S, SYN, 100, 0, 0, 500), (S, C, SYN | ACK, 900, 101, 0, 500)]
    for _ in range(200):
        rows += [(C, S, ACK, 101, 901, 0, 500), (S, C, SYN | ACK, 900, 101, 0, 500)]
    conns, _ = assert_same(timed([(i * 0.001, seg(*row)) for i, row in enumerate(rows)]))
    (conn,) = conns
    lost = [n for n in conn.notes if "did not arrive" in n]
    stopped = [n for n in conn.notes if "not checked" in n]
    assert len(lost) == REPLAY_LIMIT == 32
    assert stopped == [
        "SYN+ACK retransmitted in frame 68: not checked (tcplens rechecks an endpoint's "
        "history for at most 32 retransmissions); from here it may show a segment as "
        "delivered that never arrived"
    ]


def busy(seed: int, connections: int = 150) -> list[Row]:
    """Many interleaved connections over ~40 s: handshakes, data, FIN and RST closes,
    refused and half-open attempts, reused 4-tuples, one timestamp stepping back."""
    rng = random.Random(seed)
    out: list[tuple[float, tuple[Any, ...]]] = []
    for k in range(connections):
        client = (bytes([10, 0, 0, 1 + k % 2]), 20000 + rng.randrange(6))
        server = (bytes([192, 168, 0, 1 + k % 2]), rng.choice((80, 443)))
        t = rng.uniform(10, 50)
        cs, ss = rng.getrandbits(32), rng.getrandbits(32)
        kind = rng.random()
        script = [(client, SYN, 0)]
        if kind < 0.1:
            pass
        elif kind < 0.2:
            script.append((server, RST | ACK, 0))
        else:
            script += [(server, SYN | ACK, 0), (client, ACK, 0)]
            for _ in range(rng.randrange(4)):
                script.append((rng.choice((client, server)), PSH | ACK, rng.choice((1, 10, 100))))
            if kind < 0.4:
                script.append((client, RST | ACK, 0))
            else:
                first, second = (client, server) if kind < 0.7 else (server, client)
                script += [(first, FIN | ACK, 0), (second, FIN | ACK, 0), (first, ACK, 0)]
        for frm, flags, n in script:
            to = server if frm == client else client
            seq, ack = (cs, ss) if frm == client else (ss, cs)
            win = 0 if rng.random() < 0.03 else 500
            out.append((t, seg(frm, to, flags, seq, ack, n, win)))
            used = n + (1 if flags & (SYN | FIN) else 0)
            if frm == client:
                cs += used
            else:
                ss += used
            t += rng.uniform(0.001, 0.3)
    out.sort(key=lambda r: r[0])
    i = len(out) // 2
    out[i] = (out[i][0] - 2.0, out[i][1])
    return timed(out)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_busy_capture_with_timeouts_and_cap_agrees(seed: int) -> None:
    rows = busy(seed)
    conns, ref = assert_same(rows)
    assert len(conns) > 100
    assert ref.evicted > 20
    assert sum(c.conn_state == "REJ" for c in conns) > 3
    assert_same(rows, max_connections=6)
    assert_same(rows, msl=0.5, timeouts=Timeouts(attempt=1, closed=2, reset=0.5, inactivity=3))


# -- random segment soups ------------------------------------------------------------------
flags = st.sampled_from(
    [SYN, SYN | ACK, ACK, PSH | ACK, FIN | ACK, RST, RST | ACK, FIN, 0, FIN | RST, SYN | FIN]
).flatmap(lambda f: st.sampled_from([f, f, f, f | 0x20, f | 0xC0]))  # URG, ECE+CWR
segment = st.tuples(
    st.sampled_from(FLOWS),
    flags,
    st.integers(0, 40),
    st.integers(0, 40),
    st.sampled_from([0, 0, 1, 10, 100]),
    st.sampled_from([0, 500, 500]),
    st.one_of(st.floats(0, 3), st.just(0.0), st.floats(-1, 0)),  # time may step back
)
settings_ = st.tuples(
    st.sampled_from([0.05, 1.0, 30.0]),  # msl: 2MSL expiring inside a soup
    st.sampled_from([0.5, 2.0, 5.0, 1e6]),  # every timeout
    st.sampled_from([1, 2, 3, 1_000_000]),  # connection cap
    st.booleans(),  # keep segments (--flow); without, the engine keeps a lone SYN compact
)


def soup(rows: list[tuple[Any, ...]]) -> list[Row]:
    t = 1000.0
    out = []
    for (frm, to), fl, seq, ack, n, win, gap in rows:
        t += gap
        out.append((t, seg(frm, to, fl, 1000 + seq * 7, 2000 + ack * 7, n, win)))
    return timed(out)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(segment, min_size=1, max_size=40), settings_)
def test_random_segment_soups_with_eviction_and_timeouts_agree(
    rows: list[tuple[Any, ...]], knobs: tuple[float, float, int, bool]
) -> None:
    msl, timeout, cap, keep = knobs
    to = Timeouts(attempt=timeout, closed=timeout, reset=timeout / 2, inactivity=timeout * 3)
    assert_same(soup(rows), msl=msl, timeouts=to, max_connections=cap, keep_segments=keep)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(segment, min_size=1, max_size=60))
def test_random_segment_soups_watched_live_agree(rows: list[tuple[Any, ...]]) -> None:
    assert_same(soup(rows), watch=True)


def test_sequence_numbers_wrap_alike() -> None:
    top = 2**32 - 3
    rows = [
        (C, S, SYN, top, 0, 0, 500),
        (S, C, SYN | ACK, 2**32 - 1, top + 1, 0, 500),
        (C, S, PSH | ACK, top + 1, 0, 10, 500),
        (C, S, PSH | ACK, top + 1, 0, 10, 500),
        (S, C, FIN | ACK, 0, top + 11, 0, 500),
        (C, S, FIN | ACK, top + 11, 1, 0, 500),
        (S, C, ACK, 1, top + 12, 0, 500),
    ]
    conns, _ = assert_same(timed([(i * 0.1, seg(*r)) for i, r in enumerate(rows)]))
    assert conns[0].conn_state == "SF"
    assert conns[0].retransmissions == 1


# -- what users read: the CLI through either route -----------------------------------
MODES = [
    [],
    ["--json"],
    ["--zeek"],
    ["--states"],
    ["--flow", "1"],
    ["--json", "--close-timeout", "100000", "--msl", "1"],
    ["--json", "--idle-timeout", "0", "--close-timeout", "0"],
]


def cli_output(route: str, args: list[str], stdin: bytes | None = None) -> tuple[int, bytes]:
    res = CliRunner().invoke(cli, ["pcap", *args], input=stdin, env={ROUTE_ENV: route})
    return res.exit_code, res.stdout_bytes


@pytest.mark.parametrize("mode", MODES, ids=lambda m: " ".join(m) or "table")
@pytest.mark.parametrize("name", [name for name, _ in FIXTURES])
def test_cli_output_is_byte_identical_from_engine_and_reference(name: str, mode: list[str]) -> None:
    path = dict(FIXTURES)[name]
    want = cli_output("python", [*mode, str(path)])
    assert want[0] == 0
    assert cli_output("engine", [*mode, str(path)]) == want
    # stdin goes through the same engine (the JSON names the file "-", so compare like with like)
    data = path.read_bytes()
    assert cli_output("engine", [*mode, "-"], data) == cli_output("python", [*mode, "-"], data)


# -- every fuzz-found input --------------------------------------------------------------
CORPUS = ROOT / "rust" / "fuzz" / "corpus" / "reader_decode"


def by_route(route: str, data: bytes, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, ...]:
    monkeypatch.setenv(ROUTE_ENV, route)
    tr, summary = Tracker(), CaptureSummary()
    conns, error = [], None
    try:
        for c in reconstruct_capture(io.BytesIO(data), tr, summary, path="fuzz"):
            conns.append(json.dumps(c.as_dict(), sort_keys=True))
    except TcplensError as exc:
        error = (type(exc).__name__, str(exc))
    return conns, error, (tr.count, tr.peak, tr.evicted), summary.status


@pytest.mark.parametrize(
    "name", sorted(p.name for p in CORPUS.glob("*")) if CORPUS.is_dir() else []
)
def test_every_fuzz_input_gives_the_same_connections_by_either_route(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = (CORPUS / name).read_bytes()
    assert by_route("engine", data, monkeypatch) == by_route("python", data, monkeypatch)
