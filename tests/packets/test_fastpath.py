"""The vectorised path must give exactly what the packet-by-packet path gives.

Every fixture, hand-built scenarios and random segment soups (hypothesis) are
reconstructed both ways, with small chunks so chunk boundaries fall inside
connections, and the JSON forms of all connections must be identical.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tcplens.errors import TcplensError, TruncatedInput
from tcplens.packets import fastpath
from tcplens.packets.pcap import PcapWriter, read_frames
from tcplens.packets.tracker import CaptureSummary, Connection, Timeouts, Tracker, reconstruct

from . import build
from .build import ACK, FIN, PSH, RST, SYN

FIXTURES = Path(__file__).parent.parent / "fixtures" / "pcap"


def as_pcap(path: Path) -> bytes:
    """Re-write any fixture as classic pcap (the layout the fast path reads)."""
    out = io.BytesIO()
    with path.open("rb") as fh:
        frames = list(read_frames(fh))
    writer = PcapWriter(out, frames[0].linktype)
    for frame in frames:
        writer.write(frame.ts_ns, frame.data, frame.wire_len)
    return out.getvalue()


def both(data: bytes, timeouts: Timeouts | None = None) -> tuple[list[str], list[str]]:
    slow = [
        json.dumps(c.as_dict(), sort_keys=True)
        for c in reconstruct(read_frames(io.BytesIO(data)), Tracker(timeouts=timeouts))
    ]
    fast = [
        json.dumps(c.as_dict(), sort_keys=True)
        for c in fastpath.reconstruct_pcap_fast(
            io.BytesIO(data), Tracker(timeouts=timeouts), CaptureSummary()
        )
    ]
    return sorted(slow), sorted(fast)


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fastpath, "_CHUNK_BYTES", 700)


@pytest.mark.parametrize("name", sorted(p.name for p in FIXTURES.glob("*.pcap*")))
def test_fixtures_agree(name: str) -> None:
    slow, fast = both(as_pcap(FIXTURES / name))
    assert slow == fast
    assert slow
    native = (FIXTURES / name).read_bytes()  # pcapng stays pcapng
    assert both(native) == (slow, slow)


@pytest.mark.parametrize("order", ["<", ">"])
@pytest.mark.parametrize("nanos", [False, True])
def test_classic_pcap_in_either_byte_order_and_resolution_agrees(order: str, nanos: bool) -> None:
    # the record headers are read in one gather in the file's byte order
    with (FIXTURES / "tcp_retransmissions.pcapng").open("rb") as fh:
        frames = [(f.ts_ns, f.data) for f in read_frames(fh)]
    if not nanos:
        frames = [(ts - ts % 1000, data) for ts, data in frames]
    data = build.pcap(frames, order=order, nanos=nanos)
    slow, fast = both(data)
    assert slow == fast
    assert slow
    reference, _ = both(build.pcap(frames))
    starts = sorted(json.loads(c)["start"] for c in slow)
    assert starts == sorted(json.loads(c)["start"] for c in reference)


def test_pcapng_with_two_link_types_and_resolutions_agrees() -> None:
    eth = build.ether(build.ipv4("10.0.0.1", "10.0.0.2", build.tcp(1000, 80, 5, 0, SYN)))
    raw = build.ipv4("10.0.0.2", "10.0.0.1", build.tcp(80, 1000, 9, 6, SYN | ACK))
    eth_ack = build.ether(build.ipv4("10.0.0.1", "10.0.0.2", build.tcp(1000, 80, 6, 10, ACK)))
    data = (
        build.ng_shb(">")
        + build.ng_idb(1, order=">")
        + build.ng_idb(101, tsresol=9, order=">")
        + build.ng_block(0x0BAD_F00D, b"skipped", ">")
        + build.ng_epb(0, 1_000_000, eth, ">")
        + build.ng_epb(1, 1_100_000_000, raw, ">")
        + build.ng_epb(0, 1_200_000, eth_ack, ">")
    )
    slow, fast = both(data)
    assert slow == fast
    assert '"conn_state": "S1"' in slow[0]


C = ("10.0.0.1", 40000)
S = ("10.0.0.2", 80)
C6 = ("2001:db8::1", 40001)
S6 = ("2001:db8::2", 443)


def frame(
    frm: tuple[str, int], to: tuple[str, int], flags: int, seq: int, ack: int, n: int, win: int
) -> bytes:
    seg = build.tcp(frm[1], to[1], seq, ack, flags, window=win, payload=b"z" * n)
    if ":" in frm[0]:
        return build.ether(build.ipv6(frm[0], to[0], seg), 0x86DD)
    return build.ether(build.ipv4(frm[0], to[0], seg))


def test_scenarios_with_losses_zero_windows_reuse_and_ipv6_agree() -> None:
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
        (S, C, ACK, 931, 152, 0, 500),
        (S, C, PSH | ACK, 931, 152, 10, 500),
        (C, S, ACK, 152, 941, 0, 500),
        (S, C, FIN | ACK, 941, 152, 0, 500),
        (C, S, ACK, 152, 942, 0, 500),
        (C6, S6, RST | ACK, 2, 8, 0, 0),
        (C, S, SYN, 5000, 0, 0, 500),  # port reuse
        (S, C, SYN | ACK, 7000, 5001, 0, 500),
        (C, S, ACK, 5001, 7001, 0, 500),
        (C, S, PSH | ACK, 5001, 7001, 100, 500),
        (S, C, ACK, 7001, 5101, 0, 500),
    ]
    packets = [(int(i * 1e7), frame(*row)) for i, row in enumerate(rows)]
    slow, fast = both(build.pcap(packets, nanos=True))
    assert len(slow) == 3
    assert slow == fast


endpoints = st.sampled_from([(C, S), (S, C), (C6, S6), (S6, C6), (("10.0.0.9", 5), S)])
segment = st.tuples(
    endpoints,
    st.sampled_from([SYN, SYN | ACK, ACK, PSH | ACK, FIN | ACK, RST, RST | ACK, FIN, 0]),
    st.integers(0, 40),
    st.integers(0, 40),
    st.sampled_from([0, 0, 1, 10, 100]),
    st.sampled_from([0, 500, 500]),
    st.floats(0, 3),
)


#: Idle eviction happens at chunk boundaries on the fast path (documented), so the
#: soups, whose gaps are random, run with timeouts longer than any soup.
NO_EVICTION = Timeouts(attempt=1e6, closed=1e6, reset=1e6, inactivity=1e6)


def soup_pcap(rows: list[tuple]) -> bytes:  # type: ignore[type-arg]
    """A nanosecond pcap of a drawn segment soup, timestamps advancing by each row's gap."""
    t = 0.0
    packets = []
    for (frm, to), flags, seq, ack, n, win, gap in rows:
        t += gap
        packets.append(
            (int(t * 1e9), frame(frm, to, flags, 1000 + seq * 7, 2000 + ack * 7, n, win))
        )
    return build.pcap(packets, nanos=True)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(segment, min_size=1, max_size=40))
