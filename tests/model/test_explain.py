"""Explanation texts: complete in both languages, consistent with the model, and true.

The last group checks claims the texts make (Recv-Q 1 in CLOSE_WAIT is the
unread FIN, TIME_WAIT lands on the active closer and lasts 60 s) against the
running Linux kernel on loopback, so a wrong sentence fails a test.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tcplens.model import (
    LABELS,
    LANGS,
    SPELLINGS,
    Explanation,
    State,
    explain,
    pick_lang,
    summary_line,
)

CJK = re.compile(r"[\u4e00-\u9fff]")
PAIRS = [(state, lang) for state in State for lang in LANGS]


def _texts(exp: Explanation) -> dict[str, str]:
    """Every prose field, advice items joined, keyed by field name."""
    out: dict[str, str] = {}
    for field in dataclasses.fields(exp):
        value = getattr(exp, field.name)
        if isinstance(value, str) and field.name not in ("lang", "state"):
            out[field.name] = value
        elif isinstance(value, tuple):
            out[field.name] = "\n".join(value)
    return out


def _all(state: State, lang: str) -> str:
    exp = explain(state, lang)
    return "\n".join(v for k, v in _texts(exp).items() if k != "inspect")


@pytest.mark.parametrize(("state", "lang"), PAIRS)
def test_every_state_has_every_field_in_both_languages(state: State, lang: str) -> None:
    exp = explain(state, lang)
    assert exp.state is state
    assert exp.lang == lang
    for field in dataclasses.fields(exp):
        value = getattr(exp, field.name)
        if isinstance(value, tuple):
            assert value, f"{state} {lang}: {field.name} is empty"
            assert all(item.strip() for item in value), f"{state} {lang}: blank {field.name}"
        else:
            assert str(value).strip(), f"{state} {lang}: {field.name} is empty"


@pytest.mark.parametrize("state", list(State))
def test_chinese_is_chinese_and_english_is_not(state: State) -> None:
    zh, en = explain(state, "zh"), explain(state, "en")
    for name, text in _texts(zh).items():
        if name != "inspect":
            assert CJK.search(text), f"{state} zh {name} has no Chinese: {text!r}"
    for name, text in _texts(en).items():
        assert not CJK.search(text), f"{state} en {name} has Chinese: {text!r}"


@pytest.mark.parametrize(("state", "lang"), PAIRS)
def test_summary_and_hint_are_single_lines(state: State, lang: str) -> None:
    exp = explain(state, lang)
    assert summary_line(state, lang) == exp.summary
    for text in (exp.summary, exp.hint, exp.title):
        assert "\n" not in text and text == text.strip()


def test_wrapped_source_lines_leave_no_stray_spaces_in_chinese() -> None:
    for state in State:
        for name, text in _texts(explain(state, "zh")).items():
            assert not re.search(r"[\u4e00-\u9fff] [\u4e00-\u9fff]", text), (state, name)
            assert not re.search(r" [，。：；）]|[（“] ", text), (state, name)
            assert "  " not in text, (state, name)


@pytest.mark.parametrize(("state", "lang"), PAIRS)
def test_spellings_are_the_models_table_not_a_copy(state: State, lang: str) -> None:
    exp = explain(state, lang)
    assert exp.spellings is SPELLINGS[state]
    shown = exp.as_dict()["spellings"]
    assert shown == {tool: list(names) for tool, names in SPELLINGS[state].items()}


@pytest.mark.parametrize("state", [s for s in State if s not in (State.UNKNOWN,)])
def test_every_real_state_has_netstat_ss_windows_bsd_rfc_and_proc_spellings(state: State) -> None:
    tools = set(explain(state).spellings)
    assert {"netstat (Linux)", "ss", "Windows", "BSD/macOS", "RFC 9293", "/proc/net/tcp"} <= tools


def test_chinese_uses_the_vocabulary_readers_know() -> None:
    expected = {
        State.SYN_SENT: ["三次握手", "主动打开"],
        State.SYN_RECV: ["三次握手", "半连接队列", "SYN Cookie"],
        State.FIN_WAIT1: ["四次挥手", "主动关闭", "孤儿连接"],
        State.FIN_WAIT2: ["半关闭", "孤儿连接"],
        State.CLOSE_WAIT: ["被动关闭", "文件描述符"],
        State.LAST_ACK: ["四次挥手", "被动关闭"],
        State.TIME_WAIT: ["2MSL", "主动关闭", "四元组"],
        State.CLOSING: ["同时关闭"],
    }
    for state, words in expected.items():
        text = _all(state, "zh")
        for word in words:
            assert word in text, f"{state}: {word} missing"


# The facts each state must state, in both languages: numbers and names users act on.
FACTS: dict[State, list[str]] = {
    State.LISTEN: ["net.core.somaxconn", "4096", "accept()", "Recv-Q"],
    State.SYN_SENT: ["tcp_syn_retries", "127", "ECONNREFUSED", "ETIMEDOUT", "SYN_RECV"],
    State.SYN_RECV: ["tcp_synack_retries", "63", "tcp_syncookies", "NEW_SYN_RECV", "0C"],
    State.ESTABLISHED: ["tcp_keepalive_time", "7200", "SO_KEEPALIVE", "TCP_USER_TIMEOUT"],
    State.FIN_WAIT1: ["tcp_orphan_retries", "FIN_WAIT2", "CLOSING", "TIME_WAIT"],
    State.FIN_WAIT2: ["tcp_fin_timeout", "60", "shutdown(SHUT_WR)", "CLOSE_WAIT"],
    State.CLOSE_WAIT: ["close()", "ss -K", "Recv-Q", "LAST_ACK", "Too many open files"],
    State.CLOSING: ["FIN_WAIT1", "TIME_WAIT"],
    State.LAST_ACK: ["CLOSE_WAIT", "CLOSED", "TIME_WAIT"],
    State.TIME_WAIT: [
        "TCP_TIMEWAIT_LEN", "60", "tcp_tw_reuse", "tcp_tw_recycle", "4.12",
        "SO_REUSEADDR", "EADDRNOTAVAIL", "ip_local_port_range", "tcp_max_tw_buckets",
    ],
    State.CLOSED: ["CLOSE", "UNCONN", "BOUND_INACTIVE", "DELETE_TCB"],
    State.UNKNOWN: ["/proc/net/tcp"],
}  # fmt: skip


@pytest.mark.parametrize(("state", "lang"), PAIRS)
def test_texts_state_the_facts_users_act_on(state: State, lang: str) -> None:
    text = _all(state, lang)
    for fact in FACTS[state]:
        assert fact in text, f"{state} {lang}: {fact!r} missing"


def test_timer_arithmetic_in_the_texts_is_right() -> None:
    # Linux doubles the retransmission timeout from TCP_TIMEOUT_INIT = 1 s; since 6.5 the
    # first tcp_syn_linear_timeouts SYN retransmissions keep it (tests/model/test_linux_facts)
    synack_total = sum(2**i for i in range(5 + 1))  # 5 SYN+ACK retries
    assert synack_total == 63
    for lang in LANGS:
        duration = explain(State.SYN_SENT, lang).duration
        assert "131" in duration and "127" in duration
        assert "1+2+4+8+16+32" in explain(State.SYN_RECV, lang).duration
    # The default ephemeral range and a 60 s TIME_WAIT give ~470 new connections a second.
    ports = 60999 - 32768 + 1
    assert ports == 28232 and ports // 60 == 470
    for lang in LANGS:
        trouble = explain(State.TIME_WAIT, lang).trouble
        assert "28232" in trouble and "470" in trouble and "32768-60999" in trouble


def test_texts_name_only_states_that_exist() -> None:
    """Every UPPER_CASE word that looks like a state name is one (typos are caught)."""
    names = {s.value for s in State}
    looks_like_state = re.compile(r"\b(?:SYN|FIN|CLOSE|LAST|TIME|LISTEN|ESTAB)[A-Z0-9_]*\b")
    allowed = names | {"FIN", "SYN", "LISTENING", "CLOSE", "NEW_SYN_RECV", "ESTAB"}
    for state, lang in PAIRS:
        for word in looks_like_state.findall(_all(state, lang)):
            assert word in allowed, f"{state} {lang}: {word}"


def test_inspect_commands_filter_on_the_state_they_explain() -> None:
    for state in State:
        for cmd in explain(state).inspect:
            match = re.search(r"\bstate (\S+)", cmd)
            if match:
                assert State.parse(match.group(1)) is state, cmd
            match = re.search(r"findstr (\S+)", cmd)
            if match:
                assert State.parse(match.group(1)) is state, cmd


SS = shutil.which("ss")


@pytest.mark.skipif(not SS, reason="ss (iproute2) is not installed")
def test_every_ss_command_we_suggest_runs() -> None:
    commands = [
        cmd
        for state in State
        for cmd in explain(state).inspect
        if cmd.startswith("ss ") and "|" not in cmd
    ]
    assert len(commands) >= 10
    # In a fresh, empty network namespace when we can make one, so the run does
    # not depend on how many sockets other programs hold; in parallel, because
    # with -p each one walks every process's file descriptors.
    prefix = ["unshare", "-n"] if os.geteuid() == 0 and shutil.which("unshare") else []
    procs = [
        (
            cmd,
            subprocess.Popen(
                [*prefix, *cmd.split()], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
            ),
        )
        for cmd in commands
    ]
    for cmd, proc in procs:
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, f"{cmd}: {err.decode()}"


def test_explain_rejects_languages_it_has_no_texts_for() -> None:
    with pytest.raises(ValueError, match="fr"):
        explain(State.LISTEN, "fr")


def test_labels_exist_for_every_language() -> None:
    assert set(LABELS) == set(LANGS)
    assert set(LABELS["en"]) == set(LABELS["zh"])
    assert all(CJK.search(v) for v in LABELS["zh"].values())
    assert not any(CJK.search(v) for v in LABELS["en"].values())


# --------------------------------------------------------------------------
# Language choice


@pytest.mark.parametrize(
    ("flag", "env", "lang"),
    [
        ("zh", {"LANG": "en_US.UTF-8"}, "zh"),
        ("en", {"LANG": "zh_CN.UTF-8"}, "en"),
        ("ZH", {}, "zh"),
        ("zh-CN", {}, "zh"),
        ("zh_TW", {}, "zh"),
        (None, {"LANG": "zh_CN.UTF-8"}, "zh"),
        (None, {"LANG": "zh_TW.Big5"}, "zh"),
        (None, {"LC_MESSAGES": "zh_CN.UTF-8", "LANG": "en_US.UTF-8"}, "zh"),
        (None, {"LC_ALL": "C", "LANG": "zh_CN.UTF-8"}, "en"),
        (None, {"LC_ALL": "zh_HK.UTF-8", "LC_MESSAGES": "C"}, "zh"),
        (None, {"LC_ALL": "", "LANG": "zh_CN.UTF-8"}, "zh"),
        (None, {"LANG": "de_DE.UTF-8"}, "en"),
        (None, {"LANG": "C.UTF-8"}, "en"),
        (None, {}, "en"),
        ("", {"LANG": "zh_CN"}, "zh"),
    ],
)
def test_pick_lang_flag_then_locale_then_english(
    flag: str | None, env: dict[str, str], lang: str
) -> None:
    assert pick_lang(flag, env) == lang


def test_pick_lang_rejects_an_unknown_flag() -> None:
    with pytest.raises(ValueError, match="fr"):
        pick_lang("fr", {})


def test_model_explain_imports_no_other_layer_and_no_renderer() -> None:
    code = (
        "import sys, tcplens.model.explain as e; "
        "bad = sorted(m for m in sys.modules if m.startswith(('tcplens.sources', "
        "'tcplens.views', 'tcplens.analysis', 'tcplens.packets', 'tcplens.lab', 'rich', "
        "'click'))); print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


# --------------------------------------------------------------------------
# Claims in the texts, checked against this kernel on loopback

PROC_TCP = Path("/proc/net/tcp")
linux_only = pytest.mark.skipif(not PROC_TCP.exists(), reason="needs Linux /proc/net/tcp")


def _rows(port: int, peer: int) -> list[tuple[int, int, int, int, int]]:
    """(local port, state code, rx_queue, timer kind, timer ticks) of the connection
    between loopback ports ``port`` and ``peer``, both directions."""
    rows = []
    for line in PROC_TCP.read_text().splitlines()[1:]:
        fields = line.split()
        local, remote = fields[1].split(":"), fields[2].split(":")
        if local[0] != "0100007F" or {int(local[1], 16), int(remote[1], 16)} != {port, peer}:
            continue
        rx = int(fields[4].split(":")[1], 16)
        kind, when = fields[5].split(":")
        rows.append((int(local[1], 16), int(fields[3], 16), rx, int(kind, 16), int(when, 16)))
    return rows


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket, int]]:
    """A connected loopback pair (client, server side) and the listening port."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port), timeout=5)
    server, _ = listener.accept()
    listener.close()
    try:
        yield client, server, port
    finally:
        client.close()
        server.close()


