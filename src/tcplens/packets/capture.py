"""Live capture through an AF_PACKET socket (Linux, root or CAP_NET_RAW).

Frames come out as the same :class:`~tcplens.packets.pcap.Frame` records the
file readers produce, so the tracker cannot tell a live interface from a
capture file.  The socket is ``SOCK_DGRAM``: the kernel strips whatever link
header the interface has and hands over the network-layer packet with its
protocol number, so every interface (Ethernet, loopback, tun, wireguard...)
yields raw IP frames (link type 101), which is also what ``-w`` writes.

``any`` (as in ``tcpdump -i any``) leaves the socket unbound, so it sees
every interface; its frames carry a Linux cooked v2 header (SLL2, link type
276) naming the interface each packet crossed, and ``-w`` writes SLL2 too.

On loopback each packet passes the tap twice (once outgoing, once incoming);
like libpcap, the outgoing copy is skipped there (per packet with ``any``).
Timestamps are taken when ``recvfrom`` returns (``time.time_ns``), which is
later than the kernel's own receive time by the scheduling delay: good for
state timelines, not for microsecond latency work.
"""

from __future__ import annotations

import os
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tcplens.errors import SourceError
from tcplens.packets.pcap import Frame

__all__ = ["ANY", "LINKTYPE_RAW", "LINKTYPE_SLL2", "link_type", "live_frames", "open_interface"]

LINKTYPE_RAW = 101
LINKTYPE_SLL2 = 276
#: the pseudo-interface that captures on every interface
ANY = "any"
ARPHRD_LOOPBACK = 772
#: protocol, reserved, ifindex, hatype, pkttype, halen, address (LINKTYPE_LINUX_SLL2.html)
_SLL2 = struct.Struct("!HHIHBB8s")
ETH_P_ALL = 0x0003
ETH_P_IP = 0x0800
ETH_P_IPV6 = 0x86DD
PACKET_OUTGOING = 4
_SNAPLEN = 262_144


def open_interface(interface: str) -> socket.socket:
    """An AF_PACKET socket bound to ``interface``, with a clear error when it cannot be."""
    if not hasattr(socket, "AF_PACKET"):
        raise SourceError("live capture needs Linux AF_PACKET sockets")
    if interface != ANY and not Path("/sys/class/net", interface).exists():
        names = sorted(p.name for p in Path("/sys/class/net").iterdir())
        raise SourceError(f"no interface {interface!r}; interfaces: {', '.join(names)}")
    try:
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_ALL))
    except PermissionError:
        raise SourceError(
            "live capture needs root or CAP_NET_RAW (try: sudo tcplens capture ...)"
        ) from None
    try:
        if interface != ANY:  # unbound, an AF_PACKET socket hears every interface
            sock.bind((interface, ETH_P_ALL))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    except OSError as exc:
        sock.close()
        raise SourceError(f"cannot capture on {interface}: {exc.strerror}") from None
    return sock


def link_type(interface: str) -> int:
    """The link type of the frames :func:`live_frames` yields for ``interface``."""
    return LINKTYPE_SLL2 if interface == ANY else LINKTYPE_RAW


def _sll2(data: bytes, addr: tuple[Any, ...], indexes: dict[str, int]) -> bytes:
    """``data`` behind the SLL2 header ``tcpdump -i any`` writes for it."""
    name, proto, pkttype, hatype, hwaddr = addr[:5]
    index = indexes.get(name)
    if index is None:
        try:
            index = indexes[name] = socket.if_nametoindex(name)
        except OSError:  # the interface went away meanwhile
            index = 0
    head = _SLL2.pack(proto, 0, index, hatype, pkttype, len(hwaddr[:8]), hwaddr[:8])
    return head + data


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
    every = interface == ANY
    skip_outgoing = not every and _is_loopback(interface)
    indexes: dict[str, int] = {}
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
            if pkttype == PACKET_OUTGOING and (
                skip_outgoing or (every and addr[3] == ARPHRD_LOOPBACK)
            ):
                continue
            seen += 1
            if every:
                framed = _sll2(data, addr, indexes)
                yield Frame(time.time_ns(), LINKTYPE_SLL2, framed, len(framed), seen, 0)
            else:
                yield Frame(time.time_ns(), LINKTYPE_RAW, data, len(data), seen, 0)
    except KeyboardInterrupt:
        return
    finally:
        if own:
            s.close()


def can_capture() -> bool:
    """Whether this process may open AF_PACKET sockets (for tests and help text)."""
    return hasattr(socket, "AF_PACKET") and os.geteuid() == 0
