"""A socket shared after fork() belongs to every process holding it, as ``ss -p`` shows.

Pre-fork servers (nginx, gunicorn, php-fpm) open their listener once and
fork workers that all hold it.  The test does the same with a real process
and a real child, in a network namespace of its own, and reads the listener
through every listing route: records and columns, JSON and text, ``--pid``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from tests.netns import run_in_private_netns

pytestmark = pytest.mark.root

PREFORK = """\
import os, socket, sys, time
server = socket.socket()
server.bind(("127.0.0.1", 0))
server.listen(16)
child = os.fork()
if child == 0:
    sys.stdin.close()
    time.sleep(120)
    os._exit(0)
print(server.getsockname()[1], os.getpid(), child, server.fileno(), flush=True)
sys.stdin.read()
os.kill(child, 9)
os.waitpid(child, 0)
"""


@contextmanager
def _prefork() -> Iterator[tuple[int, int, int, int]]:
    """A listener held by a process and by the child it forked: (port, parent, child, fd)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", PREFORK], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        port, parent, child, fd = map(int, proc.stdout.readline().split())
        yield port, parent, child, fd
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(timeout=10)


def _ls(*args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "tcplens", "ls", *args], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def _row(document: dict[str, Any], port: int) -> dict[str, Any]:
    (row,) = [s for s in document["sockets"] if s["local"]["port"] == port]
    return row


def test_a_listener_shared_after_fork_lists_every_holder() -> None:
    def body() -> None:
        with _prefork() as (port, parent, child, fd):
            rows = {}
            for route in ([], ["--source", "procfs"], ["-t", "-l"]):  # columns, then records
                rows[len(route)] = row = _row(json.loads(_ls("--json", *route)), port)
                assert row["pid"] == parent and row["fd"] == fd, route
                assert [(h["pid"], h["fd"]) for h in row["holders"]] == [
                    (parent, fd),
                    (child, fd),
                ], route
                assert row["holders"][0]["process"] == row["process"]
            assert rows[0] == rows[2]  # the columnar writer says what the record writer says
            # the child finds it with --pid, as the parent does
            for pid in (child, parent):
                row = _row(json.loads(_ls("--json", "--pid", str(pid))), port)
                assert {h["pid"] for h in row["holders"]} == {parent, child}
            # text names both, as ss -p does; piped (columns) and from records
            for route in ([], ["-e"]):
                (line,) = [x for x in _ls(*route).splitlines() if f"127.0.0.1:{port} " in x]
                program = line.split()[-1] if not route else line.split()[6]
                pids = [int(part.split("/")[0]) for part in program.split(",")]
                assert pids == [parent, child], (route, line)

    run_in_private_netns(body, required=True)
