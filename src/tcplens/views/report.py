"""One self-contained HTML page: a capture's connections, or a machine's (or dump's) sockets.

Everything the page needs is inline (CSS, a little JavaScript, the SVG
pictures and the data as JSON), and a Content-Security-Policy forbids every
fetch, so the page opens offline, from a mail attachment or a ticket, and can
never call home.  The numbers are written into the HTML itself (the page is
readable with JavaScript off); the script only sorts the table and shows a
connection's ladder when its row is clicked (or when the address ends in
``#conn-N``, so a ladder can be linked to).  Elements holding a number carry
``data-key`` so tests can compare what is shown with the ``--json`` outputs.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html import escape
from typing import Any

__all__ = ["ZEEK_CONN_STATES", "CaptureReport", "SocketsReport", "render_capture", "render_sockets"]

#: Zeek's conn_state values as its documentation describes them
#: (base/protocols/conn/main.zeek, ``conn_state`` field of ``Conn::Info``).
ZEEK_CONN_STATES: Mapping[str, str] = {
    "S0": "Connection attempt seen, no reply.",
    "S1": "Connection established, not terminated.",
    "SF": "Normal establishment and termination.",
    "REJ": "Connection attempt rejected.",
    "S2": "Established, close attempt by originator seen (but no reply from responder).",
    "S3": "Established, close attempt by responder seen (but no reply from originator).",
    "RSTO": "Established, originator aborted (sent a RST).",
    "RSTR": "Responder sent a RST.",
    "RSTOS0": "Originator sent a SYN followed by a RST, never saw a SYN-ACK from the responder.",
    "RSTRH": "Responder sent a SYN ACK followed by a RST, never saw a SYN from the originator.",
    "SH": "Originator sent a SYN followed by a FIN, never saw a SYN ACK from the responder.",
    "SHR": "Responder sent a SYN ACK followed by a FIN, never saw a SYN from the originator.",
    "OTH": "No SYN seen, just midstream traffic.",
}

_CSS = """
:root { --ink:#222; --dim:#666; --line:#ddd; --head:#f4f4f4; --warn:#ffd966; --crit:#f4a6a6;
        --info:#dbe9f6; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--ink);
       margin: 24px auto; max-width: 1280px; padding: 0 16px; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 17px; margin: 28px 0 8px; }
.sub { color: var(--dim); margin: 0 0 16px; }
table { border-collapse: collapse; margin: 4px 0 12px; }
th, td { border-bottom: 1px solid var(--line); padding: 3px 10px; text-align: left;
         white-space: nowrap; }
th { background: var(--head); }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; }
.cards { display: flex; flex-wrap: wrap; gap: 12px; }
.card { border: 1px solid var(--line); border-radius: 6px; padding: 8px 14px; min-width: 110px; }
.card b { display: block; font-size: 20px; } .card span { color: var(--dim); font-size: 12px; }
.grid { display: flex; flex-wrap: wrap; gap: 32px; }
#conns th { cursor: pointer; user-select: none; } #conns th[aria-sort]::after { color: var(--dim); }
#conns th[aria-sort=ascending]::after { content: " ▲"; }
#conns th[aria-sort=descending]::after { content: " ▼"; }
#conns tbody tr { cursor: pointer; } #conns tbody tr:hover { background: #f6f9fc; }
#conns tbody tr.open { background: #e8f0fa; }
#ladder { border: 1px solid var(--line); border-radius: 6px; padding: 8px; margin: 8px 0;
          overflow-x: auto; } #ladder[hidden] { display: none; }
