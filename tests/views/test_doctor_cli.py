"""``tcplens doctor`` as users run it: saved dumps, JSON contract, languages, exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

TEXT = Path(__file__).resolve().parents[1] / "fixtures" / "text"
SEED_PARTS = ("seed003-linux-netstat-anlp.txt", "seed003-linux-netstat-anlp-2.txt")
RAW_SEED = Path("/work/shared/seeds/003_5ac3709bf2bdad4a.txt")

#: a Linux ``netstat -tanp`` dump: a server (pid 4242) leaking CLOSE_WAIT on 8080
LEAK_HEADER = (
    "Active Internet connections (servers and established)\n"
    "Proto Recv-Q Send-Q Local Address           Foreign Address         State       "
    "PID/Program name\n"
    "tcp        0      0 0.0.0.0:8080            0.0.0.0:*               LISTEN      "
    "4242/java\n"
)


@pytest.fixture(scope="module")
def seed(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The seed article's two Ctrl+C experiments as one dump (repo copies, as in CI)."""
    path = tmp_path_factory.mktemp("seed") / "seed003.txt"
    path.write_text("".join((TEXT / name).read_text() for name in SEED_PARTS))
    return str(path)


def leak_dump(tmp_path: Path, n: int = 12) -> Path:
    rows = [
        f"tcp        1      0 10.0.0.5:8080           10.0.0.{i + 10}:5{i:04d}        CLOSE_WAIT  "
        "4242/java\n"
        for i in range(n)
    ]
    path = tmp_path / "leak.txt"
    path.write_text(LEAK_HEADER + "".join(rows))
    return path


def tcplens(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("LC_", "LANG"))}
    return subprocess.run(
        [sys.executable, "-m", "tcplens", *args],
        capture_output=True,
        text=True,
        env={**base, "HOME": "/tmp", "COLUMNS": "100", **(env or {})},
        cwd="/",
        timeout=60,
    )


def test_seed_dump_explains_the_killed_peer_and_exits_0(seed: str) -> None:
    result = tcplens("doctor", "--from", seed)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "Kernel settings: assumed Linux defaults" in out
    assert "process 2510 (client) holds 1 CLOSE_WAIT socket to 192.168.190.81:10050" in out
    assert "process 2568 (server) holds 1 CLOSE_WAIT socket on port 10050" in out
    assert "holds the other end in CLOSE_WAIT" in out
    assert "tcp_fin_timeout=60 (assumed default)" in out
    assert "More: tcplens explain CLOSE_WAIT" in out
    assert out.rstrip().endswith("4 findings: 0 critical, 0 warning, 4 info.")


def test_leak_dump_is_a_warning_with_exit_1_and_min_severity_filters(tmp_path: Path) -> None:
    dump = str(leak_dump(tmp_path))
    result = tcplens("doctor", "--from", dump)
    assert result.returncode == 1, result.stderr
    assert "WARNING  [close-wait] process 4242 (java) holds 12 CLOSE_WAIT sockets on port 8080" in (
        result.stdout
    )
    assert "ss -K" in result.stdout
    only_critical = tcplens("doctor", "--from", dump, "--min-severity", "critical")
    assert only_critical.returncode == 0
    assert "No findings at critical or above (1 below it" in only_critical.stdout
    raised = tcplens("doctor", "--from", dump, "--threshold", "close-wait=20")
    assert raised.returncode == 0 and "INFO" in raised.stdout


def test_json_is_the_documented_versioned_contract(tmp_path: Path) -> None:
    result = tcplens("doctor", "--from", str(leak_dump(tmp_path)), "--json")
    assert result.returncode == 1
    assert result.stdout.count("\n") == 1  # one document, one line
    doc = json.loads(result.stdout)
    assert set(doc) == {
        "version",
        "kind",
        "lang",
        "snapshot",
        "kernel",
        "thresholds",
        "summary",
        "findings",
    }
    assert (doc["version"], doc["kind"], doc["lang"]) == (1, "tcplens.doctor", "en")
    assert doc["kernel"]["assumed"] is True and doc["kernel"]["counters"] == {}
    assert doc["kernel"]["settings"]["ip_local_port_range"] == [32768, 60999]
    assert doc["summary"] == {"info": 0, "warning": 1, "critical": 0, "exit_code": 1}
    assert doc["thresholds"]["close-wait"] == 10
    (finding,) = doc["findings"]
    assert set(finding) == {
        "rule",
        "kind",
        "severity",
        "state",
        "title",
        "explanation",
        "advice",
        "evidence",
    }
    assert (finding["rule"], finding["severity"], finding["state"]) == (
        "close-wait",
        "warning",
        "CLOSE_WAIT",
    )
    ev = finding["evidence"]
    assert ev["count"] == 12 and ev["queue"] == 12 and ev["local"] == "*:8080"
    assert ev["processes"] == [{"pid": 4242, "name": "java", "count": 12}]
    assert ev["distinct_peers"] == 12 and len(ev["peers"]) == 5 and len(ev["examples"]) == 3


