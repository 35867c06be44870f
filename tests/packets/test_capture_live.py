"""Live AF_PACKET capture in a network namespace this test creates, checked against the kernel.

The capture runs inside the namespace (so foreign traffic cannot appear), a
client and server exchange data and the client closes first; the capture's
reconstruction must agree with ``ss`` in the same namespace (client socket in
TIME-WAIT) and the ``-w`` file must read back identically through tshark.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.root

NS = f"tcplens-cap-{os.getpid()}"

TRAFFIC = """
import socket, sys
srv = socket.socket(); srv.bind(("127.0.0.1", 5599)); srv.listen()
c = socket.create_connection(("127.0.0.1", 5599)); a, _ = srv.accept()
c.sendall(b"hello"); a.recv(10); a.sendall(b"world!"); c.recv(10)
print(c.getsockname()[1]); sys.stdout.flush()
c.close(); a.recv(10); a.close()
refused = socket.socket()
try:
    refused.connect(("127.0.0.1", 5600))
except ConnectionRefusedError:
    pass
srv.close()
"""


@pytest.fixture
def netns() -> Iterator[str]:
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces, AF_PACKET)")
    subprocess.run(["ip", "netns", "add", NS], check=True)
    try:
        subprocess.run(["ip", "netns", "exec", NS, "ip", "link", "set", "lo", "up"], check=True)
        yield NS
    finally:
        subprocess.run(["ip", "netns", "del", NS], check=False)


def in_ns(ns: str, *cmd: str) -> list[str]:
    return ["ip", "netns", "exec", ns, *cmd]


def test_live_capture_agrees_with_the_kernel_and_writes_a_readable_pcap(
    netns: str, tmp_path: Path
) -> None:
    out = tmp_path / "live.pcap"
    cap = subprocess.Popen(
        in_ns(
            netns,
            sys.executable,
            "-m",
            "tcplens",
            "capture",
            "-i",
            "lo",
            "--duration",
            "4",
            "--close-timeout",
            "60",
            "-w",
            str(out),
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(1.5)  # let the capture socket open before the traffic starts
        traffic = subprocess.run(
            in_ns(netns, sys.executable, "-c", TRAFFIC),
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        )
        port = int(traffic.stdout.split()[0])
        kernel = subprocess.run(
            in_ns(netns, "ss", "-tanH", "state", "time-wait"),
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        stdout, stderr = cap.communicate(timeout=30)
    finally:
        if cap.poll() is None:
            cap.kill()
    assert cap.returncode == 0, stderr
    # The kernel holds the client side in TIME-WAIT: the capture must say so too.
    assert f"127.0.0.1:{port}" in kernel
    row = next(
        line for line in stdout.splitlines() if f"127.0.0.1:{port} " in line and "SF" in line
    )
    assert "TIME_WAIT" in row and "CLOSED" in row
    assert "REJ" in stdout  # the refused connection to port 5600
    # State changes were reported as they happened, before the summary.
    changes = [line for line in stdout.splitlines() if f"127.0.0.1:{port} -> " in line]
    assert any("orig SYN_SENT" in line for line in changes)
    assert any("resp CLOSE_WAIT" in line for line in changes)
    # The written file reads back through tcplens and agrees with tshark's view.
    res = subprocess.run(
        [sys.executable, "-m", "tcplens", "pcap", "--json", str(out)],
        capture_output=True,
        text=True,
        check=True,
    )
    doc = json.loads(res.stdout)
    conns = {c["orig"]["port"]: c for c in doc["connections"]}
    main = conns[port]
    assert main["orig"]["final_state"] == "TIME_WAIT"
    assert main["resp"]["final_state"] == "CLOSED"
    assert (main["orig"]["payload_bytes"], main["resp"]["payload_bytes"]) == (5, 6)
    frames = subprocess.run(
        ["tshark", "-r", str(out), "-T", "fields", "-e", "tcp.srcport"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert len(frames) == doc["summary"]["frames"]


def test_capture_on_any_sees_loopback_once_and_writes_sll2(netns: str, tmp_path: Path) -> None:
    """``-i any`` as tcpdump does it: every interface, cooked v2 frames, loopback not doubled."""
    out = tmp_path / "any.pcap"
    cap = subprocess.Popen(
        in_ns(
            netns,
            sys.executable,
            "-m",
            "tcplens",
            "capture",
            "-i",
            "any",
            "--duration",
            "4",
            "--close-timeout",
            "60",
            "-w",
            str(out),
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(1.5)
        traffic = subprocess.run(
            in_ns(netns, sys.executable, "-c", TRAFFIC),
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        )
        port = int(traffic.stdout.split()[0])
        stdout, stderr = cap.communicate(timeout=30)
    finally:
        if cap.poll() is None:
            cap.kill()
    assert cap.returncode == 0, stderr
    rows = [line for line in stdout.splitlines() if line.startswith("finished ")]
    assert len(rows) == 2, stdout  # the connection and the refused one, each once
    assert f"127.0.0.1:{port} " in rows[0] and "TIME_WAIT/CLOSED  SF" in rows[0], stdout
    header = out.read_bytes()[:24]
    assert int.from_bytes(header[20:24], "little") == 276  # LINKTYPE_LINUX_SLL2
    doc = json.loads(
        subprocess.run(
            [sys.executable, "-m", "tcplens", "pcap", "--json", str(out)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    main = {c["orig"]["port"]: c for c in doc["connections"]}[port]
    assert main["orig"]["final_state"] == "TIME_WAIT"
    # each segment once: a handshake, 2 data segments and their ACKs, FINs: no copies
    assert (main["orig"]["payload_bytes"], main["resp"]["payload_bytes"]) == (5, 6)
    fields = subprocess.run(
        ["tshark", "-r", str(out), "-T", "fields", "-e", "sll.ifindex", "-e", "tcp.srcport"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\n")
    lo_index = subprocess.run(
        in_ns(netns, "cat", "/sys/class/net/lo/ifindex"), capture_output=True, text=True
    ).stdout.strip()
    assert {line.split("\t")[0] for line in fields if line} == {lo_index}
    retransmitted = subprocess.run(
        [
            "tshark",
            "-r",
            str(out),
            "-Y",
            "tcp.analysis.retransmission or tcp.analysis.duplicate_ack",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert retransmitted.strip() == ""  # a doubled loopback packet would look like one
