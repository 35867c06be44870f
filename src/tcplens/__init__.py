"""tcplens: make TCP connection states visible and understandable.

The public API is re-exported here once; implementation modules may change.
Only the errors are imported eagerly: ``import tcplens.model`` must not drag
in sources, packets or views (a test checks that in a fresh interpreter), and
a command's start-up time is paid by every invocation (``tcplens status``
aims to finish faster than ``ss -tan``), so everything else, the model
included, is resolved on first attribute access.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from tcplens.errors import (
    ActionError,
    CorruptRecord,
    IllegalTransition,
    InputError,
    ScenarioError,
    SourceError,
    TcplensError,
    TruncatedInput,
    UnknownStateError,
)

if TYPE_CHECKING:
    from tcplens.analysis.doctor import Finding, diagnose
    from tcplens.analysis.filters import SocketFilter
    from tcplens.model.states import State
    from tcplens.packets import reconstruct
    from tcplens.sources.actions import KillResult, kill
    from tcplens.sources.records import Addr, Snapshot, Socket
    from tcplens.sources.select import take_snapshot
    from tcplens.sources.text import parse_text

__version__ = "0.1.0"

_LAZY = {
    "State": "tcplens.model.states",
    "Addr": "tcplens.sources.records",
    "Snapshot": "tcplens.sources.records",
    "Socket": "tcplens.sources.records",
    "parse_text": "tcplens.sources.text",
    "take_snapshot": "tcplens.sources.select",
    "diagnose": "tcplens.analysis.doctor",
    "Finding": "tcplens.analysis.doctor",
    "reconstruct": "tcplens.packets",
    "kill": "tcplens.sources.actions",
    "KillResult": "tcplens.sources.actions",
    "SocketFilter": "tcplens.analysis.filters",
}

__all__ = [
    "ActionError",
    "Addr",
    "CorruptRecord",
    "Finding",
    "IllegalTransition",
    "InputError",
    "KillResult",
    "ScenarioError",
    "Snapshot",
    "Socket",
    "SocketFilter",
    "SourceError",
    "State",
    "TcplensError",
    "TruncatedInput",
    "UnknownStateError",
    "__version__",
    "diagnose",
    "kill",
    "parse_text",
    "reconstruct",
    "take_snapshot",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'tcplens' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
