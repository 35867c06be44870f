"""The fourth witness of a lab run: the kernel's own transition sequence, from its tracepoints.

Checkpoints see the kernel only when the runner polls it, so states that
last microseconds on loopback (SYN_SENT, FIN_WAIT1, LAST_ACK) are never
observed there.  With root and tracefs, a :class:`Witness` records
``sock:inet_sock_set_state`` (and the ``tcp:*`` events) for the whole run
in a private tracefs instance and, when the steps are over (before the
runner's cleanup closes what is left, which is not part of the scenario),
turns them into each side's exact path:

* the client is the socket whose 4-tuple is the lab's client -> server
  (followed by socket address, so its CLOSED -> SYN_SENT, fired before the
  port is chosen, belongs to it);
* the server is the listener's CLOSED -> LISTEN followed by the accepted
  child's own path (the child's first event is LISTEN -> SYN_RECV);
* a handshake that never completes stays a request minisocket
  (NEW_SYN_RECV), which no tracepoint reports either: its SYN_RECV is
  taken from the checkpoints (sock_diag) and the path says so;
* a close the kernel reports as FIN_WAIT2/FIN_WAIT1/CLOSING -> CLOSE became
  a TIME_WAIT minisocket when a checkpoint saw that side in TIME_WAIT
  (sock_diag in the side's own namespace): the path then says TIME_WAIT, and
  CLOSED after it when a later checkpoint saw the minisocket gone.

Tracepoints see every network namespace, and concurrent runs use the same
addresses in theirs: a socket is this run's when its 4-tuple matches and the
``connect()``/``listen()`` that made it ran in this run's thread or in a
process it spawned (the event's pid); the accepted child by its 4-tuple.
Without root or tracefs there is no witness and the run says why
(:attr:`KernelPath.note`).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from tcplens.analysis.transitions import ExactTracer, Transition, TupleKey
from tcplens.errors import SourceError
from tcplens.model.states import State
from tcplens.sources.tracepoints import TraceSession, TraceUnavailable, unavailable_reason

if TYPE_CHECKING:
    from tcplens.lab.rig import Lab
    from tcplens.lab.runner import Checkpoint

__all__ = ["KernelPath", "Witness", "model_paths"]


@dataclass
class KernelPath:
    """Each side's states in the order the kernel entered them, or why there are none."""

    client: list[State] = field(default_factory=list)
    server: list[State] = field(default_factory=list)
    note: str = ""
    lost: int = 0
    #: the server's SYN_RECV came from sock_diag: a request minisocket fires no tracepoint
    requests: bool = False

    @property
    def available(self) -> bool:
        return not self.note

    def side(self, side: str) -> list[State]:
        return self.client if side == "client" else self.server


def _collapse(states: Sequence[State]) -> list[State]:
    out: list[State] = []
    for s in states:
        if not out or out[-1] is not s:
            out.append(s)
    return out


def model_paths(
    client: Sequence[State], server: Sequence[State]
) -> tuple[list[State], list[State]]:
    """The model's per-side paths from its steps' states, starting at CLOSED."""
    return _collapse([State.CLOSED, *client]), _collapse([State.CLOSED, *server])


def _norm(ip: str) -> str:
    return ip.removeprefix("::ffff:")


def _key(addr: tuple[str, int]) -> tuple[str, int]:
    return (addr[0].removeprefix("::ffff:"), addr[1])


