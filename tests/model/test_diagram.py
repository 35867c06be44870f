"""The diagram is generated from the table: every row appears in every format."""

from __future__ import annotations

import shutil
import subprocess
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tcplens.model import TRANSITIONS, State
from tcplens.model.diagram import (
    Figure,
    _wrap_label,
    edges,
    expand_label,
    figure,
    group_labels,
    row_label,
    to_dot,
    to_mermaid,
    to_text,
)
from tcplens.model.machine import Flags, Key


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


def test_give_up_shutdown_and_data_after_close_rows_are_drawn() -> None:
    blocks = {block.splitlines()[0]: block for block in to_text().split("\n\n")[1:]}
    for state in ("ESTABLISHED", "CLOSE_WAIT"):
        lines = blocks[state].splitlines()
        assert any(ln.split() == ["give", "up", "->", "CLOSED"] for ln in lines)
        assert any(ln.startswith("  keepalive timeout / RST+ACK") for ln in lines)
        assert any(ln.startswith("  retransmit timeout / PSH+ACK") for ln in lines)
        assert any(ln.startswith("  shutdown / FIN+ACK") for ln in lines)
    for state in ("FIN_WAIT1", "FIN_WAIT2"):
        assert "rcv data (after close()) / RST" in blocks[state]
    mermaid = to_mermaid()
    assert "ESTABLISHED --> CLOSED : keepalive timeout / RST+ACK" in mermaid
    assert "FIN_WAIT2 --> CLOSED : rcv data (after close()) / RST" in mermaid


# -- the drawn figure (RFC 793 figure 6 layout) ------------------------------------------


def _row_labels() -> Counter[tuple[State, State, str]]:
    return Counter(_labels())


def _listed_rows(fig: Figure) -> Counter[tuple[State, State, str]]:
    """Rows listed under the figure, read back from the text itself."""
    arrow = (
        " -> " if any(line.startswith("Resets") and "->" in line for line in fig.lines) else " → "
    )
    sep = "; " if arrow == " -> " else " · "
    found: Counter[tuple[State, State, str]] = Counter()
    heading = ""
    entries: dict[tuple[str, State], str] = {}
    current: tuple[str, State] | None = None
    for line in fig.lines[fig.lines.index("") :]:
        if line and not line.startswith(" "):
            heading = line
            continue
        if not line.strip() or not heading.endswith("(not drawn):"):
            continue
        if line.startswith("  ") and not line.startswith("   "):
            name, _, rest = line.strip().partition(" ")
            current = (heading, State(name))
            entries[current] = rest.strip()
        elif current is not None:
            entries[current] += " " + line.strip()
    for (heading, state), text in entries.items():
        for entry in text.split(sep.rstrip()):
            entry = entry.strip()
            target = State.CLOSED if heading.startswith("Resets") else state
            if heading.startswith("Other"):
                entry, _, name = entry.rpartition(arrow)
                target = State(name)
            for label in expand_label(entry):
                found[(state, target, label)] += 1
    return found


@pytest.mark.parametrize("ascii_only", [False, True])
def test_every_row_of_the_table_is_drawn_in_the_figure_and_nothing_else(ascii_only: bool) -> None:
    fig = figure(ascii_only=ascii_only)
    drawn: Counter[tuple[State, State, str]] = Counter()
    for label in {(p.src, p.dst, p.label) for p in fig.placed}:
        for row in expand_label(label[2]):
            drawn[(label[0], label[1], row)] += 1
    for p in fig.placed:  # each line of each label is really in the picture, unbroken
        assert fig.lines[p.y][p.x : p.x + len(p.text)] == p.text, p
    assert drawn + _listed_rows(fig) == _row_labels()


