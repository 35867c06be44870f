"""close() versus shutdown(SHUT_WR) on this kernel's real sockets, next to the model.

Loopback, no root: after close() the peer's new data (alone or riding on its
FIN) is answered with RST and the connection is gone at once (no TIME_WAIT);
after shutdown(SHUT_WR) the same data is read.  The model's Endpoint must say
the same for the same sequence.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from tcplens.model.machine import Closing, Endpoint, Event, Flags, Segment
from tcplens.model.states import State
from tcplens.sources.select import take_snapshot


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        client = socket.create_connection(listener.getsockname()[:2], timeout=5)
        server, _ = listener.accept()
    server.settimeout(5)
    try:
        yield client, server
    finally:
        client.close()
        server.close()


def _state(local: tuple[str, int], remote: tuple[str, int]) -> State:
    """The kernel's state of the socket local -> remote (CLOSED when there is none)."""
    for sock in take_snapshot(source="netlink", processes=False).sockets:
        if (sock.local.ip, sock.local.port, sock.remote.ip, sock.remote.port) == (
            *local,
            *remote,
        ):
            return sock.state
    return State.CLOSED


def _wait_for(local: tuple[str, int], remote: tuple[str, int], want: State) -> State:
    deadline = time.monotonic() + 3
    while (got := _state(local, remote)) is not want and time.monotonic() < deadline:
        time.sleep(0.01)
    return got


def _model(closing: Event, fin_with_data: bool) -> Endpoint:
    """The client's model endpoint through the same calls and segments."""
    ep = Endpoint(State.ESTABLISHED, isn=0)
    ep.snd_una = ep.snd_nxt = 1
    ep.rcv_nxt = 1
    ep.handle(closing)
    ep.receive(Segment(Flags.ACK, 1, 2))  # the server ACKs our FIN
    flags = Flags.FIN | Flags.ACK if fin_with_data else Flags.PSH | Flags.ACK
    ep.receive(Segment(flags, 1, 2, 100))
    return ep


@pytest.mark.parametrize("fin_with_data", [False, True], ids=["data", "data+FIN"])
def test_new_data_after_close_is_reset_by_kernel_and_model(
    pair: tuple[socket.socket, socket.socket], fin_with_data: bool
) -> None:
    client, server = pair
    local, remote = client.getsockname()[:2], client.getpeername()[:2]
    client.close()
    assert _wait_for(local, remote, State.FIN_WAIT2) is State.FIN_WAIT2
    if fin_with_data:
        server.send(b"x" * 100, socket.MSG_MORE)  # corked: goes out with the FIN
        server.shutdown(socket.SHUT_WR)
    else:
        server.send(b"x" * 100)
    # The client's RST ends both sides: no TIME_WAIT on the client, EPIPE on the server.
    assert _wait_for(local, remote, State.CLOSED) is State.CLOSED
    assert _wait_for(remote, local, State.CLOSED) is State.CLOSED
    ep = _model(Event.CLOSE, fin_with_data)
    assert ep.state is State.CLOSED and ep.history[-1][2] in ("rcv data", "rcv FIN")


@pytest.mark.parametrize("fin_with_data", [False, True], ids=["data", "data+FIN"])
def test_new_data_after_shutdown_is_read_by_kernel_and_model(
    pair: tuple[socket.socket, socket.socket], fin_with_data: bool
) -> None:
    client, server = pair
    local, remote = client.getsockname()[:2], client.getpeername()[:2]
    client.shutdown(socket.SHUT_WR)
    assert _wait_for(local, remote, State.FIN_WAIT2) is State.FIN_WAIT2
    if fin_with_data:
        server.send(b"x" * 100, socket.MSG_MORE)
        server.shutdown(socket.SHUT_WR)
    else:
        server.send(b"x" * 100)
    client.settimeout(5)
    assert client.recv(1000) == b"x" * 100
    want = State.TIME_WAIT if fin_with_data else State.FIN_WAIT2
    assert _wait_for(local, remote, want) is want
    ep = _model(Event.SHUTDOWN, fin_with_data)
    assert ep.closing is Closing.SHUTDOWN
    assert ep.state is want
