"""Kernel settings and counters: recorded proc roots, the live machine, bad input."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tcplens.errors import InputError
from tcplens.sources.kernel import KernelSettings, parse_netstat, parse_sockstat, read_kernel

NETSTAT = (
    "TcpExt: SyncookiesSent SyncookiesRecv TW ListenOverflows ListenDrops TCPAbortOnMemory\n"
    "TcpExt: 7 1 120 3 5 2\n"
    "IpExt: InNoRoutes InOctets\n"
    "IpExt: 0 123456\n"
)
SOCKSTAT = "sockets: used 290\nTCP: inuse 12 orphan 4 tw 33 alloc 15 mem 3\nUDP: inuse 2 mem 1\n"


def _record(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_recorded_proc_root_is_read_field_by_field(tmp_path: Path) -> None:
    root = _record(
        tmp_path,
        {
            "sys/net/ipv4/ip_local_port_range": "1024\t65000\n",
            "sys/net/ipv4/tcp_tw_reuse": "1\n",
            "sys/net/ipv4/tcp_max_tw_buckets": "5000\n",
            "sys/net/ipv4/tcp_max_syn_backlog": "256\n",
            "sys/net/ipv4/tcp_syncookies": "0\n",
            "sys/net/ipv4/tcp_fin_timeout": "15\n",
            "sys/net/ipv4/tcp_max_orphans": "999\n",
            "sys/net/ipv4/tcp_synack_retries": "2\n",
            "sys/net/ipv4/tcp_syn_retries": "3\n",
            "sys/net/core/somaxconn": "128\n",
            "net/netstat": NETSTAT,
            "net/sockstat": SOCKSTAT,
        },
    )
    got = read_kernel(root)
    assert got == KernelSettings(
        ip_local_port_range=(1024, 65000),
        tcp_tw_reuse=1,
        tcp_max_tw_buckets=5000,
        tcp_max_syn_backlog=256,
        tcp_syncookies=0,
        tcp_fin_timeout=15,
        tcp_max_orphans=999,
        tcp_synack_retries=2,
        tcp_syn_retries=3,
        tcp_syn_linear_timeouts=None,  # no such file: a kernel before 6.5
        somaxconn=128,
        counters=got.counters,
        sockstat=got.sockstat,
        assumed=False,
        defaulted=(),
        origin=str(root),
    )
    assert dict(got.counters) == {
        "SyncookiesSent": 7,
        "SyncookiesRecv": 1,
        "TW": 120,
        "ListenOverflows": 3,
        "ListenDrops": 5,
        "TCPAbortOnMemory": 2,
    }
    assert got.orphans == 4
    assert got.ephemeral_ports == 65000 - 1024 + 1
    assert got.in_ephemeral_range(1024) and not got.in_ephemeral_range(65001)
    assert not got.is_assumed("tcp_fin_timeout")


def test_unreadable_settings_keep_defaults_and_say_so(tmp_path: Path) -> None:
    root = _record(
        tmp_path,
        {"sys/net/ipv4/tcp_fin_timeout": "30\n", "sys/net/core/somaxconn": "not a number\n"},
    )
    got = read_kernel(root)
    defaults = KernelSettings()
    assert got.tcp_fin_timeout == 30
    assert got.somaxconn == defaults.somaxconn
    assert "somaxconn" in got.defaulted and "tcp_max_orphans" in got.defaulted
    assert "tcp_fin_timeout" not in got.defaulted
    assert got.is_assumed("somaxconn") and not got.assumed
    assert dict(got.counters) == {} and got.orphans is None


def test_defaults_are_marked_assumed() -> None:
    got = KernelSettings.defaults()
    assert got.assumed and got.is_assumed("tcp_fin_timeout")
    assert got.ip_local_port_range == (32768, 60999)
    assert got.tcp_fin_timeout == 60 and got.somaxconn == 4096


def test_live_machine_matches_sysctl() -> None:
    got = read_kernel("/proc")
    for name in ("tcp_fin_timeout", "tcp_syncookies", "tcp_tw_reuse", "tcp_max_syn_backlog"):
        text = Path(f"/proc/sys/net/ipv4/{name}").read_text().split()
        assert getattr(got, name) == int(text[0])
    low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
    assert got.ip_local_port_range == (int(low), int(high))
    assert "ListenOverflows" in got.counters
    assert "orphan" in got.sockstat


@pytest.mark.root
def test_namespace_has_its_own_settings_and_no_orphan_limit() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root for network namespaces")
    ns = f"tlk{os.getpid()}"
    host_fin_timeout = read_kernel().tcp_fin_timeout
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        code = (
            "open('/proc/sys/net/ipv4/tcp_fin_timeout','w').write('7');"
            "from tcplens.sources.kernel import read_kernel;k=read_kernel();"
            "print(k.tcp_fin_timeout, ','.join(k.defaulted), k.counters['ListenOverflows'])"
        )
        out = subprocess.run(
            ["ip", "netns", "exec", ns, sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)
    # per-namespace sysctl; tcp_max_orphans is machine-wide and absent in a namespace
    assert out == ["7", "tcp_max_orphans", "0"]
    assert read_kernel().tcp_fin_timeout == host_fin_timeout  # the host was not touched


def test_parse_netstat_pairs_headers_with_values() -> None:
    parsed = parse_netstat(NETSTAT)
    assert parsed["IpExt"] == {"InNoRoutes": 0, "InOctets": 123456}
    assert parsed["TcpExt"]["ListenDrops"] == 5


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("TcpExt: A B\nTcpExt: 1\n", 2, "2 names but 1 values"),
        ("TcpExt: A B\nIpExt: 1 2\n", 2, "expected a TcpExt: value line"),
        ("TcpExt: A\nTcpExt: x\n", 2, "not a number"),
        ("TcpExt: A\n", 1, "header line without a value line"),
    ],
)
def test_malformed_netstat_names_the_line(text: str, line: int, message: str) -> None:
    with pytest.raises(InputError) as info:
        parse_netstat(text, path="netstat")
    assert info.value.line == line
    assert message in str(info.value) and str(info.value).startswith("netstat line")


def test_parse_sockstat_reads_the_tcp_line_only() -> None:
    assert parse_sockstat(SOCKSTAT) == {"inuse": 12, "orphan": 4, "tw": 33, "alloc": 15, "mem": 3}
    assert parse_sockstat("UDP: inuse 1\n") == {}
    with pytest.raises(InputError, match="line 1"):
        parse_sockstat("TCP: inuse x\n")


def test_syn_linear_timeouts_is_read_where_the_kernel_has_it(tmp_path: Path) -> None:
    root = _record(tmp_path, {"sys/net/ipv4/tcp_syn_linear_timeouts": "2\n"})
    got = read_kernel(root)
    assert got.tcp_syn_linear_timeouts == 2
    assert "tcp_syn_linear_timeouts" not in got.defaulted
    live = read_kernel("/proc")
    path = Path("/proc/sys/net/ipv4/tcp_syn_linear_timeouts")
    if path.exists():
        assert live.tcp_syn_linear_timeouts == int(path.read_text())
    else:
        assert live.tcp_syn_linear_timeouts is None