def test_random_segment_soups_agree(rows: list[tuple]) -> None:  # type: ignore[type-arg]
    slow, fast = both(soup_pcap(rows), NO_EVICTION)
    assert slow == fast


def test_truncated_file_gives_the_same_connections_and_error() -> None:
    data = as_pcap(FIXTURES / "200722_tcp_anon.pcapng")[:-40]
    got: list[Connection] = []
    with pytest.raises(TruncatedInput) as info:
        got.extend(fastpath.reconstruct_pcap_fast(io.BytesIO(data), Tracker(), CaptureSummary()))
    assert len(got) == 2
    assert info.value.record == 35


SMALL_PCAPS = [
    as_pcap(FIXTURES / name) for name in ("200722_tcp_anon.pcapng", "http_ip4and6.pcapng")
]
SMALL_PCAPS.append((FIXTURES / "simple_http_sll2.pcap").read_bytes())
SMALL_PCAPS.append((FIXTURES / "200722_tcp_anon.pcapng").read_bytes())


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(range(len(SMALL_PCAPS))),
    st.lists(st.tuples(st.integers(0, 20_000), st.integers(0, 255)), min_size=1, max_size=12),
)
def test_mutated_pcaps_never_raise_anything_but_tcplens_errors(
    which: int, edits: list[tuple[int, int]]
) -> None:
    data = bytearray(SMALL_PCAPS[which])
    for position, value in edits:
        data[24 + position % (len(data) - 24)] = value  # keep the magic: test the records
    with contextlib.suppress(TcplensError):
        list(fastpath.reconstruct_pcap_fast(io.BytesIO(bytes(data)), Tracker(), CaptureSummary()))


