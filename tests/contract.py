"""The one contract every source's output must satisfy (run by each source's tests)."""

from __future__ import annotations

import ipaddress

from tcplens.model import State
from tcplens.sources.records import Addr, ParseWarning, Snapshot, Socket


def check_addr(addr: Addr, family: int, *, text_source: bool = False) -> None:
    assert isinstance(addr, Addr), addr
    assert isinstance(addr.ip, str) and addr.ip, addr
    if addr.ip != "*":
        try:
            parsed = ipaddress.ip_address(addr.ip.split("%")[0])
        except ValueError:
            assert text_source, f"not an IP address: {addr.ip!r}"
        else:
            text = addr.ip.split("%")[0]
            mapped = getattr(parsed, "ipv4_mapped", None)
            # inet_ntop, ss and netstat print IPv4-mapped addresses dotted
            # (::ffff:127.0.0.1); Python < 3.13 prints them as ::ffff:7f00:1.
            dotted = mapped is not None and text == f"::ffff:{mapped}"
            assert dotted or str(parsed) == text, f"not compressed: {addr.ip!r}"
            if family == 4:
                assert parsed.version == 4, addr
    assert addr.port is None or (isinstance(addr.port, int) and 0 <= addr.port <= 65535), addr


def check_socket(sock: Socket, *, text_source: bool = False) -> None:
    assert sock.proto in ("tcp", "udp"), sock
    assert sock.family in (4, 6), sock
    assert isinstance(sock.state, State), sock
    check_addr(sock.local, sock.family, text_source=text_source)
    check_addr(sock.remote, sock.family, text_source=text_source)
    for name in ("recv_q", "send_q", "uid", "inode", "pid", "fd"):
        value = getattr(sock, name)
        assert value is None or (isinstance(value, int) and value >= 0), (name, sock)
    if sock.proto == "tcp" and sock.state is State.LISTEN:
        assert sock.remote.port in (None, 0), sock
    if sock.timer is not None:
        assert sock.timer.kind in {
            "on",
            "keepalive",
            "timewait",
            "persist",
            "probe",
            "other",
            "off",
        }
        assert sock.timer.remaining >= 0
    if sock.process is not None:
        assert isinstance(sock.process, str)
    if sock.holders:
        # only sockets held by several processes list them; the first is pid/fd/process
        assert len(sock.holders) > 1, sock
        assert sock.holders[0] == (sock.pid, sock.fd, sock.process), sock
        pids = [h.pid for h in sock.holders]
        assert pids == sorted(pids), sock


def check_snapshot(snap: Snapshot, *, text_source: bool = False) -> None:
    assert isinstance(snap, Snapshot)
    assert snap.source
    assert snap.taken_at > 0
    assert all(isinstance(m, str) and m for m in snap.missing)
    # saved text: every line not understood is a numbered warning, skipped rows are counted
    for warning in snap.warnings:
        assert isinstance(warning, ParseWarning) and warning.line >= 1 and warning.message
    assert all(isinstance(k, str) and k and v > 0 for k, v in snap.skipped.items())
    for sock in snap.sockets:
        check_socket(sock, text_source=text_source)
