"""Counted nouns: "1 socket", "2 sockets", never "socket(s)"."""

from __future__ import annotations

import re
import subprocess
import sys
import tokenize
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from tcplens.model.words import fill, plural

ROOT = Path(__file__).resolve().parents[2]


@given(st.integers(0, 10**7))
def test_plural_is_singular_for_one_only(n: int) -> None:
    assert plural(n, "socket") == (f"{n} socket" if n == 1 else f"{n} sockets")
    assert plural(n, "address", "addresses").endswith("address" if n == 1 else "addresses")


@given(st.integers(0, 10**7), st.sampled_from([str, int, lambda n: f"{n:,}"]))
def test_fill_picks_the_ending_by_the_count(n: int, shown: object) -> None:
    value = shown(n)  # type: ignore[operator]
    text = fill("{n} CLOSE_WAIT socket{n:|s} and {n} process{n:|es}", n=value)
    one = n == 1
    assert text == (
        f"{value} CLOSE_WAIT socket{'' if one else 's'} and {value} process{'' if one else 'es'}"
    )


def test_fill_is_format_for_everything_else() -> None:
    assert fill("{a:>5} {b:.1f} {c!r}", a="x", b=2.25, c="q") == "    x 2.2 'q'"


def test_no_text_in_the_package_says_s_in_parentheses() -> None:
    """Every "(s)" a user could read, in any string literal, has become a counted plural."""
    offenders = []
    for path in (ROOT / "src" / "tcplens").rglob("*.py"):
        with path.open("rb") as fh:
            for token in tokenize.tokenize(fh.readline):
                if token.type != tokenize.STRING:
                    continue
                text = re.sub(r"\{[^{}]*\}", "", token.string)  # f-string fields are code
                if re.search(r"[a-z]\((?:s|es)\)", text) and "component(s) --" not in text:
                    offenders.append(f"{path.relative_to(ROOT)}:{token.start[0]}: {text}")
    assert not offenders, offenders


def _tcplens(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "tcplens", *args], capture_output=True, text=True, timeout=60
    )
    return done.stdout + done.stderr


def test_one_of_everything_is_singular(tmp_path: Path) -> None:
    dump = tmp_path / "netstat.txt"
    dump.write_text(
        "Proto Recv-Q Send-Q Local Address           Foreign Address         State       "
        "PID/Program name\n"
        "tcp        1      0 10.0.0.1:8080           10.0.0.2:40000          CLOSE_WAIT  "
        "42/java\n"
    )
    status = _tcplens("status", "--from", str(dump))
    assert "1 socket: TCP 1, UDP 0" in status, status
    doctor = _tcplens("doctor", "--from", str(dump), "--min-severity", "info")
    assert "1 CLOSE_WAIT socket " in doctor and "socket(s)" not in doctor, doctor
    assert re.search(r"\b1 finding:", doctor), doctor
    pcap = _tcplens("pcap", str(ROOT / "tests" / "fixtures" / "pcap" / "tcp_handshake.pcapng"))
    assert "1 connection from 3 frames (3 TCP segments)" in pcap, pcap