def fast_json(data: bytes, offload: bool) -> list[str]:
    got = fastpath.reconstruct_pcap_fast(
        io.BytesIO(data), Tracker(), CaptureSummary(), offload=offload, split=False
    )
    return [json.dumps(c.as_dict(), sort_keys=True) for c in got]


@pytest.mark.parametrize("name", ["200722_tcp_anon.pcapng", "tcp_retransmissions.pcapng"])
def test_offloaded_decoding_gives_the_same_connections_in_the_same_order(name: str) -> None:
    # a forked child indexes and decodes, this process tracks; with 700-byte chunks
    # dozens of decoded chunks cross the pipe, pcapng and classic pcap alike
    for data in (as_pcap(FIXTURES / name), (FIXTURES / name).read_bytes()):
        here = fast_json(data, offload=False)
        assert here
        assert fast_json(data, offload=True) == here


def test_offloaded_decoding_reports_a_truncated_file_at_the_same_record() -> None:
    data = as_pcap(FIXTURES / "200722_tcp_anon.pcapng")[:-40]
    got: list[Connection] = []
    with pytest.raises(TruncatedInput) as info:
        got.extend(
            fastpath.reconstruct_pcap_fast(
                io.BytesIO(data), Tracker(), CaptureSummary(), offload=True, split=False
            )
        )
    assert len(got) == 2
    assert info.value.record == 35
    assert info.value.offset is not None and info.value.offset > 24


def children() -> set[int]:
    """This process's children, zombies included (Linux: /proc/self/task/*/children)."""
    out: set[int] = set()
    for task in Path("/proc/self/task").iterdir():
        out.update(int(pid) for pid in (task / "children").read_text().split())
    return out


def test_offloaded_decoding_stopped_early_leaves_no_child_behind() -> None:
    before = children()
    data = as_pcap(FIXTURES / "200722_tcp_anon.pcapng")
    conns = fastpath.reconstruct_pcap_fast(
        io.BytesIO(data), Tracker(), CaptureSummary(), offload=True, split=False
    )
    first = next(iter(conns))
    assert first.index >= 1
    assert len(children() - before) == 1  # the worker
    conns.close()  # type: ignore[attr-defined]
    assert children() == before  # ended and reaped, not left a zombie


def run_fast(data: bytes, offload: bool, split: bool, **kwargs: int) -> tuple[list[str], tuple]:  # type: ignore[type-arg]
    """Connections in output order (not sorted) plus every figure the summary keeps."""
    tracker, summary = Tracker(**kwargs), CaptureSummary()  # type: ignore[arg-type]
    conns = fastpath.reconstruct_pcap_fast(
        io.BytesIO(data), tracker, summary, offload=offload, split=split
    )
    got = [json.dumps(c.as_dict(), sort_keys=True) for c in conns]
    figures = (summary.frames, summary.connections, summary.peak_live, str(summary.decode))
    return got, (*figures, tracker.count, tracker.evicted)


