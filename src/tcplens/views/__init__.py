"""Views render data; the CLI is the only place that parses arguments and picks exit codes.

Services that views drive are not views: the exporter's metric families are rendered here
(:mod:`tcplens.views.exporter`), while serving them (web config, TLS, basic auth, the HTTP
server) is :mod:`tcplens.exporter`, which imports no layer at all; the ``exporter`` command
wires the two, as every command wires sources, analysis and rendering.
"""
