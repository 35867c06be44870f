"""Packets: capture readers, decoders and the per-connection state tracker.

What users import, in one place (live capture in ``capture`` is imported on
demand: AF_PACKET sockets are not needed to read a capture).  The per-packet
work runs in the compiled engine (``tcplens._engine``, from ``rust/``) when it
is built; :func:`tcplens.packets.engine.reconstruct_capture` chooses, and the
Python reader, decoder and tracker below are the reference it is held equal to::

    from tcplens.packets import read_frames, Tracker, reconstruct

    with open("capture.pcapng", "rb") as fh:
        for conn in reconstruct(read_frames(fh, "capture.pcapng")):
            print(conn.orig, conn.resp, conn.orig_state, conn.resp_state, conn.conn_state)
"""

from tcplens.packets.decode import DecodeStats, Segment4, decode
from tcplens.packets.pcap import Frame, PcapWriter, read_frames
from tcplens.packets.tracker import (
    CaptureSummary,
    Connection,
    DirectionStats,
    Timeouts,
    Tracker,
    reconstruct,
)
from tcplens.packets.zeek import ZeekRow, write_conn_log

__all__ = [
    "CaptureSummary",
    "Connection",
    "DecodeStats",
    "DirectionStats",
    "Frame",
    "PcapWriter",
    "Segment4",
    "Timeouts",
    "Tracker",
    "ZeekRow",
    "decode",
    "read_frames",
    "reconstruct",
    "write_conn_log",
]
