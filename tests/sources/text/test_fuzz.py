"""Fuzzing: whatever bytes arrive, the result is a valid Snapshot or one InputError."""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tcplens.errors import InputError
from tcplens.sources.records import Snapshot
from tcplens.sources.text import FORMATS, decode, parse_text, read_text
from tests.contract import check_snapshot
from tests.sources.text.helpers import FIXTURES

SAMPLES = sorted(p.read_bytes() for p in FIXTURES.glob("*.txt"))
FORMAT_OR_AUTO = st.sampled_from([None, *FORMATS])
FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def outcome(data: bytes, fmt: str | None, strict: bool = False) -> Snapshot | None:
    """Parse; a Snapshot must meet the contract, an InputError must name where."""
    try:
        snap = parse_text(decode(data), fmt, path="fuzz.txt", strict=strict)
    except InputError as exc:
        assert exc.path == "fuzz.txt"
        assert "\n" not in str(exc)
        if strict and exc.line is not None:
            assert exc.line >= 1
        return None
    check_snapshot(snap, text_source=True)
    if strict:
        assert snap.warnings == []
    for warning in snap.warnings:
        assert warning.line >= 1 and warning.message
    return snap


@FAST
@given(st.binary(max_size=2000), FORMAT_OR_AUTO, st.booleans())
def test_random_bytes(data: bytes, fmt: str | None, strict: bool) -> None:
    outcome(data, fmt, strict)


@FAST
@given(st.sampled_from(SAMPLES), st.data())
def test_truncated_fixtures(sample: bytes, data: st.DataObject) -> None:
    cut = data.draw(st.integers(0, len(sample)))
    outcome(sample[:cut], data.draw(FORMAT_OR_AUTO))


@FAST
@given(st.sampled_from(SAMPLES), st.data())
def test_mixed_encodings_and_newlines(sample: bytes, data: st.DataObject) -> None:
    text = decode(sample)
    encoding = data.draw(st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "utf-16-le", "latin-1"]))
    newline = data.draw(st.sampled_from(["\n", "\r\n", "\r"]))
    body = newline.join(text.splitlines()).encode(encoding, errors="replace")
    cut = data.draw(st.integers(0, len(body)))
    snap = outcome(body[:cut], None)
    if cut == len(body) and encoding != "latin-1":
        # whole files decode back to what was encoded and parse like the original
        assert snap is not None
        assert snap.sockets == parse_text(text).sockets


@FAST
@given(st.sampled_from(SAMPLES), st.data())
def test_spliced_garbage(sample: bytes, data: st.DataObject) -> None:
    at = data.draw(st.integers(0, len(sample)))
    junk = data.draw(st.binary(min_size=1, max_size=40))
    snap = outcome(sample[:at] + junk + sample[at:], None)
    if snap is not None:
        # garbage may damage the rows it lands in, never the count of the others by more
        assert len(snap.sockets) <= len(parse_text(decode(sample)).sockets) + 2


@settings(max_examples=100, deadline=None)
@given(st.lists(st.text(max_size=80), max_size=30), FORMAT_OR_AUTO)
def test_random_lines(lines: list[str], fmt: str | None) -> None:
    try:
        snap = parse_text("\n".join(lines), fmt)
    except InputError:
        return
    check_snapshot(snap, text_source=True)


def test_directory_is_an_input_error(tmp_path: Path) -> None:
    try:
        read_text(str(tmp_path))
    except InputError as exc:
        assert str(exc).startswith(f"{tmp_path}: cannot read:")
    else:
        raise AssertionError("reading a directory should fail")


def test_unicode_digits_are_not_numbers() -> None:
    # found by fuzzing: "¹".isdigit() is True but int("¹") raises
    text = (
        "Active Internet connections (including servers)\n"
        "Proto Recv-Q Send-Q Local Address          Foreign Address        (state)\n"
        "tcp4       ¹      0 192.168.1.33.780       192.168.1.10.2049      CLOSE_WAIT\n"
        "tcp        0      0 10.0.0.5:22             10.0.0.9:5000         ESTABLISHED ¹ ²\n"
    )
    for fmt in (None, *FORMATS):
        outcome(text.encode(), fmt)
    snap = parse_text(text)
    assert [w.line for w in snap.warnings] == [3, 4]
