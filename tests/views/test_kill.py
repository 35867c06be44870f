"""``tcplens kill`` on real sockets, each test in a network namespace of its own (root).

What is checked is what a user would check: the peer's ``recv()`` fails with
ECONNRESET, ``ss`` no longer lists the closed sockets and still lists the
others, refusals leave everything in place, and the confirmation is asked in
a real pseudo-terminal.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

import pytest
from click.testing import CliRunner

import tcplens
from tcplens.analysis.filters import SocketFilter
from tcplens.model.states import State
from tcplens.sources import actions, netlink
from tcplens.views.commands.kill import explicit_listen
from tests.netns import run_in_private_netns
from tests.terminal import run_in_terminal

pytestmark = pytest.mark.root


def tcplens_cli(*args: str, prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    """The real command, with no terminal on stdin (as in a script or a pipe)."""
    return subprocess.run(
        [*prefix, sys.executable, "-m", "tcplens", *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def ss_lines() -> list[str]:
    """``ss -tan`` of this namespace, one line per socket: the independent witness."""
    out = subprocess.run(["ss", "-tanH"], capture_output=True, text=True, check=True, timeout=30)
    return [" ".join(line.split()) for line in out.stdout.splitlines() if line.strip()]


def ss_has(state: str, local: str, peer: str | None = None) -> bool:
    for line in ss_lines():
        words = line.split()
        if words[0] == state and words[3] == local and (peer is None or words[4] == peer):
            return True
    return False


@dataclass
class Connection:
    """A listener on ``port`` and one connection to it: ``client`` dialled, ``server`` accepted."""

    listener: socket.socket
    port: int
    client: socket.socket
    server: socket.socket

    @property
    def client_port(self) -> int:
        port: int = self.client.getsockname()[1]
        return port

    def client_addr(self) -> str:
        return f"127.0.0.1:{self.client_port}"

    def server_addr(self) -> str:
        return f"127.0.0.1:{self.port}"


@contextmanager
def connection() -> Iterator[Connection]:
    with ExitStack() as stack:
        listener = stack.enter_context(socket.socket())
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        port = listener.getsockname()[1]
        client = stack.enter_context(socket.create_connection(("127.0.0.1", port)))
        server, _ = listener.accept()
        stack.enter_context(server)
        yield Connection(listener, port, client, server)


def settle(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "the sockets never reached the expected states"
        time.sleep(0.01)


def in_netns(body: Callable[[], None]) -> None:
    run_in_private_netns(body, required=True)


# --------------------------------------------------------------------------- closing


def test_closing_a_connection_resets_the_peer_and_leaves_the_others() -> None:
    def body() -> None:
        with connection() as target, connection() as other:
            result = tcplens_cli("kill", "--dport", str(target.port), "--yes")
            assert result.returncode == 0, result.stderr
            assert "Closed 1:" in result.stdout
            assert target.client_addr() in result.stdout
            # the peer (the accepted end) is reset; the owner's socket is aborted
            with pytest.raises(ConnectionResetError):
                target.server.recv(1)
            with pytest.raises(ConnectionAbortedError):
                target.client.recv(1)
            assert not ss_has("ESTAB", target.client_addr())
            assert not ss_has("ESTAB", target.server_addr())
            # everything not selected is still there
            assert ss_has("LISTEN", target.server_addr())
            assert ss_has("ESTAB", other.client_addr(), other.server_addr())
            assert ss_has("ESTAB", other.server_addr(), other.client_addr())
            other.client.sendall(b"x")
            assert other.server.recv(1) == b"x"

    in_netns(body)


def test_ipv6_connections_are_named_and_closed_the_same_way() -> None:
    def body() -> None:
        with socket.socket(socket.AF_INET6) as listener:
            listener.bind(("::1", 0))
            listener.listen()
            port = listener.getsockname()[1]
            with socket.create_connection(("::1", port)) as client:
                server, _ = listener.accept()
                with server:
                    result = tcplens_cli("kill", "-6", "--dport", str(port), "--yes")
                    assert result.returncode == 0, result.stderr
                    assert f"[::1]:{client.getsockname()[1]}" in result.stdout
                    with pytest.raises(ConnectionResetError):
                        server.recv(1)
                    assert ss_has("LISTEN", f"[::1]:{port}")

    in_netns(body)


def test_killing_close_wait_gives_the_doctors_leak_advice_for_that_process() -> None:
    def body() -> None:
        with connection() as conn:
            conn.client.close()  # the peer closes; the server end sits in CLOSE_WAIT
            settle(lambda: ss_has("CLOSE-WAIT", conn.server_addr()))
            pid = os.getpid()
            result = tcplens_cli(
                "kill", "--state", "close-wait", "--sport", str(conn.port), "--yes"
            )
            assert result.returncode == 0, result.stderr
            text = " ".join(result.stdout.split())
            assert "CLOSE_WAIT is a leak in the application" in text
            assert f"process {pid} (" in text and "holds 1 CLOSE_WAIT socket" in text
            assert "does not fix the leak" in text
            assert not ss_has("CLOSE-WAIT", conn.server_addr())
            # the process still holds the descriptor: it reads end-of-file, writes fail
            assert conn.server.fileno() >= 0
            assert conn.server.recv(1) == b""
            with pytest.raises(ConnectionAbortedError):
                conn.server.send(b"x")

    in_netns(body)


def test_the_leak_advice_speaks_chinese_with_lang_zh() -> None:
    def body() -> None:
        with connection() as conn:
            conn.client.close()
            settle(lambda: ss_has("CLOSE-WAIT", conn.server_addr()))
            result = tcplens_cli(
                "kill", "--state", "close-wait", "--sport", str(conn.port), "--yes", "--lang", "zh"
            )
            assert result.returncode == 0, result.stderr
            assert "已关闭 1 个" in result.stdout
            assert "CLOSE_WAIT 是应用程序的泄漏" in result.stdout
            assert f"进程 {os.getpid()}" in result.stdout

    in_netns(body)


def test_time_wait_is_removed_on_this_kernel_and_the_advice_says_why_not_to() -> None:
    def body() -> None:
        with connection() as conn:
            client_addr = conn.client_addr()
            conn.client.close()  # the client closes first: TIME_WAIT is on its side
            settle(lambda: ss_has("CLOSE-WAIT", conn.server_addr()))
            conn.server.close()
            settle(lambda: ss_has("TIME-WAIT", client_addr))
            result = tcplens_cli("kill", "--state", "time-wait", "--dport", str(conn.port), "--yes")
            assert result.returncode == 0, result.stderr
            text = " ".join(result.stdout.split())
            assert "Closing TIME_WAIT is rarely right" in text
            assert "ends by itself after 60 s" in text
            assert "Reuse connections" in text
            # measured, not assumed: Linux 6.18's tcp_abort() removes TIME_WAIT entries
            assert "This kernel removed 1 TIME_WAIT entry" in text
            assert not ss_has("TIME-WAIT", client_addr)

    in_netns(body)


# --------------------------------------------------------------------------- refusals


def test_no_filter_at_all_is_refused_and_nothing_is_closed() -> None:
    def body() -> None:
        with connection() as conn:
            for args in (["kill", "--yes"], ["kill", "-t", "-4", "--yes"]):
                result = tcplens_cli(*args)
                assert result.returncode == 2, result
                assert result.stderr.count("\n") == 1 and "refusing" in result.stderr
                assert "Traceback" not in result.stderr
            udp = tcplens_cli("kill", "-u", "--sport", "53", "--yes")
            assert udp.returncode == 2 and "TCP connections only" in udp.stderr
            assert ss_has("ESTAB", conn.client_addr())

    in_netns(body)


def test_listeners_are_closed_only_when_the_state_filter_names_listen() -> None:
    def body() -> None:
        with connection() as conn:
            port = str(conn.port)
            # the accepted connection on the port is closed, its listener held back
            result = tcplens_cli("kill", "--sport", port, "--yes")
            assert result.returncode == 0, result.stderr
            assert "Closed 1:" in result.stdout and "ESTABLISHED" in result.stdout
            assert "Held back 1 LISTEN socket" in result.stdout
            with pytest.raises(ConnectionResetError):
                conn.client.recv(1)
            for args in (["--state", "all", "--sport", port], ["-l"]):
                result = tcplens_cli("kill", *args, "--yes")
                assert result.returncode == 0, result.stderr
                assert "No TCP connection matches." in result.stdout, args
                assert "Held back 1 LISTEN socket" in result.stdout, args
                assert ss_has("LISTEN", conn.server_addr()), args
            with socket.create_connection(("127.0.0.1", conn.port)):
                pass  # still accepting
            result = tcplens_cli("kill", "--state", "listen", "--sport", port, "--yes")
            assert result.returncode == 0, result.stderr
            assert "Closed 1:" in result.stdout and "LISTEN" in result.stdout
            assert not ss_has("LISTEN", conn.server_addr())
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection(("127.0.0.1", conn.port), timeout=5).close()

    in_netns(body)


@pytest.mark.parametrize(
    ("args", "explicit"),
    [
        (["--state", "listen"], True),
        (["--state=LISTENING"], True),
        (["--state", "established,0A"], True),  # the kernel code of LISTEN
        (["--state", "all"], False),
        (["--state", "big"], False),
        (["--sport", "80"], False),
        (["--", "--state", "listen"], False),
    ],
)
def test_which_spellings_name_listen_explicitly(args: list[str], explicit: bool) -> None:
    assert explicit_listen(args) is explicit


def test_without_a_terminal_it_lists_and_needs_yes() -> None:
    def body() -> None:
        with connection() as conn:
            result = tcplens_cli("kill", "--dport", str(conn.port))
            assert result.returncode == 2
            assert "Would close 1 TCP connection" in result.stdout
            assert conn.client_addr() in result.stdout
            assert "add --yes" in result.stderr and result.stderr.count("\n") == 1
            assert ss_has("ESTAB", conn.client_addr())

    in_netns(body)


def test_dry_run_lists_and_closes_nothing() -> None:
    def body() -> None:
        with connection() as conn:
            result = tcplens_cli("kill", "--dport", str(conn.port), "--dry-run")
            assert result.returncode == 0, result.stderr
            assert "Would close 1 TCP connection" in result.stdout
            assert "Dry run: nothing closed." in result.stdout
            as_json = tcplens_cli("kill", "--dport", str(conn.port), "--dry-run", "--json")
            document = json.loads(as_json.stdout)
            assert document["dry_run"] is True and document["closed"] == []
            assert [s["local"]["port"] for s in document["planned"]] == [conn.client_port]
            assert ss_has("ESTAB", conn.client_addr(), conn.server_addr())
            conn.client.sendall(b"x")
            assert conn.server.recv(1) == b"x"

    in_netns(body)


def test_json_reports_what_was_closed() -> None:
    def body() -> None:
        with connection() as conn:
            result = tcplens_cli("kill", "--dport", str(conn.port), "--yes", "--json")
            assert result.returncode == 0, result.stderr
            document = json.loads(result.stdout)
            assert document["version"] == 1 and document["dry_run"] is False
            (closed,) = document["closed"]
            assert closed["local"] == {"ip": "127.0.0.1", "port": conn.client_port, "service": None}
            assert closed["remote"]["port"] == conn.port
            assert closed["state"] == "ESTABLISHED" and closed["pid"] == os.getpid()
            assert document["failed"] == [] and document["held_listeners"] == []
            assert not ss_has("ESTAB", conn.client_addr())

    in_netns(body)


def test_without_cap_net_admin_one_line_says_eperm_and_nothing_is_closed() -> None:
    def body() -> None:
        with connection() as conn:
            drop = ("setpriv", "--bounding-set=-net_admin", "--inh-caps=-net_admin")
            result = tcplens_cli("kill", "--dport", str(conn.port), "--yes", prefix=drop)
            assert result.returncode == 2
            assert result.stderr.count("\n") == 1, result.stderr
            assert "CAP_NET_ADMIN" in result.stderr and "EPERM" in result.stderr
            assert ss_has("ESTAB", conn.client_addr())
            # the kernel's own answer, asked directly without the capability
            code = (
                "import socket\nfrom tcplens.sources import netlink\n"
                "p = netlink.dump_ids([(socket.AF_INET, 'tcp')])\n"
                "print(set(netlink.destroy([i for _, i in p])))"
            )
            direct = subprocess.run(
                [*drop, sys.executable, "-c", code], capture_output=True, text=True, timeout=60
            )
            assert direct.stdout.strip() == f"{{{errno.EPERM}}}", direct.stderr
            assert ss_has("ESTAB", conn.client_addr())

    in_netns(body)


# --------------------------------------------------------------------------- confirmation


def _answer_in_terminal(args: list[str], answer: bytes, timeout: float = 30.0) -> tuple[int, str]:
    """Run ``tcplens ARGS`` in a pseudo-terminal; type ``answer`` at the prompt."""
    env = {**os.environ, "TERM": "xterm", "COLUMNS": "120", "LC_ALL": "C.UTF-8"}
    screen = run_in_terminal(args, env=env, answer=answer, timeout=timeout)
    assert screen.answered, screen.text
    assert screen.code is not None, screen.text
    return screen.code, screen.text


def test_on_a_terminal_it_asks_and_no_closes_nothing() -> None:
    def body() -> None:
        with connection() as conn:
            code, text = _answer_in_terminal(["kill", "--dport", str(conn.port)], b"n")
            assert code == 1, text
            assert "Closing 1 TCP connection" in text and "Close 1 connection? [y/N]" in text
            assert "Nothing closed." in text
            assert ss_has("ESTAB", conn.client_addr(), conn.server_addr())

    in_netns(body)


def test_on_a_terminal_yes_closes_them() -> None:
    def body() -> None:
        with connection() as conn:
            code, text = _answer_in_terminal(["kill", "--dport", str(conn.port)], b"y")
            assert code == 0, text
            assert "Closed 1:" in text
            with pytest.raises(ConnectionResetError):
                conn.server.recv(1)
            assert not ss_has("ESTAB", conn.client_addr())

    in_netns(body)


def test_on_a_terminal_close_wait_advice_comes_before_the_question() -> None:
    def body() -> None:
        with connection() as conn:
            conn.client.close()
            settle(lambda: ss_has("CLOSE-WAIT", conn.server_addr()))
            code, text = _answer_in_terminal(
                ["kill", "--state", "close-wait", "--sport", str(conn.port)], b"n"
            )
            assert code == 1, text
            assert text.index("CLOSE_WAIT is a leak") < text.index("[y/N]")
            assert ss_has("CLOSE-WAIT", conn.server_addr())

    in_netns(body)


# --------------------------------------------------------------------------- library


def test_the_library_returns_what_was_closed_and_what_failed_with_the_kernels_reason() -> None:
    def body() -> None:
        with connection() as target, connection() as gone:
            dry = tcplens.kill(SocketFilter(dports=frozenset({target.port})), dry_run=True)
            assert dry.dry_run and [s.local.port for s in dry.planned] == [target.client_port]
            assert dry.closed == [] and ss_has("ESTAB", target.client_addr())

            result = tcplens.kill(SocketFilter(dports=frozenset({target.port})))
            assert [s.local.port for s in result.closed] == [target.client_port]
            assert result.failed == []

            # planned, then gone before the kernel is asked: a failure with its reason
            planned = actions.plan(SocketFilter(dports=frozenset({gone.port})))
            assert len(planned.targets) == 1
            gone_addr = gone.client_addr()
            gone.client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
            gone.client.close()  # linger 0: an RST, no TIME_WAIT left behind
            settle(lambda: not ss_has("ESTAB", gone_addr))
            late = actions.execute(planned)
            assert late.closed == []
            (failure,) = late.failed
            assert failure.errno == errno.ENOENT and failure.code == "ENOENT"
            assert failure.reason == os.strerror(errno.ENOENT)

    in_netns(body)


def test_the_library_refuses_a_selection_that_narrows_nothing() -> None:
    with pytest.raises(tcplens.ActionError, match="refusing") as caught:
        tcplens.kill(SocketFilter(protos=frozenset({"tcp"})), dry_run=True)
    assert caught.value.cause == "refused"


# --------------------------------------------------------------------------- portability


@pytest.mark.parametrize(
    ("platform", "words"),
    [("darwin", "not possible on macOS"), ("win32", "unsupported on Windows for now")],
)
def test_other_platforms_say_so_in_one_line(platform: str, words: str) -> None:
    # the platform is swapped once everything is imported: the check happens at run time
    code = (
        "import sys\n"
        "from tcplens.views.cli import main\n"
        "import tcplens.views.commands.kill\n"
        f"sys.platform = {platform!r}\n"
        "main(['kill', '--state', 'close-wait', '--yes'])\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 2
    assert words in result.stderr and result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.stderr


def test_a_kernel_without_sock_destroy_gets_one_line_and_the_alternatives(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Simulated: this kernel has SOCK_DESTROY, so its EOPNOTSUPP answer is played back."""
    from tcplens.views.commands.kill import command

    def unsupported(ids: list[netlink.SockId]) -> list[int]:
        return [errno.EOPNOTSUPP for _ in ids]

    def body() -> None:
        with connection() as conn:
            monkeypatch.setattr(netlink, "destroy", unsupported)
            result = CliRunner().invoke(
                command, ["--dport", str(conn.port), "--yes"], standalone_mode=False
            )
            assert result.return_value == 2, result.output
            text = " ".join(result.output.split())
            assert "this kernel cannot close sockets" in text and "EOPNOTSUPP" not in text
            assert "Operation not supported" in text and "CONFIG_INET_DIAG_DESTROY" in text
            assert "Other ways out" in text
            assert ss_has("ESTAB", conn.client_addr())

    in_netns(body)


