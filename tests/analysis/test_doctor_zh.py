"""Chinese doctor texts are typeset as the Chinese ``explain`` texts are.

Every kind of finding is rendered with process names that start and end in
Latin letters and in Chinese, and the result is checked as a Chinese reader
would: full-width punctuation, spacing decided by the characters on either
side and not by where a template had a slot, one term per concept
(:data:`GLOSSARY`), and units in Chinese.
"""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType

import pytest

from tcplens.analysis.doctor import THRESHOLDS, Finding, diagnose
from tcplens.analysis.doctor_texts import GLOSSARY, PHRASES, TEXTS, typeset_zh
from tcplens.model.states import State
from tcplens.sources.records import Timer
from tests.analysis.test_doctor import DEFAULTS, listener, snap, sock

IDEO = "\u4e00-\u9fff"
FULL = "，。：；、（）“”！？"
#: a function call or argument list written as code: ``close()``, ``listen(fd, N)``
CODE = re.compile(r"[A-Za-z_]\w*\([^()\u4e00-\u9fff]*\)")
QUOTED = re.compile(r"“[^”]*”")


def _findings(name: str) -> list[Finding]:
    live = replace(
        DEFAULTS,
        assumed=False,
        tcp_max_tw_buckets=10,
        tcp_max_orphans=10,
        sockstat=MappingProxyType({"orphan": 9}),
        counters=MappingProxyType({"ListenOverflows": 1, "ListenDrops": 1}),
    )
    overrides = {key: 0.0 for key in THRESHOLDS if not key.endswith("critical")}
    overrides.update({"time-wait.server": 1, "recv-q": 1, "send-q": 1})
    rows = [
        listener(80, pending=5, backlog=4),
        sock(State.CLOSE_WAIT, ("10.0.0.5", 80), ("10.0.0.7", 1), pid=1, process=name, recv_q=1),
        sock(State.TIME_WAIT, ("10.0.0.5", 80), ("10.0.0.7", 40001)),
        sock(State.TIME_WAIT, ("10.0.0.5", 40002), ("10.0.0.7", 443)),
        sock(State.ESTABLISHED, ("10.0.0.5", 40010), ("10.0.0.7", 443), pid=2, process=name),
        sock(State.SYN_RECV, ("10.0.0.5", 80), ("10.0.0.7", 40003), timer=Timer("on", 1, 2)),
        sock(State.FIN_WAIT2, ("10.0.0.5", 40004), ("10.0.0.7", 443), timer=Timer("timewait", 5)),
        sock(State.FIN_WAIT2, ("10.0.0.5", 40011), ("10.0.0.9", 443), pid=3, process=name),
        sock(State.FIN_WAIT1, ("10.0.0.5", 40005), ("10.0.0.7", 443), timer=Timer("persist", 1)),
        sock(State.LAST_ACK, ("10.0.0.5", 40006), ("10.0.0.7", 443), timer=Timer("on", 1, 4)),
        sock(State.SYN_SENT, ("10.0.0.5", 40007), ("10.0.0.8", 443), timer=Timer("on", 1, 3)),
        sock(State.ESTABLISHED, ("10.0.0.5", 40008), ("10.0.0.9", 443), recv_q=9, send_q=9),
        sock(State.ESTABLISHED, ("10.0.0.5", 40009), ("10.0.0.9", 443), pid=4, process=name,
             recv_q=2_000_000),
    ]  # fmt: skip
    findings = diagnose(snap(*rows), live, overrides)
    assert {f.kind for f in findings} >= set(TEXTS) - {"listen-overflows"}
    return findings + diagnose(snap(listener(80)), live, overrides)


def _problems(text: str) -> list[str]:
    prose = QUOTED.sub("“”", CODE.sub("code", text))
    problems = []
    for pattern, what in (
        (f"[{IDEO}{FULL}][,:;()]|[,:;(][{IDEO}{FULL}]", "ASCII punctuation in Chinese"),
        (f"[{IDEO}] +[{IDEO}]", "space between two Chinese characters"),
        (f" [{FULL}]|[{FULL}] ", "space next to full-width punctuation"),
        (f"[{IDEO}][A-Za-z0-9]|[A-Za-z0-9][{IDEO}]", "no space between Chinese and Latin"),
    ):
        problems += [f"{what}: …{m.group()}…" for m in re.finditer(pattern, prose)]
    for concept, (term, variants) in GLOSSARY.items():
        for v in variants:
            if re.search(rf"(?<![A-Za-z_]){re.escape(v)}(?![A-Za-z_])", prose):
                problems.append(f"{v!r} instead of {term!r} ({concept})")
    return problems


@pytest.mark.parametrize("name", ["nginx", "java", "数据库", "svc-2"])
def test_every_chinese_finding_is_typeset_like_explain(name: str) -> None:
    for f in _findings(name):
        for part in (f.title, f.explanation, f.advice):
            assert _problems(part.zh) == [], (f.kind, part.zh)


def test_every_chinese_phrase_and_template_uses_full_width_punctuation() -> None:
    templates = [PHRASES[k].zh for k in PHRASES] + [
        t.zh for texts in TEXTS.values() for t in (texts.title, texts.explanation, texts.advice)
    ]
    for zh in templates:
        prose = QUOTED.sub("“”", CODE.sub("code", zh))
        assert not re.search(r"[,:;()]", re.sub(r"\{\w+\}", "", prose)), zh


def test_inserted_names_get_no_stray_spaces() -> None:
    assert typeset_zh("检查 进程 4242（java） 读到 EOF") == "检查进程 4242（java）读到 EOF"
    assert typeset_zh("检查进程 nginx读到 1.2 MiB未读") == "检查进程 nginx 读到 1.2 MiB 未读"
    (leak,) = [f for f in _findings("nginx") if f.kind == "close-wait"]
    assert "检查进程 1（nginx）读到 EOF" in leak.advice.zh


def test_units_are_chinese() -> None:
    unread = [f for f in _findings("nginx") if f.kind == "recv-q"]
    assert any("9 字节" in f.title.zh for f in unread), [f.title.zh for f in unread]
    assert all("bytes" not in f.title.zh for f in unread)
    (syn_sent,) = [f for f in _findings("nginx") if f.kind == "syn-sent"]
    assert "秒" in syn_sent.explanation.zh and " s" not in syn_sent.explanation.zh


def test_doctor_cli_labels_and_lists_are_chinese(tmp_path: Path) -> None:
    rows = [
        "Active Internet connections (servers and established)",
        "Proto Recv-Q Send-Q Local Address     Foreign Address     State     PID/Program name",
        "tcp        0      0 0.0.0.0:8080      0.0.0.0:*           LISTEN    4242/java",
    ]
    rows += [
        f"tcp        1      0 10.0.0.5:8080     10.0.0.{7 + i}:{40000 + i}    CLOSE_WAIT 4242/java"
        for i in range(12)
    ]
    dump = tmp_path / "leak.txt"
    dump.write_text("\n".join(rows) + "\n")
    out = subprocess.run(
        [sys.executable, "-m", "tcplens", "doctor", "--from", str(dump), "--lang", "zh"],
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    labelled = [line.strip() for line in out.splitlines() if line.startswith("  ")]
    assert {line.split("：", 1)[0] for line in labelled} == {"证据", "原因", "建议", "延伸阅读"}
    evidence = next(line for line in labelled if line.startswith("证据"))
    assert "；" in evidence and "; " not in evidence and ", " not in evidence
    assert out.splitlines()[1].startswith("内核参数：")
    assert "警告     [close-wait]" in out  # two columns per Chinese character
