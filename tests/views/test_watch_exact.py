"""``watch`` in exact mode: a highlighted change shows every state the kernel reported."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest

from tcplens.model.states import State as S
from tcplens.views.watch import WatchView
from tests.views.test_trace import listener, port_of
from tests.views.test_watch import lines_with_styles, row, snap, sock

KEY = ("127.0.0.1", 40000, "127.0.0.1", 80)


def test_a_change_shows_the_kernels_whole_path_between_two_refreshes() -> None:
    view = WatchView(highlight=2, interval=1.0)
    view.exact = {}
    view.update(snap(0.0, sock(40000, 80, S.ESTABLISHED)))
    view.kernel_moves(
        [(KEY, S.ESTABLISHED, S.FIN_WAIT1), (KEY, S.FIN_WAIT1, S.FIN_WAIT2),
         (KEY, S.FIN_WAIT2, S.TIME_WAIT)]
    )  # fmt: skip
    view.update(snap(1.0, sock(40000, 80, S.TIME_WAIT)))
    lines = lines_with_styles(view)
    text, _ = row(lines, "40000")
    assert "ESTABLISHED → FIN_WAIT1 → FIN_WAIT2 → TIME_WAIT" in text
    assert "mode: exact" in lines[0][0]
    view.update(snap(2.0, sock(40000, 80, S.TIME_WAIT)))  # paths are per refresh
    assert view.exact == {}


def test_sampled_mode_keeps_old_to_new() -> None:
    view = WatchView(highlight=2, interval=1.0)
    view.update(snap(0.0, sock(40000, 80, S.ESTABLISHED)))
    view.update(snap(1.0, sock(40000, 80, S.TIME_WAIT)))
    lines = lines_with_styles(view)
    text, _ = row(lines, "40000")
    assert "ESTABLISHED → TIME_WAIT" in text and "FIN_WAIT1" not in text
    assert "mode: exact" not in lines[0][0]


@pytest.mark.skipif(os.geteuid() != 0, reason="exact mode needs root")
def test_piped_watch_runs_exact_as_root_and_says_so() -> None:
    with listener() as lsock:
        port = port_of(lsock)
        proc = subprocess.Popen(
            [sys.executable, "-m", "tcplens", "watch", "--port", str(port), "-P",
             "--interval", "0.1", "--count", "30"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        time.sleep(1.5)
        client = socket.create_connection(("127.0.0.1", port))
        server, _ = lsock.accept()
        client.close()
        server.close()
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "mode: exact (kernel tracepoints in " in err
    assert f":{port}" in out  # the connection's lines