def test_states_the_kernel_refuses_per_socket_are_failures_not_errors(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An older kernel refuses TIME_WAIT (EOPNOTSUPP) but closes full sockets: exit 1."""
    from tcplens.views.commands.kill import command

    real = netlink.destroy

    def old_kernel(ids: list[netlink.SockId]) -> list[int]:
        pairs = netlink.dump_ids([(socket.AF_INET, "tcp")], states=[State.TIME_WAIT])
        time_wait = {sid for _, sid in pairs}
        return [errno.EOPNOTSUPP if sid in time_wait else real([sid])[0] for sid in ids]

    def body() -> None:
        with connection() as waiting, connection() as live:
            waiting_addr = waiting.client_addr()
            waiting.client.close()
            settle(lambda: ss_has("CLOSE-WAIT", waiting.server_addr()))
            waiting.server.close()
            settle(lambda: ss_has("TIME-WAIT", waiting_addr))
            monkeypatch.setattr(netlink, "destroy", old_kernel)
            result = CliRunner().invoke(
                command,
                ["--state", "time-wait,established", "--dport", str(waiting.port),
                 "--dport", str(live.port), "--yes"],
                standalone_mode=False,
            )  # fmt: skip
            assert result.return_value == 1, result.output
            text = " ".join(result.output.split())
            assert "Closed 1:" in text and "Could not close 1:" in text
            assert "Operation not supported (EOPNOTSUPP)" in text
            assert "This kernel cannot remove TIME_WAIT entries" in text
            assert ss_has("TIME-WAIT", waiting_addr)
            assert not ss_has("ESTAB", live.client_addr())

    in_netns(body)
