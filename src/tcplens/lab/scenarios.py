"""The lab's scenarios: each step is a real action, the same action on the model, and a checkpoint.

A :class:`LabStep` pairs what a program does to real sockets (``act``, on a
:class:`~tcplens.lab.rig.Lab`) with the same thing played on the model's
two-endpoint harness (``model``, on a :class:`~tcplens.model.scenarios.Pair`),
and says which states the kernel must reach afterwards (``expect``, client
then server).  The runner waits for the kernel to get there, then compares
the kernel with the model and with the states reconstructed from the capture.

``blind`` lists, per side, why the capture cannot show the kernel's state at
that checkpoint (a FIN still queued behind unsent data, a segment dropped
after the capture point, a listener that sends nothing).  The tests assert
that the capture disagrees exactly there and nowhere else, so a declaration
here is a claim the run checks, not an excuse.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final, Literal

from tcplens.errors import ScenarioError
from tcplens.lab.rig import Lab, Rig
from tcplens.model.machine import Event
from tcplens.model.scenarios import Pair
from tcplens.model.states import State

__all__ = [
    "FINS_DROPPED",
    "FIN_BEHIND_DATA",
    "FIN_SEEN_LATE",
    "LAB_SCENARIOS",
    "LISTENER_SILENT",
    "ORPHAN_EXPIRED",
    "SILENT_CLOSE",
    "SYNACK_DROPPED",
    "SYN_DROPPED",
    "LabScenario",
    "LabStep",
    "get",
]

S = State
E = Event

LISTENER_SILENT: Final = "a listening socket sends nothing: LISTEN never shows on the wire"
FIN_BEHIND_DATA: Final = (
    "FIN queued behind unsent data (the peer's window is zero): the kernel is closing, "
    "the wire shows no FIN yet"
)
FIN_SEEN_LATE: Final = (
    "its FIN reached the wire only after the peer's: from the packets this side looks "
    "like a passive closer (CLOSE_WAIT, LAST_ACK), not a simultaneous one"
)

SYN_DROPPED: Final = (
    "the SYN was captured, then dropped by nftables in the server's namespace: the "
    "listener never answered, so the wire cannot tell whether anything listens"
)
SYNACK_DROPPED: Final = (
    "the last SYN+ACK was captured, then dropped by nftables in the client's namespace: "
    "the wire shows a handshake the client never saw (no ACK follows, but a capture "
    "cannot tell a missing ACK from a lost one)"
)
FINS_DROPPED: Final = (
    "both FINs were captured, then dropped by nftables on arrival: the wire shows FINs "
    "the receivers never got"
)
ORPHAN_EXPIRED: Final = (
    "an orphan's FIN_WAIT2 timer (tcp_fin_timeout) expires without a packet: the wire "
    "still shows a server waiting for the client's FIN"
)
SILENT_CLOSE: Final = "close() in SYN_SENT sends nothing: the wire still shows an unanswered SYN"

#: a small socket buffer: the kernel rounds it up (SOCK_MIN_RCVBUF), windows close fast
SMALL_BUF: Final = 4096


@dataclass(frozen=True)
class LabStep:
    """One action on real sockets, the same on the model, and what the kernel must reach."""

    title: str
    act: Callable[[Lab], object]
    model: Callable[[Pair], object]
    expect: tuple[State, State] | None = None
    blind: Mapping[str, str] = field(default_factory=dict)
    timeout: float = 3.0


@dataclass(frozen=True)
class LabScenario:
    """A named scenario; ``rig`` says where it can run (``netns`` needs root)."""

    name: str
    title: str
    description: str
    steps: tuple[LabStep, ...]
    shows: tuple[State, ...]
    rig: Literal["any", "netns"] = "any"
    setup: Callable[[Rig], None] | None = None
    #: Zeek's conn_state the capture must get (None: not asserted)
    zeek: str | None = None

    @property
    def needs_root(self) -> bool:
        return self.rig == "netns"


# -- building blocks ----------------------------------------------------------


def _steps(*actions: Callable[[Pair], object]) -> Callable[[Pair], object]:
    def run(pair: Pair) -> object:
        return [a(pair) for a in actions]

    return run


def _call(side: Literal["client", "server"], event: Event) -> Callable[[Pair], object]:
    return lambda p: p.call(side, event)


def _flush(p: Pair) -> object:
    return p.flush()


def _deliver(to: Literal["client", "server"]) -> Callable[[Pair], object]:
    return lambda p: p.deliver(to)


def _drop(to: Literal["client", "server"]) -> Callable[[Pair], object]:
    return lambda p: p.drop(to)


def _delay(to: Literal["client", "server"]) -> Callable[[Pair], object]:
    return lambda p: p.delay(to)


def _nothing(_: object) -> object:
    return None


def _sleep(seconds: float) -> Callable[[Lab], object]:
    return lambda _lab: time.sleep(seconds)


LISTEN_STEP = LabStep(
    "server: socket(), bind(), listen()",
    lambda lab: lab.listen(),
    _call("server", E.LISTEN),
    (S.CLOSED, S.LISTEN),
    {"server": LISTENER_SILENT},
)
HANDSHAKE_MODEL = _steps(_call("client", E.CONNECT), _flush)


def _handshake(
    *,
    client_rcvbuf: int | None = None,
    client_sndbuf: int | None = None,
    server_sndbuf: int | None = None,
) -> LabStep:
    def act(lab: Lab) -> None:
        lab.connect(rcvbuf=client_rcvbuf, sndbuf=client_sndbuf)
        lab.accept(sndbuf=server_sndbuf)

    return LabStep(
        "client: connect(); server: accept(), then closes its listener",
        act,
        HANDSHAKE_MODEL,
        (S.ESTABLISHED, S.ESTABLISHED),
    )


def _listen(rcvbuf: int | None = None) -> LabStep:
    return LabStep(
        LISTEN_STEP.title,
        lambda lab: lab.listen(rcvbuf=rcvbuf),
        LISTEN_STEP.model,
        LISTEN_STEP.expect,
        LISTEN_STEP.blind,
    )


def _closed_by(
    title: str,
    side: Literal["client", "server"],
    how: Literal["close", "interrupt", "shutdown"],
    expect: tuple[State, State],
) -> LabStep:
    """``side`` ends its half of the connection (close(), Ctrl+C or shutdown(SHUT_WR));
    the model sees the same call (a killed process's sockets are closed) and the
    segments that follow."""
    return LabStep(
        title,
        lambda lab: getattr(lab, how)(side),
        _steps(_call(side, E.SHUTDOWN if how == "shutdown" else E.CLOSE), _flush),
        expect,
    )


def _send(side: Literal["client", "server"], size: int) -> Callable[[Pair], object]:
    return lambda p: p.call(side, E.SEND, size=size)


def _fill(sender: Literal["client", "server"]) -> LabStep:
    """The sender writes until the peer's window is zero; the peer does not read."""
    peer = "server" if sender == "client" else "client"
    return LabStep(
        f"{sender}: send until the {peer}'s window is zero (the {peer} does not read)",
        lambda lab: lab.fill(sender),
        _nothing,
        (S.ESTABLISHED, S.ESTABLISHED),
    )


def _still_held(expect: tuple[State, State], side: Literal["client", "server"]) -> LabStep:
    """A moment later nothing has moved: ``side``'s FIN still waits behind its data."""
    return LabStep(
        "still held a moment later", _sleep(0.3), _nothing, expect, {side: FIN_BEHIND_DATA}
    )


def _drop_syn(rig: Rig) -> None:
    """Server namespace: drop incoming SYNs to the port (after the capture point)."""
    rig.nft(
        "server",
        """
        table inet tcplens_lab {
          chain input {
            type filter hook input priority 0; policy accept;
            tcp dport {PORT} tcp flags & (syn | ack) == syn drop
          }
        }
        """,
    )


def _drop_final_ack(rig: Rig) -> None:
    """Client namespace: drop its bare ACKs to the port on output (before the capture point)."""
    rig.nft(
        "client",
        """
        table inet tcplens_lab {
          chain output {
            type filter hook output priority 0; policy accept;
            tcp dport {PORT} tcp flags & (syn | ack | fin | rst) == ack drop
          }
        }
        """,
    )


def _drop_syn_ack(rig: Rig) -> None:
    """Client namespace: drop incoming SYN+ACKs from the port (after the capture point)."""
    rig.nft(
        "client",
        """
        table inet tcplens_lab {
          chain input {
            type filter hook input priority 0; policy accept;
            tcp sport {PORT} tcp flags & (syn | ack) == syn | ack drop
          }
        }
        """,
    )


_DROP_FINS = """
table inet tcplens_lab {
  chain input {
    type filter hook input priority 0; policy accept;
    tcp flags & fin == fin drop
  }
}
"""


def _drop_fins(lab: Lab) -> None:
    """Both namespaces drop incoming FINs (after the capture point)."""
    lab.rig.nft("client", _DROP_FINS)
    lab.rig.nft("server", _DROP_FINS)


def _accept_fins(side: Literal["client", "server"]) -> Callable[[Lab], object]:
    return lambda lab: lab.rig.nft(side, "delete table inet tcplens_lab")


def _close_both(lab: Lab) -> None:
    lab.close("client")
    lab.close("server")


PEERS_CONNECT = (
    LabStep(
        "server process starts and listens",
        lambda lab: lab.spawn_server(),
        _call("server", E.LISTEN),
        (S.CLOSED, S.LISTEN),
        {"server": LISTENER_SILENT},
    ),
    LabStep(
        "client process connects; the server accepts (and keeps listening)",
        lambda lab: lab.spawn_client(),
        HANDSHAKE_MODEL,
        (S.ESTABLISHED, S.ESTABLISHED),
    ),
)


def _refused_port(lab: Lab) -> None:
    """Point the client at a port nobody listens on (loopback: one just freed)."""
    if lab.rig.kind == "loopback":
        import socket

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            lab.server_addr = probe.getsockname()[:2]
    else:
        lab.server_addr = (lab.rig.server.ip, lab.rig.server_port)


def _refused_connect(lab: Lab) -> None:
    _refused_port(lab)
    lab.connect()


# -- the scenarios ------------------------------------------------------------

_CLOSE_CLIENT_FIRST = (
    _listen(),
    _handshake(),
    _closed_by(
        "client: close() first (active close)", "client", "close", (S.FIN_WAIT2, S.CLOSE_WAIT)
    ),
    _closed_by(
        "server: close() (passive close); its LAST_ACK ends with the client's ACK",
        "server",
        "close",
        (S.TIME_WAIT, S.CLOSED),
    ),
)

_SCENARIOS: Final[list[LabScenario]] = [
    LabScenario(
        "listen",
        "A server listens",
        "socket(), bind(), listen(): the socket waits in LISTEN; close() ends it.",
        (
            _listen(),
            LabStep(
                "server: close() the listening socket",
                lambda lab: lab.close_listener(),
                _call("server", E.CLOSE),
                (S.CLOSED, S.CLOSED),
            ),
        ),
        shows=(S.LISTEN,),
    ),
    LabScenario(
        "handshake",
        "Three-way handshake to ESTABLISHED",
        "connect() sends SYN, the listener answers SYN+ACK, the client's ACK completes it.",
        (_listen(), _handshake()),
        shows=(S.ESTABLISHED,),
        zeek="S1",
    ),
    LabScenario(
        "client-close",
        "The client closes first",
        "Active close on the client: FIN_WAIT2 then TIME_WAIT; the server waits in "
        "CLOSE_WAIT until it closes too, passes LAST_ACK and is gone.",
        _CLOSE_CLIENT_FIRST,
        shows=(S.FIN_WAIT2, S.CLOSE_WAIT, S.TIME_WAIT),
        zeek="SF",
    ),
    LabScenario(
        "server-close",
        "The server closes first",
        "Active close on the server: the server gets FIN_WAIT2 and TIME_WAIT, the client "
        "CLOSE_WAIT until it closes.",
        (
            _listen(),
            _handshake(),
            _closed_by(
                "server: close() first (active close)",
                "server",
                "close",
                (S.CLOSE_WAIT, S.FIN_WAIT2),
            ),
            _closed_by(
                "client: close() (passive close)", "client", "close", (S.CLOSED, S.TIME_WAIT)
            ),
        ),
        shows=(S.FIN_WAIT2, S.CLOSE_WAIT, S.TIME_WAIT),
        zeek="SF",
    ),
    LabScenario(
        "half-close",
        "Half-close: shutdown(SHUT_WR), then keep reading",
        "The client shuts down only its sending side: its FIN takes it to FIN_WAIT2 and the "
        "server to CLOSE_WAIT, yet the server's data still arrives and the client reads it "
        "(after close() the same data would be answered with RST: see data-after-close).  "
        "The server's close() then ends the client's FIN_WAIT2 in TIME_WAIT.",
        (
            _listen(),
            _handshake(),
            _closed_by(
                "client: shutdown(SHUT_WR): it stops sending, keeps reading",
                "client",
                "shutdown",
                (S.FIN_WAIT2, S.CLOSE_WAIT),
            ),
            LabStep(
                "server: send(1000) to the half-closed client",
                lambda lab: lab.send("server", 1000),
                _steps(_send("server", 1000), _flush),
                (S.FIN_WAIT2, S.CLOSE_WAIT),
            ),
            LabStep(
                "client: recv() gets all 1000 bytes, still in FIN_WAIT2",
                lambda lab: lab.receive("client", 1000),
                _nothing,
                (S.FIN_WAIT2, S.CLOSE_WAIT),
            ),
            _closed_by(
                "server: close(); its FIN ends the client's FIN_WAIT2",
                "server",
                "close",
                (S.TIME_WAIT, S.CLOSED),
            ),
        ),
        shows=(S.FIN_WAIT2, S.CLOSE_WAIT),
        zeek="SF",
    ),
    LabScenario(
        "data-after-close",
        "Data after close(): the closed side answers RST",
        "The client close()s with nothing unread, so a FIN goes out (FIN_WAIT2, the server "
        "CLOSE_WAIT).  The server still sends: nobody will read that data, so the client's "
        "kernel answers it with RST (RFC 1122 4.2.2.13) and forgets the connection; the RST "
        "ends the server's side too, and its next send() fails with EPIPE.  No TIME_WAIT.",
        (
            _listen(),
            _handshake(),
            _closed_by(
                "client: close() with nothing unread (so FIN, not RST)",
                "client",
                "close",
                (S.FIN_WAIT2, S.CLOSE_WAIT),
            ),
            LabStep(
                "server: send(100); the client's kernel answers RST",
                lambda lab: lab.send("server", 100),
                _steps(_send("server", 100), _flush),
                (S.CLOSED, S.CLOSED),
            ),
        ),
        shows=(S.FIN_WAIT2, S.CLOSE_WAIT, S.CLOSED),
        zeek="RSTO",
    ),
    LabScenario(
        "server-killed",
        "Ctrl+C on the server while a client is connected",
        "The seeds' case 2, with two real processes: SIGINT ends the server, the kernel "
        "closes its sockets and sends FIN; the client's kernel ACKs it, but the client "
        "program never calls close(), so no FIN comes back: the client sits in CLOSE_WAIT "
        "(waiting for its own application), the server's orphan in FIN_WAIT2 (waiting for "
        "the peer's FIN).  The orphan can still take that FIN: Ctrl+C on the client sends "
        "it and the server's side goes to TIME_WAIT.",
        (
            *PEERS_CONNECT,
            _closed_by(
                "Ctrl+C (SIGINT) on the server process",
                "server",
                "interrupt",
                (S.CLOSE_WAIT, S.FIN_WAIT2),
            ),
            _closed_by(
                "Ctrl+C on the client process too", "client", "interrupt", (S.CLOSED, S.TIME_WAIT)
            ),
        ),
        shows=(S.FIN_WAIT2, S.CLOSE_WAIT),
        zeek="SF",
    ),
    LabScenario(
        "client-killed",
        "Ctrl+C on the client while connected",
        "The seeds' case 3: the reverse of server-killed; the client's orphan sits in "
        "FIN_WAIT2, the server (still listening for others) in CLOSE_WAIT.",
        (
            *PEERS_CONNECT,
            _closed_by(
                "Ctrl+C (SIGINT) on the client process",
                "client",
                "interrupt",
                (S.FIN_WAIT2, S.CLOSE_WAIT),
            ),
            _closed_by(
                "Ctrl+C on the server process too", "server", "interrupt", (S.TIME_WAIT, S.CLOSED)
            ),
        ),
        shows=(S.FIN_WAIT2, S.CLOSE_WAIT),
        zeek="SF",
    ),
    LabScenario(
        "orphan-timeout",
        "The killed server's orphan FIN_WAIT2 times out",
        "server-killed, waiting instead of killing the client: an orphaned FIN_WAIT2 lives "
        "only net.ipv4.tcp_fin_timeout seconds (set to 1 in the server's namespace; 60 by "
        "default), then vanishes without a packet.  The client stays in CLOSE_WAIT; when it "
        "finally closes, its FIN finds no socket and is answered with RST.",
        (
            *PEERS_CONNECT,
            _closed_by(
                "Ctrl+C (SIGINT) on the server process",
                "server",
                "interrupt",
                (S.CLOSE_WAIT, S.FIN_WAIT2),
            ),
            LabStep(
                "tcp_fin_timeout later the orphan is gone; the client still in CLOSE_WAIT",
                _nothing,
                lambda p: p.timer("server", E.TIMEOUT_CONNECT),
                (S.CLOSE_WAIT, S.CLOSED),
                {"server": ORPHAN_EXPIRED},
            ),
            _closed_by(
                "Ctrl+C on the client: its FIN finds no socket and is answered with RST",
                "client",
                "interrupt",
                (S.CLOSED, S.CLOSED),
            ),
        ),
        shows=(S.FIN_WAIT2, S.CLOSE_WAIT),
        rig="netns",
        setup=lambda rig: rig.sysctl("server", "net.ipv4.tcp_fin_timeout", 1),
    ),
    LabScenario(
        "fin-wait1",
        "FIN_WAIT1 held by a zero window",
        "The server stops reading until its window is zero; the client close()s with data "
        "still unsent, so its FIN waits behind the data: FIN_WAIT1 for as long as the "
        "server does not read.",
        (
            _listen(rcvbuf=SMALL_BUF),
            _handshake(client_sndbuf=SMALL_BUF),
            _fill("client"),
            LabStep(
                "client: close() with data unsent",
                lambda lab: lab.close("client"),
                _call("client", E.CLOSE),
                (S.FIN_WAIT1, S.ESTABLISHED),
                {"client": FIN_BEHIND_DATA},
            ),
            _still_held((S.FIN_WAIT1, S.ESTABLISHED), "client"),
            LabStep(
                "server: reads everything; the data, then the FIN, get through",
                lambda lab: lab.drain("server"),
                _flush,
                (S.FIN_WAIT2, S.CLOSE_WAIT),
            ),
            _closed_by("server: close()", "server", "close", (S.TIME_WAIT, S.CLOSED)),
        ),
        shows=(S.FIN_WAIT1,),
        zeek="SF",
    ),
    LabScenario(
        "last-ack",
        "LAST_ACK held by a zero window",
        "The passive side's FIN waits behind data the client does not read: the client "
        "has shut down its side (FIN_WAIT2), the server close()s and stays in LAST_ACK.",
        (
            _listen(),
            _handshake(client_rcvbuf=SMALL_BUF, server_sndbuf=SMALL_BUF),
            _fill("server"),
            _closed_by(
                "client: shutdown(SHUT_WR) (it still has unread data, close() would RST)",
                "client",
                "shutdown",
                (S.FIN_WAIT2, S.CLOSE_WAIT),
            ),
            LabStep(
                "server: close() with data unsent",
                lambda lab: lab.close("server"),
                _call("server", E.CLOSE),
                (S.FIN_WAIT2, S.LAST_ACK),
                {"server": FIN_BEHIND_DATA},
            ),
            _still_held((S.FIN_WAIT2, S.LAST_ACK), "server"),
            LabStep(
                "client: reads everything; the server's data and FIN get through",
                lambda lab: lab.drain("client"),
                _flush,
                (S.TIME_WAIT, S.CLOSED),
            ),
        ),
        shows=(S.LAST_ACK,),
        zeek="SF",
    ),
    LabScenario(
        "closing",
        "CLOSING: both sides closed, neither FIN acknowledged",
        "The client's FIN waits behind data stuck at the server's zero window (FIN_WAIT1); "
        "the server then shuts down; the client receives the server's FIN while its own is "
        "unacknowledged and enters CLOSING, held while the window stays closed.",
        (
            _listen(rcvbuf=SMALL_BUF),
            _handshake(client_sndbuf=SMALL_BUF),
            _fill("client"),
            LabStep(
                "client: shutdown(SHUT_WR) with data unsent",
                lambda lab: lab.shutdown("client"),
                _call("client", E.SHUTDOWN),
                (S.FIN_WAIT1, S.ESTABLISHED),
                {"client": FIN_BEHIND_DATA},
            ),
            LabStep(
                "server: shutdown(SHUT_WR); its FIN arrives while the client's is queued",
                lambda lab: lab.shutdown("server"),
                _steps(
                    _call("server", E.SHUTDOWN),
                    _deliver("client"),  # server's FIN: client FIN_WAIT1 -> CLOSING
                    _delay("server"),  # the client's FIN stays behind the data
                    _deliver("server"),  # client's ACK of the server's FIN
                ),
                (S.CLOSING, S.FIN_WAIT2),
                {"client": FIN_BEHIND_DATA},
            ),
            _still_held((S.CLOSING, S.FIN_WAIT2), "client"),
            LabStep(
                "server: reads everything; the client's data and FIN get through",
                lambda lab: lab.drain("server"),
                _flush,
                (S.TIME_WAIT, S.TIME_WAIT),
                {"client": FIN_SEEN_LATE},
            ),
        ),
        shows=(S.CLOSING,),
        zeek="SF",
    ),
    LabScenario(
        "simultaneous-close",
        "Simultaneous close: the FINs cross",
        "Both sides close() while each drops the other's FIN on arrival (nftables), so "
        "both FINs are in flight at once: both in FIN_WAIT1.  Then the client takes FINs "
        "again: the server's retransmitted FIN moves it to CLOSING; then the server does, "
        "and both end in TIME_WAIT.",
        (
            _listen(),
            _handshake(),
            LabStep(
                "both namespaces start dropping incoming FINs",
                _drop_fins,
                _nothing,
                (S.ESTABLISHED, S.ESTABLISHED),
            ),
            LabStep(
                "client and server close(); each FIN is dropped on arrival",
                _close_both,
                _steps(
                    _call("client", E.CLOSE),
                    _call("server", E.CLOSE),
                    _drop("server"),
                    _drop("client"),
                ),
                (S.FIN_WAIT1, S.FIN_WAIT1),
                {"client": FINS_DROPPED, "server": FINS_DROPPED},
            ),
            LabStep(
                "the client takes FINs again: the server's retransmitted FIN gets through",
                _accept_fins("client"),
                _steps(
                    lambda p: p.timer("server", E.TIMEOUT_RTO),
                    _deliver("client"),
                    _deliver("server"),
                ),
                (S.CLOSING, S.FIN_WAIT2),
                {"server": FINS_DROPPED},
            ),
            LabStep(
                "the server takes FINs again: the client's retransmitted FIN gets through",
                _accept_fins("server"),
                _steps(lambda p: p.timer("client", E.TIMEOUT_RTO), _flush),
                (S.TIME_WAIT, S.TIME_WAIT),
            ),
        ),
        shows=(S.FIN_WAIT1, S.CLOSING),
        rig="netns",
        zeek="SF",
    ),
    LabScenario(
        "syn-sent",
        "SYN_SENT: the server's namespace drops SYNs",
        "nftables in the server's namespace drops incoming SYNs: the client retransmits its "
        "SYN and stays in SYN_SENT until it gives up or closes.",
        (
            _listen(),
            LabStep(
                "client: non-blocking connect(); the SYN is dropped on arrival",
                lambda lab: lab.connect(wait=False),
                _steps(_call("client", E.CONNECT), _drop("server")),
                (S.SYN_SENT, S.LISTEN),
                {"server": SYN_DROPPED},
            ),
            LabStep(
                "one second later the client retransmits the SYN (dropped again)",
                _sleep(1.2),
                _steps(lambda p: p.timer("client", E.TIMEOUT_RTO), _drop("server")),
                (S.SYN_SENT, S.LISTEN),
                {"server": SYN_DROPPED},
            ),
            LabStep(
                "client: close() gives up the attempt",
                lambda lab: lab.close("client"),
                _call("client", E.CLOSE),
                (S.CLOSED, S.LISTEN),
                {"client": SILENT_CLOSE, "server": SYN_DROPPED},
            ),
        ),
        shows=(S.SYN_SENT,),
        rig="netns",
        setup=_drop_syn,
        zeek="S0",
    ),
    LabScenario(
        "syn-recv",
        "SYN_RECV: the client's final ACK is dropped",
        "nftables in the client's namespace drops its bare ACKs: the client is ESTABLISHED "
        "after the SYN+ACK, the server's half-open connection waits in SYN_RECV; an RST "
        "from the client sends it back to LISTEN.",
        (
            _listen(),
            LabStep(
                "client: connect(); its final ACK of the handshake is dropped",
                lambda lab: lab.connect(),
                _steps(
                    _call("client", E.CONNECT),
                    _deliver("server"),
                    _deliver("client"),
                    _drop("server"),
                ),
                (S.ESTABLISHED, S.SYN_RECV),
            ),
            LabStep(
                "client: abort (SO_LINGER 0, close): RST",
                lambda lab: lab.abort("client"),
                _steps(_call("client", E.ABORT), _flush),
                (S.CLOSED, S.LISTEN),
            ),
        ),
        shows=(S.SYN_RECV,),
        rig="netns",
        setup=_drop_final_ack,
        zeek="RSTO",
    ),
    LabScenario(
        "syn-ack-lost",
        "SYN_SENT and SYN_RECV at once: the server's SYN+ACKs are lost",
        "nftables in the client's namespace drops incoming SYN+ACKs: the server has the "
        "SYN and waits in SYN_RECV, the client never sees an answer and stays in SYN_SENT, "
        "both retransmitting.",
        (
            _listen(),
            LabStep(
                "client: non-blocking connect(); the SYN+ACK is dropped on arrival",
                lambda lab: lab.connect(wait=False),
                _steps(
                    _call("client", E.CONNECT),
                    _deliver("server"),
                    _drop("client"),
                ),
                (S.SYN_SENT, S.SYN_RECV),
            ),
            LabStep(
                "one second later the client retransmits its SYN, the server its SYN+ACK",
                _sleep(1.2),
                _steps(
                    lambda p: p.timer("client", E.TIMEOUT_RTO),
                    _deliver("server"),
                    _drop("client"),
                ),
                (S.SYN_SENT, S.SYN_RECV),
                {"client": SYNACK_DROPPED},
            ),
            LabStep(
                "client: close() gives up; the server's half-open connection remains",
                lambda lab: lab.close("client"),
                _call("client", E.CLOSE),
                (S.CLOSED, S.SYN_RECV),
                {"client": SYNACK_DROPPED},
            ),
        ),
        shows=(S.SYN_SENT, S.SYN_RECV),
        rig="netns",
        setup=_drop_syn_ack,
        zeek="S1",
    ),
    LabScenario(
        "refused",
        "Connection refused: RST for a SYN",
        "connect() to a port with no listener: the kernel answers the SYN with RST+ACK and "
        "connect() fails with ECONNREFUSED (Zeek: REJ).",
        (
            LabStep(
                "client: connect() to a port nobody listens on",
                _refused_connect,
                _steps(_call("client", E.CONNECT), _flush),
                (S.CLOSED, S.CLOSED),
            ),
        ),
        shows=(S.CLOSED,),
        zeek="REJ",
    ),
    LabScenario(
        "abort",
        "Abort with SO_LINGER 0: RST",
        "SO_LINGER with a zero timeout makes close() send RST instead of FIN: both ends "
        "are gone at once, no TIME_WAIT (Zeek: RSTO).",
        (
            _listen(),
            _handshake(),
            LabStep(
                "client: setsockopt(SO_LINGER, on, 0); close()",
                lambda lab: lab.abort("client"),
                _steps(_call("client", E.ABORT), _flush),
                (S.CLOSED, S.CLOSED),
            ),
        ),
        shows=(S.CLOSED,),
        zeek="RSTO",
    ),
    LabScenario(
        "time-wait",
        "TIME_WAIT counts down",
        "After an active close the client waits 2MSL (60 s on Linux) in TIME_WAIT; the "
        "timer the live source reports counts down with the model's.",
        (
            *_CLOSE_CLIENT_FIRST,
            LabStep("one second later", _sleep(1.0), _nothing, (S.TIME_WAIT, S.CLOSED)),
            LabStep("two seconds later", _sleep(1.0), _nothing, (S.TIME_WAIT, S.CLOSED)),
        ),
        shows=(S.TIME_WAIT,),
        zeek="SF",
    ),
]

#: name -> scenario, in the order ``tcplens lab --list`` shows them
LAB_SCENARIOS: Final = MappingProxyType({s.name: s for s in _SCENARIOS})


def get(name: str) -> LabScenario:
    """The scenario called ``name``, or a ScenarioError listing the known ones."""
    try:
        return LAB_SCENARIOS[name]
    except KeyError:
        known = ", ".join(LAB_SCENARIOS)
        raise ScenarioError(f"unknown lab scenario {name!r} (known: {known})") from None
