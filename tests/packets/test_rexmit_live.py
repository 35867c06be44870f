"""Retransmission counts on captures made now, in a network namespace, checked with tshark.

A ``connect()`` to a blackholed address (its SYN repeated by the kernel's
timer) and one to a closed port (answered by RST, nothing repeated) are
recorded with tcpdump by ``record_lab_captures.py`` inside ``unshare -n``;
tcplens's per-direction ``retransmissions`` must equal the number of frames
tshark marks ``tcp.analysis.retransmission``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from tcplens.packets.tracker import reconstruct_file

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for a network namespace"),
    pytest.mark.skipif(
        any(shutil.which(tool) is None for tool in ("unshare", "tcpdump", "tshark", "ip")),
        reason="needs unshare, tcpdump, tshark and iproute2",
    ),
]

RECORDER = Path(__file__).with_name("record_lab_captures.py")


def record(tmp: Path, name: str) -> Path:
    subprocess.run(
        [
            "unshare",
            "-n",
            sys.executable,
            str(RECORDER),
            str(tmp),
            name,
            "--connect-timeout",
            "2.5",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return tmp / f"lab_{name}.pcap"


def tshark_retransmissions(path: Path) -> Counter[tuple[str, int]]:
    out = subprocess.run(
        [
            "tshark",
            "-r",
            str(path),
            "-Y",
            "tcp.analysis.retransmission",
            "-T",
            "fields",
            "-e",
            "ip.src",
            "-e",
            "tcp.srcport",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return Counter((ip, int(port)) for ip, port in (line.split("\t") for line in out.splitlines()))


def ours(path: Path) -> Counter[tuple[str, int]]:
    counts: Counter[tuple[str, int]] = Counter()
    with path.open("rb") as fh:
        for conn in reconstruct_file(fh, str(path)):
            for addr, stats in ((conn.orig, conn.orig_stats), (conn.resp, conn.resp_stats)):
                assert addr.port is not None
                counts[(addr.ip, addr.port)] += stats.retransmissions
    return +counts


def test_syn_to_a_blackholed_address_counts_each_repeated_syn(tmp_path: Path) -> None:
    path = record(tmp_path, "syn_blackhole")
    counted = ours(path)
    assert counted == tshark_retransmissions(path)
    ((client, repeats),) = counted.items()
    assert client[0] == "10.9.0.1"
    # 2.5 s of connect(): the SYN at 0 s and its retransmissions 1 s apart
    # (net.ipv4.tcp_syn_linear_timeouts, Linux >= 6.5), or at 1 s and 3 s before it
    assert repeats >= 1


def test_syn_to_a_closed_port_is_refused_without_retransmissions(tmp_path: Path) -> None:
    path = record(tmp_path, "syn_closed")
    assert ours(path) == tshark_retransmissions(path) == Counter()
    with path.open("rb") as fh:
        (conn,) = reconstruct_file(fh, str(path))
    assert conn.conn_state == "REJ"
