"""Sources read sockets and normalise them into :class:`Snapshot` records; they never print.

One exception to "one record per socket", made deliberately for scale:
:mod:`tcplens.sources.columns` gives the netlink dump as columns of kernel
codes (state, timer, port, expiry, inode) for counting 100k sockets faster
than records can be built; only summaries use it, and tests hold its
summary equal to the records'.
"""

from tcplens.sources.records import Addr, ParseWarning, Snapshot, Socket, TcpInfo, Timer
from tcplens.sources.select import take_snapshot

__all__ = ["Addr", "ParseWarning", "Snapshot", "Socket", "TcpInfo", "Timer", "take_snapshot"]
