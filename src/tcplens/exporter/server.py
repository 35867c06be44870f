"""The metrics endpoint: a WSGI app around a registry and the threaded (TLS) server.

Why our own app around ``prometheus_client.make_wsgi_app``: basic auth, the
web config's extra headers, a landing page and HEAD (which prometheus_client
alone answers with 405) wrap it, and the server does TLS handshakes in the
request thread so a silent client cannot stall the accept loop.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import socket
import ssl
from collections.abc import Iterable
from socketserver import ThreadingMixIn
from typing import Any, Final
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer
from wsgiref.types import StartResponse
from wsgiref.types import WSGIApplication as WSGIApp

from prometheus_client.registry import CollectorRegistry

from tcplens.errors import InputError, SourceError
from tcplens.exporter.auth import BasicAuth
from tcplens.exporter.webconfig import WebConfig

__all__ = ["LANDING", "MetricsServer", "is_loopback", "make_app", "make_server", "parse_listen"]

log = logging.getLogger(__name__)


LANDING: Final = b"""<!doctype html>
<html><head><title>tcplens exporter</title></head>
<body><h1>tcplens exporter</h1>
<p><a href="metrics">Metrics</a> &middot; TCP sockets by state, port and process.</p>
</body></html>
"""


def make_app(registry: CollectorRegistry, web: WebConfig | None = None) -> WSGIApp:
    """The WSGI app: /metrics, a landing page at /, basic auth when configured."""
    from prometheus_client import make_wsgi_app

    metrics = make_wsgi_app(registry)
    web = web or WebConfig()
    auth = BasicAuth(web.basic_auth_users) if web.basic_auth_users else None
    extra = list(web.headers.items())

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        def respond(status: str, headers: list[tuple[str, str]]) -> Any:
            return start_response(status, headers + extra)

        if auth is not None and not auth.check(environ.get("HTTP_AUTHORIZATION")):
            respond(
                "401 Unauthorized",
                [
                    ("WWW-Authenticate", 'Basic realm="tcplens"'),
                    ("Content-Type", "text/plain; charset=utf-8"),
                ],
            )
            return [b"Unauthorized\n"]
        path = environ.get("PATH_INFO", "/")
        if environ.get("REQUEST_METHOD") == "HEAD":
            # GET's status and headers without its body (RFC 9110 §9.3.2);
            # prometheus_client alone answers HEAD with 405
            got: list[Any] = []

            def keep(status: str, headers: list[tuple[str, str]], *exc: Any) -> Any:
                got[:] = [status, headers]
                return lambda data: None

            body = b"".join(app({**environ, "REQUEST_METHOD": "GET"}, keep))
            headers = [(k, v) for k, v in got[1] if k.lower() != "content-length"]
            start_response(got[0], [*headers, ("Content-Length", str(len(body)))])
            return []
        if path == "/metrics":
            result: Iterable[bytes] = metrics(environ, respond)
            return result
        if path == "/":
            respond("200 OK", [("Content-Type", "text/html; charset=utf-8")])
            return [LANDING]
        respond("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
        return [b"Not Found: metrics are at /metrics\n"]

    return app


class _QuietHandler(WSGIRequestHandler):
    """No access log on stderr: Prometheus scrapes every few seconds forever."""

    def log_message(self, format: str, *args: Any) -> None:
        pass


class MetricsServer(ThreadingMixIn, WSGIServer):
    """Thread-per-request WSGI server; TLS handshakes happen in the request thread.

    Wrapping the listening socket instead would run every handshake in the
    accept loop, so one client that connects and says nothing would stall
    every scrape.  ``timeout`` bounds how long a silent client holds a thread.
    """

    daemon_threads = True
    allow_reuse_address = True
    request_timeout: float = 30.0
    ssl_context: ssl.SSLContext | None = None

    def finish_request(self, request: Any, client_address: Any) -> None:
        request.settimeout(self.request_timeout)
        if self.ssl_context is None:
            super().finish_request(request, client_address)
            return
        try:
            wrapped = self.ssl_context.wrap_socket(request, server_side=True)
        except (OSError, ssl.SSLError) as exc:
            log.debug("TLS handshake with %s failed: %s", client_address, exc)
            return
        try:
            super().finish_request(wrapped, client_address)
        finally:
            wrapped.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client hanging up mid-response is routine; log it quietly, never a traceback.
        log.debug("error serving %s", client_address, exc_info=True)


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT``, ``[v6]:PORT`` or ``:PORT`` (every address, as Prometheus exporters do)."""
    host, sep, port = text.rpartition(":")
    if not sep:
        raise InputError(f"--listen {text!r}: expected HOST:PORT, e.g. 127.0.0.1:9977")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        number = int(port)
    except ValueError:
        raise InputError(f"--listen {text!r}: port {port!r} is not a number") from None
    if not 0 <= number <= 65535:
        raise InputError(f"--listen {text!r}: port {number} is out of range")
    return host or "::", number


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def make_server(
    registry: CollectorRegistry, host: str, port: int, web: WebConfig | None = None
) -> MetricsServer:
    """Bind (raising :class:`SourceError` with the address on failure) but do not serve yet."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise SourceError(f"cannot resolve listen address {host!r}: {exc.strerror}") from None
    family, _, _, _, sockaddr = infos[0]

    class Server(MetricsServer):
        address_family = family

    try:
        server = Server((str(sockaddr[0]), port), _QuietHandler)
    except OSError as exc:
        raise SourceError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    if family == socket.AF_INET6 and sockaddr[0] == "::":
        # ":PORT" means every address, IPv4 included (dual-stack), as Go's net.Listen does.
        with contextlib.suppress(OSError):
            server.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    server.set_app(make_app(registry, web))
    if web is not None and web.tls:
        server.ssl_context = web.ssl_context()
    return server
