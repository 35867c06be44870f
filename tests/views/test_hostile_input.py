"""Hostile input through the real command: one line on stderr, exit 2, never a traceback.

Each case here was found by feeding the CLI junk during review; the subprocess
runs the checked-out sources (``PYTHONPATH``), not whatever copy is installed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tcplens.errors import InputError
from tcplens.sources import text as text_source

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"
HANDSHAKE = FIXTURES / "pcap" / "tcp_handshake.pcapng"
NETSTAT = FIXTURES / "text" / "linux-netstat-anp.txt"
ENV = {**os.environ, "PYTHONPATH": str(ROOT / "src")}


def tcplens(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "tcplens", *args],
        input=stdin,
        capture_output=True,
        timeout=60,
        check=False,
        env=ENV,
    )
    return subprocess.CompletedProcess(
        result.args,
        result.returncode,
        result.stdout.decode("utf-8", "replace"),
        result.stderr.decode("utf-8", "replace"),
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 2, (result.returncode, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines, "no error text"
    for needle in needles:
        assert needle in result.stderr, (needle, result.stderr)


def test_a_non_utf8_web_config_names_the_file_and_byte(tmp_path: Path) -> None:
    config = tmp_path / "web.yml"
    config.write_bytes(b"basic_auth_users:\n  \xff\xfe: x\n")
    result = tcplens("exporter", "--listen", "127.0.0.1:0", "--web-config", str(config))
    assert_one_line_error(result, f"{config} byte 20: not UTF-8 text")
    assert len(result.stderr.splitlines()) == 1


def test_a_non_utf8_simulate_script_names_the_file_and_byte(tmp_path: Path) -> None:
    script = tmp_path / "s.scn"
    script.write_bytes(b"server listen\n\xc5client connect\n")
    result = tcplens("simulate", "--script", str(script))
    assert_one_line_error(result, f"{script} byte 14: not UTF-8 text")


def test_a_simulate_script_with_a_bom_runs(tmp_path: Path) -> None:
    script = tmp_path / "s.scn"
    script.write_bytes(b"\xef\xbb\xbfserver listen\nexpect server LISTEN\n")
    result = tcplens("simulate", "--script", str(script))
    assert result.returncode == 0, result.stderr
    assert "LISTEN" in result.stdout


@pytest.mark.parametrize(
    ("script", "message"),
    [
        ("server listen\nexpect server BOGUS\n", "line 2: unknown TCP state 'BOGUS'"),
        ("server listen\nwait nan\n", "line 2: wait takes a number of seconds"),
        ("server listen\nwait inf\n", "line 2: wait takes a number of seconds"),
        ("msl nan\nserver listen\n", "line 1: msl must be positive"),
        ('{"msl": NaN, "steps": ["server listen"]}', "'msl' must be a positive number"),
    ],
)
def test_bad_simulate_scripts_name_the_line(tmp_path: Path, script: str, message: str) -> None:
    path = tmp_path / "s.scn"
    path.write_text(script)
    assert_one_line_error(tcplens("simulate", "--script", str(path)), f"{path}", message)


@pytest.mark.parametrize("value", ["nan", "NaN"])
def test_a_nan_threshold_is_refused_not_a_silently_disabled_rule(value: str) -> None:
    result = tcplens("doctor", "--from", str(NETSTAT), "--threshold", f"close-wait={value}")
    assert_one_line_error(result, "close-wait must be a number >= 0")


def test_a_nan_threshold_in_the_config_file_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "doctor.toml"
    config.write_text("[thresholds]\nclose-wait = nan\n")
    result = tcplens("doctor", "--from", str(NETSTAT), "--config", str(config))
    assert_one_line_error(result, f"{config}: threshold close-wait must be a number >= 0")


@pytest.mark.parametrize("value", ["", ",", " , "])
def test_an_empty_state_filter_is_an_error_not_every_state(value: str) -> None:
    result = tcplens("ls", "--from", str(NETSTAT), "--state", value)
    assert_one_line_error(result, "names no state")
    assert result.stdout == ""


@pytest.mark.parametrize(
    "args",
    [
        ("watch", "--interval", "1e308", "--count", "2"),
        ("trace", "--interval", "1e9", "--duration", "0.1"),
        ("capture", "-i", "lo", "--count", "-1"),
        ("capture", "-i", "lo", "--count", "0"),
        ("capture", "-i", "lo", "--duration", "-5"),
        ("ls", "--from", str(NETSTAT), "--pid", "-5"),
        ("pcap", str(HANDSHAKE), "--msl", "-1"),
        ("pcap", str(HANDSHAKE), "--close-timeout", "-1"),
    ],
)
def test_out_of_range_live_options_are_usage_errors(args: tuple[str, ...]) -> None:
    result = tcplens(*args)
    assert_one_line_error(result, "is not in the range")


@pytest.mark.parametrize(
    "args",
    [
        ("watch", "--interval", "nan", "--count", "1"),
        ("trace", "--duration", "nan"),
        ("capture", "-i", "lo", "--duration", "nan"),
        ("exporter", "--listen", "127.0.0.1:0", "--min-interval", "nan"),
        ("pcap", str(HANDSHAKE), "--msl", "nan"),
        ("pcap", str(HANDSHAKE), "--idle-timeout", "inf"),
    ],
)
def test_nan_and_infinite_durations_are_usage_errors(args: tuple[str, ...]) -> None:
    # NaN passes click's own range checks: every comparison with it is false
    assert_one_line_error(tcplens(*args), "is not a finite number")


def test_an_endless_from_file_is_refused_with_its_offset(monkeypatch: pytest.MonkeyPatch) -> None:
    # in-process with a small limit: the real one (512 MiB) is too much to read in a test;
    # endless text through a pipe (binary like /dev/zero is refused by its first KiB)
    monkeypatch.setattr(text_source, "MAX_TEXT_BYTES", 4096)
    row = "tcp 0 0 127.0.0.1:1 127.0.0.1:2 ESTABLISHED"
    with subprocess.Popen(["yes", row], stdout=subprocess.PIPE) as endless:
        assert endless.stdout is not None
        path = f"/proc/self/fd/{endless.stdout.fileno()}"
        with pytest.raises(InputError) as caught:
            text_source.read_text(path)
        endless.kill()
    assert str(caught.value).startswith(f"{path} byte 4096: larger than")


def test_pcap_reads_a_pipe_without_losing_its_magic() -> None:
    # `tcplens pcap <(tcpdump -w -)`: the path names a pipe that cannot seek back
    result = tcplens("pcap", "/dev/stdin", stdin=HANDSHAKE.read_bytes())
    assert result.returncode == 0, result.stderr
    assert "1 connection from 3 frames" in result.stdout


@pytest.mark.parametrize(
    "args",
    [
        ("ls", "--from", str(NETSTAT)),
        ("ls", "--from", str(NETSTAT), "--json"),
        ("status", "--from", str(NETSTAT)),
        ("doctor", "--from", str(NETSTAT)),
        ("pcap", str(HANDSHAKE)),
        ("simulate", "--list"),
        ("explain",),
        ("--help",),
        ("ls", "--help"),
    ],
)
def test_a_reader_that_goes_away_is_not_an_error(args: tuple[str, ...]) -> None:
    """`tcplens ... | head -1`: the pipe is closed before tcplens writes a byte."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        result = subprocess.run(
            [sys.executable, "-m", "tcplens", *args],
            stdout=write_end,
            stderr=subprocess.PIPE,
            timeout=60,
            check=False,
            env=ENV,
        )
    finally:
        os.close(write_end)
    stderr = result.stderr.decode("utf-8", "replace")
    assert "Traceback" not in stderr and "Exception ignored" not in stderr, stderr
    assert result.returncode == 0, (result.returncode, stderr)
    assert stderr == ""


