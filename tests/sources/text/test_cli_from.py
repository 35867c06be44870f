"""The real CLI reading saved text: ``tcplens ls/status --from FILE`` (subprocesses)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tcplens import parse_text
from tests.sources.text.helpers import FIXTURES

#: the project's shared/ folder sits beside the repository (here and in CI)
SEEDS = Path(__file__).resolve().parents[3].parent / "shared" / "seeds"
LINUX_SEED = FIXTURES / "seed003-linux-netstat-anlp.txt"


def tcplens(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "tcplens", *args],
        input=stdin,
        capture_output=True,
        timeout=60,
        check=False,
    )
    return subprocess.CompletedProcess(
        result.args,
        result.returncode,
        result.stdout.decode("utf-8", errors="replace"),
        result.stderr.decode("utf-8", errors="replace"),
    )


def test_ls_from_windows_anb_fixture() -> None:
    run = tcplens("ls", "--from", str(FIXTURES / "windows-netstat-anb.txt"))
    assert run.returncode == 0, run.stderr
    rows = [line for line in run.stdout.splitlines() if line.startswith(("tcp", "udp"))]
    assert len(rows) == 6
    assert "988/svchost.exe" in rows[0]
    assert "696/lsass.exe" in rows[5]


def test_ls_from_stdin_utf16_redirect() -> None:
    data = (FIXTURES / "windows10-netstat-aon.txt").read_text().encode("utf-16")
    run = tcplens("ls", "--from", "-", "--state", "listen", stdin=data)
    assert run.returncode == 0, run.stderr
    rows = [line for line in run.stdout.splitlines() if line.startswith("tcp")]
    assert len(rows) == 39  # 71 TCP rows, 39 of them LISTENING
    assert any("1712" in row and "0.0.0.0:135" in row for row in rows)


def test_ls_netstat_output_parses_back_to_the_same_sockets() -> None:
    path = FIXTURES / "ubuntu18.04-ss-tulpen.txt"
    run = tcplens("ls", "--from", str(path), "--netstat")
    assert run.returncode == 0, run.stderr
    again = parse_text(run.stdout)
    first = parse_text(path.read_text())
    assert again.warnings == []
    assert sorted((s.proto, s.local, s.pid, s.state) for s in again.sockets) == sorted(
        (s.proto, s.local, s.pid, s.state) for s in first.sockets
    )


def test_status_from_the_linux_seed_file() -> None:
    seed = SEEDS / "003_5ac3709bf2bdad4a.txt"
    source = seed if seed.exists() else LINUX_SEED
    run = tcplens("status", "--from", str(source))
    assert run.returncode == 0, run.stderr
    assert "text:linux-netstat" in run.stdout
    assert "CLOSE_WAIT" in run.stdout
    assert "FIN_WAIT2" in run.stdout
    assert "Traceback" not in run.stderr


def test_status_from_the_windows_seed_file_with_its_broken_paste() -> None:
    seed = SEEDS / "002_1c706d45d7819587.txt"
    source = seed if seed.exists() else FIXTURES / "seed002-windows-netstat-na-p-tcp.txt"
    run = tcplens("status", "--from", str(source))
    assert run.returncode == 0, run.stderr
    assert "text:windows-netstat" in run.stdout
    assert "Traceback" not in run.stderr


def test_missing_file_is_one_line_and_exit_2(tmp_path: Path) -> None:
    missing = tmp_path / "gone.txt"
    run = tcplens("ls", "--from", str(missing))
    assert run.returncode == 2
    assert run.stderr.splitlines() == [
        f"tcplens: error: {missing}: cannot read: No such file or directory"
    ]
    assert run.stdout == ""


def test_prose_is_one_line_and_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("this is not a netstat dump\nat all\n")
    run = tcplens("status", "--from", str(path))
    assert run.returncode == 2
    (line,) = run.stderr.splitlines()
    assert line.startswith(f"tcplens: error: {path}: not netstat, ss or /proc/net output")


def test_strict_names_the_bad_line() -> None:
    run = tcplens("ls", "--from", str(LINUX_SEED), "--strict")
    assert run.returncode == 2
    assert run.stderr.splitlines() == [
        f"tcplens: error: {LINUX_SEED} line 7: not a netstat row: '又比如'"
    ]


def test_without_strict_the_bad_line_is_a_warning_and_rows_are_shown() -> None:
    run = tcplens("ls", "--from", str(LINUX_SEED))
    assert run.returncode == 0
    assert "line 7" in run.stderr
    assert "2510/client" in run.stdout


def test_format_forced_and_unknown() -> None:
    path = str(FIXTURES / "freebsd12-netstat-an.txt")
    run = tcplens("ls", "--from", path, "--format", "freebsd")
    assert run.returncode == 0, run.stderr
    assert "192.168.71.163:22" in run.stdout
    bad = tcplens("ls", "--from", path, "--format", "aix")
    assert bad.returncode == 2
    (line,) = bad.stderr.splitlines()
    assert "unknown format 'aix'" in line
