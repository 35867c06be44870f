"""Every encapsulation tcplens decodes, through the CLI, by both routes.

Captures come from ``encap_frames`` (scapy-built: one complete connection
inside each encapsulation).  ``tcplens pcap --json`` must find it complete
with its chain, the engine and the reference must print the same bytes, and
what cannot be decoded must be counted per type, never dropped silently.
Real kernel tunnels are in ``test_encap_kernel.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.packet import Raw

from tcplens.packets import encap
from tcplens.packets.decode import DecodeStats, decode
from tcplens.packets.encap import tunnel_parents, tunnel_uid

from . import build, encap_frames
from .encap_frames import CASES, Case
from .test_engine_reader import assert_same


def cli(path: Path, *args: str, route: str = "engine") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tcplens", "pcap", *args, str(path)],
        capture_output=True,
        text=True,
        env={**os.environ, "TCPLENS_PACKETS": route},
    )


def both_routes(path: Path, *args: str) -> str:
    """The output, after checking the engine and the reference print the same."""
    eng, ref = cli(path, *args), cli(path, *args, route="python")
    assert eng.returncode == ref.returncode == 0, eng.stderr + ref.stderr
    assert eng.stdout == ref.stdout
    return eng.stdout


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_each_encapsulation_gives_its_connection_and_chain(case: Case, tmp_path: Path) -> None:
    path = tmp_path / f"{case.name}.pcap"
    path.write_bytes(encap_frames.capture(case))
    out = json.loads(both_routes(path, "--json"))
    (conn,) = out["connections"]
    assert conn["tunnel"] == list(case.chain)
    assert (conn["conn_state"], conn["history"]) == ("SF", "ShADaFf")
    assert conn["orig"]["ip"] == ("fd09::1" if case.v6 else "10.9.0.1")
    assert out["summary"]["tcp_segments"] == out["summary"]["frames"] == 8
    # Zeek's tunnel_parents: one uid per tunnel with IP endpoints, "-" for none
    zeek = both_routes(path, "--zeek").splitlines()
    (row,) = [line for line in zeek if not line.startswith("#")]
    parents = row.split("\t")[-1]
    want = tunnel_parents(case.chain)
    assert parents == (",".join(want) if want else "-")


def test_same_four_tuple_in_two_vlans_and_two_tunnels_is_two_connections(tmp_path: Path) -> None:
    by_name = {c.name: c for c in CASES}
    frames = []
    for pair in (("vlan", "vlan_other"), ("gre", "vxlan")):
        a, b = (encap_frames.frames(by_name[n], sport=40999) for n in pair)
        # interleaved, as two links carrying the same flow at once would show it
        frames += [f for ab in zip(a, b, strict=True) for f in ab]
    path = tmp_path / "twins.pcap"
    path.write_bytes(build.pcap(sorted(frames), nanos=True))
    conns = json.loads(both_routes(path, "--json"))["connections"]
    assert sorted(c["tunnel"] for c in conns) == [
        ["gre 192.0.2.1-192.0.2.2"],
        ["vlan 100"],
        ["vlan 200"],
        ["vxlan 192.0.2.1-192.0.2.2 vni 42"],
    ]
    assert {c["orig"]["port"] for c in conns} == {40999}
    assert all(c["conn_state"] == "SF" for c in conns)


def test_unsupported_encapsulations_are_counted_per_type(tmp_path: Path) -> None:
    vlan = CASES[0]
    good = encap_frames.frames(vlan)
    lldp = build.ether(b"\x02\x07\x04" + b"\x00" * 40, 0x88CC)
    pppoe_discovery = build.ether(b"\x11\x09\x00\x00\x00\x00", 0x8863)
    gre_other = build.ether(
        build.ipv4("192.0.2.1", "192.0.2.2", b"\x00\x00\x12\x34" + b"\x00" * 20, proto=47)
    )
    lcp = build.ether(b"\x11\x00\x00\x11\x00\x06\xc0\x21\x01\x01\x00\x04", 0x8864)
    extra = [lldp] * 3 + [pppoe_discovery, gre_other, lcp]
    t0 = good[-1][0]
    path = tmp_path / "mixed.pcap"
    path.write_bytes(build.pcap(good + [(t0 + i + 1, f) for i, f in enumerate(extra)], nanos=True))
    summary = json.loads(both_routes(path, "--json"))["summary"]
    assert summary["non_ip"] == 6
    assert summary["unsupported"] == {
        "GRE protocol 0x1234": 1,
        "PPP protocol 0xc021": 1,
        "ethertype 0x8863": 1,
        "ethertype 0x88cc": 3,
    }
    footer = both_routes(path).splitlines()[-1]
    assert (
        "6 non-IP or in an unsupported encapsulation: ethertype 0x88cc (3), "
        "GRE protocol 0x1234 (1), PPP protocol 0xc021 (1), ethertype 0x8863 (1)"
    ) in footer


def test_committed_fixtures_are_what_the_builder_writes() -> None:
    # the differential tests read these files: they must be today's frames
    for name, data in encap_frames.fixtures().items():
        assert (encap_frames.FIXTURES / name).read_bytes() == data, (
            f"{name} is stale: python3 -m tests.packets.encap_frames"
        )


def test_the_chain_table_is_bounded_as_the_engines(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(encap, "MAX_CHAINS", 3)
    monkeypatch.setattr(encap, "_CHAINS", set())
    assert [encap.chain([f"vlan {i}"]) for i in range(3)] == [("vlan 0",), ("vlan 1",), ("vlan 2",)]
    assert encap.chain(["mpls"]) == encap.OVERFLOW
    assert encap.chain(["vlan 1"]) == ("vlan 1",)  # a known chain keeps its text
    assert encap.OVERFLOW == ("more than 65536 encapsulation chains: not told apart",)


def test_a_tunnel_uid_is_stable_and_names_only_tunnels() -> None:
    assert tunnel_uid("gre 192.0.2.1-192.0.2.2") == tunnel_uid("gre 192.0.2.1-192.0.2.2")
    assert len(tunnel_uid("x")) == 18 and tunnel_uid("x").startswith("C")
    assert tunnel_parents(("vlan 5", "mpls", "pppoe 3")) == ()
    chain = ("vlan 5", "ip 10.0.0.1-10.0.0.2", "vxlan 10.0.0.1-10.0.0.2 vni 1")
    assert tunnel_parents(chain) == (tunnel_uid(chain[1]), tunnel_uid(chain[2]))


#: every encapsulation's first frame cut at each length and fuzzed behind its headers
SEEDS = [(c.linktype, c.wrap(True, encap_frames.conversation(40123, v6=c.v6)[0][1])) for c in CASES]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.sampled_from(SEEDS),
    cut=st.integers(min_value=0, max_value=200),
    flips=st.lists(st.tuples(st.integers(0, 199), st.integers(0, 255)), max_size=4),
)
def test_damaged_encapsulated_frames_decode_alike_and_never_raise(
    seed: tuple[int, bytes], cut: int, flips: list[tuple[int, int]]
) -> None:
    linktype, frame = seed
    data = bytearray(frame[: len(frame) - cut] if cut < len(frame) else b"")
    for at, value in flips:
        if at < len(data):
            data[at] = value
    stats = DecodeStats()
    decode(linktype, bytes(data), stats)  # the reference never raises on any bytes
    assert stats.frames == 1
    assert sum((stats.tcp, stats.fragments, stats.non_ip, stats.non_tcp, stats.malformed)) == 1
    assert_same(build.pcap([(0, bytes(data))], linktype=linktype))


#: one layer around an Ethernet frame, giving an Ethernet frame, and its chain text
WRAPPERS = {
    "vlan": (lambda f: f[:12] + b"\x81\x00\x00\x05" + f[12:], "vlan 5"),
    "pbb": (lambda f: encap_frames.raw_eth(0x88E7, b"\x00\x00\x00\x09" + f), "pbb 9"),
    "mpls": (
        lambda f: encap_frames.raw_eth(0x8847, b"\x00\x01\x01\x40\x00\x00\x00\x00" + f),
        "mpls",
    ),
    "gretap": (
        lambda f: bytes(
            encap_frames.eth() / encap_frames.outer4(True) / encap_frames.GRE(proto=0x6558) / Raw(f)
        ),
        f"gre {encap_frames.U4}",
    ),
    "vxlan": (
        lambda f: bytes(
            encap_frames.eth()
            / encap_frames.outer4(True)
            / encap_frames.UDP(sport=1, dport=4789)
            / encap_frames.VXLAN(vni=3)
            / Raw(f)
        ),
        f"vxlan {encap_frames.U4} vni 3",
    ),
}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(sorted(WRAPPERS)), min_size=1, max_size=5))
def test_nested_encapsulations_give_the_whole_chain_by_both_routes(layers: list[str]) -> None:
    _, syn = encap_frames.conversation(40123)[0]
    frame = bytes(encap_frames.inner_eth(syn))
    for name in layers:  # innermost first
        frame = WRAPPERS[name][0](frame)
    stats = DecodeStats()
    seg = decode(1, frame, stats)
    assert seg is not None, stats
    assert seg.tunnel == tuple(WRAPPERS[name][1] for name in reversed(layers))
    assert_same(build.pcap([(0, frame)]))


# -- UDP checksums (--check-checksums): Zeek's UDPAnalyzer::DeliverPacket ----------------
def checksummed(case: Case, csum_of: dict[int, str], v6: bool, default: str = "good") -> bytes:
    """``case``'s conversation with each frame's outer UDP checksum as ``csum_of`` says."""
    rows = [
        (t, encap_frames.with_udp_checksum(f, csum_of.get(i, default), v6))
        for i, (t, f) in enumerate(encap_frames.frames(case))
    ]
    return build.pcap(rows, nanos=True)


@pytest.mark.parametrize("v6", [False, True], ids=["ipv4", "ipv6"])
@pytest.mark.parametrize("case", encap_frames.UDP_CASES, ids=lambda c: c.name)
def test_a_bad_udp_checksum_keeps_the_tunnelled_packet_from_the_inner_connection(
    case: Case, v6: bool, tmp_path: Path
) -> None:
    # Frame 3 is the client's data.  Zeek returns before ForwardPacket on a bad
    # UDP checksum: the tunnel is not decapsulated, the inner connection never
    # sees the segment (the server's ACK of it becomes a content gap).
    path = tmp_path / "bad.pcap"
    path.write_bytes(checksummed(case, {3: "bad"}, v6))
    out = json.loads(both_routes(path, "--json", "--check-checksums"))
    (conn,) = out["connections"]
    assert (out["summary"]["bad_checksums"], out["summary"]["tcp_segments"]) == (1, 7)
    assert (conn["orig"]["packets"], conn["orig"]["payload_bytes"]) == (4, 0)
    assert "D" not in conn["history"]
    # Off (the default): the datagram is decapsulated as if nothing were wrong.
    out = json.loads(both_routes(path, "--json"))
    (conn,) = out["connections"]
    assert (conn["history"], conn["orig"]["packets"]) == ("ShADaFf", 5)
    assert "bad_checksums" not in out["summary"]


@pytest.mark.parametrize("v6", [False, True], ids=["ipv4", "ipv6"])
@pytest.mark.parametrize("case", encap_frames.UDP_CASES, ids=lambda c: c.name)
def test_a_zero_udp_checksum_is_none_over_ipv4_and_wrong_over_ipv6_but_for_vxlan(
    case: Case, v6: bool, tmp_path: Path
) -> None:
    # RFC 768: zero means "not computed" over IPv4.  RFC 8200 8.1: over IPv6 it
    # is not optional, and Zeek checks it, except a VXLAN datagram to port 4789
    # (RFC 7348 lets VXLAN send zero; Zeek's vxlan_ports rule).
    path = tmp_path / "zero.pcap"
    path.write_bytes(checksummed(case, {}, v6, default="zero"))
    out = json.loads(both_routes(path, "--json", "--check-checksums"))
    if v6 and case.name != "vxlan":
        assert (out["summary"]["bad_checksums"], out["summary"]["connections"]) == (8, 0)
    else:
        (conn,) = out["connections"]
        assert (conn["history"], out["summary"]["bad_checksums"]) == ("ShADaFf", 0)


def test_good_udp_checksums_change_nothing_and_plain_udp_is_not_a_checksum_count(
    tmp_path: Path,
) -> None:
    (case,) = [c for c in encap_frames.UDP_CASES if c.name == "geneve"]
    path = tmp_path / "good.pcap"
    path.write_bytes(checksummed(case, {}, v6=True))
    out = json.loads(both_routes(path, "--json", "--check-checksums"))
    assert out["connections"][0]["tunnel"] == ["geneve fd00::1-fd00::2 vni 7"]
    assert out["connections"][0]["history"] == "ShADaFf"
    assert out["summary"]["bad_checksums"] == 0
    # A datagram on no tunnel port carries no TCP: counted non_tcp, checksum unread.
    dns = encap_frames.with_udp_checksum(encap_frames.frames(case)[0][1], "bad")
    dns = dns[:36] + (53).to_bytes(2, "big") + dns[38:]  # destination port 6081 -> 53
    stats = DecodeStats(check_checksums=True)
    assert decode(1, dns, stats) is None
    assert (stats.non_tcp, stats.bad_checksums) == (1, 0)


# -- the chain wherever a connection is shown (table, --flow, --states) ------------------
FIXTURES = Path(__file__).parent.parent / "fixtures" / "pcap"


def test_the_table_ends_a_tunnelled_connections_row_with_its_chain() -> None:
    path = FIXTURES / "encap_ethernet.pcap"
    chains = {
        c["index"]: c["tunnel"] for c in json.loads(both_routes(path, "--json"))["connections"]
    }
    assert all(chains.values()) and len(chains) == 22
    # piped (streamed; the engine writes these rows in Rust) and whole (--sort)
    for args in ((), ("--sort", "duration")):
        rows = both_routes(path, *args).splitlines()[1:-1]
        assert len(rows) == len(chains)
        for row in rows:
            cells, via = row.split("  via ")
            index = int(cells.split()[0])
            assert via == " > ".join(chains[index])
            assert cells.split()[-2:] == ["0", "0"]  # after the last column: none moved
    rows = both_routes(path).splitlines()
    assert "vlan 10 > vlan 20" in rows[3]
    assert rows[1].endswith("  via vlan 100")


def test_flow_and_states_name_the_chain_and_plain_captures_show_none(tmp_path: Path) -> None:
    path = FIXTURES / "encap_ethernet.pcap"
    states = both_routes(path, "--states").splitlines()
    qinq = states.index(next(line for line in states if line.startswith("#3 ")))
    assert states[qinq + 1] == "  via vlan 10 > vlan 20"
    ladder = both_routes(path, "--flow", "3").splitlines()
    assert ladder[0] == "#3 via vlan 10 > vlan 20"
    svg = both_routes(path, "--flow", "3", "--format", "svg")
    assert "via vlan 10 &gt; vlan 20" in svg
    # no chain, no "via": the plain table, states and ladder are what they were
    for plain in (FIXTURES / "tcp_handshake.pcapng", FIXTURES / "encap_ppp.pcap"):
        for args in ((), ("--states",), ("--flow", "1"), ("--sort", "duration")):
            assert "via" not in both_routes(plain, *args)
