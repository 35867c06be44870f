"""The standing text fuzzer (``benchmarks/fuzz_text.py``) tries what it says it tries.

Its campaigns are only as good as three of its properties: an input is cut
from its seed with the context its rows need (else the parsers only ever
see "not understood" lines), it costs a window and not the whole seed (else
a million inputs of a big dump take hours), and a finding survives the
worker being killed on a later hang (else the report says 0 when it was not).
"""

from __future__ import annotations

import importlib.util
import random
import sys
import time
from pathlib import Path
from types import ModuleType

import pytest

from tcplens.sources.text import FORMATS, parse_text

SCRIPT = Path(__file__).resolve().parents[3] / "benchmarks" / "fuzz_text.py"


@pytest.fixture(scope="module")
def fuzz() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fuzz_text_under_test", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def seeds(fuzz: ModuleType) -> dict[str, list[str]]:
    found: dict[str, list[str]] = fuzz.seeds()
    assert set(found) == set(FORMATS) and all(found.values())
    return found


def test_an_input_is_made_again_from_its_number_alone(
    fuzz: ModuleType, seeds: dict[str, list[str]]
) -> None:
    """What --start (resume) and a finding's number rely on."""
    for fmt in ("bsd-netstat", "ss"):
        forwards = fuzz.Inputs(fmt, seeds[fmt], f"1-{fmt}")
        made = [forwards.make(i) for i in range(200)]
        again = fuzz.Inputs(fmt, seeds[fmt], f"1-{fmt}")
        for i in (199, 0, 57, 123):
            assert again.make(i) == made[i]
        other = fuzz.Inputs(fmt, seeds[fmt], f"2-{fmt}")
        assert [other.make(i) for i in range(20)] != made[:20]


def test_a_window_keeps_the_context_its_rows_need(
    fuzz: ModuleType, seeds: dict[str, list[str]]
) -> None:
    """Unmutated, a window parses with no warning its whole seed does not have.

    The BSD dump's UNIX section, Solaris' section banners and Windows
    ``-b`` rows (the program on the lines below) each broke a plain
    window: rows read without their section, or a program line without
    its row.
    """
    for fmt, texts in seeds.items():
        prepared = fuzz.prepare(fmt, texts)
        whole = [len(parse_text("\n".join(s.lines), fmt).warnings) for s in prepared]
        rng = random.Random(fmt)
        for _ in range(150):
            which = rng.randrange(len(prepared))
            cut = fuzz.excerpt(rng, prepared[which])
            snap = parse_text("\n".join(cut), fmt)
            assert len(snap.warnings) <= whole[which], (fmt, snap.warnings[:1], cut[:8])


def test_an_input_costs_a_window_not_its_seed(
    fuzz: ModuleType, seeds: dict[str, list[str]]
) -> None:
    """Parsing is linear in lines, so lines are the cost: the big BSD dump (689 lines)
    made bsd-netstat 16 times dearer to fuzz than proc (3.1 against 0.19 ms of CPU an
    input) when every input was its whole seed."""
    prepared = fuzz.prepare("bsd-netstat", seeds["bsd-netstat"])
    biggest = max(prepared, key=lambda s: len(s.lines))
    assert len(biggest.lines) > 20 * (fuzz.HEAD + fuzz.WINDOW)
    rng = random.Random(1)
    sizes = [len(fuzz.excerpt(rng, biggest)) for _ in range(2000)]
    wholes = sum(1 for n in sizes if n == len(biggest.lines))
    # one in WHOLE is the whole seed; every other is a window with its context
    assert 0 < wholes < 2 * len(sizes) / fuzz.WHOLE
    assert max(n for n in sizes if n != len(biggest.lines)) <= fuzz.HEAD + 4 + fuzz.WINDOW
    assert sum(sizes) / len(sizes) < len(biggest.lines) / 10


def test_findings_survive_a_worker_killed_on_a_later_hang(
    fuzz: ModuleType, seeds: dict[str, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker is forked with this module's state, so a patched parser is what it runs."""
    real = fuzz.parse_text

    def parse(text: str, fmt: str | None = None, **kwargs: object) -> object:
        if text.startswith("HANG"):
            while True:  # a regex backtracking in C: CPU, and no heartbeat
                pass
        if text.startswith("BOOM"):
            raise KeyError(text)
        return real(text, fmt, **kwargs)

    class Planted(fuzz.Inputs):  # type: ignore[name-defined,misc]
        def make(self, index: int) -> tuple[str, str | None, bool]:
            if index == 250:
                return "HANG\n", None, False
            if index in (60, 61, 300):
                return f"BOOM\n{index}", "ss", False
            made: tuple[str, str | None, bool] = super().make(index)
            return made

    monkeypatch.setattr(fuzz, "parse_text", parse)
    tally = fuzz.fuzz(Planted("ss", seeds["ss"], "1-ss"), 60.0, 0.5, start=50, count=400)
    assert tally.tried == 400
    hang = tally.findings.pop("hang: no answer within 0.5 s of CPU")
    assert (hang.index, hang.count) == (250, 1)
    # the two before the hang were found by the child that was killed
    [(key, boom)] = tally.findings.items()
    assert key.startswith("KeyError at test_fuzz_harness.py:")
    assert (boom.index, boom.count) == (60, 3)
    assert boom.text == "BOOM"  # minimised: the line that fails alone


def test_a_slow_clock_is_no_hang_only_cpu_without_progress_is(
    fuzz: ModuleType, seeds: dict[str, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """At ``nice -n 15`` on a loaded machine a 1 s parse took over 10 s of wall time,
    and the wall-clock watchdog called it a hang; a parse that sleeps uses no CPU."""
    real = fuzz.parse_text

    def parse(text: str, fmt: str | None = None, **kwargs: object) -> object:
        if text.startswith("STARVED"):
            time.sleep(1.5)  # three times --hang of wall time, almost no CPU
        return real(text, fmt, **kwargs)

    class Planted(fuzz.Inputs):  # type: ignore[name-defined,misc]
        def make(self, index: int) -> tuple[str, str | None, bool]:
            if index == 5:
                return "STARVED\n", None, False
            made: tuple[str, str | None, bool] = super().make(index)
            return made

    monkeypatch.setattr(fuzz, "parse_text", parse)
    tally = fuzz.fuzz(Planted("proc", seeds["proc"], "1-proc"), 60.0, 0.5, count=50)
    assert tally.tried == 50 and tally.findings == {}
