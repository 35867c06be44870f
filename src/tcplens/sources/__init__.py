"""Sources read sockets and normalise them into :class:`Snapshot` records; they never print.

One exception to "one record per socket", made deliberately for scale:
:mod:`tcplens.sources.columns` gives the netlink dump as columns of the
``inet_diag_msg`` fields, for counting and listing 100k sockets faster than
records can be built.  :func:`tcplens.sources.select.open_listing` is the one
route to it (with the rule for when records come instead); tests hold its
summary and its listings equal to the records'.
"""

from tcplens.sources.records import Addr, ParseWarning, Snapshot, Socket, TcpInfo, Timer
from tcplens.sources.select import take_snapshot

__all__ = ["Addr", "ParseWarning", "Snapshot", "Socket", "TcpInfo", "Timer", "take_snapshot"]
