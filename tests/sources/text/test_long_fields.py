"""Numeric fields of any length: a located warning (or --strict error), never a traceback.

Issue 20, item 1: ``int()`` refuses strings of more than 4,300 digits with a
bare ``ValueError`` (Python's integer-string limit), which escaped every
text parser.  These tests lengthen, repeat and splice the fields of one small
dump per format (a token-level mutator) and check that the parse still ends
in a Snapshot whose damaged lines are warnings, and that the real CLI says
one located line about it.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tcplens.errors import InputError
from tcplens.sources.records import Snapshot
from tcplens.sources.text import parse_text
from tcplens.sources.text._common import ParseProblem, float_field, int_field
from tests.contract import check_snapshot

#: past Python's default limit of 4,300 digits for int(str)
LONG = 4301

#: one small dump per format, every numeric column present, parsing without warnings
SAMPLES: dict[str, str] = {
    "linux-netstat": (
        "Active Internet connections (servers and established)\n"
        "Proto Recv-Q Send-Q Local Address           Foreign Address         State"
        "       User       Inode      PID/Program name     Timer\n"
        "tcp        0      0 127.0.0.1:25            0.0.0.0:*               LISTEN"
        "      0          12345      880/master           off (0.00/0/0)\n"
        "tcp        0     36 10.0.0.5:22             10.0.0.9:51234          ESTABLISHED"
        " 1000       23456      2322/sshd            on (0.20/1/0)\n"
        "udp        0      0 0.0.0.0:68              0.0.0.0:*                          "
        " 0          34567      700/dhclient         off (0.00/0/0)\n"
    ),
    "ss": (
        "State  Recv-Q Send-Q Local Address:Port  Peer Address:Port Process\n"
        'LISTEN 0      128    0.0.0.0:22          0.0.0.0:*         users:(("sshd",pid=880,fd=3))'
        " ino:1234 sk:1 <->\n"
        'ESTAB  0      36     10.0.0.5:22         10.0.0.9:51234    users:(("sshd",pid=2322,fd=4))'
        " timer:(on,1min30sec,0) uid:1000 ino:2345 sk:2 <->\n"
        "\t cubic wscale:7,7 rto:204 rtt:0.5/0.25 mss:1448 cwnd:10 bytes_acked:1234"
        " retrans:0/2 lastsnd:100\n"
    ),
    "windows-netstat": (
        "\nActive Connections\n\n"
        "  Proto  Local Address          Foreign Address        State           PID\n"
        "  TCP    0.0.0.0:135            0.0.0.0:0              LISTENING       988\n"
        "  TCP    10.0.0.5:49670         10.0.0.9:443           ESTABLISHED     4712\n"
        "  UDP    [::]:500               *:*                                    696\n"
    ),
    "bsd-netstat": (
        "Active Internet connections (including servers)\n"
        "Proto Recv-Q Send-Q Local Address          Foreign Address        (state)\n"
        "tcp4       0      0 10.0.0.5.22            10.0.0.9.51234         ESTABLISHED\n"
        "tcp46      0      0 *.80                   *.*                    LISTEN\n"
        "udp4       0      0 *.68                   *.*\n"
    ),
    "solaris-netstat": (
        "\nTCP: IPv4\n"
        "   Local Address        Remote Address    Swind Send-Q Rwind Recv-Q    State\n"
        "-------------------- -------------------- ----- ------ ----- ------ -----------\n"
        "10.0.0.4.22          10.0.0.9.51234       64128      0 64128      0 ESTABLISHED\n"
        "      *.22                 *.*                0      0 128000     0 LISTEN\n"
        "\nUDP: IPv4\n"
        "   Local Address        Remote Address      State\n"
        "-------------------- -------------------- ----------\n"
        "127.0.0.1.32859      127.0.0.1.514        Connected\n"
    ),
    "powershell": (
        "LocalAddress      LocalPort RemoteAddress    RemotePort State       OwningProcess\n"
        "------------      --------- -------------    ---------- -----       -------------\n"
        "::                49669     ::               0          Listen      3136\n"
        "192.168.1.5       50435     20.42.65.90      443        Established 4712\n"
    ),
    "proc": (
        "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt"
        "   uid  timeout inode\n"
        "   0: 0100007F:0019 00000000:0000 0A 00000000:00000000 00:00000000 00000000"
        "     0        0 12345 1 0000000000000000 100 0 0 10 0\n"
    ),
}

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def parse_ok(text: str, fmt: str | None, strict: bool = False) -> Snapshot | None:
    """Parse; anything but a Snapshot or a located InputError fails the test."""
    try:
        snap = parse_text(text, fmt, path="mutated.txt", strict=strict)
    except InputError as exc:
        assert exc.path == "mutated.txt"
        assert "\n" not in str(exc)
        assert len(str(exc)) < 400, "a long field must not be echoed whole"
        return None
    check_snapshot(snap, text_source=True)
    for warning in snap.warnings:
        assert len(str(warning)) < 400, "a long field must not be echoed whole"
    return snap


def digit_runs(line: str) -> list[re.Match[str]]:
    return list(re.finditer(r"[0-9]+", line))


def data_rows(fmt: str) -> set[int]:
    """Lines holding one socket: without one, a socket fewer and nothing else changes."""
    lines = SAMPLES[fmt].split("\n")
    count = len(parse_text(SAMPLES[fmt], fmt).sockets)
    rows = set()
    for i in range(len(lines)):
        without = parse_text("\n".join(lines[:i] + lines[i + 1 :]), fmt)
        if len(without.sockets) == count - 1 and not without.warnings:
            rows.add(i)
    return rows


def damage(lines: list[str], index: int) -> set[int]:
    """Line numbers a damaged row may warn on: its own, and an ``ss -i`` detail line after it.

    A detail line whose row was unreadable has no row to belong to: ss reports it too.
    """
    numbers = {index + 1}
    if index + 1 < len(lines) and lines[index + 1][:1] in (" ", "\t"):
        numbers.add(index + 2)
    return numbers


def test_samples_parse_cleanly() -> None:
    # the mutations below mean something only if the originals have no warnings
    for fmt, text in SAMPLES.items():
        snap = parse_text(text, fmt, path=f"{fmt}.txt")
        assert snap.warnings == [], (fmt, snap.warnings)
        assert snap.sockets, fmt


def test_issue_reproducer_is_a_located_warning() -> None:
    text = (
        "Proto Recv-Q Send-Q Local Address           Foreign Address         State\n"
        f"tcp 0 0 127.0.0.1:{'1' * LONG} 0.0.0.0:* LISTEN\n"
        "tcp 0 0 127.0.0.1:22 0.0.0.0:* LISTEN\n"
    )
    snap = parse_text(text, path="repro.txt")
    assert [w.line for w in snap.warnings] == [2]
    assert "port" in snap.warnings[0].message and "out of range" in snap.warnings[0].message
    assert [s.local.port for s in snap.sockets] == [22]  # the rest is still read
    with pytest.raises(InputError) as caught:
        parse_text(text, path="repro.txt", strict=True)
    assert caught.value.line == 2


@pytest.mark.parametrize("fmt", sorted(SAMPLES))
def test_every_digit_run_lengthened_past_the_int_limit(fmt: str) -> None:
    """Each number of each line, in turn, becomes 4,301 digits: that line alone may suffer."""
    lines = SAMPLES[fmt].split("\n")
    base = parse_text(SAMPLES[fmt], fmt)
    rows = data_rows(fmt)
    tried = 0
    for index, line in enumerate(lines):
        for run in digit_runs(line):
            for digit in "19":
                mutated = line[: run.start()] + digit * LONG + line[run.end() :]
                text = "\n".join([*lines[:index], mutated, *lines[index + 1 :]])
                snap = parse_ok(text, fmt)
                assert snap is not None, (fmt, index)
                # a field this long is never a valid number: a data row becomes a
                # warning (or, where the digits were part of a name, still a socket)
                # and the other rows are untouched; a damaged header may cost more
                if index in rows:
                    assert {w.line for w in snap.warnings} <= damage(lines, index), (fmt, index)
                    assert len(snap.sockets) >= len(base.sockets) - 1, (fmt, index)
                parse_ok(text, fmt, strict=True)
                tried += 1
    assert tried > 5


@pytest.mark.parametrize(
    ("fmt", "head"),
    [
        ("linux-netstat", "Proto Recv-Q Send-Q Local Address Foreign Address State\ntcp6 0 0 "),
        ("windows-netstat", "Active Connections\n\n  Proto  Local Address  Foreign\n  TCP  "),
    ],
)
def test_a_long_address_token_parses_in_linear_time(fmt: str, head: str) -> None:
    # found by benchmarks/fuzz_text.py as a hang: ``\S+:\S+`` backtracked through
    # every colon of a token with no peer after it (5 s here at 41,000 characters,
    # growing with the square of the length)
    token = "2001:db8:aaaa:bbbb:cccc:dddd:eeee:1:49806" * 1000
    started = time.perf_counter()
    snap = parse_text(head + token + "\n", fmt)
    assert time.perf_counter() - started < 1.0
    assert [w.line for w in snap.warnings] == [len(head.split("\n"))]


def test_int_field_checks_the_range_before_converting() -> None:
    assert int_field("0" * 5000 + "42", "Recv-Q") == 42  # leading zeros, as int() allows
    assert int_field("65535", "port", 65535) == 65535
    assert int_field(str(2**64 - 1), "inode") == 2**64 - 1
    for bad, maximum in (("65536", 65535), ("9" * LONG, 2**64 - 1), (str(2**64), 2**64 - 1)):
        with pytest.raises(ParseProblem, match="out of range"):
            int_field(bad, "field", maximum)
    with pytest.raises(ParseProblem, match=r"\(4301 characters\)"):
        int_field("7" * LONG, "pid", 2**32 - 1)


def test_float_field_refuses_what_float_would_turn_into_inf_or_nan() -> None:
    assert float_field("0.20", "timer") == 0.2
    for bad in ("1" * 400, "nan", "inf", "1e999", "1" * 5 + "." + "1" * 25):
        with pytest.raises(ParseProblem):
            float_field(bad, "timer")


DATA_ROWS = {fmt: data_rows(fmt) for fmt in SAMPLES}


@st.composite
def mutated_dumps(draw: st.DrawFn) -> tuple[str, str, int]:
    """A sample with one line mutated token-wise: lengthened, repeated or spliced fields."""
    fmt = draw(st.sampled_from(sorted(SAMPLES)))
    lines = SAMPLES[fmt].split("\n")
    candidates = [i for i, line in enumerate(lines) if line.split()]
    index = draw(st.sampled_from(candidates))
    tokens = lines[index].split()
    at = draw(st.integers(0, len(tokens) - 1))
    token = tokens[at]
    how = draw(st.sampled_from(["lengthen", "repeat-in-place", "repeat-field", "splice"]))
    if how == "lengthen":
        width = draw(st.sampled_from([5, 11, 20, 21, 4300, LONG, 6000]))
        digit = draw(st.sampled_from("0159"))
        if digit_runs(token):
            run = draw(st.sampled_from(digit_runs(token)))
            token = token[: run.start()] + digit * width + token[run.end() :]
        else:
            token = token + digit * width
        tokens[at] = token
    elif how == "repeat-in-place":
        tokens[at] = token * draw(st.integers(2, 300))
    elif how == "repeat-field":
        tokens[at : at + 1] = [token] * draw(st.integers(2, 20))
    else:
        donor = draw(st.sampled_from([t for line in lines for t in line.split()]))
        tokens.insert(draw(st.integers(0, len(tokens))), donor * draw(st.integers(1, 50)))
    indent = lines[index][: len(lines[index]) - len(lines[index].lstrip())]
    lines[index] = indent + "   ".join(tokens)
    return fmt, "\n".join(lines), index + 1


@FAST
@given(mutated_dumps(), st.booleans(), st.booleans())
def test_token_mutations_never_escape_as_tracebacks(
    case: tuple[str, str, int], auto: bool, strict: bool
) -> None:
    fmt, text, line = case
    snap = parse_ok(text, None if auto else fmt, strict)
    if snap is not None and not auto and line - 1 in DATA_ROWS[fmt]:
        # damage to a data row stays on that row (a damaged header may cost more)
        assert {w.line for w in snap.warnings} <= damage(SAMPLES[fmt].split("\n"), line - 1)


def tcplens(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tcplens", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


#: a local port of each sample, as written (unique in the sample)
PORTS = {
    "linux-netstat": "127.0.0.1:25 ",
    "ss": "0.0.0.0:22 ",
    "windows-netstat": "0.0.0.0:135 ",
    "bsd-netstat": "10.0.0.5.22 ",
    "solaris-netstat": "10.0.0.4.22 ",
    "powershell": " 49669 ",
}


@pytest.mark.parametrize("fmt", sorted(PORTS))
def test_cli_says_one_located_line_for_a_long_port(fmt: str, tmp_path: Path) -> None:
    text = SAMPLES[fmt]
    assert text.count(PORTS[fmt]) == 1
    port = re.search(r"[0-9]+ $", PORTS[fmt])
    assert port is not None
    text = text.replace(PORTS[fmt], PORTS[fmt][: port.start()] + "1" * LONG + " ")
    index = next(i for i, line in enumerate(text.split("\n")) if "1" * LONG in line)
    path = tmp_path / f"{fmt}.txt"
    path.write_text(text)

    run = tcplens("ls", "--format", fmt, "--from", str(path))
    assert "Traceback" not in run.stderr
    assert run.returncode == 0, run.stderr
    warnings = [w for w in run.stderr.splitlines() if w.startswith("warning:")]
    assert warnings == [w for w in warnings if w.startswith(f"warning: line {index + 1}: ")]
    assert len(warnings) == 1 and "out of range" in warnings[0] and len(warnings[0]) < 400

    strict = tcplens("ls", "--strict", "--format", fmt, "--from", str(path))
    assert "Traceback" not in strict.stderr
    assert strict.returncode != 0
    assert strict.stderr.count("\n") == 1, strict.stderr
    assert f"line {index + 1}" in strict.stderr and str(path) in strict.stderr
