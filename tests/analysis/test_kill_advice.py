"""The advice `tcplens kill` gives: the doctor's own texts, both languages, measured facts."""

from __future__ import annotations

import errno
import re

import pytest

from tcplens.analysis.doctor import diagnose
from tcplens.analysis.doctor_texts import GLOSSARY
from tcplens.analysis.kill_advice import ADVICE, advise, no_sock_destroy
from tcplens.model.states import State
from tcplens.sources.actions import Failure
from tcplens.sources.kernel import KernelSettings
from tcplens.sources.records import Addr, Snapshot, Socket

SETTINGS = KernelSettings.defaults()
CJK = re.compile("[\u4e00-\u9fff]")


def _sock(state: State, local: int, remote: int, pid: int | None = 4242) -> Socket:
    return Socket(
        "tcp",
        4,
        Addr("10.0.0.1", local),
        Addr("10.0.0.9", remote),
        state,
        pid=pid,
        process="java" if pid else None,
    )


def _all_text(lang: str, *, dry_run: bool = False) -> str:
    closed = [_sock(State.CLOSE_WAIT, 8080, 50000), _sock(State.TIME_WAIT, 40000, 443, None)]
    failed = [Failure(_sock(State.TIME_WAIT, 40001, 443, None), errno.EOPNOTSUPP)]
    pieces = []
    for advice in [*advise(closed, failed, SETTINGS, dry_run=dry_run), no_sock_destroy()]:
        pieces.append(advice.title.get(lang))
        pieces += [p.get(lang) for p in (*advice.paragraphs, *advice.measured)]
    return "\n".join(pieces)


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_every_text_renders_with_nothing_left_unfilled(lang: str) -> None:
    text = _all_text(lang)
    assert not re.search(r"\{[a-z_]*[:}]", text), text
    if lang == "zh":
        assert CJK.search(text)
        for preferred, banned in GLOSSARY.values():
            for word in banned:
                assert word not in text, (word, preferred)
    else:
        assert not CJK.search(text)
    for key in ADVICE:
        assert ADVICE[key].en and ADVICE[key].zh, key


def test_close_wait_advice_is_the_doctors_finding_for_that_process() -> None:
    closed = [_sock(State.CLOSE_WAIT, 8080, 50000 + i) for i in range(3)]
    (advice,) = advise(closed, [], SETTINGS)
    (finding,) = diagnose(Snapshot(list(closed), source="netlink"), SETTINGS)
    assert advice.topic == "close-wait"
    doctor_says = finding.advice.en
    assert any(doctor_says in p.en for p in advice.paragraphs)
    assert any("process 4242 (java) holds 3 CLOSE_WAIT sockets" in p.en for p in advice.paragraphs)
    assert any(finding.advice.zh in p.zh for p in advice.paragraphs)


def test_time_wait_facts_are_only_what_the_kernel_answered() -> None:
    removed = [_sock(State.TIME_WAIT, 40000, 443, None)]
    refused = [Failure(_sock(State.TIME_WAIT, 40001, 443, None), errno.EOPNOTSUPP)]
    (done,) = advise(removed, [], SETTINGS)
    assert [m.en for m in done.measured] == [
        "This kernel removed 1 TIME_WAIT entry (SOCK_DESTROY on a minisocket removes it; no "
        "segment is sent)."
    ]
    (old,) = advise([], refused, SETTINGS)
    assert len(old.measured) == 1 and "cannot remove TIME_WAIT" in old.measured[0].en
    assert "'Operation not supported'" in old.measured[0].en
    (dry,) = advise(removed, [], SETTINGS, dry_run=True)
    assert dry.measured == () and "rarely right" in dry.title.en


def test_other_states_get_no_advice() -> None:
    assert advise([_sock(State.ESTABLISHED, 40000, 443)], [], SETTINGS) == []
