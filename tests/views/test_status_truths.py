"""``tcplens status`` says only what its source knows, and groups closing sockets by peer.

Each test builds real sockets on the loopback of a network namespace of its own
and runs the real ``tcplens status`` there, so other suites' sockets do not count.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tcplens.model.states import State
from tcplens.sources import procfs
from tests.netns import run_in_private_netns

pytestmark = pytest.mark.root

#: /proc/net follows the process's first thread; this one sees the namespace the body runs in
_OWN_NET = "/proc/thread-self"


def _status(*args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "tcplens", "status", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def _wait_for(test: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 5
    while not test():
        assert time.monotonic() < deadline, "the sockets never reached the states wanted"
        time.sleep(0.01)


def _count(state: State) -> int:
    return sum(s.state is state for s in procfs.read(_OWN_NET, "tcp"))


def test_psutil_status_draws_no_conclusion_from_timers_it_cannot_see() -> None:
    def body() -> None:
        with socket.socket() as server:
            server.bind(("127.0.0.1", 0))
            server.listen(8)
            port = server.getsockname()[1]
            # a TIME_WAIT: the client closes first
            client = socket.create_connection(("127.0.0.1", port))
            accepted, _ = server.accept()
            client.close()
            accepted.close()
            # a FIN_WAIT2 this process still holds: shutdown() instead of close()
            half = socket.create_connection(("127.0.0.1", port))
            peer, _ = server.accept()
            half.shutdown(socket.SHUT_WR)
            try:
                _wait_for(lambda: _count(State.TIME_WAIT) == 1 and _count(State.FIN_WAIT2) == 1)
                portable = _status("--source", "psutil")
                assert "TIME_WAIT" in portable and "FIN_WAIT2" in portable
                # psutil has no timers: a socket without one proves nothing
                assert "without a timer" not in portable, portable
                assert "held open" not in portable and "forever" not in portable
                # the kernel's own table has every timer: only the held FIN_WAIT2 lacks one
                kernel = _status("--source", "procfs")
                assert "FIN_WAIT2: 1 without a timer" in kernel, kernel
                assert "TIME_WAIT: 1 without" not in kernel
            finally:
                half.close()
                peer.close()

    run_in_private_netns(body, required=True)


def _closed_first(port: int, n: int, *, by_client: bool, server: socket.socket) -> None:
    for _ in range(n):
        client = socket.create_connection(("127.0.0.1", port))
        accepted, _ = server.accept()
        first, second = (client, accepted) if by_client else (accepted, client)
        first.close()
        second.close()


def test_closing_states_are_grouped_by_peer_not_by_ephemeral_local_port(tmp_path: Path) -> None:
    def body() -> None:
        with socket.socket() as server, socket.socket() as other:
            server.bind(("127.0.0.1", 0))
            server.listen(64)
            port = server.getsockname()[1]
            other.bind(("127.0.0.1", 0))
            other.listen(64)
            port2 = other.getsockname()[1]
            # clients that close first: TIME_WAIT on 12 ephemeral ports, all towards one peer
            _closed_first(port, 12, by_client=True, server=server)
            # a server that closes first: TIME_WAIT on its own listening port
            _closed_first(port2, 5, by_client=False, server=other)
            _wait_for(lambda: _count(State.TIME_WAIT) == 17)
            outputs = {
                source: _status("--source", source, "--full") for source in ("netlink", "procfs")
            }
            outputs["fast"] = _status("--source", "netlink", "--fast")
            dump = subprocess.run(
                ["ss", "-tan"], capture_output=True, text=True, check=True, timeout=30
            ).stdout
        saved = tmp_path / "ss-tan.txt"
        saved.write_text(dump)
        outputs["saved"] = _status("--from", str(saved))
        want = f"  TIME_WAIT 17: peers 127.0.0.1:{port} (12); local ports {port2} (5)"
        for name, text in outputs.items():
            (line,) = [x for x in text.splitlines() if x.startswith("  TIME_WAIT 17:")]
            assert line == want, (name, text)

    run_in_private_netns(body, required=True)
