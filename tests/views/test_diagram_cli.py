"""``tcplens diagram``: the drawn figure, live counts and severities in every format."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tcplens.model.diagram import SEVERITY_FILL, figure
from tcplens.model.states import State
from tests.netns import run_in_private_netns

SVG = "{http://www.w3.org/2000/svg}"


def tcplens(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tcplens", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _dump(tmp_path: Path, close_wait: int = 300, established: int = 12) -> Path:
    """A netstat -tanp dump: one Java server that never closes (the doctor's critical case)."""
    lines = [
        "Active Internet connections (servers and established)",
        "Proto Recv-Q Send-Q Local Address           Foreign Address         State       "
        "PID/Program name",
        "tcp        0      0 0.0.0.0:8080            0.0.0.0:*               LISTEN      1234/java",
    ]
    for i in range(close_wait):
        lines.append(
            f"tcp        1      0 10.0.0.1:8080           10.0.0.{i % 200 + 2}:{40000 + i}"
            "        CLOSE_WAIT  1234/java"
        )
    for i in range(established):
        lines.append(
            f"tcp        0      0 10.0.0.1:8080           10.0.1.{i + 2}:{50000 + i}"
            "        ESTABLISHED 1234/java"
        )
    path = tmp_path / "netstat.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


def _boxes(text: str) -> dict[str, str]:
    """What each box holds under its name, read from the drawing."""
    lines = text.splitlines()
    found: dict[str, str] = {}
    for state, x, y, w, _h in figure().boxes:
        name = lines[y + 1][x + 1 : x + w - 1].strip()
        assert name == str(state)
        found.setdefault(name, lines[y + 2][x + 1 : x + w - 1].strip())
    return found


def test_default_text_is_the_drawn_diagram_in_100_columns() -> None:
    done = tcplens("diagram")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(figure().text)
    assert max(len(line) for line in done.stdout.splitlines()) <= 100
    ascii_done = tcplens("diagram", "--ascii")
    assert ascii_done.stdout.isascii() and "+-------------+" in ascii_done.stdout
    assert tcplens("diagram", "--format", "list").stdout.startswith("client path:")


def test_counts_and_severity_from_a_saved_dump_in_the_boxes(tmp_path: Path) -> None:
    done = tcplens("diagram", "--from", str(_dump(tmp_path)))
    assert done.returncode == 0, done.stderr
    boxes = _boxes(done.stdout)
    assert boxes["CLOSE_WAIT"] == "300 !!"
    assert boxes["ESTABLISHED"] == "12"
    assert boxes["LISTEN"] == "1"
    assert boxes["TIME_WAIT"] == "0"
    assert "critical: CLOSE_WAIT: process 1234 (java) holds 300 CLOSE_WAIT" in done.stdout
    assert max(len(line) for line in done.stdout.splitlines()) <= 100


def test_counts_and_severity_in_dot_mermaid_and_svg(tmp_path: Path) -> None:
    dump = str(_dump(tmp_path))
    dot = tcplens("diagram", "--from", dump, "--format", "dot").stdout
    assert '"CLOSE_WAIT" [label="CLOSE_WAIT\\n300", fillcolor="#f4a6a6"' in dot
    assert '"ESTABLISHED" [label="ESTABLISHED\\n12"]' in dot
    mermaid = tcplens("diagram", "--from", dump, "--format", "mermaid").stdout
    assert 'state "CLOSE_WAIT (300)" as CLOSE_WAIT' in mermaid
    assert "class CLOSE_WAIT critical" in mermaid
    done = tcplens("diagram", "--from", dump, "--format", "svg")
    assert done.returncode == 0, done.stderr
    root = ET.fromstring(done.stdout)
    nodes = {g.findtext(f"{SVG}title"): g for g in root.iter(f"{SVG}g") if g.get("class") == "node"}
    assert set(nodes) == {str(s) for s in State if s is not State.UNKNOWN}
    texts = [t.text for t in nodes["CLOSE_WAIT"].iter(f"{SVG}text")]
    assert texts == ["CLOSE_WAIT", "300"]
    fills = {p.get("fill") for p in nodes["CLOSE_WAIT"].iter() if p.get("fill")}
    assert SEVERITY_FILL["critical"] in fills


def test_usage_errors_are_one_line() -> None:
    for args in (
        ("diagram", "--duration", "1"),
        ("diagram", "--live", "--from", "x.txt"),
        ("diagram", "--ascii", "--format", "dot"),
    ):
        done = tcplens(*args)
        assert done.returncode == 2, args
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert tcplens("diagram", "--from-format", "ss").returncode == 2


def test_an_unknown_dump_names_the_option_that_fixes_it(tmp_path: Path) -> None:
    junk = tmp_path / "junk.txt"
    junk.write_text("hello\nworld\n")
    for args in (("diagram", "--from", str(junk)), ("report", str(junk), "-o", "x.html")):
        done = tcplens(*args)
        assert done.returncode == 2
        assert len(done.stderr.strip().splitlines()) == 1
        assert "--from-format takes linux-netstat" in done.stderr, done.stderr
    fixed = tcplens("diagram", "--from", str(_dump(tmp_path)), "--from-format", "linux-netstat")
    assert _boxes(fixed.stdout)["CLOSE_WAIT"] == "300 !!"


def test_missing_dump_is_one_line() -> None:
    missing = tcplens("diagram", "--from", "/nonexistent/netstat.txt")
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert "/nonexistent/netstat.txt" in missing.stderr


def test_live_counts_are_this_namespaces_sockets() -> None:
    """In a namespace of its own the test knows every socket: the boxes must say exactly that."""
    if os.geteuid() != 0:
        pytest.skip("needs root for a private network namespace")
    out: list[str] = []

    def body() -> None:
        listener = socket.create_server(("127.0.0.1", 0))
        port = listener.getsockname()[1]
        clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]
        served = [listener.accept()[0] for _ in range(3)]
        served[0].close()  # client 0 goes to CLOSE_WAIT, its server side to FIN_WAIT2
        time.sleep(0.2)
        out.append(tcplens("diagram", "--live").stdout)
        out.append(tcplens("diagram", "--live", "--format", "dot").stdout)
        for s in [listener, *clients, *served[1:]]:
            s.close()

    run_in_private_netns(body, required=True)
    boxes = _boxes(out[0])
    assert boxes["LISTEN"] == "1"
    assert boxes["ESTABLISHED"] == "4"
    assert boxes["CLOSE_WAIT"] == "1"
    assert boxes["FIN_WAIT2"] == "1"
    assert boxes["SYN_SENT"] == "0"
    assert '"ESTABLISHED" [label="ESTABLISHED\\n4"]' in out[1]


