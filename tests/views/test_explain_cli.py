"""``tcplens explain`` as users run it: real subprocesses, a real pseudo-terminal."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import struct
import subprocess
import sys
import termios

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st
from rich.cells import cell_len

from tcplens.model import LABELS, LANGS, SPELLINGS, State, explain
from tcplens.views.cli import cli
from tcplens.views.commands.explain import JSON_VERSION, render_plain, wrap

CJK = re.compile(r"[\u4e00-\u9fff]")
ANSI = re.compile(r"\x1b\[")
LOCALE_VARS = ("LC_ALL", "LC_MESSAGES", "LANG", "LANGUAGE")


def _env(**locale: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in LOCALE_VARS}
    env.update(locale)
    env["PYTHONIOENCODING"] = "utf-8"
    return env


def run(*args: str, **locale: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tcplens", "explain", *args],
        capture_output=True,
        text=True,
        encoding="utf-8",
        env=_env(**locale),
        timeout=60,
    )


def invoke(*args: str) -> str:
    """In-process run for loops over every state (stdout is not a terminal: plain)."""
    result = CliRunner().invoke(cli, ["explain", *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_kernel_code_08_explains_close_wait_in_plain_text() -> None:
    done = run("08")
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    lines = done.stdout.splitlines()
    assert lines[0].startswith("CLOSE_WAIT — ")
    assert "close()" in done.stdout and "Spellings" in done.stdout
    assert not ANSI.search(done.stdout)  # piped: no colour codes
    assert "╭" not in done.stdout and "│" not in done.stdout  # and no box drawing
    assert all(line == line.rstrip() for line in lines)


def test_every_spelling_of_a_state_gives_the_same_page() -> None:
    pages = {run(text).stdout for text in ("close-wait", "CLOSE_WAIT", "08", "close wait")}
    assert len(pages) == 1


def test_windows_spelling_in_chinese() -> None:
    done = run("LISTENING", "--lang", "zh")
    assert done.returncode == 0, done.stderr
    first = done.stdout.splitlines()[0]
    assert first.startswith("LISTEN — ") and CJK.search(first)
    flat = re.sub(r"\s+", "", done.stdout)  # wrapping may split a word across lines
    for word in ("被动打开", "三次握手", "全连接队列", "LISTENING", "0A"):
        assert word in flat


def test_language_comes_from_the_locale_unless_the_flag_says_otherwise() -> None:
    assert CJK.search(run("TIME_WAIT", LANG="zh_CN.UTF-8").stdout)
    assert CJK.search(run("TIME_WAIT", LC_MESSAGES="zh_TW.UTF-8", LANG="en_US.UTF-8").stdout)
    assert not CJK.search(run("TIME_WAIT", LC_ALL="C", LANG="zh_CN.UTF-8").stdout)
    assert not CJK.search(run("TIME_WAIT", "--lang", "en", LANG="zh_CN.UTF-8").stdout)
    assert not CJK.search(run("TIME_WAIT").stdout)  # no locale at all: English


@pytest.mark.parametrize("lang", LANGS)
@pytest.mark.parametrize("state", list(State))
def test_every_state_shows_every_section_and_every_spelling(state: State, lang: str) -> None:
    out = invoke(state.value, "--lang", lang)
    exp = explain(state, lang)
    flat = re.sub(r"\s+", "", out)
    for text in (exp.meaning, exp.side, exp.how_reached, exp.duration, exp.trouble, *exp.advice):
        assert re.sub(r"\s+", "", text) in flat  # wrapped, but every word is there
    for cmd in exp.inspect:
        assert cmd in out
    lines = out.splitlines()
    spellings = lines[lines.index(LABELS[lang]["spellings"]) + 1 :]
    for tool, names in SPELLINGS[state].items():
        line = next(line for line in spellings if line.strip().startswith(tool))
        for name in names:
            assert name in line, f"{tool}: {name} missing from {line!r}"


@pytest.mark.parametrize("lang", LANGS)
def test_no_state_lists_every_state_one_line_each(lang: str) -> None:
    done = run("--lang", lang)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert [line.split()[0] for line in lines] == [s.value for s in State]
    for state, line in zip(State, lines, strict=True):
        exp = explain(state, lang)
        assert exp.summary in line and exp.hint in line
    waits = [line.split()[0] for line in lines if "WAIT" in line.split()[0]]
    assert waits == ["FIN_WAIT1", "FIN_WAIT2", "CLOSE_WAIT", "TIME_WAIT"]


def test_json_for_one_state_is_the_versioned_contract() -> None:
    done = run("--json", "SYN_RCVD", "--lang", "zh")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["version"] == JSON_VERSION == 1
    assert doc["state"] == "SYN_RECV" and doc["lang"] == "zh" and doc["kernel_code"] == 3
    assert doc["spellings"] == {k: list(v) for k, v in SPELLINGS[State.SYN_RECV].items()}
    assert CJK.search(done.stdout)  # written as UTF-8, not \\u escapes
    expected = {
        "version", "state", "lang", "kernel_code", "title", "summary", "hint", "meaning",
        "side", "how_reached", "duration", "trouble", "advice", "inspect", "spellings",
    }  # fmt: skip
    assert set(doc) == expected
    assert all(isinstance(item, str) and item for item in doc["advice"])


def test_json_without_a_state_lists_all_twelve() -> None:
    doc = json.loads(run("--json").stdout)
    assert doc["version"] == 1 and doc["lang"] == "en"
    assert [s["state"] for s in doc["states"]] == [s.value for s in State]
    assert doc["states"][-1]["kernel_code"] is None  # UNKNOWN has no kernel code


@pytest.mark.parametrize(
    ("text", "suggestion"),
    [("CLOSE_WIAT", "CLOSE_WAIT"), ("FOO", None), ("0F", None), ("time-wiat", "TIME_WAIT")],
)
def test_unknown_state_is_one_line_on_stderr_and_exit_2(text: str, suggestion: str | None) -> None:
    done = run(text)
    assert done.returncode == 2
    assert done.stdout == ""
    assert "Traceback" not in done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert "unknown TCP state" in lines[0] and text in lines[0]
    if suggestion:
        assert suggestion in lines[0]


def test_unknown_language_is_a_usage_error_without_traceback() -> None:
    done = run("LISTEN", "--lang", "fr")
    assert done.returncode == 2
    assert "Traceback" not in done.stderr and "--lang" in done.stderr


def test_help_has_examples_and_each_example_works() -> None:
    done = run("--help")
    assert done.returncode == 0
    examples = [
        line.strip().removeprefix("Example:").strip()
        for line in done.stdout.splitlines()
        if line.strip().startswith("Example:")
    ]
    assert len(examples) >= 3
    for example in examples:
        words = example.split()
        assert words[:2] == ["tcplens", "explain"], example
        invoke(*words[2:])


def _in_terminal(columns: int, *args: str) -> str:
    """Run ``tcplens explain ARGS`` in a real pseudo-terminal ``columns`` wide."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    env = _env(TERM="xterm-256color")
    env.pop("COLUMNS", None)
    env.pop("NO_COLOR", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "tcplens", "explain", *args],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=env,
        close_fds=True,
    )
    os.close(slave)
    chunks: list[bytes] = []
    try:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(master)
        proc.wait(timeout=60)
    assert proc.returncode == 0
    out = b"".join(chunks).decode("utf-8")
    assert ANSI.search(out)  # a terminal gets colour
    plain = re.sub(r"\x1b\[[0-9;]*m", "", out)
    for line in plain.splitlines():
        assert cell_len(line) <= columns, line
    return plain