def test_lab_refuses_an_unwritable_pcap_before_running(tmp_path: Path) -> None:
    target = tmp_path / "no-such-dir" / "run.pcap"
    result = tcplens("lab", "listen", "--pcap", str(target))
    assert_one_line_error(result, f"{target}: cannot write: No such file or directory")
    assert "rig:" not in result.stdout and result.stdout == ""


def test_exporter_refuses_an_unreadable_dump_at_start(tmp_path: Path) -> None:
    dump = tmp_path / "netstat.txt"
    dump.write_bytes(b"\x00\x01garbage\n" * 10)
    result = tcplens("exporter", "--listen", "127.0.0.1:0", "--from", str(dump))
    assert_one_line_error(result, f"{dump} byte 0: binary data (byte 0x00)")
    assert "serving" not in result.stderr


def test_a_non_utf8_terminal_gets_replacement_characters_not_a_traceback() -> None:
    seed = FIXTURES / "text" / "seed003-linux-netstat-anlp.txt"
    result = subprocess.run(
        [sys.executable, "-m", "tcplens", "doctor", "--from", str(seed), "--lang", "zh"],
        capture_output=True,
        timeout=60,
        check=False,
        env={**ENV, "PYTHONIOENCODING": "ascii"},
    )
    assert b"Traceback" not in result.stderr, result.stderr
    assert result.returncode == 0, result.stderr
    assert b"?" in result.stdout and b"CLOSE_WAIT" in result.stdout
