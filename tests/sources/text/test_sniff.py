"""``--from`` looks at the first KiB before reading on: binary input fails at once, text passes."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tcplens.errors import InputError
from tcplens.sources.text import SNIFF_BYTES, read_text, sniff
from tests.sources.text.helpers import FIXTURES

PCAPS = Path(__file__).resolve().parents[2] / "fixtures" / "pcap"
TEXTS = sorted(p for p in FIXTURES.iterdir() if p.suffix == ".txt")
ONE_ROW = "tcp 0 0 127.0.0.1:8080 127.0.0.1:51000 ESTABLISHED 42/nginx\n"


@pytest.mark.parametrize("path", TEXTS, ids=lambda p: p.name)
def test_every_saved_dump_passes_the_sniff(path: Path) -> None:
    data = path.read_bytes()
    assert sniff(data[:SNIFF_BYTES]) is None
    for codec in ("utf-16", "utf-16-le", "utf-16-be"):
        text = data.decode("utf-8", errors="replace")
        assert sniff(text.encode(codec)[:SNIFF_BYTES]) is None, codec


@settings(max_examples=300, deadline=None)
@given(st.text(st.characters(blacklist_categories=("Cc", "Cs")) | st.sampled_from("\t\r\n\x1b")))
def test_any_printable_text_in_any_encoding_passes(text: str) -> None:
    for codec in ("utf-8", "utf-16", "gbk", "latin-1"):
        try:
            data = text.encode(codec)
        except UnicodeEncodeError:
            continue
        assert sniff(data[:SNIFF_BYTES]) is None, (codec, data[:40])


@settings(max_examples=300, deadline=None)
@given(
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=800),
    st.sampled_from([0x00, 0x01, 0x04, 0x10, 0x1F]),
)
def test_a_control_byte_is_refused_at_its_offset(prefix: str, byte: int) -> None:
    data = prefix.encode("ascii") + bytes([byte]) + b"tcp 0 0 1.2.3.4:5 6.7.8.9:10 ESTABLISHED\n"
    assert sniff(data[:SNIFF_BYTES]) == (
        len(prefix),
        f"binary data (byte 0x{byte:02x}), not netstat, ss or /proc/net text",
    )
    wide = (prefix + chr(byte) + "x").encode("utf-16-le")
    found = sniff(wide[:SNIFF_BYTES])
    assert found is not None
    if len(prefix) >= 40:  # enough text to tell UTF-16 by its zero bytes
        assert found[0] == 2 * len(prefix)


def _timed_read(path: str) -> tuple[InputError, float]:
    started = time.monotonic()
    with pytest.raises(InputError) as caught:
        read_text(path)
    return caught.value, time.monotonic() - started


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/dev/zero", "/dev/zero byte 0: binary data (byte 0x00)"),
        ("/dev/urandom", "/dev/urandom byte "),
        (str(PCAPS / "tcp_handshake.pcapng"), "byte 0: a packet capture, not netstat/ss text"),
    ],
)
def test_binary_input_is_refused_within_a_second(path: str, message: str) -> None:
    error, took = _timed_read(path)
    assert message in str(error)
    assert took < 1.0


def test_a_pcap_is_refused_and_pointed_at_tcplens_pcap(tmp_path: Path) -> None:
    for name in ("tcp_handshake.pcapng",):
        error, _ = _timed_read(str(PCAPS / name))
        assert "read it with: tcplens pcap FILE" in str(error)
    classic = tmp_path / "classic.pcap"
    classic.write_bytes(b"\xd4\xc3\xb2\xa1\x02\x00\x04\x00" + bytes(16))
    assert "a packet capture" in str(_timed_read(str(classic))[0])


def test_gzip_is_refused_with_what_to_do(tmp_path: Path) -> None:
    packed = tmp_path / "netstat.txt.gz"
    packed.write_bytes(gzip.compress(ONE_ROW.encode()))
    assert "gzip data (decompress it first" in str(_timed_read(str(packed))[0])


def test_a_directory_is_refused(tmp_path: Path) -> None:
    error, took = _timed_read(str(tmp_path))
    assert str(error) == f"{tmp_path}: cannot read: is a directory, not a saved dump"
    assert took < 1.0


def test_a_huge_file_is_refused_before_it_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tcplens.sources import text as text_source

    big = tmp_path / "big.txt"
    with big.open("wb") as fh:
        fh.truncate(text_source.MAX_TEXT_BYTES + 1)  # sparse: nothing to read, nothing written
    error, took = _timed_read(str(big))
    assert "larger than 512 MiB" in str(error) and took < 1.0


def test_a_fifo_with_no_writer_is_an_error_not_a_hang(tmp_path: Path) -> None:
    fifo = tmp_path / "dump"
    os.mkfifo(fifo)
    error, took = _timed_read(str(fifo))
    assert str(error) == f"{fifo}: a FIFO with no writer: nothing to read" and took < 1.0


def test_a_fifo_whose_writer_waits_is_read(tmp_path: Path) -> None:
    fifo = tmp_path / "dump"
    os.mkfifo(fifo)

    def write() -> None:
        with open(fifo, "w") as fh:  # blocks until the reader opens: a waiting writer
            time.sleep(0.3)  # and writes only later
            fh.write(ONE_ROW)

    writer = threading.Thread(target=write)
    writer.start()
    time.sleep(0.2)
    snap = read_text(str(fifo))
    writer.join()
    assert [s.local.port for s in snap.sockets] == [8080]


def test_a_binary_fifo_is_refused_by_its_first_kib(tmp_path: Path) -> None:
    fifo = tmp_path / "dump"
    os.mkfifo(fifo)
    with subprocess.Popen(["sh", "-c", f"exec cat /dev/zero > {fifo}"]) as endless:
        time.sleep(0.2)
        error, took = _timed_read(str(fifo))
        endless.kill()
    assert "byte 0: binary data (byte 0x00)" in str(error) and took < 1.0


@pytest.mark.parametrize("source", ["/dev/zero", "/dev/urandom"])
def test_the_cli_refuses_binary_stdin_in_one_line(source: str) -> None:
    with open(source, "rb") as endless:
        started = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-m", "tcplens", "ls", "--from", "-"],
            stdin=endless,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith("tcplens: error: <stdin> byte ")
    assert len(done.stderr.splitlines()) == 1
    assert time.monotonic() - started < 5.0  # interpreter start included
