"""PowerShell Get-NetTCPConnection / Get-NetUDPEndpoint tables."""

from __future__ import annotations

from tcplens import parse_text
from tcplens.model import State
from tcplens.sources.records import Addr, Socket
from tests.contract import check_snapshot

TCP = """\
PS C:\\Users\\bob> Get-NetTCPConnection

LocalAddress                        LocalPort RemoteAddress                       RemotePort State       AppliedSetting OwningProcess
------------                        --------- -------------                       ---------- -----       -------------- -------------
::                                  49669     ::                                  0          Listen                     3136
0.0.0.0                             135       0.0.0.0                             0          Listen                     1012
192.168.1.5                         50435     20.42.65.90                         443        Established Internet       4712
192.168.1.5                         50440     20.42.65.90                         443        TimeWait                   0
192.168.1.5                         50441     20.42.65.91                         443        CloseWait   Internet       4712
fe80::1c3c:93a:b6f3:5d1%12          139       ::                                  0          Bound                      4
"""  # noqa: E501


def test_get_nettcpconnection_table() -> None:
    snap = parse_text(TCP)
    check_snapshot(snap, text_source=True)
    assert snap.source == "text:powershell"
    assert snap.warnings == []
    assert snap.sockets[0] == Socket("tcp", 6, Addr("::", 49669), Addr("::", 0), State.LISTEN,
                                     pid=3136)  # fmt: skip
    assert snap.sockets[2] == Socket(
        "tcp", 4, Addr("192.168.1.5", 50435), Addr("20.42.65.90", 443), State.ESTABLISHED,
        pid=4712,
    )  # fmt: skip
    assert [s.state for s in snap.sockets[3:]] == [State.TIME_WAIT, State.CLOSE_WAIT, State.CLOSED]
    assert snap.sockets[5].interface == "12"


UDP_AND_CUSTOM = """\
LocalAddress LocalPort
------------ ---------
0.0.0.0      5353
::           5355

LocalPort State  OwningProcess LocalAddress RemoteAddress RemotePort
--------- -----  ------------- ------------ ------------- ----------
22        Listen 1234          0.0.0.0      0.0.0.0       0
"""


def test_udp_endpoints_and_columns_in_another_order() -> None:
    snap = parse_text(UDP_AND_CUSTOM)
    assert snap.warnings == []
    assert [(s.proto, s.family, s.local, s.state) for s in snap.sockets] == [
        ("udp", 4, Addr("0.0.0.0", 5353), State.CLOSED),
        ("udp", 6, Addr("::", 5355), State.CLOSED),
        ("tcp", 4, Addr("0.0.0.0", 22), State.LISTEN),
    ]
    assert snap.sockets[2].pid == 1234


def test_bad_powershell_rows_warn() -> None:
    text = TCP + "192.168.1.5 1 2\n" + "1.2.3.4 5 6.7.8.9 10 Listen x y z\n"
    snap = parse_text(text)
    assert [w.line for w in snap.warnings] == [11, 12]