def test_live_duration_weights_edges_by_traced_transitions() -> None:
    if os.geteuid() != 0:
        pytest.skip("exact tracing needs root")
    from tcplens.sources.tracepoints import unavailable_reason

    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(f"exact tracing unavailable: {reason}")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tcplens",
            "diagram",
            "--live",
            "--duration",
            "3",
            "--format",
            "dot",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(1.2)  # the session is open by then
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    for _ in range(5):
        client = socket.create_connection(("127.0.0.1", port))
        server, _addr = listener.accept()
        client.close()
        server.close()
    listener.close()
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    assert "transitions seen in 3 s" in stdout
    weights = {
        (m[1], m[2]): int(m[3])
        for m in re.finditer(r'"(\w+)" -> "(\w+)" \[label="[^"]*seen (\d+)', stdout)
    }
    # others on this machine add theirs; ours are at least there
    assert weights.get(("CLOSED", "SYN_SENT"), 0) >= 5
    assert weights.get(("SYN_SENT", "ESTABLISHED"), 0) >= 5
    assert weights.get(("ESTABLISHED", "FIN_WAIT1"), 0) >= 5
    assert weights.get(("ESTABLISHED", "CLOSE_WAIT"), 0) >= 5


def test_graphviz_is_available_for_svg() -> None:
    assert shutil.which("dot"), "graphviz is installed by scripts/install-system-deps"


def test_duration_without_exact_tracing_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from tcplens.sources import tracepoints
    from tcplens.views.cli import main

    monkeypatch.setattr(tracepoints, "unavailable_reason", lambda: "tracefs needs root")
    with pytest.raises(SystemExit) as stop:
        main(["diagram", "--live", "--duration", "1"])
    err = capsys.readouterr().err
    assert stop.value.code != 0
    assert err.strip() == "tcplens: error: tracefs needs root"
