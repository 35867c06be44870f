"""Shared helpers for the saved-text parser tests."""

from __future__ import annotations

from pathlib import Path

from tcplens.sources.records import Snapshot
from tcplens.sources.text import read_text
from tests.contract import check_snapshot

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "text"


def load(name: str, fmt: str | None = None) -> Snapshot:
    """Read a fixture through the public reader and run the shared contract over it."""
    snap = read_text(str(FIXTURES / name), fmt)
    check_snapshot(snap, text_source=True)
    return snap