def test_chinese_from_flag_or_locale(seed: str) -> None:
    by_flag = tcplens("doctor", "--from", seed, "--lang", "zh")
    assert by_flag.returncode == 0
    assert "内核参数：假定为 Linux 默认值" in by_flag.stdout
    assert "进程 2568（server）在端口 10050 上有 1 个 CLOSE_WAIT 连接一直没有关闭" in by_flag.stdout
    assert "tcplens explain CLOSE_WAIT --lang zh" in by_flag.stdout
    by_locale = tcplens("doctor", "--from", seed, "--json", env={"LANG": "zh_CN.UTF-8"})
    doc = json.loads(by_locale.stdout)
    assert doc["lang"] == "zh" and "进程" in doc["findings"][0]["title"]


def test_config_file_thresholds_and_command_line_wins(tmp_path: Path) -> None:
    dump = str(leak_dump(tmp_path, n=4))
    config = tmp_path / "doctor.toml"
    config.write_text("[thresholds]\nclose-wait = 3\n")
    assert tcplens("doctor", "--from", dump, "--config", str(config)).returncode == 1
    overridden = tcplens(
        "doctor", "--from", dump, "--config", str(config), "--threshold", "close-wait=5"
    )
    assert overridden.returncode == 0
    # inf is documented as "never": that level stays quiet however many there are
    off = tcplens(
        "doctor", "--from", dump, "--config", str(config), "--threshold", "close-wait=inf"
    )
    assert off.returncode == 0 and "INFO     [close-wait]" in off.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--threshold", "bogus=1"], "unknown threshold 'bogus'"),
        (["--threshold", "close-wait"], "expected RULE=VALUE"),
        (["--min-severity", "loud"], "'loud' is not one of"),
        (["--lang", "fr"], "'fr' is not one of"),
        (["--config", "/nonexistent/doctor.toml"], "/nonexistent/doctor.toml"),
        (["--from", "/nonexistent/dump.txt"], "/nonexistent/dump.txt"),
    ],
)
def test_usage_and_input_errors_exit_2_in_one_line(
    args: list[str], message: str, seed: str
) -> None:
    extra = [] if "--from" in args else ["--from", seed]
    result = tcplens("doctor", *extra, *args)
    assert result.returncode == 2, result
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_malformed_config_names_the_file(tmp_path: Path, seed: str) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("[thresholds\n")
    result = tcplens("doctor", "--from", seed, "--config", str(config))
    assert result.returncode == 2
    assert result.stderr.startswith(f"tcplens: error: {config}: ")
    assert len(result.stderr.strip().splitlines()) == 1


def test_help_documents_example_exit_codes_and_thresholds() -> None:
    result = tcplens("doctor", "--help")
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    assert any(line.strip().startswith("Example:") for line in result.stdout.splitlines())
    assert "Exit codes: 0 nothing at warning or above" in text
    assert "1 at least one warning or critical finding" in text
    assert "2 usage or input error" in text
    assert "close-wait" in text and "recv-q" in text
    listed = tcplens("--help")
    assert "doctor" in listed.stdout


def test_status_shows_the_top_finding_above_the_doctor_pointer(tmp_path: Path, seed: str) -> None:
    result = tcplens("status", "--from", str(leak_dump(tmp_path)))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    top = [i for i, line in enumerate(lines) if line.startswith("Top finding: WARNING")]
    assert top, result.stdout
    assert "process 4242 (java) holds 12 CLOSE_WAIT" in lines[top[0]]
    assert lines[top[0] + 1].startswith("Next: `tcplens doctor`")
    # info-only findings do not earn a line
    quiet = tcplens("status", "--from", seed)
    assert "Top finding" not in quiet.stdout


@pytest.mark.skipif(not RAW_SEED.exists(), reason="the shared seeds are not on this machine")
def test_the_raw_seed_article_gives_the_same_findings(seed: str) -> None:
    raw = json.loads(tcplens("doctor", "--from", str(RAW_SEED), "--json").stdout)
    copy = json.loads(tcplens("doctor", "--from", seed, "--json").stdout)
    assert [f["title"] for f in raw["findings"]] == [f["title"] for f in copy["findings"]]
