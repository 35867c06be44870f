"""tcplens: make TCP connection states visible and understandable.

The public API is re-exported here once; implementation modules may change.
"""

from tcplens.errors import (
    IllegalTransition,
    InputError,
    ScenarioError,
    SourceError,
    TcplensError,
    TruncatedInput,
    UnknownStateError,
)
from tcplens.model import State
from tcplens.sources.records import Addr, Snapshot, Socket

__version__ = "0.1.0"

__all__ = [
    "Addr",
    "IllegalTransition",
    "InputError",
    "ScenarioError",
    "Snapshot",
    "Socket",
    "SourceError",
    "State",
    "TcplensError",
    "TruncatedInput",
    "UnknownStateError",
    "__version__",
]
