"""Live capture through an AF_PACKET socket (Linux, root or CAP_NET_RAW).

Frames come out as the same :class:`~tcplens.packets.pcap.Frame` records the
file readers produce, so the tracker cannot tell a live interface from a
capture file.  The socket is ``SOCK_DGRAM``: the kernel strips whatever link
header the interface has and hands over the network-layer packet with its
protocol number, so every interface (Ethernet, loopback, tun, wireguard...)
yields raw IP frames (link type 101), which is also what ``-w`` writes.

On loopback each packet passes the tap twice (once outgoing, once incoming);
like libpcap, the outgoing copy is skipped there.  Timestamps are taken when
``recvfrom`` returns (``time.time_ns``), which is later than the kernel's own
receive time by the scheduling delay: good for state timelines, not for
microsecond latency work.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from tcplens.errors import SourceError
from tcplens.packets.pcap import Frame

__all__ = ["LINKTYPE_RAW", "live_frames", "open_interface"]

LINKTYPE_RAW = 101
ETH_P_ALL = 0x0003
ETH_P_IP = 0x0800
ETH_P_IPV6 = 0x86DD
PACKET_OUTGOING = 4
_SNAPLEN = 262_144


def open_interface(interface: str) -> socket.socket:
    """An AF_PACKET socket bound to ``interface``, with a clear error when it cannot be."""
    if not hasattr(socket, "AF_PACKET"):
        raise SourceError("live capture needs Linux AF_PACKET sockets")
    if not Path("/sys/class/net", interface).exists():
        names = sorted(p.name for p in Path("/sys/class/net").iterdir())
        raise SourceError(f"no interface {interface!r}; interfaces: {', '.join(names)}")
    try:
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_ALL))
    except PermissionError:
        raise SourceError(
            "live capture needs root or CAP_NET_RAW (try: sudo tcplens capture ...)"
        ) from None
    try:
        sock.bind((interface, ETH_P_ALL))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    except OSError as exc:
        sock.close()
        raise SourceError(f"cannot capture on {interface}: {exc.strerror}") from None
    return sock


def _is_loopback(interface: str) -> bool:
    try:
        return Path("/sys/class/net", interface, "type").read_text().strip() == "772"
    except OSError:
        return interface == "lo"


def live_frames(
    interface: str,
    *,
    count: int | None = None,
    duration: float | None = None,
    sock: socket.socket | None = None,
) -> Iterator[Frame]:
    """Yield IP frames captured on ``interface`` until ``count`` or ``duration`` is reached.

    Stops cleanly on KeyboardInterrupt, so Ctrl-C still reports what was seen.
    """
    own = sock is None
    s = sock if sock is not None else open_interface(interface)
    skip_outgoing = _is_loopback(interface)
    deadline = None if duration is None else time.monotonic() + duration
    s.settimeout(0.2)
    seen = 0
    try:
        while count is None or seen < count:
            if deadline is not None and time.monotonic() >= deadline:
                return
            try:
                data, addr = s.recvfrom(_SNAPLEN)
            except TimeoutError:
                continue
            except InterruptedError:
                continue
            proto, pkttype = addr[1], addr[2]
            if proto not in (ETH_P_IP, ETH_P_IPV6):
                continue
            if skip_outgoing and pkttype == PACKET_OUTGOING:
                continue
            seen += 1
            yield Frame(time.time_ns(), LINKTYPE_RAW, data, len(data), seen, 0)
    except KeyboardInterrupt:
        return
    finally:
        if own:
            s.close()


def can_capture() -> bool:
    """Whether this process may open AF_PACKET sockets (for tests and help text)."""
    return hasattr(socket, "AF_PACKET") and os.geteuid() == 0
