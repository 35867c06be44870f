"""The CLI frame: every verb has help with an example; errors are one line, exit 2."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from tcplens.views.cli import COMMANDS, cli


def tcplens(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tcplens", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_top_level_help_lists_every_verb_with_an_example() -> None:
    result = CliRunner().invoke(cli, ["--help"], terminal_width=200)
    assert result.exit_code == 0
    for name, verb in COMMANDS.items():
        line = next(line for line in result.output.splitlines() if line.strip().startswith(name))
        assert "e.g. tcplens" in line, line
        assert verb.example.startswith(f"tcplens {name}")


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_command_has_help_with_an_example(name: str) -> None:
    result = CliRunner().invoke(cli, [name, "--help"])
    assert result.exit_code == 0, result.output
    assert "Example: tcplens" in result.output, result.output


def test_python_dash_m_and_version() -> None:
    done = tcplens("--version")
    assert done.returncode == 0 and "tcplens" in done.stdout


def test_unknown_verb_is_a_usage_error() -> None:
    done = tcplens("frobnicate")
    assert done.returncode == 2
    assert "Traceback" not in done.stderr and "No such command" in done.stderr


def test_simulate_simultaneous_close_passes_through_closing_on_both_sides() -> None:
    done = tcplens("simulate", "simultaneous-close")
    assert done.returncode == 0, done.stderr
    closing_rows = [line for line in done.stdout.splitlines() if "CLOSING" in line]
    assert len(closing_rows) >= 2
    import json

    doc = json.loads(tcplens("simulate", "simultaneous-close", "--json").stdout)
    assert doc["version"] == 1
    for side in ("client", "server"):
        seen = [step[side] for step in doc["steps"]]
        assert "CLOSING" in seen and seen[-1] == "CLOSED"


def test_simulate_list_names_every_scenario() -> None:
    from tcplens.model.scenarios import SCENARIOS

    out = tcplens("simulate", "--list").stdout
    for name in SCENARIOS:
        assert name in out


def test_simulate_svg_is_an_svg() -> None:
    out = tcplens("simulate", "refused", "--format", "svg").stdout
    assert out.startswith("<svg") and "RST+ACK" in out


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (("simulate", "nope"), None, "unknown scenario 'nope'"),
        (
            ("simulate", "--script", "-"),
            "server listen\nclient jump\n",
            "-: line 2: unknown action",
        ),
        (("simulate", "--script", "/nonexistent.scn"), None, "/nonexistent.scn: cannot read"),
        (("simulate",), None, "give a scenario NAME"),
        (("diagram", "--highlight", "bogus"), None, "unknown TCP state 'bogus'"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    args: tuple[str, ...], stdin: str | None, message: str
) -> None:
    done = tcplens(*args, stdin=stdin)
    assert done.returncode == 2
    assert message in done.stderr
    assert "Traceback" not in done.stderr
    # One line says what is wrong (click adds its usage lines to usage errors).
    assert len([line for line in done.stderr.splitlines() if message in line]) == 1
    assert len(done.stderr.strip().splitlines()) <= 4


def test_simulate_script_from_a_file(tmp_path: object) -> None:
    from pathlib import Path

    script = Path(str(tmp_path)) / "mine.scn"
    script.write_text("server listen\nclient connect\ndeliver all\nexpect server ESTABLISHED\n")
    done = tcplens("simulate", "--script", str(script))
    assert done.returncode == 0 and "ESTABLISHED" in done.stdout


def test_simulate_shutdown_verb_is_a_half_close_and_documented() -> None:
    half = "server listen\nclient connect\ndeliver all\nclient shutdown\ndeliver all\n"
    read = tcplens(
        "simulate", "--script", "-", "--json", stdin=half + "server send 10\ndeliver all\n"
    )
    assert read.returncode == 0, read.stderr
    doc = json.loads(read.stdout)
    assert doc["final"] == {"client": "FIN_WAIT2", "server": "CLOSE_WAIT"}
    assert any(s["action"] == "client: shutdown(SHUT_WR)" for s in doc["steps"])
    closed = half.replace("client shutdown", "client close") + "server send 10\ndeliver all\n"
    reset = json.loads(tcplens("simulate", "--script", "-", "--json", stdin=closed).stdout)
    assert reset["final"] == {"client": "CLOSED", "server": "CLOSED"}
    help_text = tcplens("simulate", "--help").stdout
    assert "shutdown(SHUT_WR)" in help_text and "keepalive" in help_text


def test_diagram_dot_pipes_into_graphviz() -> None:
    dot = tcplens("diagram", "--format", "dot")
    assert dot.returncode == 0
    svg = subprocess.run(["dot", "-Tsvg"], input=dot.stdout, capture_output=True, text=True)
    assert svg.returncode == 0 and "<svg" in svg.stdout
    assert "<svg" in tcplens("diagram", "--format", "svg").stdout