def _wait_for(port: int, peer: int, code: int) -> list[tuple[int, int, int, int, int]]:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        rows = [r for r in _rows(port, peer) if r[1] == code]
        if rows:
            return rows
        time.sleep(0.01)
    raise AssertionError(f"no socket in state {code:02X}: {_rows(port, peer)}")


@linux_only
def test_close_wait_recv_q_of_one_is_the_unread_fin(
    pair: tuple[socket.socket, socket.socket, int],
) -> None:
    client, server, port = pair
    server.close()  # the server closes first: the client becomes the passive closer
    client_port = client.getsockname()[1]
    (row,) = _wait_for(port, client_port, 0x08)
    assert row[0] == client_port
    assert row[2] == 1  # Recv-Q 1 before the application reads
    assert client.recv(10) == b""  # EOF
    (row,) = [r for r in _rows(port, client_port) if r[1] == 0x08]
    assert row[2] == 0  # still CLOSE_WAIT, but the FIN has been read
    assert "Recv-Q" in explain(State.CLOSE_WAIT).trouble


@linux_only
def test_time_wait_lands_on_the_active_closer_for_60_seconds(
    pair: tuple[socket.socket, socket.socket, int],
) -> None:
    client, server, port = pair
    client_port = client.getsockname()[1]
    client.close()  # client closes first: the active closer
    assert server.recv(10) == b""
    server.close()  # passive closer: LAST_ACK, then gone
    (row,) = _wait_for(port, client_port, 0x06)
    assert row[0] == client_port  # only the active closer is in TIME_WAIT
    user_hz = 100  # /proc/net/tcp prints the remaining time in clock ticks
    assert row[3] == 3 and 50 < row[4] / user_hz <= 60
    assert [r[0] for r in _rows(port, client_port)] == [client_port]  # server side is gone
