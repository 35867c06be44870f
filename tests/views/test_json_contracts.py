"""The JSON documents of pcap, explain and simulate keep the keys docs/json.md promises."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "json.md").read_text()


def _json(*args: str) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-m", "tcplens", *args], capture_output=True, text=True, check=True
    )
    doc = json.loads(done.stdout)
    assert isinstance(doc, dict)
    return doc


def _documented(*keys: str) -> None:
    for key in keys:
        assert f"`{key}`" in DOC or f'"{key}"' in DOC, f"{key} is not documented in docs/json.md"


def test_pcap_json_contract() -> None:
    doc = _json("pcap", str(ROOT / "tests/fixtures/pcap/tcp_teardown.pcapng"), "--json")
    assert doc["version"] == 1 and set(doc) == {"version", "file", "connections", "summary"}
    (conn,) = doc["connections"]  # type: ignore[misc]
    assert set(conn) == {
        "index", "start", "duration", "orig", "resp", "conn_state", "history", "zeek",
        "completeness", "cannot_tell", "notes", "first_record", "tunnel",
    }  # fmt: skip
    assert set(conn["zeek"]) == {  # type: ignore[call-overload]
        "duration", "orig_bytes", "resp_bytes", "missed_bytes", "tunnel_parents",
    }  # fmt: skip
    side_keys = {
        "ip", "port", "packets", "payload_bytes", "ip_bytes", "frame_bytes", "flags",
        "retransmissions", "zero_windows", "final_state", "history",
    }  # fmt: skip
    assert set(conn["orig"]) == side_keys and set(conn["resp"]) == side_keys
    assert conn["conn_state"] == "SF" and conn["orig"]["final_state"] == "CLOSED"
    summary = doc["summary"]
    assert isinstance(summary, dict)
    _documented(*conn, *side_keys, *summary)


def test_explain_json_contract() -> None:
    one = _json("explain", "08", "--json")
    assert one["version"] == 1 and one["state"] == "CLOSE_WAIT" and one["kernel_code"] == 8
    _documented(*one)
    table = _json("explain", "--json", "--lang", "zh")
    assert set(table) == {"version", "lang", "states"} and table["lang"] == "zh"
    states = table["states"]
    assert isinstance(states, list) and len(states) == 12
    assert set(states[0]) == set(one) - {"version"}


def test_simulate_json_contract() -> None:
    doc = _json("simulate", "refused", "--json")
    assert set(doc) == {"version", "scenario", "msl", "steps", "final"}
    steps = doc["steps"]
    assert isinstance(steps, list)
    _documented(*doc, *steps[0])
    assert doc["final"] == {"client": "CLOSED", "server": "CLOSED"}
