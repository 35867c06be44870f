"""Linux TCP timer facts the texts quote, with the kernel version each one changed in.

The explanation and doctor texts state numbers (127 s, 60 s, 4096); they are
only true for some kernels and some settings, so the numbers live here once,
next to the version that introduced them, and the texts are filled from
here.  A test reads the running kernel's ``/proc/sys`` and holds every
default below equal to it.

Theory of operation: the SYN retransmission schedule
----------------------------------------------------
``connect()`` sends a SYN and arms the retransmission timer with the initial
RTO (1 s since Linux 3.1, RFC 6298; 3 s before).  Each time the timer fires
``tcp_write_timeout()`` first decides whether to give up, then
``tcp_retransmit_timer()`` retransmits the SYN and either keeps the RTO (the
first ``tcp_syn_linear_timeouts`` firings, Linux 6.5+, commit ccce324dabfe
"tcp: make the first N SYN RTO backoffs linear", default 4, the schedule
macOS and iOS use) or doubles it, capped at ``TCP_RTO_MAX`` (120 s;
``tcp_rto_max_ms`` since 6.15).  It gives up when either of two bounds is
reached: ``tcp_syn_retries + tcp_syn_linear_timeouts`` retransmissions (the
count; ``tcp_syn_retries`` alone before 6.5), or the time ``tcp_syn_retries``
doubling retransmissions would take, ``tcp_model_timeout()`` = (2^(n+1) - 1)
initial RTOs (127 s for 6), measured from the first SYN.  So with the
defaults:

* before 6.5 (or ``tcp_syn_linear_timeouts = 0``): SYN at 0, retransmissions
  at 1, 3, 7, 15, 31, 63 s, ETIMEDOUT at 127 s (6 retransmissions);
* 6.5+: retransmissions at 1, 2, 3, 4, 5, 7, 11, 19, 35, 67 s, ETIMEDOUT at
  131 s (10 retransmissions: the count bound, at the first firing after the
  127 s time bound).

With few retries the time bound wins and the linear retransmissions do not
all happen: ``tcp_syn_retries = 1`` with the default 4 gives retransmissions
at 1 and 2 s and ETIMEDOUT at 3 s, not 5 retransmissions.

Measured on 6.18 (a SYN to an address that never answers, in a private
network namespace, SYNs captured with tcpdump): retransmissions at 1.02,
2.04, 3.07, 4.09, 5.12, 7.13, 11.20, 19.39, 35.52, 69.56 s; with
``tcp_syn_linear_timeouts = 0``: 1.00, 3.02, 7.08, 15.27, 31.40, 65.45 s;
ETIMEDOUT after 135.1 s and 131.0 s.  Long timers fire late by up to about
1/8 of their length (the timer wheel's granularity), so real give-up times
are a few seconds later than computed.  Short settings measured the same day
(retries, linear -> retransmissions; give-up): (1, 2) -> 1.02, 2.05; 3.07 s;
(1, 4) -> 1.00, 2.03; 3.05 s; (2, 4) -> 1.01 … 5.11; 7.12 s; (2, 2) -> 1.01,
2.04, 3.06, 5.08; 9.11 s; (3, 1) -> 1.01, 2.04, 4.05, 8.09; 16.28 s.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

__all__ = [
    "SYSCTLS",
    "TIME_WAIT_SECONDS",
    "SynSchedule",
    "Sysctl",
    "syn_schedule",
]

#: TIME_WAIT lasts TCP_TIMEWAIT_LEN (include/net/tcp.h), fixed; no sysctl changes it
TIME_WAIT_SECONDS: Final = 60
#: initial retransmission timeout of a SYN (TCP_TIMEOUT_INIT), 1 s since Linux 3.1
INITIAL_RTO_SECONDS: Final = 1.0
#: TCP_RTO_MAX; the sysctl tcp_rto_max_ms (Linux 6.15+) can lower it
RTO_MAX_SECONDS: Final = 120.0


@dataclass(frozen=True, slots=True)
class Sysctl:
    """A ``net.*`` setting a text quotes: its stock default and since when it holds."""

    name: str
    default: int | tuple[int, int]
    #: the kernel version this default (or the setting itself) dates from, and what was before
    history: str


def _s(name: str, default: int | tuple[int, int], history: str) -> tuple[str, Sysctl]:
    return name, Sysctl(name, default, history)


#: sysctl name (``/proc/sys/net/...`` relative path with dots) -> fact
SYSCTLS: Final = MappingProxyType(
    dict(
        [
            _s("ipv4.tcp_syn_retries", 6, "6 since Linux 3.7 (5 before, with a 3 s initial RTO)"),
            _s(
                "ipv4.tcp_syn_linear_timeouts",
                4,
                "new in Linux 6.5: the first 4 SYN retransmissions are 1 s apart",
            ),
            _s("ipv4.tcp_synack_retries", 5, "5: about 63 s with a 1 s initial RTO"),
            _s("ipv4.tcp_fin_timeout", 60, "60 s (FIN_WAIT2 of orphans only)"),
            _s("ipv4.tcp_retries2", 15, "15: about 924.6 s with a 200 ms minimum RTO"),
            _s("ipv4.tcp_orphan_retries", 0, "0 means 8 (tcp_orphan_retries() in tcp_timer.c)"),
            _s("ipv4.tcp_keepalive_time", 7200, "7200 s (RFC 1122's two hours)"),
            _s("ipv4.tcp_keepalive_intvl", 75, "75 s"),
            _s("ipv4.tcp_keepalive_probes", 9, "9"),
            _s("ipv4.tcp_syncookies", 1, "1: cookies only when the SYN queue overflows"),
            _s("ipv4.tcp_tw_reuse", 2, "2 (loopback only) since the value was added in 2018"),
            _s("ipv4.ip_local_port_range", (32768, 60999), "28232 ephemeral ports"),
            _s("core.somaxconn", 4096, "4096 since Linux 5.4 (128 before)"),
        ]
    )
)


@dataclass(frozen=True, slots=True)
class SynSchedule:
    """When an unanswered SYN is retransmitted and when connect() gives up."""

    #: seconds after the first SYN at which each retransmission leaves
    retransmissions: tuple[float, ...]
    #: seconds after the first SYN at which connect() fails with ETIMEDOUT
    give_up: float

    @property
    def count(self) -> int:
        return len(self.retransmissions)

    def spelled(self, limit: int = 12) -> str:
        """``1, 2, 3, 4, 5, 7, 11, 19, 35, 67`` (whole seconds where exact)."""
        times = [f"{t:g}" for t in self.retransmissions[:limit]]
        if len(self.retransmissions) > limit:
            times.append("…")
        return ", ".join(times)


def _model_timeout(boundary: int, rto_base: float, rto_max: float) -> float:
    """``tcp_model_timeout()``: how long ``boundary`` doubling retransmissions take."""
    thresh = max(int(rto_max / rto_base).bit_length() - 1, 0)  # ilog2(TCP_RTO_MAX / base)
    if boundary <= thresh:
        return ((2 << boundary) - 1) * rto_base
    return ((2 << thresh) - 1) * rto_base + (boundary - thresh) * rto_max


def syn_schedule(
    syn_retries: int,
    linear_timeouts: int | None,
    *,
    initial_rto: float = INITIAL_RTO_SECONDS,
    rto_max: float = RTO_MAX_SECONDS,
) -> SynSchedule:
    """The SYN schedule of a kernel with these settings (see the module docstring).

    ``linear_timeouts`` is None for a kernel without the sysctl (before 6.5),
    which behaves as 0.
    """
    linear = max(linear_timeouts or 0, 0)
    retries = max(syn_retries, 0)
    allowed = retries + linear
    deadline = _model_timeout(retries, initial_rto, rto_max)
    now, rto = 0.0, initial_rto
    sent: list[float] = []
    while True:
        now += rto  # the retransmission timer fires
        if len(sent) >= allowed or now >= deadline:
            return SynSchedule(tuple(sent), now)
        sent.append(now)
        rto = initial_rto if len(sent) <= linear else min(rto * 2, rto_max)
