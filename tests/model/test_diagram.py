"""The diagram is generated from the table: every row appears in every format."""

from __future__ import annotations

import shutil
import subprocess

from tcplens.model import TRANSITIONS, State
from tcplens.model.diagram import edges, row_label, to_dot, to_mermaid, to_text


def _labels() -> list[tuple[State, State, str]]:
    return [
        (state, row.next, row_label(key, row.send))
        for state, rows in TRANSITIONS.items()
        for key, row in rows.items()
    ]


def test_every_row_appears_in_the_text_diagram_under_its_state() -> None:
    text = to_text()
    blocks = {block.splitlines()[0]: block for block in text.split("\n\n")[1:]}
    for state, target, label in _labels():
        block = blocks[str(state)]
        want = "(stays)" if target is state else f"-> {target}"
        assert any(
            line.strip().startswith(label) and line.endswith(want) for line in block.splitlines()
        ), (state, label)


def test_text_diagram_fits_80_columns() -> None:
    assert max(len(line) for line in to_text().splitlines()) <= 80


def test_every_row_appears_in_dot_and_mermaid() -> None:
    dot, mermaid = to_dot(), to_mermaid()
    for state, target, label in _labels():
        assert label.replace('"', '\\"') in dot
        assert f"{state} --> {target} : {label.replace(':', ' ')}" in mermaid
    assert sum(len(e.labels) for e in edges()) == len(_labels())


def test_client_and_server_paths_are_distinguishable() -> None:
    paths = {(e.src, e.dst): e.path for e in edges()}
    assert paths[(State.FIN_WAIT2, State.TIME_WAIT)] == "client"
    assert paths[(State.CLOSE_WAIT, State.LAST_ACK)] == "server"
    dot = to_dot()
    assert '"FIN_WAIT2" -> "TIME_WAIT"' in dot and "dashed" in dot


def test_highlight_marks_states() -> None:
    assert 'CLOSE_WAIT" [label="CLOSE_WAIT", fillcolor="#ffd966"' in to_dot([State.CLOSE_WAIT])
    assert "class CLOSE_WAIT highlight" in to_mermaid([State.CLOSE_WAIT])
    assert "CLOSE_WAIT *" in to_text([State.CLOSE_WAIT])


def test_graphviz_renders_the_dot_source() -> None:
    dot = shutil.which("dot")
    assert dot, "graphviz is installed by scripts/install-system-deps"
    svg = subprocess.run([dot, "-Tsvg"], input=to_dot(), capture_output=True, text=True, check=True)
    assert "<svg" in svg.stdout and "TIME_WAIT" in svg.stdout
