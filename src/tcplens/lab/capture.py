"""Capture a lab run on the wire and reconstruct both endpoints' states from it.

The :class:`Recorder` captures one interface of a lab namespace through
tcplens's own live capture (:func:`tcplens.packets.capture.live_frames`,
AF_PACKET, raw IP frames), in a background thread.  The AF_PACKET socket is
opened inside the namespace (the interface only exists there).  On the veth
end each segment is seen exactly once: outgoing ones after the sender's
nftables output hook, incoming ones before the receiver's input hook; that is
the "capture point" the scenarios' blind spots refer to.

Aligning checkpoints with the capture.  Live frames are stamped when the
capture thread reads them, which can be later than the kernel's own time for
the packet; comparing those stamps with the moment the kernel was observed
could put a packet that caused the observed state after it.  So at each
checkpoint :meth:`Recorder.barrier` waits until the socket's queue is empty:
every frame tapped before the observation has then been read, and the
checkpoint's capture time is the stamp of the last frame read so far.

The frames are written as a pcap file with :class:`tcplens.packets.pcap.PcapWriter`
and read back through :func:`tcplens.packets.engine.reconstruct_capture`, so the tracker
sees exactly what a user's ``tcplens pcap`` of the saved file would see, and
the file can be kept as a test fixture.
"""

from __future__ import annotations

import fcntl
import io
import socket
import struct
import termios
import threading
import time
from dataclasses import dataclass
from typing import Any, Final

from tcplens.errors import ScenarioError
from tcplens.lab.netns import Namespace, inside
from tcplens.model.machine import Flags, format_flags
from tcplens.model.states import State
from tcplens.packets.capture import ETH_P_ALL, LINKTYPE_RAW, live_frames
from tcplens.packets.engine import reconstruct_capture
from tcplens.packets.pcap import Frame, PcapWriter
from tcplens.packets.tracker import CaptureSummary, Connection, Tracker

__all__ = ["CaptureResult", "Recorder", "state_at", "to_pcap"]

#: how long the socket queue must stay empty before a barrier counts as reached
QUIET: Final = 0.005


class Recorder:
    """tcplens's live AF_PACKET capture of one interface in one namespace, in a thread."""

    def __init__(self, ns: Namespace | None, interface: str) -> None:
        self.ns = ns
        self.interface = interface
        self.linktype = LINKTYPE_RAW
        self.frames: list[Frame] = []
        self.error: str | None = None
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None

    def start(self) -> None:
        try:
            with inside(self.ns):
                sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_ALL))
        except PermissionError as exc:
            raise ScenarioError(f"AF_PACKET capture needs root (CAP_NET_RAW): {exc}") from exc
        try:
            sock.bind((self.interface, ETH_P_ALL))
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        except OSError:
            sock.close()
            raise
        self._sock = sock
        self._thread = threading.Thread(target=self._loop, name="tcplens-lab-capture", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        assert self._sock is not None
        try:
            for frame in live_frames(self.interface, sock=self._sock):
                self.frames.append(frame)
        except OSError as exc:  # the socket is closed by stop()
            if self._sock is not None:
                self.error = str(exc)

    def _queued(self) -> int:
        sock = self._sock
        if sock is None:
            return 0
        raw = fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0\0\0\0")
        value: int = struct.unpack("i", raw)[0]
        return value

    def barrier(self, timeout: float = 1.0) -> float | None:
        """Wait until every queued frame is read; the capture time of the last one (or None)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._queued() == 0:
                count = len(self.frames)
                time.sleep(QUIET)
                if self._queued() == 0 and len(self.frames) == count:
                    break
            else:
                time.sleep(QUIET)
        return self.frames[-1].ts if self.frames else None

    def stop(self) -> list[Frame]:
        """Read what is still queued, stop, and return every frame in capture order."""
        self.barrier()
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        return list(self.frames)


def to_pcap(frames: list[Frame], linktype: int = LINKTYPE_RAW, snaplen: int = 262_144) -> bytes:
    """The frames as a classic nanosecond pcap file (``snaplen`` 96 keeps headers only)."""
    out = io.BytesIO()
    writer = PcapWriter(out, linktype, snaplen=snaplen)
    for frame in frames:
        writer.write(frame.ts_ns, frame.data[:snaplen], frame.wire_len)
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
    #: connections in the capture that are not the lab's (there should be none)
    others: int = 0

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
            reconstruct_capture(
                io.BytesIO(data), Tracker(keep_segments=True), CaptureSummary(), "lab capture"
            )
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
            "other_connections": self.others,
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
