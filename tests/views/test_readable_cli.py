"""What a person reads: whole addresses at any width, one-line usage errors, no ignored options.

The width tests run the real command in a pseudo-terminal of 80 and 60
columns, over listening and connected sockets this test owns; every
``address:port`` and ``pid/program`` of them must come out whole on one line
(a table may run longer than the terminal, as ss's lines do, but never fold
``127.0.0.1:18090`` into ``127.0.0.1:180`` / ``90`` or end it with ``…``).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from rich.console import Console

from tcplens.model.states import State
from tcplens.sources.records import Addr, Snapshot, Socket
from tcplens.views.cli import COMMANDS
from tcplens.views.sockets import Columns, render_table
from tcplens.views.watch import WatchView, render_watch
from tests.terminal import run_in_terminal

NETSTAT = Path(__file__).resolve().parents[1] / "fixtures" / "text" / "linux-netstat-anp.txt"


def tcplens(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tcplens", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def in_terminal(columns: int, *args: str, timeout: float = 30.0) -> str:
    """Run ``tcplens ARGS`` in a real pseudo-terminal ``columns`` wide; its plain text."""
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": str(columns), "LINES": "40"}
    env.pop("NO_COLOR", None)
    return run_in_terminal(list(args), columns=columns, env=env, timeout=timeout).text


@dataclass
class Owned:
    """Sockets this test holds: a listener, one connection to it, and an IPv6 listener."""

    port: int
    client_port: int
    port6: int
    program: str  # "PID/name" as every listing prints the owner

    def words(self) -> list[str]:
        return [
            f"127.0.0.1:{self.port}",
            f"127.0.0.1:{self.client_port}",
            f"[::1]:{self.port6}",
            self.program,
        ]


@contextmanager
def owned_sockets() -> Iterator[Owned]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    client = socket.create_connection(server.getsockname())
    accepted, _ = server.accept()
    server6 = socket.socket(socket.AF_INET6)
    server6.bind(("::1", 0))
    server6.listen(8)
    comm = Path("/proc/self/comm").read_text().strip()
    try:
        yield Owned(
            server.getsockname()[1],
            client.getsockname()[1],
            server6.getsockname()[1],
            f"{os.getpid()}/{comm}",
        )
    finally:
        for s in (client, accepted, server, server6):
            s.close()


def assert_whole(text: str, words: list[str]) -> None:
    """Each word appears on some line as itself, and no line holds a cut piece of one."""
    for word in words:
        assert re.search(rf"(?<![\w.:\[]){re.escape(word)}(?![\w:\]])", text), (word, text)
    assert "…" not in text, text


@pytest.mark.parametrize("columns", [80, 60])
def test_ls_in_a_terminal_never_splits_an_address_or_a_program(columns: int) -> None:
    with owned_sockets() as mine:
        out = in_terminal(columns, "ls", "--port", str(mine.port), "--port", str(mine.port6))
    assert "Local Address" in out
    assert_whole(out, mine.words())
    rows = [line for line in out.splitlines() if line.startswith(("tcp", "udp"))]
    assert len(rows) == 4  # listener, both ends of the connection, the IPv6 listener


@pytest.mark.parametrize("columns", [80, 60])
def test_ls_with_every_column_keeps_addresses_whole(columns: int) -> None:
    with owned_sockets() as mine:
        out = in_terminal(columns, "ls", "-o", "-i", "-e", "--port", str(mine.port))
    assert_whole(out, [*mine.words()[:2], mine.program])


@pytest.mark.parametrize("columns", [80, 60])
def test_one_watch_frame_keeps_ports_and_programs_whole(columns: int) -> None:
    with owned_sockets() as mine:
        out = in_terminal(
            columns,
            "watch",
            "--count",
            "1",
            "--port",
            str(mine.port),
            "--port",
            str(mine.port6),
        )
    assert "tcplens watch" in out
    words = mine.words() if columns >= 80 else mine.words()[:3]
    assert_whole(out, words)


def test_a_narrow_watch_names_the_columns_it_left_out() -> None:
    long_ip = "2001:db8:aaaa:bbbb:cccc:dddd:eeee:ffff"
    view = WatchView()
    view.update(
        Snapshot(
            [
                Socket(
                    "tcp",
                    6,
                    Addr(long_ip, 443),
                    Addr(long_ip, 55555),
                    State.ESTABLISHED,
                    0,
                    0,
                    pid=4242,
                    process="nginx",
                ),
            ],
            source="test",
            taken_at=1.0,
        )
    )
    for width in (200, 140, 80, 60):
        console = Console(width=width, record=True)
        console.print(render_watch(view, width=width))
        text = console.export_text()
        assert f"[{long_ip}]:443" in text and f"[{long_ip}]:55555" in text, text
        assert "…" not in text
        found = re.search(r"not shown: ([^)]*)\)", text)
        left_out = found[1] if found else ""
        assert ("4242/nginx" in text) != ("PID/Program" in left_out), text
        assert ("not shown" in text) is (width < 200)
        assert max(len(line.rstrip()) for line in text.splitlines()) <= width


def _leak_dump(path: Path) -> list[str]:
    """A saved netstat with a CLOSE_WAIT leak, long addresses and a long program name."""
    rows = [
        "Active Internet connections (servers and established)",
        "Proto Recv-Q Send-Q Local Address           Foreign Address         State       "
        "PID/Program name",
        "tcp        0      0 10.200.30.4:18090       0.0.0.0:*               LISTEN      "
        "31337/gunicorn-work",
    ]
    words = ["10.200.30.4:18090", "31337/gunicorn-work"]
    for i in range(40):
        peer = f"192.168.100.{200 + i % 50}:{54000 + i}"
        rows.append(
            f"tcp        1      0 10.200.30.4:18090       {peer:<23s} CLOSE_WAIT  "
            "31337/gunicorn-work"
        )
        words.append(peer)
    for i in range(30):  # active closes towards one peer: status groups them by it
        local = f"10.200.30.4:{40000 + i}"
        rows.append(f"tcp        0      0 {local:<23s} 203.0.113.77:443        TIME_WAIT   -")
        words.append(local)
    words.append("203.0.113.77:443")
    path.write_text("\n".join(rows) + "\n")
    return words


@pytest.mark.parametrize("columns", [80, 60])
@pytest.mark.parametrize("verb", ["status", "doctor", "ls"])
def test_status_doctor_and_ls_keep_every_address_whole(
    verb: str, columns: int, tmp_path: Path
) -> None:
    dump = tmp_path / "netstat.txt"
    words = _leak_dump(dump)
    out = in_terminal(columns, verb, "--from", str(dump))
    piped = tcplens(verb, "--from", str(dump)).stdout
    # whatever the pipe shows of the addresses, the terminal shows whole
    shown = [w for w in words if w in piped]
    assert shown, piped
    assert_whole(out, [w for w in shown if w != "31337/gunicorn-work"])
    tokens = set(re.findall(r"[\w./:\[\]-]+", out))
    cut = {t for t in tokens if re.fullmatch(r"(?:10|192|203)\.[\d.]*:?\d*", t) and t not in words}
    cut -= {w.split(":")[0] for w in words}  # "peers 192.168.100.200 (1)": hosts alone
    assert not cut, (cut, out)


def test_a_table_wider_than_the_terminal_runs_long_instead_of_folding() -> None:
    long_ip = "2001:db8:aaaa:bbbb:cccc:dddd:eeee:ffff"
    rows = [
        Socket("tcp", 6, Addr(long_ip, 443), Addr(long_ip, 55555), State.CLOSE_WAIT, 0, 0,
               pid=31337, process="a-long-program"),
        Socket("tcp", 4, Addr("127.0.0.1", 18090), Addr("0.0.0.0", 0), State.LISTEN, 0, 128),
    ]  # fmt: skip
    for width in (200, 80, 60):
        console = Console(width=width, record=True)
        console.print(render_table(rows, Columns(timers=True), width=width), crop=False)
        lines = console.export_text().splitlines()
        assert len(lines) == 3, lines  # header and one line per socket: nothing folds
        assert f"[{long_ip}]:443" in lines[1] and "31337/a-long-program" in lines[1]
        assert "127.0.0.1:18090" in lines[2]
        if width == 200:
            assert max(len(line.rstrip()) for line in lines) <= width


def test_an_80_column_listing_of_loopback_fits_by_narrowing_the_gaps() -> None:
    row = Socket("tcp", 4, Addr("127.0.0.1", 18090), Addr("127.0.0.1", 33234),
                 State.ESTABLISHED, 0, 0, pid=1234567, process="python3")  # fmt: skip
    console = Console(width=80, record=True)
    console.print(render_table([row], Columns(), width=80), crop=False)
    lines = console.export_text().splitlines()
    assert all(len(line.rstrip()) <= 80 for line in lines), lines
    assert "127.0.0.1:18090 127.0.0.1:33234 ESTABLISHED 1234567/python3" in lines[1]


# --------------------------------------------------------------------------
# Usage errors: one line, exit 2, for every command


@pytest.mark.parametrize("name", ["", *COMMANDS])
def test_a_usage_error_is_one_line_on_stderr_and_exit_2(name: str) -> None:
    args = [name, "--bogus"] if name else ["--bogus"]
    done = tcplens(*args)
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    where = f"tcplens {name}".strip()
    assert lines[0].startswith(f"{where}: error: No such option '--bogus'")
    assert lines[0].endswith(f" (see '{where} --help')")


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("ls", "--state", "nope"), "Invalid value for '--state': unknown TCP state 'nope'"),
        (("ls", "--json", "--csv"), "choose one of --json / --csv"),
        (("explain", "--lang", "xx"), "Invalid value for '--lang'"),
        (("pcap",), "Missing argument 'FILE'"),
        (("frobnicate",), "No such command 'frobnicate'"),
    ],
)
def test_other_usage_errors_are_one_line_too(args: tuple[str, ...], needle: str) -> None:
    done = tcplens(*args)
    assert done.returncode == 2
    assert len(done.stderr.splitlines()) == 1 and needle in done.stderr, done.stderr


# --------------------------------------------------------------------------
# Options are never silently ignored


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("ls", "--format", "ss"), "--format describes --from FILE"),
        (("doctor", "--strict"), "--strict describes --from FILE"),
        (("ls", "--from", str(NETSTAT), "--source", "procfs"), "--source chooses a live source"),
        (("status", "--from", str(NETSTAT), "--proc-root", "/proc"), "--proc-root chooses"),
        (("status", "--fast", "--source", "procfs"), "--fast counts from the netlink dump"),
        (("status", "--fast", "--proc-root", "/tmp"), "recorded files (--proc-root)"),
        (("status", "--fast", "--from", str(NETSTAT)), "--fast counts this machine's"),
        (("watch", "--from", str(NETSTAT)), "No such option '--from'"),
        (("trace", "--from", str(NETSTAT)), "No such option '--from'"),
        (("watch", "--format", "ss"), "No such option '--format'"),
    ],
)
def test_an_option_that_would_be_ignored_is_a_one_line_error(
    args: tuple[str, ...], needle: str
) -> None:
    done = tcplens(*args)
    assert done.returncode == 2, done.stdout
    assert done.stdout == ""
    assert len(done.stderr.splitlines()) == 1 and needle in done.stderr, done.stderr


@pytest.mark.parametrize("verb", ["watch", "trace"])
def test_watch_and_trace_do_not_advertise_from(verb: str) -> None:
    done = tcplens(verb, "--help")
    assert done.returncode == 0
    for option in ("--from", "--format", "--strict"):
        assert option not in done.stdout
    assert "--source" in done.stdout and "--proc-root" in done.stdout


def test_the_environment_source_is_no_conflict_with_from() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tcplens", "ls", "--from", str(NETSTAT)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "TCPLENS_SOURCE": "procfs"},
    )
    assert done.returncode == 0, done.stderr
    assert "LISTEN" in done.stdout


def test_fast_status_still_runs_on_netlink() -> None:
    done = tcplens("status", "--fast")
    assert done.returncode == 0, done.stderr
    assert "· netlink ·" in done.stdout


# --------------------------------------------------------------------------
# explain takes a state written with spaces, unquoted


@pytest.mark.parametrize(
    ("words", "state"),
    [
        (("close", "wait"), "CLOSE_WAIT"),
        (("syn", "sent"), "SYN_SENT"),
        (("fin", "wait", "2"), "FIN_WAIT2"),
    ],
)
def test_explain_joins_unquoted_words(words: tuple[str, ...], state: str) -> None:
    done = tcplens("explain", *words)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"{state} — ")
    assert tcplens("explain", " ".join(words)).stdout == done.stdout


def test_explain_with_words_that_name_no_state_is_one_line() -> None:
    done = tcplens("explain", "close", "bogus")
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "tcplens: error: unknown TCP state 'close bogus'; did you mean CLOSED?"
    ]


# --------------------------------------------------------------------------
# ls --netstat prints a dual-stack socket's IPv4-mapped addresses as net-tools does


@pytest.mark.skipif(shutil.which("netstat") is None, reason="net-tools netstat not installed")
def test_netstat_prints_ipv4_mapped_addresses_as_net_tools_does() -> None:
    server = socket.socket(socket.AF_INET6)
    server.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    server.bind(("::", 0))
    server.listen(4)
    port = server.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    accepted, _ = server.accept()
    try:
        ours = tcplens("ls", "--netstat", "--port", str(port)).stdout.splitlines()
        real = subprocess.run(
            ["netstat", "-tanpW"], capture_output=True, text=True, check=True
        ).stdout.splitlines()
    finally:
        for s in (client, accepted, server):
            s.close()

    def rows(lines: list[str]) -> list[str]:
        # up to the pid: netstat names the program after argv[0], we after the kernel's comm
        return sorted(
            line[: line.find(f" {os.getpid()}/")]
            for line in lines
            if re.search(rf":{port}\b", line) and line.startswith("tcp")
        )

    assert rows(ours) == rows(real)
    mapped = next(line for line in ours if line.startswith("tcp6") and "ESTABLISHED" in line)
    assert f" 127.0.0.1:{port} " in mapped and "::ffff:" not in mapped


# --------------------------------------------------------------------------
# The README says what is true


README = Path(__file__).resolve().parents[2] / "README.md"


def _quick_start() -> tuple[list[str], str]:
    text = README.read_text()
    section = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.*?)\n```", section, re.S), section


def test_quick_start_installs_into_a_venv_pep_668_allows() -> None:
    blocks, section = _quick_start()
    assert blocks[1] == "bash scripts/test"  # the test command stays the test command
    assert len(blocks) == 2 and all("\n" not in block for block in blocks)
    install = blocks[0]
    # never pip into the system interpreter: Debian 12 / Ubuntu 24.04 refuse it (PEP 668)
    assert "python3 -m venv .venv" in install and ".venv/bin/pip install ." in install
    assert "python3 -m pip install" not in install and " pip install" not in install
    assert install.endswith(".venv/bin/tcplens")
    # root for full attribution runs the venv's script by path (sudo resets PATH)
    assert "`sudo .venv/bin/tcplens`" in section
    assert "python3-venv" in section and "pipx" in section


def test_readme_exit_codes_say_info_only_findings_exit_0() -> None:
    table = README.read_text().split("## Exit codes", 1)[1].split("\n## ", 1)[0]
    zero = next(line for line in table.splitlines() if line.startswith("| 0 |"))
    assert "info-only findings exit 0" in zero
    one = next(line for line in table.splitlines() if line.startswith("| 1 |"))
    assert "warning or above" in one
    assert "exit 1 when there are findings" not in README.read_text()
