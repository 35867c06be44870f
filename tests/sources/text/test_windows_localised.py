"""Localised Windows netstat: translated states, damaged code pages, PID 0, link-local zones.

The spellings are the model's (``WINDOWS_LOCALISED`` in ``tcplens.model.states``),
each seen in real ``netstat -ano`` outputs; these tests feed rows as Windows
prints them, including the two- and three-word states (Italian, Korean) that
shift the PID column, and bytes as ``netstat > file`` writes them on a German
console (code page 850).
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tcplens import parse_text
from tcplens.errors import UnknownStateError
from tcplens.model.states import WINDOWS_LOCALISED, State
from tcplens.sources.text import read_text

GERMAN = """
Aktive Verbindungen

  Proto  Lokale Adresse         Remoteadresse          Status           PID
  TCP    0.0.0.0:135            0.0.0.0:0              ABHÖREN          1060
  TCP    127.0.0.1:9222         127.0.0.1:50123        HERGESTELLT      4321
  TCP    127.0.0.1:9222         127.0.0.1:50124        WARTEND          0
  TCP    127.0.0.1:50125        127.0.0.1:9222         SCHLIESSEN_WARTEN  2468
  TCP    127.0.0.1:50126        127.0.0.1:9222         SCHLIESSEND      2468
  TCP    127.0.0.1:50127        127.0.0.1:9223         SYN_GESENDET     2468
  TCP    [fe80::1%12]:50128     [fe80::2%12]:445       HERGESTELLT      2468
  UDP    0.0.0.0:9222           *:*                                     0
"""

ITALIAN = """
Connessioni attive

  Proto  Indirizzo locale       Indirizzo esterno      Stato           PID
  TCP    0.0.0.0:135            0.0.0.0:0              IN ASCOLTO      1032
  TCP    192.168.1.5:50123      52.1.2.3:443           STABILITA       4420
"""

KOREAN = """
활성 연결

  프로토콜  로컬 주소              외부 주소              상태            PID
  TCP    0.0.0.0:8282           0.0.0.0:0              수신 대기       4120
  TCP    [::]:8282              [::]:0                 수신 대기 중    4121
  TCP    127.0.0.1:8282         127.0.0.1:53011        ESTABLISHED     4120