class Witness:
    """Records the kernel's transitions for one lab run (see the module docstring)."""

    def __init__(self, session: TraceSession | None, note: str = "") -> None:
        self.session = session
        self.note = note
        #: the thread that acts on the run's sockets: its id is the event's pid
        self.tid = threading.get_native_id()

    @classmethod
    def start(cls) -> Witness:
        """Start recording now; without root or tracefs, a witness that only says why."""
        reason = unavailable_reason()
        if reason is not None:
            return cls(None, f"no kernel path: {reason}")
        session = TraceSession(buffer_kb=1024)
        try:
            session.open()
        except (TraceUnavailable, SourceError) as exc:
            return cls(None, f"no kernel path: {exc}")
        return cls(session)

    def close(self) -> None:
        if self.session is not None:
            self.session.close()
            self.session = None

    def finish(self, lab: Lab, checkpoints: Sequence[Checkpoint]) -> KernelPath:
        """Both sides' exact paths up to now; stops recording."""
        if self.session is None:
            return KernelPath(note=self.note or "no kernel path")
        try:
            events = self.session.read(flush=True)
            lost = self.session.lost().total
        finally:
            self.close()
        if lab.server_addr is None:
            return KernelPath(note="no kernel path: the run made no connection")
        saddr = _key(lab.server_addr)
        caddr = _key(lab.client_addr) if lab.client_addr is not None else None
        tracer = ExactTracer()
        found = tracer.feed(events)
        table: dict[TupleKey, State] = {}
        gone_later: set[TupleKey] = set()
        for i, side in enumerate(("client", "server")):
            if caddr is None:
                break
            local, remote = (caddr, saddr) if side == "client" else (saddr, caddr)
            key: TupleKey = (local[0], local[1], remote[0], remote[1])
            seen_tw = [cp for cp in checkpoints if cp.kernel[i] is State.TIME_WAIT]
            if seen_tw:
                table[key] = State.TIME_WAIT
                last_tw = seen_tw[-1].step
                if any(cp.step > last_tw and cp.kernel[i] is State.CLOSED for cp in checkpoints):
                    gone_later.add(key)
        found += tracer.settle(table, 0.0)
        found += tracer.settle({k: v for k, v in table.items() if k not in gone_later}, 0.0)
        ours = {self.tid, *(proc.pid for proc in lab.procs.values())}
        client = [State.CLOSED] if caddr is None else self._conn_path(found, caddr, saddr, ours)
        server, requests = self._server_path(found, saddr, caddr, checkpoints, ours)
        return KernelPath(client=client, server=server, lost=lost, requests=requests)

    @staticmethod
    def _conns(
        found: Sequence[Transition], local: tuple[str, int], remote: tuple[str, int]
    ) -> set[int]:
        return {
            t.conn
            for t in found
            if (_norm(t.sock.local.ip), t.sock.local.port) == local
            and (_norm(t.sock.remote.ip), t.sock.remote.port) == remote
        }

    def _conn_path(
        self,
        found: Sequence[Transition],
        local: tuple[str, int],
        remote: tuple[str, int],
        ours: set[int],
    ) -> list[State]:
        # connect() runs in our thread (or the spawned client): another run's socket
        # with the same 4-tuple in another namespace is not ours
        conns = {t.conn for t in found if t.pid in ours} & self._conns(found, local, remote)
        return _collapse([State.CLOSED, *(t.new for t in found if t.conn in conns)])

    def _server_path(
        self,
        found: Sequence[Transition],
        saddr: tuple[str, int],
        caddr: tuple[str, int] | None,
        checkpoints: Sequence[Checkpoint],
        ours: set[int],
    ) -> tuple[list[State], bool]:
        """The listener's path, then the accepted child's; request sockets from checkpoints.

        A handshake the kernel keeps as a request minisocket (NEW_SYN_RECV)
        that never becomes a full socket fires no tracepoint: when no child
        appeared, SYN_RECV is taken from the checkpoints (sock_diag), in time
        order with the listener's own events; the second value says so.
        """
        child = self._conns(found, saddr, caddr) if caddr is not None else set()
        first_child = min((t.at for t in found if t.conn in child), default=None)
        # listen() ran in our thread or the spawned server: other runs' listeners on the
        # same port (in other namespaces) are not ours
        listeners = {
            t.conn
            for t in found
            if t.new is State.LISTEN and t.pid in ours and t.sock.local.port == saddr[1]
        }
        timed: list[tuple[float, State]] = [
            (t.at, t.new)
            for t in found
            if t.conn in listeners and (first_child is None or t.at <= first_child)
        ]
        requests = False
        if child:
            timed += [(t.at, t.new) for t in found if t.conn in child]
        else:
            syn_recv = False
            for cp in checkpoints:
                if cp.kernel[1] is State.SYN_RECV:
                    syn_recv = requests = True
                    timed.append((cp.wall, State.SYN_RECV))
                elif syn_recv and cp.kernel[1] is State.LISTEN:
                    timed.append((cp.wall, State.LISTEN))
        timed.sort(key=lambda ts: ts[0])
        return _collapse([State.CLOSED, *(s for _, s in timed)]), requests
