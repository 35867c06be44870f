"""The RFC 9293 connection state machine as a pure library.

No I/O and no imports from other layers (a test checks this in a fresh
interpreter): sources, packets, analysis and views all import their state
names, transitions and explanation texts from here.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tcplens.model.explain import (
        LABELS,
        LANGS,
        Explanation,
        explain,
        pick_lang,
        summary_line,
    )
    from tcplens.model.machine import (
        TRANSITIONS,
        Closing,
        Endpoint,
        Event,
        Flags,
        Opening,
        Segment,
        Transition,
        format_flags,
    )
    from tcplens.model.states import (
        KERNEL_CODES,
        SPELLINGS,
        STATE_GROUPS,
        State,
        parse_state_filter,
    )

#: name -> submodule; resolved on first use, so ``import tcplens.model.states``
#: (all a socket listing needs) does not pay for the machine and the texts
_HOME = {
    **dict.fromkeys(
        (
            "TRANSITIONS",
            "Closing",
            "Endpoint",
            "Event",
            "Flags",
            "Opening",
            "Segment",
            "Transition",
            "format_flags",
        ),
        "machine",
    ),
    **dict.fromkeys(
        ("KERNEL_CODES", "SPELLINGS", "STATE_GROUPS", "State", "parse_state_filter"), "states"
    ),
    **dict.fromkeys(
        ("LABELS", "LANGS", "Explanation", "explain", "pick_lang", "summary_line"), "explain"
    ),
}

__all__ = [
    "KERNEL_CODES",
    "LABELS",
    "LANGS",
    "SPELLINGS",
    "STATE_GROUPS",
    "TRANSITIONS",
    "Closing",
    "Endpoint",
    "Event",
    "Explanation",
    "Flags",
    "Opening",
    "Segment",
    "State",
    "Transition",
    "explain",
    "format_flags",
    "parse_state_filter",
    "pick_lang",
    "summary_line",
]


class _Model(types.ModuleType):
    """Keeps ``tcplens.model.explain`` the function once the submodule of that name loads.

    Importing a submodule sets the package attribute of its name to the
    module; the texts are too big to load on every command's start (~4 ms),
    so instead of importing the submodule eagerly to bind the function over
    it, that one assignment is turned into the function.
    """

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "explain" and isinstance(value, types.ModuleType):
            value = value.explain
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Model


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module 'tcplens.model' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"tcplens.model.{home}"), name)
    globals()[name] = value
    return value
