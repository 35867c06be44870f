"""The lab's saved captures, replayed offline: the tracker still says what the kernel said.

``tests/fixtures/lab`` holds real captures from ``scripts/lab-table --fixtures``
(headers only) with ``manifest.json``: the kernel's states at each checkpoint
and where the wire is blind.  Replaying them needs no root, so this runs on
every machine and pins the tracker to real kernel behaviour.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tcplens.lab.capture import state_at
from tcplens.packets.tracker import reconstruct_file

FIXTURES = Path(__file__).parents[1] / "fixtures" / "lab"
MANIFEST: dict[str, Any] = json.loads((FIXTURES / "manifest.json").read_text("utf-8"))
SCENARIOS: dict[str, Any] = MANIFEST["scenarios"]


def test_fixtures_are_small_and_cover_the_held_states() -> None:
    assert {"closing", "fin-wait1", "last-ack", "syn-sent", "syn-recv", "refused"} <= set(SCENARIOS)
    for entry in SCENARIOS.values():
        assert (FIXTURES / entry["pcap"]).stat().st_size < 8192


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_replayed_capture_matches_the_kernel_except_where_the_wire_is_blind(name: str) -> None:
    entry = SCENARIOS[name]
    path = FIXTURES / entry["pcap"]
    with path.open("rb") as fh:
        conns = reconstruct_file(fh, str(path))
    assert len(conns) == 1
    conn = conns[0]
    assert conn.conn_state == entry["conn_state"]
    assert conn.history == entry["history"]
    for cp in entry["checkpoints"]:
        got = {
            "client": state_at(conn.orig_history, cp["time"]),
            "server": state_at(conn.resp_history, cp["time"]),
        }
        for side in ("client", "server"):
            kernel = cp["kernel"][side]
            blind = side in cp["wire_blind"]
            assert (str(got[side]) != kernel) == blind, (
                f"step {cp['step']} {side}: capture {got[side]}, kernel {kernel}, "
                f"blind: {cp['wire_blind'].get(side)}"
            )
