"""``tcplens status`` speaks the doctor's language: ``--lang``, else the locale, as ``doctor``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

LEAK = "\n".join(
    ["Active Internet connections (servers and established)",
     "Proto Recv-Q Send-Q Local Address     Foreign Address     State     PID/Program name",
     "tcp        0      0 0.0.0.0:8080      0.0.0.0:*           LISTEN    4242/java"]
    + [f"tcp        1      0 10.0.0.5:8080     10.0.0.7:{40000 + i}    CLOSE_WAIT 4242/java"
       for i in range(12)]
) + "\n"  # fmt: skip


def _status(dump: Path, *args: str, env: dict[str, str] | None = None) -> str:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("LC_", "LANG"))}
    run = subprocess.run(
        [sys.executable, "-m", "tcplens", "status", "--from", str(dump), *args],
        capture_output=True,
        text=True,
        env={**base, "COLUMNS": "120", **(env or {})},
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    return run.stdout


@pytest.fixture
def dump(tmp_path: Path) -> Path:
    path = tmp_path / "leak.txt"
    path.write_text(LEAK)
    return path


def test_lang_flag_gives_the_chinese_top_finding(dump: Path) -> None:
    out = _status(dump, "--lang", "zh")
    assert "首要问题：警告 进程 4242（java）在端口 8080 上有 12 个 CLOSE_WAIT 连接" in out


def test_locale_is_followed_and_the_flag_wins(dump: Path) -> None:
    assert "首要问题：" in _status(dump, env={"LANG": "zh_CN.UTF-8"})
    english = _status(dump, "--lang", "en", env={"LANG": "zh_CN.UTF-8"})
    assert "Top finding: WARNING process 4242 (java) holds 12 CLOSE_WAIT" in english


def test_an_unknown_language_is_a_usage_error(dump: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "tcplens", "status", "--from", str(dump), "--lang", "fr"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 2 and "--lang" in run.stderr
