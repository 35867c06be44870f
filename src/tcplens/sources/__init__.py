"""Sources read sockets and normalise them into :class:`Snapshot` records; they never print."""

from tcplens.sources.records import Addr, ParseWarning, Snapshot, Socket, TcpInfo, Timer
from tcplens.sources.select import take_snapshot

__all__ = ["Addr", "ParseWarning", "Snapshot", "Socket", "TcpInfo", "Timer", "take_snapshot"]