def busy_capture(seed: int, connections: int = 120, backwards: bool = False) -> bytes:
    """Many interleaved connections over ~40 s: handshakes, data, FIN and RST closes,
    refused and half-open attempts, port reuse; idle ones are evicted on the way."""
    import random

    rng = random.Random(seed)
    rows: list[tuple[float, bytes]] = []
    for k in range(connections):
        client = (f"10.0.0.{1 + k % 2}", 20000 + rng.randrange(6))  # 4-tuples get reused
        server = (f"192.168.0.{1 + k % 2}", rng.choice((80, 443)))
        t = rng.uniform(10, 50)
        cs, ss = rng.getrandbits(32), rng.getrandbits(32)
        kind = rng.random()

        def add(
            frm: tuple[str, int],
            to: tuple[str, int],
            flags: int,
            n: int = 0,
            client: tuple[str, int] = client,
        ) -> None:
            nonlocal t, cs, ss
            seq, ack = (cs, ss) if frm == client else (ss, cs)
            win = 0 if rng.random() < 0.03 else 500
            rows.append((t, frame(frm, to, flags, seq % 2**32, ack % 2**32, n, win)))
            used = n + (1 if flags & (SYN | FIN) else 0)
            if frm == client:
                cs += used
            else:
                ss += used
            t += rng.uniform(0.001, 0.3)

        add(client, server, SYN)
        if kind < 0.1:
            continue  # half-open
        if kind < 0.2:
            add(server, client, RST | ACK)
            continue
        add(server, client, SYN | ACK)
        add(client, server, ACK)
        for _ in range(rng.randrange(4)):
            frm, to = (client, server) if rng.random() < 0.5 else (server, client)
            add(frm, to, PSH | ACK, rng.choice((1, 10, 100)))
        if kind < 0.4:
            add(client, server, RST | ACK)
        else:
            first, second = (client, server) if kind < 0.7 else (server, client)
            add(first, second, FIN | ACK)
            add(second, first, FIN | ACK)
            add(first, second, ACK)
    rows.sort(key=lambda r: r[0])
    if backwards:  # one timestamp steps back (e.g. merged interfaces)
        i = len(rows) // 2
        rows[i] = (rows[i][0] - 2.0, rows[i][1])
    return build.pcap([(int(t * 1e9), data) for t, data in rows], nanos=True)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_split_tracking_gives_what_one_tracker_gives_in_the_same_order(seed: int) -> None:
    # two processes each track the connections of their half of the 4-tuples and
    # reconcile numbering, clock and sweeps at each of ~100 chunk boundaries
    data = busy_capture(seed)
    one = run_fast(data, offload=False, split=False)
    assert len(one[0]) > 100
    assert one[1][5] > 20  # evicted on the way, so sweeps are merged
    assert sum('"conn_state": "REJ"' in c for c in one[0]) > 3
    assert run_fast(data, offload=True, split=True) == one
    assert run_fast(data, offload=True, split=False) == one  # decoding offloaded only


def test_split_tracking_hands_over_when_timestamps_go_back() -> None:
    data = busy_capture(4, backwards=True)
    one = run_fast(data, offload=False, split=False)
    assert run_fast(data, offload=True, split=True) == one


def test_split_tracking_hands_over_at_the_connection_cap() -> None:
    data = busy_capture(5)
    one = run_fast(data, offload=False, split=False, max_connections=6)
    assert run_fast(data, offload=True, split=True, max_connections=6) == one


@pytest.mark.parametrize("name", sorted(p.name for p in FIXTURES.glob("*.pcap*")))
def test_split_tracking_agrees_on_every_fixture(name: str) -> None:
    for data in (as_pcap(FIXTURES / name), (FIXTURES / name).read_bytes()):
        assert run_fast(data, True, True) == run_fast(data, False, False)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(segment, min_size=1, max_size=40))
def test_split_tracking_agrees_on_random_segment_soups(rows: list[tuple]) -> None:  # type: ignore[type-arg]
    data = soup_pcap(rows)
    assert run_fast(data, True, True) == run_fast(data, False, False)


def test_split_tracking_reports_a_truncated_file_like_one_tracker() -> None:
    data = busy_capture(6)[:-30]
    outcomes = []
    for offload in (False, True):
        got: list[str] = []
        with pytest.raises(TruncatedInput) as info:
            for conn in fastpath.reconstruct_pcap_fast(
                io.BytesIO(data), Tracker(), CaptureSummary(), offload=offload, split=offload
            ):
                got.append(json.dumps(conn.as_dict(), sort_keys=True))
        outcomes.append((got, info.value.record, info.value.offset))
    assert outcomes[0][0]
    assert outcomes[1] == outcomes[0]


def test_split_tracking_stopped_early_leaves_no_child_behind() -> None:
    before = children()
    conns = fastpath.reconstruct_pcap_fast(
        io.BytesIO(busy_capture(7)), Tracker(), CaptureSummary(), offload=True, split=True
    )
    assert next(iter(conns)).index >= 1
    assert len(children() - before) == 1
    conns.close()  # type: ignore[attr-defined]
    assert children() == before
