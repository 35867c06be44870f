"""Capture a lab run on the wire and reconstruct both endpoints' states from it.

The :class:`Recorder` reads every frame on one interface of a lab namespace
with an ``AF_PACKET`` socket (opened inside that namespace), with the
kernel's receive timestamps (``SO_TIMESTAMPNS``), in a background thread.
On the veth end each segment is seen exactly once: outgoing ones after the
sender's nftables output hook, incoming ones before the receiver's input
hook; that is the "capture point" the scenarios' blind spots refer to.

The frames are written as a pcap file with :class:`tcplens.packets.pcap.PcapWriter`
and read back through :func:`tcplens.packets.pcap.read_frames`, so the tracker
sees exactly what a user's ``tcplens pcap`` of the saved file would see, and
the file can be kept as a test fixture.
"""

from __future__ import annotations

import io
import select
import socket
import struct
import threading
from dataclasses import dataclass, field
from typing import Any, Final

from tcplens.errors import ScenarioError
from tcplens.lab.netns import Namespace, inside
from tcplens.model.machine import Flags, format_flags
from tcplens.model.states import State
from tcplens.packets.pcap import PcapWriter, read_frames
from tcplens.packets.tracker import Connection, Tracker, reconstruct

__all__ = ["CaptureResult", "Frame", "Recorder", "state_at", "to_pcap"]

ETH_P_ALL: Final = 0x0003
LINKTYPE_ETHERNET: Final = 1
SO_TIMESTAMPNS: Final = 35
SCM_TIMESTAMPNS: Final = SO_TIMESTAMPNS
_TS: Final = struct.Struct("qq")

Frame = tuple[int, bytes]  # (timestamp in ns since the epoch, frame bytes)


class Recorder:
    """AF_PACKET capture of one interface in one namespace, in a thread."""

    def __init__(self, ns: Namespace | None, interface: str) -> None:
        self.ns = ns
        self.interface = interface
        self.linktype = LINKTYPE_ETHERNET
        self.frames: list[Frame] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None

    def start(self) -> None:
        try:
            with inside(self.ns):
                sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        except PermissionError as exc:
            raise ScenarioError(f"AF_PACKET capture needs root (CAP_NET_RAW): {exc}") from exc
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
            sock.bind((self.interface, ETH_P_ALL))
        except OSError:
            sock.close()
            raise
        self._sock = sock
        self._thread = threading.Thread(target=self._loop, name="tcplens-lab-capture", daemon=True)
        self._thread.start()

    def _read_one(self, sock: socket.socket) -> None:
        data, anc, _flags, _addr = sock.recvmsg(262_144, 64, socket.MSG_DONTWAIT)
        ts = 0
        for level, kind, payload in anc:
            if level == socket.SOL_SOCKET and kind == SCM_TIMESTAMPNS:
                sec, nsec = _TS.unpack_from(payload)
                ts = sec * 1_000_000_000 + nsec
        self.frames.append((ts, data))

    def _loop(self) -> None:
        sock = self._sock
        assert sock is not None
        while not self._stop.is_set():
            ready, _, _ = select.select([sock], [], [], 0.05)
            if ready:
                try:
                    self._read_one(sock)
                except BlockingIOError:
                    continue
                except OSError:
                    return

    def stop(self) -> list[Frame]:
        """Stop, read what is still queued, and return every frame in capture order."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        sock = self._sock
        if sock is not None:
            try:
                while True:
                    self._read_one(sock)
            except (BlockingIOError, OSError):
                pass
            sock.close()
            self._sock = None
        self.frames.sort(key=lambda f: f[0])
        return self.frames


def to_pcap(
    frames: list[Frame], linktype: int = LINKTYPE_ETHERNET, snaplen: int = 262_144
) -> bytes:
    """The frames as a classic nanosecond pcap file (``snaplen`` 96 keeps headers only)."""
    out = io.BytesIO()
    writer = PcapWriter(out, linktype, snaplen=snaplen)
    for ts, data in frames:
        writer.write(ts, data[:snaplen], len(data))
    writer.flush()
    return out.getvalue()


def state_at(history: list[tuple[float, State, str]], t: float) -> State:
    state = State.CLOSED
    for when, entered, _cause in history:
        if when > t:
            break
        state = entered
    return state


@dataclass
class CaptureResult:
    """The run's capture as pcap bytes and the tracker's view of the lab connection."""

    pcap: bytes
    frames: int
    raw: list[Frame]
    connection: Connection | None
    #: True when the tracker took the server for the originator (it never should here)
    flipped: bool = False
    others: int = 0
    notes: list[str] = field(default_factory=list)

    @classmethod
    def build(
        cls,
        frames: list[Frame],
        linktype: int,
        client: tuple[str, int] | None,
        server: tuple[str, int] | None,
    ) -> CaptureResult:
        """Write the frames as pcap, read them back, track, and pick the lab's connection."""
        data = to_pcap(frames, linktype)
        conns = list(
            reconstruct(read_frames(io.BytesIO(data), "lab capture"), Tracker(keep_segments=True))
        )
        mine: Connection | None = None
        flipped = False
        others = 0
        for conn in conns:
            ends = {(conn.orig.ip, conn.orig.port), (conn.resp.ip, conn.resp.port)}
            if client is not None and ends == {client, server}:
                mine = conn
                flipped = (conn.orig.ip, conn.orig.port) != client
            else:
                others += 1
        return cls(data, len(frames), list(frames), mine, flipped, others)

    def history(self, side: str) -> list[tuple[float, State, str]]:
        conn = self.connection
        if conn is None:
            return []
        client_is_orig = not self.flipped
        if (side == "client") == client_is_orig:
            return conn.orig_history
        return conn.resp_history

    def states_at(self, wall: float) -> tuple[State, State]:
        """Both sides' states as the packets up to ``wall`` (epoch seconds) show them."""
        return (
            state_at(self.history("client"), wall),
            state_at(self.history("server"), wall),
        )

    def segments(self) -> list[dict[str, Any]]:
        """The connection's segments for ladders and JSON (time, direction, flags, numbers)."""
        conn = self.connection
        if conn is None:
            return []
        out = []
        for seg in conn.segments:
            from_client = seg.from_orig != self.flipped
            label = format_flags(Flags(seg.flags & 0x3F))
            text = f"{label} seq={seg.seq}"
            if seg.flags & Flags.ACK:
                text += f" ack={seg.ack}"
            if seg.length:
                text += f" len={seg.length}"
            out.append(
                {
                    "time": seg.time,
                    "direction": "->" if from_client else "<-",
                    "flags": label,
                    "seq": seg.seq,
                    "ack": seg.ack,
                    "length": seg.length,
                    "text": text,
                    "record": seg.record,
                }
            )
        return out

    def as_dict(self) -> dict[str, Any]:
        conn = self.connection
        return {
            "frames": self.frames,
            "conn_state": None if conn is None else conn.conn_state,
            "history": None if conn is None else conn.history,
            "client_history": [
                {"time": round(t, 6), "state": str(s), "cause": c}
                for t, s, c in self.history("client")
            ],
            "server_history": [
                {"time": round(t, 6), "state": str(s), "cause": c}
                for t, s, c in self.history("server")
            ],
            "cannot_tell": {} if conn is None else dict(conn.cannot_tell),
            "segments": self.segments(),
        }
