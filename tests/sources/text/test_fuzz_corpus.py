"""Replay every input that ever broke a text parser (``tests/fixtures/fuzz``).

The corpus is written by ``benchmarks/fuzz_text.py --save``; each file is
named ``FORMAT-DIGEST.txt`` after the format it failed with.  Each is parsed
with that format and with auto-detection, leniently and strictly: the result
must be a Snapshot meeting the contract or one located InputError, and
every line a user would read must stay one readable line.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from tcplens.errors import InputError
from tcplens.sources.text import FORMATS, parse_text
from tests.contract import check_snapshot

CORPUS = Path(__file__).resolve().parents[2] / "fixtures" / "fuzz"
FILES = sorted(CORPUS.glob("*.txt"))
#: the fuzzer's limit for a warning or error line
MAX_MESSAGE = 400
#: seconds one parse of a corpus file may take (all take milliseconds; generous for CI)
SLOW = 2.0


def test_the_corpus_covers_every_format_that_failed() -> None:
    assert len(FILES) >= 80
    assert {path.name.rsplit("-", 1)[0] for path in FILES} <= set(FORMATS)


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_corpus_input_parses_or_fails_in_one_line(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    fmt = path.name.rsplit("-", 1)[0]
    for named in (fmt, None):
        for strict in (False, True):
            started = time.perf_counter()
            try:
                snap = parse_text(text, named, path=path.name, strict=strict)
            except InputError as exc:
                message = str(exc)
                assert message.startswith(path.name) and "\n" not in message
                assert len(message) <= MAX_MESSAGE, message[:200]
                continue
            # linear time: the fuzzer's hangs were regexes backtracking (seconds here)
            assert time.perf_counter() - started < SLOW, f"{time.perf_counter() - started:.1f} s"
            check_snapshot(snap, text_source=True)
            for warning in snap.warnings:
                assert warning.line >= 1
                assert len(str(warning)) <= MAX_MESSAGE, str(warning)[:200]


def test_the_standing_fuzzer_runs_clean_on_every_format() -> None:
    """The harness itself stays runnable: half a second per format, no findings."""
    script = CORPUS.parents[2] / "benchmarks" / "fuzz_text.py"
    done = subprocess.run(
        [sys.executable, str(script), "--seconds", "0.5", "--markdown"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [
        line for line in done.stdout.splitlines() if line.startswith("| ") and "---" not in line
    ]
    assert {row.split("|")[1].strip() for row in rows[1:]} == set(FORMATS)