"""


def _rows(text: str) -> list[tuple[int | None, State, int | None]]:
    snap = parse_text(text)
    assert snap.source == "text:windows-netstat"
    assert snap.warnings == []
    return [(s.local.port, s.state, s.pid) for s in snap.sockets]


def test_german_states_parse_and_pid_0_is_no_owner() -> None:
    assert _rows(GERMAN) == [
        (135, State.LISTEN, 1060),
        (9222, State.ESTABLISHED, 4321),
        (9222, State.TIME_WAIT, None),  # PID 0: the System Idle Process, nobody's
        (50125, State.CLOSE_WAIT, 2468),
        (50126, State.CLOSING, 2468),
        (50127, State.SYN_SENT, 2468),
        (50128, State.ESTABLISHED, 2468),
        (9222, State.CLOSED, None),
    ]


def test_link_local_zone_is_kept() -> None:
    (zoned,) = [s for s in parse_text(GERMAN).sockets if s.local.port == 50128]
    assert (zoned.local.ip, zoned.remote.ip, zoned.interface) == ("fe80::1", "fe80::2", "12")


def test_multi_word_states_do_not_shift_the_pid() -> None:
    assert _rows(ITALIAN) == [(135, State.LISTEN, 1032), (50123, State.ESTABLISHED, 4420)]
    assert _rows(KOREAN) == [
        (8282, State.LISTEN, 4120),
        (8282, State.LISTEN, 4121),
        (8282, State.ESTABLISHED, 4120),
    ]


@pytest.mark.parametrize(
    ("text", "state"),
    [
        ("ÉCOUTE", State.LISTEN),
        ("ECOUTE", State.LISTEN),  # accents lost in a copy
        ("ÉTABLIE", State.ESTABLISHED),
        ("ESCUCHANDO", State.LISTEN),
        ("ESTABLECIDO", State.ESTABLISHED),
        ("ESCUTANDO", State.LISTEN),
        ("ESTABELECIDA", State.ESTABLISHED),
        ("ABH™REN", State.LISTEN),  # code page 850 read as 1252
        ("ABH\x99REN", State.LISTEN),  # code page 850 read as latin-1
        ("\x90COUTE", State.LISTEN),
        ("ABH\ufffdREN", State.LISTEN),  # one character lost: only LISTEN fits
        ("FIN_WARTEN_2", State.FIN_WAIT2),
    ],
)
def test_localised_and_damaged_spellings(text: str, state: State) -> None:
    assert State.parse(text) is state


def test_a_lost_character_that_fits_several_states_is_refused() -> None:
    with pytest.raises(UnknownStateError):
        State.parse("\ufffd" * 6)  # LISTEN? CLOSED? not a guess we make


def test_a_german_console_dump_in_code_page_850_reads(tmp_path: Path) -> None:
    dump = tmp_path / "netstat-de.txt"
    dump.write_bytes(GERMAN.replace("\n", "\r\n").encode("cp850"))
    states = [s.state for s in read_text(str(dump)).sockets]
    assert states[0] is State.LISTEN and State.CLOSE_WAIT in states


_ALIASES = [
    (spelling, state) for table in WINDOWS_LOCALISED.values() for spelling, state in table.items()
]


@given(
    alias=st.sampled_from(_ALIASES),
    pid=st.integers(min_value=0, max_value=2**32 - 1),
    port=st.integers(min_value=1, max_value=65535),
    pad=st.integers(min_value=1, max_value=8),
)
def test_every_localised_spelling_parses_in_a_row(
    alias: tuple[str, State], pid: int, port: int, pad: int
) -> None:
    spelling, state = alias
    peer = "0.0.0.0:0" if state is State.LISTEN else "10.0.0.2:80"
    row = f"  TCP    10.0.0.1:{port}{' ' * pad}{peer}{' ' * pad}{spelling}{' ' * pad}{pid}"
    (sock,) = parse_text("Active Connections\n\n" + row + "\n", "windows").sockets
    assert sock.state is state
    assert sock.pid == (pid or None)


def test_cli_prints_no_owner_as_dash_and_null_and_shows_the_zone(tmp_path: Path) -> None:
    dump = tmp_path / "de.txt"
    dump.write_text(GERMAN)
    run = [sys.executable, "-m", "tcplens", "ls", "--from", str(dump)]
    table = subprocess.run(run, capture_output=True, text=True, timeout=60, check=True).stdout
    (tw,) = [line for line in table.splitlines() if "TIME_WAIT" in line]
    assert tw.split()[-1] == "-" and " 0" not in tw
    assert "[fe80::1%12]:50128" in table
    doc = json.loads(
        subprocess.run(
            [*run, "--json"], capture_output=True, text=True, timeout=60, check=True
        ).stdout
    )
    by_port = {(s["local"]["port"], s["state"]): s for s in doc["sockets"]}
    assert by_port[(9222, "TIME_WAIT")]["pid"] is None
    assert by_port[(50128, "ESTABLISHED")]["interface"] == "12"


@given(st.text(max_size=24))
def test_any_text_is_a_state_or_an_unknown_state_error(text: str) -> None:
    with contextlib.suppress(UnknownStateError):
        assert isinstance(State.parse(text), State)


def test_get_nettcpconnection_owning_process_0_is_no_owner() -> None:
    text = (
        "LocalAddress LocalPort RemoteAddress RemotePort State    AppliedSetting OwningProcess\n"
        "------------ --------- ------------- ---------- -----    -------------- -------------\n"
        "192.168.1.5  50440     20.42.65.90   443        TimeWait                0\n"
        "192.168.1.5  50441     20.42.65.91   443        Established Internet    4712\n"
    )
    snap = parse_text(text)
    assert snap.source == "text:powershell"
    assert [(s.state, s.pid) for s in snap.sockets] == [
        (State.TIME_WAIT, None),
        (State.ESTABLISHED, 4712),
    ]
