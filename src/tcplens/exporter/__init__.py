"""The exporter's HTTP service: web config, TLS, basic auth and the server, around any registry.

Why a package of its own rather than part of the metrics view
(:mod:`tcplens.views.exporter`): what is exported and how it is served change
for different reasons and are reviewed by different eyes.  The metric
families are a view (they render a snapshot); this package is a service with
its own threat model (a listening socket, TLS, passwords, floods) and knows
nothing of sockets or states: it imports no tcplens layer, only
:mod:`tcplens.errors` (``tests/model/test_layering.py`` checks that).
``tcplens exporter`` (:mod:`tcplens.views.commands.exporter`) wires the two.

* :mod:`~tcplens.exporter.webconfig` reads the Prometheus exporter-toolkit
  web-config file and builds the TLS context;
* :mod:`~tcplens.exporter.auth` checks basic auth in bounded, user-blind work;
* :mod:`~tcplens.exporter.server` is the WSGI app (``/metrics``, landing page,
  HEAD) and the threaded server that binds the listen address.
"""

from __future__ import annotations

from tcplens.exporter.auth import BCRYPT_WORKERS, BasicAuth, bcrypt_cost
from tcplens.exporter.server import (
    LANDING,
    MetricsServer,
    is_loopback,
    make_app,
    make_server,
    parse_listen,
)
from tcplens.exporter.webconfig import WebConfig, load_web_config

__all__ = [
    "BCRYPT_WORKERS",
    "LANDING",
    "BasicAuth",
    "MetricsServer",
    "WebConfig",
    "bcrypt_cost",
    "is_loopback",
    "load_web_config",
    "make_app",
    "make_server",
    "parse_listen",
]
