"""The state diagram, generated from :data:`~tcplens.model.machine.TRANSITIONS`.

Never hand-drawn: every row of the table becomes one labelled edge line
(``event / segments sent``), so the picture cannot drift from the machine.
As in the classic figure (RFC 9293 figure 5, Stevens' TCP/IP Illustrated
figure 18.12) the usual client path is drawn solid and bold, the usual server
path dashed and bold, and everything else thin.  Rows between the same two
states share one edge with one label line per row.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final, Literal

from tcplens.model.machine import TRANSITIONS, Flags, Key, format_flags
from tcplens.model.states import State

__all__ = ["Edge", "edges", "row_label", "to_dot", "to_mermaid", "to_text"]

Path = Literal["client", "server", "other"]

#: The usual life of an active opener and closer (the client) ...
CLIENT_PATH: Final = frozenset(
    {
        (State.CLOSED, State.SYN_SENT),
        (State.SYN_SENT, State.ESTABLISHED),
        (State.ESTABLISHED, State.FIN_WAIT1),
        (State.FIN_WAIT1, State.FIN_WAIT2),
        (State.FIN_WAIT2, State.TIME_WAIT),
        (State.TIME_WAIT, State.CLOSED),
    }
)
#: ... and of a passive opener and closer (the server).
SERVER_PATH: Final = frozenset(
    {
        (State.CLOSED, State.LISTEN),
        (State.LISTEN, State.SYN_RECV),
        (State.SYN_RECV, State.ESTABLISHED),
        (State.ESTABLISHED, State.CLOSE_WAIT),
        (State.CLOSE_WAIT, State.LAST_ACK),
        (State.LAST_ACK, State.CLOSED),
    }
)


def row_label(key: Key, send: tuple[Flags, ...]) -> str:
    """``rcv SYN / SYN+ACK``: the event (with context) and what is sent."""
    if isinstance(key, tuple):
        event, opening = key
        text = f"{event.value} ({opening.value} open)"
    else:
        text = key.value
    sent = ", ".join(format_flags(flags) for flags in send)
    return f"{text} / {sent}" if sent else text


@dataclass(frozen=True, slots=True)
class Edge:
    """All rows from one state to another, with the path they belong to."""

    src: State
    dst: State
    labels: tuple[str, ...]
    path: Path


def edges() -> list[Edge]:
    """Every transition row grouped by (from, to), in table order."""
    grouped: dict[tuple[State, State], list[str]] = {}
    for state, rows in TRANSITIONS.items():
        for key, row in rows.items():
            grouped.setdefault((state, row.next), []).append(row_label(key, row.send))
    result = []
    for (src, dst), labels in grouped.items():
        path: Path = (
            "client"
            if (src, dst) in CLIENT_PATH
            else "server"
            if (src, dst) in SERVER_PATH
            else "other"
        )
        result.append(Edge(src, dst, tuple(labels), path))
    return result


def _states() -> list[State]:
    """CLOSED first, where every connection starts; UNKNOWN has no rows."""
    return [State.CLOSED] + [s for s in State if s not in (State.UNKNOWN, State.CLOSED)]


def to_text(highlight: Iterable[State] = ()) -> str:
    """One block per state, fitting 80 columns: ``event / sent  -> NEXT``."""
    marked = set(highlight)
    lines: list[str] = []
    for state in _states():
        star = " *" if state in marked else ""
        lines.append(f"{state}{star}")
        rows = TRANSITIONS[state]
        for key, row in rows.items():
            label = row_label(key, row.send)
            target = "(stays)" if row.next is state else f"-> {row.next}"
            lines.append(f"  {label:<48} {target}"[:80].rstrip())
        lines.append("")
    legend = "client path: " + " > ".join(
        str(s)
        for s in (
            State.SYN_SENT,
            State.ESTABLISHED,
            State.FIN_WAIT1,
            State.FIN_WAIT2,
            State.TIME_WAIT,
            State.CLOSED,
        )
    )
    legend2 = "server path: " + " > ".join(
        str(s)
        for s in (
            State.LISTEN,
            State.SYN_RECV,
            State.ESTABLISHED,
            State.CLOSE_WAIT,
            State.LAST_ACK,
            State.CLOSED,
        )
    )
    return "\n".join([legend, legend2, "", *lines]).rstrip() + "\n"


def _dot_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def to_dot(highlight: Iterable[State] = ()) -> str:
    """Graphviz source; pipe it to ``dot -Tsvg``."""
    marked = set(highlight)
    out = [
        "digraph tcp_states {",
        '  graph [rankdir=TB, fontname="Helvetica", labelloc=t, '
        'label="TCP connection states (tcplens, from the transition table)\\n'
        'bold solid: client path   bold dashed: server path"];',
        '  node [shape=box, style="rounded,filled", fillcolor="#f4f4f4", fontname="Helvetica"];',
        '  edge [fontname="Helvetica", fontsize=9];',
    ]
    for state in _states():
        extra = ', fillcolor="#ffd966", penwidth=2' if state in marked else ""
        out.append(f'  "{state}" [label="{state}"{extra}];')
    for edge in edges():
        label = "\\l".join(_dot_escape(lab) for lab in edge.labels) + "\\l"
        style = {
            "client": 'style=bold, color="#1f4e79"',
            "server": 'style="bold,dashed", color="#7a1f1f"',
            "other": 'color="#777777"',
        }[edge.path]
        out.append(f'  "{edge.src}" -> "{edge.dst}" [label="{label}", {style}];')
    out.append("}")
    return "\n".join(out) + "\n"


def to_mermaid(highlight: Iterable[State] = ()) -> str:
    """A Mermaid ``stateDiagram-v2`` (renders on GitHub and in many wikis)."""
    marked = set(highlight)
    out = ["stateDiagram-v2"]
    for state in _states():
        out.append(f"    state {state}")
    out.append("    [*] --> CLOSED")
    for edge in edges():
        for label in edge.labels:
            out.append(f"    {edge.src} --> {edge.dst} : {label.replace(':', ' ')}")
    if marked:
        out.append("    classDef highlight fill:#ffd966,stroke:#333,stroke-width:2px")
        for state in sorted(marked, key=list(State).index):
            out.append(f"    class {state} highlight")
    return "\n".join(out) + "\n"
