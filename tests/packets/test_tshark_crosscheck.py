"""Cross-check against tshark on the same files: counts, bytes, flags, completeness.

tshark is installed by ``scripts/install-system-deps``; the comparison is per
connection and per direction: packets, frame bytes, SYN/FIN/RST/ACK/PSH
counts, retransmissions (``tcp.analysis.retransmission``, which Wireshark also
sets on a repeated SYN, SYN+ACK or FIN) and Wireshark's final
``tcp.completeness`` (two-pass, ``-2``).
"""

from __future__ import annotations

import shutil
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from tcplens.packets.tracker import Connection, reconstruct_file

from . import build
from .build import ACK, FIN, PSH, RST, SYN

FIXTURES = Path(__file__).parent.parent / "fixtures" / "pcap"
CAPTURES = sorted(p for p in FIXTURES.iterdir() if p.suffix in (".pcap", ".pcapng"))

pytestmark = pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")

Key = tuple[str, int, str, int]

#: Ethernet over an MPLS pseudowire with a control word (encap_ethernet.pcap, label 18):
#: tcplens finds it by Zeek-like heuristics, tshark only when told
DECODE_AS = ["-d", "mpls.label==18,pwethcw"]


def tshark_view(
    path: Path,
) -> tuple[dict[Key, Counter[str]], dict[frozenset[tuple[str, int]], int]]:
    fields = ["ip.src", "ipv6.src", "tcp.srcport", "ip.dst", "ipv6.dst", "tcp.dstport"]
    fields += ["frame.len", "tcp.flags", "tcp.completeness", "tcp.analysis.retransmission"]
    fields += ["frame.protocols"]
    # the last occurrence of each field is the innermost header (tunnels, issue 15)
    cmd = ["tshark", "-2", "-r", str(path), "-Y", "tcp", "-T", "fields", "-E", "occurrence=l"]
    cmd += DECODE_AS
    for f in fields:
        cmd += ["-e", f]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    per_dir: dict[Key, Counter[str]] = {}
    completeness: dict[frozenset[tuple[str, int]], int] = {}
    for line in out.splitlines():
        s4, s6, sp, d4, d6, dp, flen, flags, comp, rexmit, protocols = line.split("\t")
        # 6in4 has both: the innermost IP is the last one named in the protocol stack
        inner_v6 = [p for p in protocols.split(":") if p in ("ip", "ipv6")][-1] == "ipv6"
        key = (s6 if inner_v6 else s4, int(sp), d6 if inner_v6 else d4, int(dp))
        c = per_dir.setdefault(key, Counter())
        bits = int(flags, 16)
        c["packets"] += 1
        c["bytes"] += int(flen)
        for name, bit in (("syn", SYN), ("fin", FIN), ("rst", RST), ("ack", ACK), ("psh", PSH)):
            c[name] += bool(bits & bit)
        c["rexmit"] += bool(rexmit)
        completeness[frozenset({key[:2], key[2:]})] = int(comp)
    return per_dir, completeness


def ours(
    conns: list[Connection],
) -> tuple[dict[Key, Counter[str]], dict[frozenset[tuple[str, int]], int]]:
    per_dir: dict[Key, Counter[str]] = {}
    completeness = {}
    for conn in conns:
        o, r = conn.orig, conn.resp
        assert o.port is not None and r.port is not None
        for key, st in (
            ((o.ip, o.port, r.ip, r.port), conn.orig_stats),
            ((r.ip, r.port, o.ip, o.port), conn.resp_stats),
        ):
            if not st.packets:
                continue
            per_dir[key] = Counter(
                packets=st.packets,
                bytes=st.frame_bytes,
                syn=st.syn,
                fin=st.fin,
                rst=st.rst,
                ack=st.ack,
                psh=st.psh,
                rexmit=st.retransmissions,
            )
            per_dir[key] = +per_dir[key]  # drop zero counts, as tshark's Counter has none
        completeness[frozenset({(o.ip, o.port), (r.ip, r.port)})] = conn.completeness
    return per_dir, completeness


def synthetic(tmp: Path) -> Path:
    """A capture with the shapes the fixtures lack: RST closes, half-open, zero windows."""
    c, s = ("10.1.0.1", 5000), ("10.1.0.2", 80)

    def p(
        t: float, frm: tuple[str, int], flags: int, seq: int, ack: int = 0, n: int = 0
    ) -> tuple[int, bytes]:
        to = s if frm == c else c
        seg = build.tcp(
            frm[1], to[1], seq, ack, flags, payload=b"y" * n, window=0 if n == 3 else 512
        )
        return int(t * 1e9), build.ether(build.ipv4(frm[0], to[0], seg))

    packets = [
        p(0.0, c, SYN, 1),
        p(0.1, s, SYN | ACK, 9, 2),
        p(0.2, c, ACK, 2, 10),
        p(0.3, c, PSH | ACK, 2, 10, 100),
        p(0.4, s, ACK, 10, 102, 3),
        p(0.5, c, RST | ACK, 102, 10),
    ]
    c = ("10.1.0.3", 5001)
    packets += [p(1.0, c, SYN, 50), p(2.0, c, SYN, 50), p(4.0, c, SYN, 50)]
    out = tmp / "synthetic.pcap"
    out.write_bytes(build.pcap(packets, nanos=True))
    return out


@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: p.name)
def test_counts_bytes_flags_and_completeness_agree_with_tshark(path: Path) -> None:
    with path.open("rb") as fh:
        conns = reconstruct_file(fh, str(path))
    assert ours(conns) == tshark_view(path)


def test_synthetic_capture_agrees_with_tshark(tmp_path: Path) -> None:
    path = synthetic(tmp_path)
    with path.open("rb") as fh:
        conns = reconstruct_file(fh, str(path))
    assert len(conns) == 2
    assert ours(conns) == tshark_view(path)
    assert [c.conn_state for c in conns] == ["RSTO", "S0"]


def test_connection_count_matches_tshark_conversations() -> None:
    for path in CAPTURES:
        out = subprocess.run(
            ["tshark", "-r", str(path), "-q", "-z", "conv,tcp", *DECODE_AS],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        rows = [line for line in out.splitlines() if "<->" in line]
        with path.open("rb") as fh:
            assert len(reconstruct_file(fh, str(path))) == len(rows), path.name
