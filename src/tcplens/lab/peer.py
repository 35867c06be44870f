"""The tiny server and client the seeds' author wrote, as real processes to kill.

Run as a script (``python peer.py server IP PORT`` / ``python peer.py client
IP SERVER_IP SERVER_PORT``), not imported: it must start fast and hold nothing
but its sockets, so that killing it with Ctrl+C (SIGINT) closes them exactly
as the kernel closes any process's sockets at exit.  It prints one line per
event (``listening IP PORT``, ``accepted``, ``bound IP PORT``, ``connected``,
``eof``) so the lab knows where the socket is and when it is ready.

The server accepts one connection and keeps its listener open, as the seeds'
demo server did; neither side closes the connection when the peer does, so
the survivor of a kill stays in CLOSE_WAIT, the state the seeds asked about.
"""

from __future__ import annotations

import signal
import socket
import sys


def _say(*words: object) -> None:
    print(*words, flush=True)


def _hold(conn: socket.socket) -> None:
    """Read until EOF, then keep the socket open (CLOSE_WAIT) until killed."""
    while conn.recv(65536):
        pass
    _say("eof")
    while True:
        signal.pause()


def server(ip: str, port: int) -> None:
    listener = socket.socket(socket.AF_INET6 if ":" in ip else socket.AF_INET)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((ip, port))
    listener.listen(1)
    _say("listening", *listener.getsockname()[:2])
    conn, _ = listener.accept()
    _say("accepted")
    _hold(conn)


def client(ip: str, server_ip: str, server_port: int) -> None:
    conn = socket.socket(socket.AF_INET6 if ":" in ip else socket.AF_INET)
    conn.bind((ip, 0))
    _say("bound", *conn.getsockname()[:2])
    conn.connect((server_ip, server_port))
    _say("connected")
    _hold(conn)


def main(argv: list[str]) -> int:
    try:
        if argv[:1] == ["server"] and len(argv) == 3:
            server(argv[1], int(argv[2]))
        elif argv[:1] == ["client"] and len(argv) == 4:
            client(argv[1], argv[2], int(argv[3]))
        else:
            print(
                "usage: peer.py server IP PORT | client IP SERVER_IP SERVER_PORT", file=sys.stderr
            )
            return 2
    except KeyboardInterrupt:
        # Ctrl+C: exit; the kernel closes our sockets (FIN), which is the point.
        return 130
    except OSError as exc:
        print(f"peer: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