.sev-critical { background: var(--crit); } .sev-warning { background: var(--warn); }
.sev-info { background: var(--info); }
.finding { border-left: 4px solid var(--line); padding: 4px 12px; margin: 10px 0; }
.finding.critical { border-color: #c0392b; } .finding.warning { border-color: #d4a017; }
.finding.info { border-color: #5b8fc7; } .finding p { margin: 4px 0; }
.diagram svg, #ladder svg { max-width: 100%; height: auto; }
pre { font: 12px/1.25 "DejaVu Sans Mono", monospace; }
.note { color: var(--dim); font-size: 12px; }
"""

_JS = """
"use strict";
(function () {
  const table = document.getElementById("conns");
  const panel = document.getElementById("ladder");
  if (!table || !panel) { return; }
  const body = table.tBodies[0];
  function show(index, scroll) {
    const tpl = document.getElementById("ladder-" + index);
    for (const tr of body.rows) { tr.classList.toggle("open", tr.dataset.index === String(index)); }
    panel.replaceChildren();
    if (!tpl) {
      const p = document.createElement("p");
      p.className = "note";
      p.textContent = "No ladder for connection " + index + " (see the note above the table).";
      panel.append(p);
    } else {
      panel.append(tpl.content.cloneNode(true));
    }
    panel.hidden = false;
    panel.dataset.index = String(index);
    if (scroll) { panel.scrollIntoView({block: "nearest"}); }
  }
  body.addEventListener("click", function (event) {
    const tr = event.target.closest("tr");
    if (!tr) { return; }
    history.replaceState(null, "", "#conn-" + tr.dataset.index);
    show(tr.dataset.index, true);
  });
  const heads = Array.from(table.tHead.rows[0].cells);
  heads.forEach(function (th, col) {
    th.addEventListener("click", function () {
      const down = th.getAttribute("aria-sort") === "ascending";
      heads.forEach(function (h) { h.removeAttribute("aria-sort"); });
      th.setAttribute("aria-sort", down ? "descending" : "ascending");
      const numeric = th.classList.contains("n");
      const rows = Array.from(body.rows);
      rows.sort(function (a, b) {
        const x = a.cells[col].dataset.v ?? a.cells[col].textContent;
        const y = b.cells[col].dataset.v ?? b.cells[col].textContent;
        const c = numeric ? Number(x) - Number(y) : x.localeCompare(y);
        return (down ? -c : c) || Number(a.dataset.index) - Number(b.dataset.index);
      });
      body.append(...rows);
    });
  });
  const m = /^#conn-(\\d+)$/.exec(location.hash);
  if (m) { show(m[1], false); }
})();
"""

_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; "
    "img-src data:; base-uri 'none'; form-action 'none'"
)


def _page(title: str, subtitle: str, body: list[str], data: Mapping[str, Any]) -> str:
    payload = json.dumps(data, ensure_ascii=False, separators=(",", ":")).replace("</", "<\\/")
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en">',
            "<head>",
            '<meta charset="utf-8">',
            f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            '<meta name="generator" content="tcplens report">',
            f"<title>{escape(title)}</title>",
            f"<style>{_CSS}</style>",
            "</head>",
            "<body>",
            f"<h1>{escape(title)}</h1>",
            f'<p class="sub">{escape(subtitle)}</p>',
            *body,
            f'<script type="application/json" id="data">{payload}</script>',
            f"<script>{_JS}</script>",
            "</body>",
            "</html>",
            "",
        ]
    )


def _card(key: str, value: int | str, label: str) -> str:
    return f'<div class="card"><b data-key="{escape(key)}">{escape(str(value))}</b>' + (
        f"<span>{escape(label)}</span></div>"
    )


def _count_table(
    caption: str, key: str, counts: Mapping[str, int], meanings: Mapping[str, str] | None = None
) -> str:
    rows = []
    for name, count in counts.items():
        meaning = f"<td>{escape(meanings.get(name, ''))}</td>" if meanings is not None else ""
        rows.append(
            f'<tr><td>{escape(name)}</td><td class="n" data-key="{escape(key)}.{escape(name)}">'
            f"{count}</td>{meaning}</tr>"
        )
    extra = "<th>meaning (Zeek)</th>" if meanings is not None else ""
    return (
        f'<div><table id="{escape(key)}"><caption>{escape(caption)}</caption>'
        f"<thead><tr><th>{'conn_state' if meanings is not None else 'state'}</th>"
        f'<th class="n">connections</th>{extra}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )


@dataclass(slots=True)
class CaptureReport:
    """What the capture page shows; ``as_dict`` is also embedded in the page as JSON."""

    file: str
    summary: dict[str, Any]
    #: one dict per connection, in capture order (see ``render_capture`` for the keys)
    connections: list[dict[str, Any]]
    #: connection number -> its ladder as SVG (at most ``ladder_limit`` of them)
    ladders: dict[int, str] = field(default_factory=dict)
    ladder_limit: int = 0

    def final_states(self, side: str) -> dict[str, int]:
        counts: dict[str, int] = {}
        for conn in self.connections:
            counts[conn[f"{side}_state"]] = counts.get(conn[f"{side}_state"], 0) + 1
        return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))

    def conn_states(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for conn in self.connections:
            counts[conn["conn_state"]] = counts.get(conn["conn_state"], 0) + 1
        return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))

    def as_dict(self) -> dict[str, Any]:
        return {
            "version": 1,
            "kind": "capture",
            "file": self.file,
            "summary": self.summary,
            "final_states": {"orig": self.final_states("orig"), "resp": self.final_states("resp")},
            "conn_states": self.conn_states(),
            "connections": self.connections,
        }


_CONN_COLUMNS: Sequence[tuple[str, str, bool]] = (
    ("index", "#", True),
    ("start", "start s", True),
    ("duration", "duration s", True),
    ("orig", "originator", False),
    ("resp", "responder", False),
    ("packets", "packets", True),
    ("bytes", "payload bytes", True),
    ("orig_state", "orig state", False),
    ("resp_state", "resp state", False),
    ("conn_state", "zeek", False),
    ("history", "history", False),
    ("retransmissions", "rexmit", True),
)


#: shown only when a connection came through an encapsulation (issue 15)
_TUNNEL_COLUMN = ("tunnel", "via", False)


def _conn_row(conn: Mapping[str, Any], columns: Sequence[tuple[str, str, bool]]) -> str:
    cells = []
    for key, _title, numeric in columns:
        value = conn[key]
        if key == "tunnel":
            text = sort = " > ".join(value)  # as the pcap table's "via" (encap.chain_text)
        elif key in ("start", "duration"):
            text, sort = f"{value:.3f}", f"{value:.9f}"
        elif key in ("packets", "bytes"):
            text, sort = f"{value[0]} / {value[1]}", str(value[0] + value[1])
        elif key in ("orig_state", "resp_state") and key[:4] in conn["cannot_tell"]:
            text, sort = f"{value}?", str(value)  # as in tcplens pcap: not told by the wire
        else:
            text, sort = str(value), str(value)
        attrs = f' class="n" data-v="{escape(sort)}"' if numeric else ""
        cells.append(f"<td{attrs}>{escape(text)}</td>")
    return f'<tr data-index="{conn["index"]}">{"".join(cells)}</tr>'


def render_capture(report: CaptureReport) -> str:
    """The capture page: summary, states, conn_states, the table, a ladder per connection."""
    s = report.summary
    cards = [
        _card("summary.connections", s["connections"], "TCP connections"),
        _card("summary.frames", s["frames"], "frames"),
        _card("summary.tcp_segments", s["tcp_segments"], "TCP segments"),
    ]
    for key, label in (
        ("fragments", "IP fragments (not reassembled)"),
        ("non_tcp", "non-TCP frames"),
        ("non_ip", "non-IP frames"),
        ("malformed", "malformed frames"),
    ):
        if s.get(key):
            cards.append(_card(f"summary.{key}", s[key], label))
    body = [f'<div class="cards">{"".join(cards)}</div>']
    if s.get("truncated"):
        body.append(f'<p class="finding warning">Capture cut short: {escape(s["truncated"])}</p>')
    body.append("<h2>Connections by final state and Zeek conn_state</h2>")
    body.append(
        '<div class="grid">'
        + _count_table("originator's final state", "orig_state", report.final_states("orig"))
        + _count_table("responder's final state", "resp_state", report.final_states("resp"))
        + _count_table("Zeek conn_state", "conn_state", report.conn_states(), ZEEK_CONN_STATES)
        + "</div>"
    )
    body.append("<h2>Connections</h2>")
    note = "Click a column to sort, a row to see that connection's ladder."
    if len(report.ladders) < len(report.connections):
        note += (
            f" Ladders are included for the first {len(report.ladders)} connections"
            f" (--ladders {report.ladder_limit}); use tcplens pcap FILE --flow N for the others."
        )
    body.append(f'<p class="note">{escape(note)}</p>')
    body.append('<div id="ladder" hidden></div>')
    columns = list(_CONN_COLUMNS)
    if any(conn.get("tunnel") for conn in report.connections):
        columns.append(_TUNNEL_COLUMN)
    heads = "".join(
        f'<th{" class=n" if numeric else ""} scope="col">{escape(title)}</th>'
        for _key, title, numeric in columns
    )
    rows = "".join(_conn_row(conn, columns) for conn in report.connections)
    body.append(f'<table id="conns"><thead><tr>{heads}</tr></thead><tbody>{rows}</tbody></table>')
    for index, svg in report.ladders.items():
        body.append(f'<template id="ladder-{index}">{_inline_svg(svg)}</template>')
    subtitle = f"{report.file} · tcplens report · {_now()}"
    return _page(f"TCP connections in {_basename(report.file)}", subtitle, body, report.as_dict())


@dataclass(slots=True)
class SocketsReport:
    """What the page for this machine or a saved dump shows."""

    source: str
    host: str
    taken_at: float
    total: int
    tcp_states: dict[str, int]
    udp: dict[str, int]
    #: the doctor's findings: severity, rule, state, title, explanation, advice, count
    findings: list[dict[str, Any]]
    #: busiest states with their top ports and processes
    busy: list[dict[str, Any]]
    diagram_svg: str | None
    diagram_text: str
    severity: dict[str, str]
    missing: list[str]

    def as_dict(self) -> dict[str, Any]:
        return {
            "version": 1,
            "kind": "sockets",
            "source": self.source,
            "host": self.host,
            "taken_at": self.taken_at,
            "total": self.total,
            "tcp_states": self.tcp_states,
            "udp": self.udp,
            "findings": self.findings,
            "busy": self.busy,
            "missing": self.missing,
        }


def render_sockets(report: SocketsReport) -> str:
    """The machine/dump page: the live diagram, counts, findings, busiest ports and processes."""
    r = report
    cards = [
        _card("total", r.total, "sockets"),
        _card("tcp", sum(r.tcp_states.values()), "TCP sockets"),
        _card("findings", len(r.findings), "doctor findings"),
    ]
    body = [f'<div class="cards">{"".join(cards)}</div>']
    if r.missing:
        body.append(f'<p class="note">Not known: {escape("; ".join(r.missing))}</p>')
    body.append("<h2>Where the sockets are on the state diagram</h2>")
    if r.diagram_svg is not None:
        body.append(f'<div class="diagram">{_inline_svg(r.diagram_svg)}</div>')
    else:
        body.append(f'<pre class="diagram">{escape(r.diagram_text)}</pre>')
    body.append(
        '<p class="note">Each box holds its state\'s TCP socket count; a box is coloured by the '
        "doctor's most severe finding about that state (yellow warning, red critical).</p>"
    )
    state_rows = "".join(
        f'<tr class="{("sev-" + r.severity[name]) if name in r.severity else ""}">'
        f'<td>{escape(name)}</td><td class="n" data-key="tcp_states.{escape(name)}">'
        f"{count}</td></tr>"
        for name, count in r.tcp_states.items()
    )
    body.append(
        '<div class="grid"><div><table id="tcp_states"><caption>TCP sockets per state</caption>'
        '<thead><tr><th>state</th><th class="n">sockets</th></tr></thead>'
        f"<tbody>{state_rows}</tbody></table></div></div>"
    )
    body.append("<h2>Doctor's findings</h2>")
    if not r.findings:
        body.append("<p>Nothing unusual.</p>")
    for i, f in enumerate(r.findings):
        body.append(
            f'<div class="finding {escape(f["severity"])}" data-key="findings.{i}">'
            f'<p><b data-key="findings.{i}.severity">{escape(f["severity"])}</b> · '
            f"{escape(f['title'])}"
            f' <span class="note">({escape(f["rule"])}, <span data-key="findings.{i}.count">'
            f"{f['count']}</span> sockets)</span></p>"
            f"<p>{escape(f['explanation'])}</p><p><i>What to do:</i> {escape(f['advice'])}</p>"
            "</div>"
        )
    body.append("<h2>Busiest states: ports and processes</h2>")
    if not r.busy:
        body.append("<p>No busy states.</p>")
    else:
        rows = []
        for b in r.busy:
            ports = ", ".join(f"{port} ({n})" for port, n in b["ports"]) or "-"
            procs = ", ".join(
                f"{name}{f'[{pid}]' if pid is not None else ''} ({n})"
                for name, pid, n in b["processes"]
            )
            peers = ", ".join(f"{peer} ({n})" for peer, n in b["peers"]) or "-"
            rows.append(
                f"<tr><td>{escape(b['state'])}</td>"
                f'<td class="n" data-key="busy.{escape(b["state"])}">'
                f"{b['count']}</td><td>{escape(ports)}</td><td>{escape(procs or '-')}</td>"
                f"<td>{escape(peers)}</td></tr>"
            )
        body.append(
            '<table id="busy"><thead><tr><th>state</th><th class="n">sockets</th>'
            "<th>busiest local ports</th><th>processes</th><th>peers</th></tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>"
        )
    when = datetime.fromtimestamp(r.taken_at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    title = f"TCP sockets on {r.host or 'this host'}"
    return _page(title, f"{r.source} · taken {when} · tcplens report", body, r.as_dict())


def _inline_svg(svg: str) -> str:
    """An SVG document's ``<svg>`` element, without the XML prolog and DOCTYPE Graphviz writes."""
    start = svg.find("<svg")
    return svg[start:] if start >= 0 else svg


def _basename(path: str) -> str:
    return path.rsplit("/", 1)[-1] or path


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
