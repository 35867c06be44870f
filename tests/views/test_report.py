"""``tcplens report``: one self-contained HTML page, checked in a real headless Chromium.

The page must load from a file with no network (its Content-Security-Policy
forbids any fetch, and the browser is watched for requests), log no console
error, and show the numbers the other verbs' ``--json`` give.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tcplens.packets.pcap import PcapWriter, read_frames
from tests.browser import DevTools, chromium_path, open_page
from tests.netns import run_in_private_netns

FIXTURES = Path(__file__).parents[1] / "fixtures"
ROWS = "Array.from(document.querySelectorAll('#conns tbody tr')).map(r => Number(r.dataset.index))"
LAB = FIXTURES / "lab"

pytestmark = pytest.mark.skipif(
    chromium_path() is None and not os.environ.get("CI"),
    reason="chromium is installed by scripts/install-system-deps",
)


def tcplens(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tcplens", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def _merged_capture(tmp_path: Path) -> Path:
    """Every lab capture one after another (1000 s apart): many connections, every ending."""
    out = tmp_path / "lab-all.pcap"
    with out.open("wb") as fh:
        writer: PcapWriter | None = None
        for k, path in enumerate(sorted(LAB.glob("*.pcap"))):
            with path.open("rb") as src:
                frames = list(read_frames(src, str(path)))
            first = frames[0].ts_ns
            for frame in frames:
                if writer is None:
                    writer = PcapWriter(fh, frame.linktype)
                ts = 1_700_000_000_000_000_000 + k * 1000 * 10**9 + (frame.ts_ns - first)
                writer.write(ts, frame.data, frame.wire_len)
    return out


def _shown(page: DevTools) -> dict[str, str]:
    value = page.evaluate(
        "Object.fromEntries(Array.from(document.querySelectorAll('[data-key]'))"
        ".map(e => [e.dataset.key, e.textContent.trim()]))"
    )
    assert isinstance(value, dict)
    return value


def _offline_and_quiet(page: DevTools, url: str) -> None:
    assert page.problems() == []
    assert page.requests() == [url.split("#")[0]]


def _report(tmp_path: Path, *args: str) -> tuple[Path, str]:
    out = tmp_path / "report.html"
    done = tcplens("report", *args, "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert f"wrote {out}" in done.stderr
    html = out.read_text()
    # self-contained: nothing loaded from anywhere
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", html)
    assert "Content-Security-Policy" in html
    return out, html


def test_capture_report_shows_what_pcap_json_says(tmp_path: Path) -> None:
    capture = _merged_capture(tmp_path)
    out, _html = _report(tmp_path, str(capture))
    doc = json.loads(tcplens("pcap", str(capture), "--json").stdout)
    conns = doc["connections"]
    assert len(conns) >= 15
    url = out.as_uri()
    with open_page(url) as page:
        _offline_and_quiet(page, url)
        shown = _shown(page)
        assert shown["summary.connections"] == str(len(conns))
        assert shown["summary.frames"] == str(doc["summary"]["frames"])
        assert shown["summary.tcp_segments"] == str(doc["summary"]["tcp_segments"])
        for side in ("orig", "resp"):
            counts = Counter(c[side]["final_state"] for c in conns)
            got = {
                k.split(".", 1)[1]: int(v)
                for k, v in shown.items()
                if k.startswith(f"{side}_state.")
            }
            assert got == counts
        got_zeek = {
            k[len("conn_state.") :]: int(v) for k, v in shown.items() if k.startswith("conn_state.")
        }
        assert got_zeek == Counter(c["conn_state"] for c in conns)
        # the table: one row per connection, sortable, a ladder on click
        rows = page.evaluate(ROWS)
        assert rows == [c["index"] for c in conns]
        page.evaluate("document.querySelectorAll('#conns th')[2].click()")  # duration, ascending
        page.evaluate("document.querySelectorAll('#conns th')[2].click()")  # descending
        order = page.evaluate(ROWS)
        by_duration = sorted(conns, key=lambda c: (-round(c["duration"], 9), c["index"]))
        assert order == [c["index"] for c in by_duration]
        assert (
            page.evaluate("document.querySelectorAll('#conns th')[2].getAttribute('aria-sort')")
            == "descending"
        )
        crossed = [c for c in conns if any(h["state"] == "CLOSING" for h in c["orig"]["history"])]
        assert crossed, "the lab's simultaneous close is in the merged capture"
        for conn in [*conns[:3], crossed[0]]:
            index = conn["index"]
            page.evaluate(
                f"document.querySelector('#conns tbody tr[data-index=\"{index}\"]').click()"
            )
            assert page.evaluate("document.getElementById('ladder').hidden") is False
            segments = page.evaluate("document.querySelectorAll('#ladder svg line.segment').length")
            assert segments == conn["orig"]["packets"] + conn["resp"]["packets"]
            assert page.evaluate("location.hash") == f"#conn-{index}"
        assert page.evaluate("document.querySelector('#ladder').textContent.includes('FINs cross')")
        screenshot = page.call("Page.captureScreenshot", format="png")
        assert len(screenshot["data"]) > 1000
        assert page.problems() == []


def test_a_ladder_can_be_linked_to(tmp_path: Path) -> None:
    out, _ = _report(tmp_path, str(FIXTURES / "pcap" / "200722_tcp_anon.pcapng"))
    url = out.as_uri() + "#conn-2"
    with open_page(url) as page:
        _offline_and_quiet(page, url)
        assert page.evaluate("document.getElementById('ladder').dataset.index") == "2"
        assert page.evaluate("document.querySelector('#conns tr.open').dataset.index") == "2"


def _dump(tmp_path: Path) -> Path:
    lines = [
        "Active Internet connections (servers and established)",
        "Proto Recv-Q Send-Q Local Address           Foreign Address         State       "
        "PID/Program name",
        "tcp        0      0 0.0.0.0:8080            0.0.0.0:*               LISTEN      1234/java",
    ]
    lines += [
        f"tcp        1      0 10.0.0.1:8080           10.0.0.{i % 200 + 2}:{40000 + i}"
        "        CLOSE_WAIT  1234/java"
        for i in range(300)
    ]
    lines += [
        f"tcp        0      0 10.0.0.1:{33000 + i}         10.0.2.9:443            TIME_WAIT   -"
        for i in range(7)
    ]
    path = tmp_path / "netstat.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_dump_report_shows_what_ls_and_doctor_json_say(tmp_path: Path) -> None:
    dump = _dump(tmp_path)
    out, html = _report(tmp_path, str(dump))
    listed = json.loads(tcplens("ls", "--from", str(dump), "--json").stdout)["sockets"]
    doctor = json.loads(tcplens("doctor", "--from", str(dump), "--json").stdout)["findings"]
    url = out.as_uri()
    with open_page(url) as page:
        _offline_and_quiet(page, url)
        shown = _shown(page)
        got = {k.split(".", 1)[1]: int(v) for k, v in shown.items() if k.startswith("tcp_states.")}
        assert got == Counter(s["state"] for s in listed if s["proto"] == "tcp")
        assert shown["findings"] == str(len(doctor))
        for i, finding in enumerate(doctor):
            assert shown[f"findings.{i}.severity"] == finding["severity"]
        # the diagram: every state's box, CLOSE_WAIT's count and colour
        names = page.evaluate(
            "Array.from(document.querySelectorAll('.diagram g.node title')).map(t => t.textContent)"
        )
        assert sorted(names) == sorted(
            ["CLOSED", "LISTEN", "SYN_SENT", "SYN_RECV", "ESTABLISHED", "FIN_WAIT1",
             "FIN_WAIT2", "CLOSE_WAIT", "CLOSING", "LAST_ACK", "TIME_WAIT"]
        )  # fmt: skip
        close_wait = page.evaluate(
            "Array.from(document.querySelectorAll('.diagram g.node'))"
            ".find(g => g.querySelector('title').textContent === 'CLOSE_WAIT')"
            ".textContent.replace(/\\s+/g, ' ').trim()"
        )
        assert close_wait == "CLOSE_WAIT CLOSE_WAIT 300"
        assert page.evaluate(
            "document.querySelector('#busy').textContent.includes('java[1234] (300)')"
        )
    assert "#f4a6a6" in html  # critical fill on the CLOSE_WAIT box


def test_this_machine_report_counts_this_namespaces_sockets(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root for a private network namespace")
    out = tmp_path / "now.html"
    results: list[subprocess.CompletedProcess[str]] = []

    def body() -> None:
        listener = socket.create_server(("127.0.0.1", 0))
        port = listener.getsockname()[1]
        clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(2)]
        served = [listener.accept()[0] for _ in range(2)]
        time.sleep(0.1)
        results.append(tcplens("report", "-o", str(out)))
        for s in [listener, *clients, *served]:
            s.close()

    run_in_private_netns(body, required=True)
    assert results[0].returncode == 0, results[0].stderr
    url = out.as_uri()
    with open_page(url) as page:
        _offline_and_quiet(page, url)
        shown = _shown(page)
        assert shown["tcp_states.LISTEN"] == "1"
        assert shown["tcp_states.ESTABLISHED"] == "4"
        assert shown["total"] == "5"


def test_the_browser_check_catches_errors_and_requests(tmp_path: Path) -> None:
    """The checks above can fail: a page with an error and a fetch is caught by both."""
    _out, html = _report(tmp_path, str(FIXTURES / "pcap" / "tcp_handshake.pcapng"))
    bad = tmp_path / "bad.html"
    bad.write_text(
        html.replace(
            "</body>",
            '<img src="http://192.0.2.1/x.png"><script>console.error("boom");'
            "null.x;</script></body>",
        )
    )
    url = bad.as_uri()
    with open_page(url) as page:
        problems = " ".join(page.problems())
        assert "boom" in problems and "exception" in problems
        assert "Content Security Policy" in problems or "192.0.2.1" in problems


def test_truncated_capture_reports_what_was_readable(tmp_path: Path) -> None:
    capture = _merged_capture(tmp_path)
    cut = tmp_path / "cut.pcap"
    data = capture.read_bytes()
    cut.write_bytes(data[: len(data) - 30])
    out = tmp_path / "cut.html"
    done = tcplens("report", str(cut), "-o", str(out))
    assert done.returncode == 1
    assert "Traceback" not in done.stderr and "truncated" in done.stderr.lower()
    html = out.read_text()
    doc = json.loads(tcplens("pcap", str(cut), "--json").stdout)
    shown: dict[str, Any] = json.loads(
        re.search(r'<script type="application/json" id="data">(.*?)</script>', html, re.S)[1]  # type: ignore[index]
    )
    assert shown["summary"]["connections"] == len(doc["connections"]) > 0
    assert "Capture cut short" in html


def test_bad_inputs_are_one_line_errors(tmp_path: Path) -> None:
    for args in (
        ("report", "/nonexistent.pcap", "-o", str(tmp_path / "x.html")),
        ("report", str(LAB / "handshake.pcap"), "-o", "/nonexistent/dir/x.html"),
        ("report", str(LAB / "handshake.pcap")),
    ):
        done = tcplens(*args)
        assert done.returncode == 2, (args, done.stderr)
        assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr


def test_capture_report_shows_each_connections_chain_only_when_there_is_one(
    tmp_path: Path,
) -> None:
    pcap = FIXTURES / "pcap"
    _out, html = _report(tmp_path, str(pcap / "encap_ethernet.pcap"))
    assert '<th scope="col">via</th>' in html
    assert "<td>vlan 10 &gt; vlan 20</td>" in html
    assert "via vlan 10 &gt; vlan 20" in html  # the ladder's title
    _out, html = _report(tmp_path, str(pcap / "tcp_handshake.pcapng"))
    assert '<th scope="col">via</th>' not in html
