"""Ladders as SVG images: valid XML, an arrow per segment, a box per state change, FINs crossing."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tcplens.model.scenarios import SCENARIOS
from tcplens.views.ladder import LadderRow
from tcplens.views.ladder_svg import find_fin_crossing, ladder_svg

SVG = "{http://www.w3.org/2000/svg}"
LAB = Path(__file__).parents[1] / "fixtures" / "lab"
FIXTURES = Path(__file__).parents[1] / "fixtures" / "pcap"


def tcplens(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tcplens", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _parts(svg: str) -> tuple[list[ET.Element], list[str], list[str]]:
    root = ET.fromstring(svg)  # valid XML or this raises
    assert root.tag == f"{SVG}svg"
    segments = [e for e in root.iter(f"{SVG}line") if e.get("class") == "segment"]
    texts = [t.text or "" for t in root.iter(f"{SVG}text")]
    boxes = [e.get("class") for e in root.iter(f"{SVG}rect") if e.get("class") == "state"]
    return segments, texts, [b or "" for b in boxes]


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_simulated_ladder_svg_has_every_segment_and_state_change(name: str) -> None:
    done = tcplens("simulate", name, "--format", "svg")
    assert done.returncode == 0, done.stderr
    segments, texts, boxes = _parts(done.stdout)
    steps = json.loads(tcplens("simulate", name, "--json").stdout)["steps"]
    moving = [s for s in steps if s["kind"] in ("deliver", "drop")]
    assert len(segments) == len(moving)
    for step in moving:
        assert step["segment"] in texts
    changes = 2 + sum(len(s["changed"]) for s in steps)  # both start states, then each change
    assert len(boxes) == changes
    finals = json.loads(tcplens("simulate", name, "--json").stdout)["final"]
    assert finals["client"] in texts and finals["server"] in texts
    assert SCENARIOS[name].title in texts
    crossing = "FINs cross" in texts
    assert crossing == any(s["client"] == "CLOSING" or s["server"] == "CLOSING" for s in steps)


def test_capture_ladder_svg_marks_the_fins_that_crossed() -> None:
    done = tcplens("pcap", str(LAB / "simultaneous-close.pcap"), "--flow", "1", "--format", "svg")
    assert done.returncode == 0, done.stderr
    segments, texts, _boxes = _parts(done.stdout)
    conn = json.loads(tcplens("pcap", str(LAB / "simultaneous-close.pcap"), "--json").stdout)
    first = conn["connections"][0]
    assert len(segments) == first["orig"]["packets"] + first["resp"]["packets"] == 10
    assert "FINs cross" in texts
    assert "SYN seq=0" in texts and "CLOSING" in texts and "TIME_WAIT" in texts
    plain = tcplens("pcap", str(LAB / "client-close.pcap"), "--flow", "1", "--format", "svg")
    assert plain.returncode == 0, plain.stderr
    assert "FINs cross" not in _parts(plain.stdout)[1]


def test_svg_format_needs_a_flow_and_nothing_else_on_stdout() -> None:
    for extra in ((), ("--flow", "1", "--json"), ("--flow", "1", "--states")):
        done = tcplens("pcap", str(LAB / "client-close.pcap"), "--format", "svg", *extra)
        assert done.returncode == 2 and done.stdout == ""
        assert len(done.stderr.strip().splitlines()) == 1 and "--flow" in done.stderr
    # a port matching several connections: the hint goes to stderr, stdout stays one SVG
    both = tcplens(
        "pcap", str(FIXTURES / "200722_tcp_anon.pcapng"), "--flow", "2000", "--format", "svg"
    )
    assert both.returncode == 0
    _parts(both.stdout)
    assert "1 more match 2000" in both.stderr


def test_text_is_escaped_and_a_lost_segment_is_marked() -> None:
    rows = [
        LadderRow(
            0.0, "CLOSED", "LISTEN", note="<start> & go", left_changed=True, right_changed=True
        ),
        LadderRow(0.1, "SYN_SENT", "LISTEN", "->", "SYN seq=0", lost=True, left_changed=True),
    ]
    segments, texts, _ = _parts(ladder_svg(rows, left_title="a<b", right_title='"r"'))
    assert "<start> & go" in texts and "a<b" in texts and "✕" in texts
    assert segments[0].get("stroke-dasharray") == "6,4"


def test_no_crossing_without_closing() -> None:
    rows = [
        LadderRow(0.0, "ESTABLISHED", "ESTABLISHED", left_changed=True, right_changed=True),
        LadderRow(0.1, "FIN_WAIT1", "CLOSE_WAIT", "->", "FIN+ACK seq=1 ack=1", right_changed=True),
        LadderRow(0.2, "FIN_WAIT1", "LAST_ACK", "<-", "FIN+ACK seq=1 ack=2", right_changed=True),
    ]
    assert find_fin_crossing(rows) is None
    crossed = [
        *rows[:2],
        LadderRow(0.2, "CLOSING", "CLOSE_WAIT", "<-", "FIN+ACK seq=1 ack=1", left_changed=True),
    ]
    found = find_fin_crossing(crossed)
    assert found is not None and (found.right, found.left) == (1, 2)
