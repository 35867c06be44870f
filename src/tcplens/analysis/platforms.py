"""Which operating system a snapshot comes from, and the TCP facts the doctor may quote for it.

Most of the doctor's figures are Linux's (``tcp_fin_timeout``, a 60 s
TIME_WAIT, ``ss -K``), which is right for a live Linux machine and for a
Linux dump, and wrong for a pasted Windows, macOS, FreeBSD or Solaris one.
The source a saved dump was parsed with says which system printed it; for
those the doctor uses the texts of :data:`~tcplens.analysis.doctor_texts.OS_TEXTS`
and the defaults below, and marks every remaining Linux figure as Linux's.

The figures, and where they were checked:

* Windows: dynamic (ephemeral) ports 49152-65535 since Vista / Server 2008
  (1025-5000 before), ``netsh int ipv4 show dynamicport tcp`` (Microsoft KB
  929851); TIME_WAIT is ``TcpTimedWaitDelay``, 120 s by default on Server
  2003 and later, 240 s on Windows 2000/XP (TechNet cc757512, cc938217);
  connect() gives up after 2 SYN retransmissions with a 3 s initial RTO,
  21 s (KB 2786464, ``MaxSynRetransmissions``, ``netsh int tcp show
  global``).
* macOS: ``net.inet.tcp.msl`` 15000 ms, so TIME_WAIT (2 MSL) is 30 s; ports
  ``net.inet.ip.portrange.first``-``last`` 49152-65535.  FreeBSD:
  ``net.inet.tcp.msl`` 30000 ms (60 s TIME_WAIT), orphaned FIN_WAIT_2 dropped
  after ``net.inet.tcp.finwait2_timeout`` 60000 ms, connect() gives up after
  ``net.inet.tcp.keepinit`` 75000 ms.  One ``netstat`` format covers both, so
  the texts name both.
* Solaris / illumos: ``tcp_time_wait_interval`` 60000 ms (4 minutes on
  Solaris 8), anonymous ports ``tcp_smallest_anon_port``-``tcp_largest_anon_port``
  32768-65535 (``ndd -get /dev/tcp ...``).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

__all__ = ["LINUX_ONLY_KINDS", "PLATFORMS", "Platform", "platform_of"]


@dataclass(frozen=True, slots=True)
class Platform:
    """An operating system as far as the doctor's texts and defaults are concerned."""

    key: str
    name: str
    #: the default range ``connect()`` picks local ports from
    ephemeral: tuple[int, int]


PLATFORMS: Final = MappingProxyType(
    {
        "linux": Platform("linux", "Linux", (32768, 60999)),
        "windows": Platform("windows", "Windows", (49152, 65535)),
        "bsd": Platform("bsd", "macOS/FreeBSD", (49152, 65535)),
        "solaris": Platform("solaris", "Solaris", (32768, 65535)),
    }
)

#: saved-dump formats (``text:FORMAT`` sources) printed by another system than Linux
_BY_FORMAT: Final = MappingProxyType(
    {
        "windows-netstat": "windows",
        "powershell": "windows",
        "bsd-netstat": "bsd",
        "solaris-netstat": "solaris",
    }
)

#: finding kinds about Linux-only limits (tcp_max_tw_buckets, tcp_max_orphans,
#: TcpExt counters): not made for another system's dump
LINUX_ONLY_KINDS: Final = frozenset({"time-wait-buckets", "orphans", "listen-overflows"})


def platform_of(source: str) -> Platform:
    """The system a snapshot's ``source`` (``netlink``, ``text:windows-netstat``) describes.

    Live sources read this machine, which tcplens reads through Linux
    interfaces (netlink, /proc) or psutil; a saved dump says by its format.
    """
    if source.startswith("text:"):
        return PLATFORMS[_BY_FORMAT.get(source.removeprefix("text:"), "linux")]
    if source == "psutil":  # the portable source reads the machine it runs on
        if sys.platform == "win32":
            return PLATFORMS["windows"]
        if sys.platform == "darwin" or "bsd" in sys.platform:
            return PLATFORMS["bsd"]
        if sys.platform.startswith("sunos"):
            return PLATFORMS["solaris"]
    return PLATFORMS["linux"]
