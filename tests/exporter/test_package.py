"""The exporter is two parts: a metric view that renders and an HTTP service that serves.

Issue 19, item 4.  The service (:mod:`tcplens.exporter`) serves any registry
and imports no tcplens layer (``tests/model/test_layering.py``); the metric
view (:mod:`tcplens.views.exporter`) renders snapshots and imports nothing
for TLS, passwords or sockets.  These tests hold that split in place.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import threading
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import Counter, generate_latest
from prometheus_client.registry import CollectorRegistry

import tcplens
from tcplens.exporter import MetricsServer, make_server

#: what serving needs and rendering does not
SERVICE_NAMES = (
    "BasicAuth",
    "MetricsServer",
    "WebConfig",
    "bcrypt_cost",
    "is_loopback",
    "load_web_config",
    "make_app",
    "make_server",
    "parse_listen",
)
VIEW_MODULES = ("tcplens.views.exporter", "tcplens.views.exporter_transitions")


def test_every_service_name_is_exported_only_by_the_service_package() -> None:
    homes: dict[str, set[str]] = {}
    for info in pkgutil.walk_packages(tcplens.__path__, "tcplens."):
        if info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        for name in getattr(module, "__all__", ()):
            if name in SERVICE_NAMES:
                homes.setdefault(name, set()).add(info.name)
    for name in SERVICE_NAMES:
        assert homes.get(name), name
        assert {home.split(".")[1] for home in homes[name]} == {"exporter"}, (name, homes[name])


def test_the_metric_view_imports_nothing_for_tls_passwords_or_sockets() -> None:
    serving = {"base64", "bcrypt", "hmac", "ipaddress", "socket", "socketserver", "ssl", "wsgiref"}
    serving |= {"yaml", "tcplens.exporter"}
    for name in VIEW_MODULES:
        tree = ast.parse(inspect.getsource(importlib.import_module(name)))
        imported: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                imported |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module)
        found = {m for m in imported if m in serving or m.split(".")[0] in serving}
        found |= {m for m in imported if m.startswith("tcplens.exporter")}
        assert not found, (name, sorted(found))


@contextmanager
def serving(registry: CollectorRegistry) -> Iterator[MetricsServer]:
    server = make_server(registry, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_the_service_serves_any_registry_on_a_real_socket_get_and_head() -> None:
    """Nothing of tcplens' metrics is needed: a plain counter comes back byte for byte."""
    registry = CollectorRegistry(auto_describe=False)
    Counter("plain_requests", "A counter no tcplens view knows.", registry=registry).inc(3)
    with serving(registry) as server:
        url = f"http://127.0.0.1:{server.server_address[1]}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            assert response.status == 200
            body = response.read()
        head = urllib.request.Request(url, method="HEAD")
        with urllib.request.urlopen(head, timeout=10) as response:
            assert response.status == 200
            assert response.read() == b""
            assert int(response.headers["Content-Length"]) == len(body)
    assert body == generate_latest(registry)
    assert b"plain_requests_total 3.0" in body
