"""A bound, unconnected UDP socket is listed as UNCONN, as ``ss`` lists it, not CLOSED.

The kernel reports it with the code of TCP_CLOSE; records and JSON keep that
(``"state": "CLOSED"``, docs/json.md), but a table row reading CLOSED next
to TCP rows says "a closed connection" about a socket that is receiving.
"""

from __future__ import annotations

import io
import json
import socket
import subprocess
import sys

import pytest

from tcplens.model.states import State
from tcplens.sources.records import Addr, Socket
from tcplens.views.sockets import render_plain, write_plain
from tests.netns import run_in_private_netns


def _ls(*args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "tcplens", "ls", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def _state_of(listing: str, port: int) -> str:
    (fields,) = [x.split() for x in listing.splitlines() if x.split()[3:4] == [f"127.0.0.1:{port}"]]
    return fields[5]


@pytest.mark.root
def test_live_unconnected_udp_is_unconn_in_every_listing_and_closed_in_json() -> None:
    def body() -> None:
        with (
            socket.socket(type=socket.SOCK_DGRAM) as bound,
            socket.socket(type=socket.SOCK_DGRAM) as connected,
        ):
            bound.bind(("127.0.0.1", 0))
            port = bound.getsockname()[1]
            connected.bind(("127.0.0.1", 0))
            connected.connect(("127.0.0.1", port))
            other = connected.getsockname()[1]
            for args in (["-u"], ["-u", "-e"], ["-u", "--source", "procfs"], ["-ul"]):
                listing = _ls(*args)  # piped: the column path, and records with -e / procfs
                assert _state_of(listing, port) == "UNCONN", (args, listing)
                if "-ul" not in args:
                    assert _state_of(listing, other) == "ESTABLISHED", (args, listing)
                assert "CLOSED" not in listing
            document = json.loads(_ls("-u", "--json"))
            (row,) = [s for s in document["sockets"] if s["local"]["port"] == port]
            assert row["state"] == "CLOSED"  # the kernel's code: the JSON contract is unchanged
            # `--state unconn` selects it, as in ss
            assert _state_of(_ls("--state", "unconn"), port) == "UNCONN"

    run_in_private_netns(body, required=True)


def test_table_and_coloured_text_show_unconn_and_tcp_closed_stays_closed() -> None:
    udp = Socket("udp", 4, Addr("127.0.0.1", 5353), Addr("0.0.0.0", 0), State.CLOSED)
    tcp = Socket("tcp", 4, Addr("127.0.0.1", 5000), Addr("0.0.0.0", 0), State.CLOSED)
    lines = render_plain([udp, tcp]).splitlines()
    assert lines[1].split()[5] == "UNCONN" and lines[2].split()[5] == "CLOSED"
    out = io.StringIO()
    write_plain(out, [udp, tcp], colour=True)
    assert "UNCONN" in out.getvalue() and "\x1b[" in out.getvalue()
