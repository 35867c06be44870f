"""Format detection, forcing a format, decoding saved bytes, and reading files and stdin."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tcplens import parse_text
from tcplens.errors import InputError
from tcplens.model import State
from tcplens.sources.text import ALIASES, FORMATS, decode, read_text
from tests.sources.text.helpers import FIXTURES

EXPECTED = {
    "freebsd10.1-netstat-an.txt": "bsd-netstat",
    "freebsd12-netstat-an.txt": "bsd-netstat",
    "linux-netstat-anp.txt": "linux-netstat",
    "linux-proc-net-head.txt": "proc",
    "linux-netstat-tanp-ipv6-cut.txt": "linux-netstat",
    "linux-netstat-tanpW-ipv6.txt": "linux-netstat",
    "linux-ss-tanp-ipv6.txt": "ss",
    "macos10.14-netstat-An.txt": "bsd-netstat",
    "seed002-windows-netstat-na-p-tcp.txt": "windows-netstat",
    "seed003-linux-netstat-anlp-2.txt": "linux-netstat",
    "seed003-linux-netstat-anlp.txt": "linux-netstat",
    "solaris-netstat-n.txt": "solaris-netstat",
    "ubuntu18.04-netstat-aeep.txt": "linux-netstat",
    "ubuntu18.04-ss-tulpen.txt": "ss",
    "windows-netstat-anb.txt": "windows-netstat",
    "windows10-netstat-an.txt": "windows-netstat",
    "windows10-netstat-aon.txt": "windows-netstat",
}


def test_every_fixture_is_listed() -> None:
    assert sorted(p.name for p in FIXTURES.glob("*.txt")) == sorted(EXPECTED)


@pytest.mark.parametrize(("name", "fmt"), sorted(EXPECTED.items()))
def test_detects_the_format_and_forcing_it_gives_the_same_snapshot(name: str, fmt: str) -> None:
    detected = read_text(str(FIXTURES / name))
    assert detected.source == f"text:{fmt}"
    forced = read_text(str(FIXTURES / name), fmt)
    assert forced.sockets == detected.sockets
    assert forced.warnings == detected.warnings


def test_grepped_rows_without_any_header_are_detected() -> None:
    linux = "tcp        0      0 10.0.0.5:22     10.0.0.9:5000     ESTABLISHED 1/init\n"
    bsd = "tcp4       0      0  10.0.0.5.22            10.0.0.9.5000          ESTABLISHED\n"
    ss = "ESTAB 0 0 10.0.0.5:22 10.0.0.9:5000\n"
    win = "  TCP    10.0.0.5:22            10.0.0.9:5000          ESTABLISHED\n"
    assert parse_text(linux).source == "text:linux-netstat"
    assert parse_text(bsd).source == "text:bsd-netstat"
    assert parse_text(ss).source == "text:ss"
    assert parse_text(win).source == "text:windows-netstat"


@pytest.mark.parametrize("text", ["", "\n\n", "hello world\nthis is prose\n", "\x00\x01\x02"])
def test_text_that_is_no_dump_is_an_input_error(text: str) -> None:
    with pytest.raises(InputError, match="not netstat, ss or /proc/net output") as info:
        parse_text(text, path="notes.txt")
    assert info.value.path == "notes.txt"


def test_unknown_format_name_lists_the_known_ones() -> None:
    with pytest.raises(InputError, match="unknown format 'aix'; known: linux-netstat, ss"):
        parse_text("x", "aix")


def test_aliases_resolve_to_formats() -> None:
    assert set(ALIASES.values()) <= set(FORMATS)
    text = (FIXTURES / "freebsd12-netstat-an.txt").read_text()
    assert parse_text(text, "macos").source == "text:bsd-netstat"
    assert parse_text(text, "auto").source == "text:bsd-netstat"


def test_forcing_the_wrong_format_warns_instead_of_guessing() -> None:
    text = (FIXTURES / "freebsd12-netstat-an.txt").read_text()
    snap = parse_text(text, "windows-netstat")
    assert snap.sockets == []
    assert len(snap.warnings) > 6


ORIGINAL = (FIXTURES / "windows10-netstat-aon.txt").read_bytes()
TEXT = ORIGINAL.decode("ascii")


@pytest.mark.parametrize(
    "data",
    [
        ORIGINAL,
        b"\xef\xbb\xbf" + ORIGINAL,
        TEXT.encode("utf-16"),  # BOM, as PowerShell's > writes
        TEXT.encode("utf-16-le"),  # no BOM
        TEXT.encode("utf-16-be"),
        ORIGINAL.replace(b"\r\n", b"\n"),
        ORIGINAL.replace(b"\r\n", b"\r"),
    ],
    ids=["crlf", "utf8-bom", "utf16-bom", "utf16le", "utf16be", "lf", "cr"],
)
def test_decodes_every_encoding_windows_users_save(data: bytes) -> None:
    assert decode(data).splitlines() == TEXT.splitlines()


def test_latin1_fallback_keeps_the_rows() -> None:
    data = b"Proto Recv-Q Send-Q Local Address Foreign Address State\n" + (
        "tcp 0 0 10.0.0.5:22 10.0.0.9:5000 ESTABLISHED 12/caf\xe9\n".encode("latin-1")
    )
    text = decode(data)
    assert text.endswith("12/caf\xe9\n")
    (sock,) = parse_text(text).sockets
    assert sock.process == "caf\xe9"


def test_read_text_uses_the_file_time(tmp_path: Path) -> None:
    path = tmp_path / "dump.txt"
    path.write_bytes(TEXT.encode("utf-16"))
    os.utime(path, (1_600_000_000, 1_600_000_000))
    snap = read_text(str(path))
    assert snap.taken_at == 1_600_000_000
    assert len(snap.sockets) == 208


def test_read_text_stdin(monkeypatch: pytest.MonkeyPatch) -> None:
    stdin = io.TextIOWrapper(io.BytesIO(ORIGINAL))
    monkeypatch.setattr(sys, "stdin", stdin)
    snap = read_text("-")
    assert len(snap.sockets) == 208


def test_read_text_missing_file_names_it(tmp_path: Path) -> None:
    missing = tmp_path / "nope.txt"
    with pytest.raises(InputError) as info:
        read_text(str(missing))
    assert str(info.value) == f"{missing}: cannot read: No such file or directory"


def test_stdin_errors_are_named_stdin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"just words\n")))
    with pytest.raises(InputError) as info:
        read_text("-")
    assert info.value.path == "<stdin>"


@pytest.mark.parametrize(
    ("text", "ip"),
    [
        ("10.0.0.1", "10.0.0.1"),
        ("255.255.255.255", "255.255.255.255"),
        ("0.0.0.0", "0.0.0.0"),
        ("0:0:0:0:0:0:0:1", "::1"),
        ("::FFFF:127.0.0.1", str(__import__("ipaddress").ip_address("::ffff:127.0.0.1"))),
    ],
)
def test_addresses_are_printed_as_ipaddress_prints_them(text: str, ip: str) -> None:
    row = f"tcp        0      0 {text}:22     0.0.0.0:*     LISTEN\n"
    assert parse_text(row).sockets[0].local.ip == ip


@pytest.mark.parametrize("text", ["010.0.0.1", "256.1.1.1", "1.2.3", "1.2.3.4.5"])
def test_broken_dotted_quads_are_warnings(text: str) -> None:
    snap = parse_text(f"tcp        0      0 {text}:22     0.0.0.0:*     LISTEN\n", "linux")
    assert snap.sockets == []
    assert "bad address" in snap.warnings[0].message


CHINESE_WINDOWS = (
    "\r\n活动连接\r\n\r\n"
    "  协议  本地地址          外部地址        状态           PID\r\n"
    "  TCP    0.0.0.0:135            0.0.0.0:0              LISTENING       1044\r\n"
    "  TCP    192.168.1.5:50435      20.42.65.90:443        CLOSE_WAIT      4712\r\n"
)


def test_chinese_windows_console_code_page() -> None:
    data = CHINESE_WINDOWS.encode("gbk")  # what cmd.exe's > writes under code page 936
    assert decode(data) == CHINESE_WINDOWS
    snap = parse_text(decode(data))
    assert snap.source == "text:windows-netstat"
    assert snap.warnings == []
    assert [(s.local.port, s.state, s.pid) for s in snap.sockets] == [
        (135, State.LISTEN, 1044),
        (50435, State.CLOSE_WAIT, 4712),
    ]


def test_western_8bit_text_still_falls_back_to_latin1() -> None:
    data = "  TCP    0.0.0.0:135    0.0.0.0:0    ABH\xd6REN    1044\r\n".encode("cp1252")
    assert decode(data) == data.decode("latin-1")


def test_each_format_module_declares_name_aliases_detection_and_parser() -> None:
    import importlib
    import pkgutil

    import tcplens.sources.text as text

    detect = importlib.import_module("tcplens.sources.text.detect")  # the package's detect()

    declared = [
        module.TEXT_FORMAT
        for info in pkgutil.iter_modules(text.__path__)
        if hasattr(
            module := importlib.import_module(f"tcplens.sources.text.{info.name}"), "TEXT_FORMAT"
        )
    ]
    assert sorted(FORMATS) == sorted(f.name for f in declared)
    assert {alias: f.name for f in declared for alias in f.aliases} == ALIASES
    assert tuple(f.name for f in sorted(declared, key=lambda f: f.precedence)) == detect.ORDER


def test_a_new_format_is_one_module(tmp_path: Path) -> None:
    """Dropped into the package, a module declaring TEXT_FORMAT is detected, named and parsed."""
    (tmp_path / "toy.py").write_text(
        "from tcplens.model.states import State\n"
        "from tcplens.sources.records import Addr, Socket\n"
        "from tcplens.sources.text._common import TextFormat\n"
        "def parse(lines, out, path):\n"
        "    for line in lines:\n"
        "        if line.text.startswith('TOY '):\n"
        "            out.sockets.append(Socket('tcp', 4, Addr('10.0.0.1', 1),"
        " Addr('10.0.0.2', 2), State.ESTABLISHED))\n"
        "TEXT_FORMAT = TextFormat('toy', parse,"
        " lambda text, words: 9 if text.startswith('TOY ') else 0, aliases=('toys',))\n"
    )
    code = (
        "import sys, tcplens.sources.text as t\n"
        f"t.__path__.append({str(tmp_path)!r})\n"
        "import importlib\n"
        "r = importlib.import_module('tcplens.sources.text._registry')\n"
        "d = importlib.import_module('tcplens.sources.text.detect')\n"
        "importlib.reload(r); importlib.reload(d); importlib.reload(t)\n"
        "snap = t.parse_text('TOY 1\\n')\n"
        "print(snap.source, len(snap.sockets), t.ALIASES['toys'], 'toy' in t.FORMATS)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["text:toy", "1", "toy", "True"]