def test_terminal_output_is_a_rich_panel() -> None:
    plain = _in_terminal(100, "CLOSE_WAIT", "--lang", "zh")
    assert "╭" in plain and "CLOSE_WAIT" in plain and "内核代码 08" in plain
    # labels beside the text: the label and the start of its text share a line
    assert any(line.startswith("│ 含义") and "对方发来" in line for line in plain.splitlines())


def test_narrow_terminal_puts_labels_above_the_text() -> None:
    plain = _in_terminal(40, "CLOSE_WAIT")
    lines = [line.strip("│ ") for line in plain.splitlines()]
    meaning = lines.index("Meaning")
    assert lines[meaning + 1].startswith("The peer sent FIN")


def test_terminal_overview_is_a_table_of_every_state() -> None:
    plain = _in_terminal(100)
    for state in State:
        assert state.value in plain
    assert "TCP connection states" in plain


# --------------------------------------------------------------------------
# Line breaking


def _longest_unbreakable(text: str) -> int:
    """Cells of the longest Latin run plus what may be glued to it: an opening
    bracket before; after, a closing mark, or an opening quote with the Chinese
    character it must stay with and that character's closing mark."""
    runs = re.findall(r"[^\s\u2e80-\uffff]+", text)
    return max((cell_len(run) for run in runs), default=0) + 6


@pytest.mark.parametrize("width", [24, 40, 60, 76, 96])
@pytest.mark.parametrize(("state", "lang"), [(s, lang) for s in State for lang in LANGS])
def test_wrap_fits_the_width_and_keeps_every_character(state: State, lang: str, width: int) -> None:
    exp = explain(state, lang)
    for text in (exp.meaning, exp.trouble, *exp.advice):
        lines = wrap(text, width, "- ", "  ")
        assert re.sub(r"\s+", "", "".join(lines)) == "-" + re.sub(r"\s+", "", text)
        for line in lines:
            assert cell_len(line) <= max(width, _longest_unbreakable(text)), line
            assert not line.lstrip(" -").startswith(tuple("，。：；、）")), line
            assert not line.endswith(("（", "“")), line


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["", "（", "“"]),
            st.sampled_from(["socket", "连", "接", "ACK", "close()", " ", "端口"]),
            st.sampled_from(["", "，", "。", "）", "”", " "]),
        ),
        max_size=40,
    ),
    st.integers(min_value=8, max_value=60),
)
def test_wrap_never_loses_text_or_overflows_with_short_words(
    parts: list[tuple[str, str, str]], width: int
) -> None:
    text = "".join("".join(part) for part in parts)
    lines = wrap(text, width)
    assert re.sub(r"\s+", "", "".join(lines)) == re.sub(r"\s+", "", text)
    for line in lines:
        assert cell_len(line) <= max(width, _longest_unbreakable(text))


def test_plain_page_wraps_to_the_width_it_is_given() -> None:
    page = render_plain(explain(State.TIME_WAIT, "zh"), 60)
    assert all(cell_len(line) <= 60 for line in page.splitlines())
    assert "2MSL" in page and "TCP_TIMEWAIT_LEN" in page