def test_each_arrow_ends_at_its_target_box_with_one_head() -> None:
    fig = figure()
    heads = {"▲", "▼", "◀", "▶"}
    drawn_heads = [
        (x, y) for y, line in enumerate(fig.lines) for x, char in enumerate(line) if char in heads
    ]
    assert sorted(drawn_heads) == sorted((x, y) for _, _, x, y in fig.heads)
    for src, dst, x, y in fig.heads:
        assert (src, dst) in {(e.src, e.dst) for e in edges()}
        boxes = [(bx, by, w, h) for s, bx, by, w, h in fig.boxes if s is dst]
        assert any(bx - 1 <= x <= bx + w and by - 1 <= y <= by + h for bx, by, w, h in boxes), (
            src,
            dst,
        )
    # every pair with an arrow has rows placed beside it
    assert {(s, d) for s, d, _, _ in fig.heads} == {(p.src, p.dst) for p in fig.placed}


def test_figure_fits_100_columns_and_every_state_has_a_box() -> None:
    for ascii_only in (False, True):
        fig = figure(counts={State.CLOSE_WAIT: 123456}, ascii_only=ascii_only)
        assert max(len(line) for line in fig.lines) <= 100
        names = Counter(str(s) for s, *_ in fig.boxes)
        assert names == Counter({str(s): 1 for s in State if s is not State.UNKNOWN}) + Counter(
            {"CLOSED": 1}
        )
        for state, x, y, _w, _h in fig.boxes:
            assert str(state) in fig.lines[y + 1][x : x + 15]
    assert all(ord(c) < 128 for c in figure(ascii_only=True).text)


def test_counts_and_marks_are_written_in_the_boxes() -> None:
    fig = figure(
        counts={State.ESTABLISHED: 42, State.CLOSE_WAIT: 7}, marks={State.CLOSE_WAIT: "!!"}
    )
    inside = {state: fig.lines[y + 2][x + 1 : x + 14].strip() for state, x, y, _w, _h in fig.boxes}
    assert inside[State.ESTABLISHED] == "42"
    assert inside[State.CLOSE_WAIT] == "7 !!"
    assert inside[State.LISTEN] == "0"
    assert all(
        not text
        for text in {
            s: figure().lines[y + 2][x + 1 : x + 14].strip() for s, x, y, _w, _h in figure().boxes
        }.values()
    )


def test_a_row_added_to_the_table_appears_in_the_figure(monkeypatch: pytest.MonkeyPatch) -> None:
    from types import MappingProxyType

    from tcplens.model import diagram
    from tcplens.model.machine import Event, Flags, Transition

    table = {s: dict(rows) for s, rows in TRANSITIONS.items()}
    table[State.LISTEN][Event.CONNECT] = Transition(State.SYN_SENT, (Flags.SYN,), "RFC 793 SEND")
    del table[State.CLOSING][Event.RCV_ACK]
    monkeypatch.setattr(diagram, "TRANSITIONS", MappingProxyType(table))
    fig = diagram.figure()
    assert "LISTEN       connect / SYN → SYN_SENT" in fig.text
    closing = [p for p in fig.placed if p.src is State.CLOSING]
    assert [p.label for p in closing] == ["rcv FIN+ACK / ACK"]


def test_group_labels_round_trip() -> None:
    for rows in TRANSITIONS.values():
        pairs = [(key, row.send) for key, row in rows.items()]
        expanded = [row for label in group_labels(pairs) for row in expand_label(label)]
        assert sorted(expanded) == sorted(row_label(k, s) for k, s in pairs)


@given(
    st.lists(
        st.sampled_from(
            [(key, row.send) for rows in TRANSITIONS.values() for key, row in rows.items()]
        ),
        min_size=1,
        max_size=12,
        unique_by=lambda pair: pair[0],
    )
)
def test_grouped_labels_expand_to_exactly_their_rows(
    rows: list[tuple[Key, tuple[Flags, ...]]],
) -> None:
    labels = group_labels(rows)
    assert len(labels) <= len(rows)
    expanded = [row for label in labels for row in expand_label(label)]
    assert Counter(expanded) == Counter(row_label(key, send) for key, send in rows)
    for label in labels:  # and a wrapped label is still the same label
        for width in (8, 17, 40):
            assert ", ".join(_wrap_label(label, width)).replace(",,", ",") == label
