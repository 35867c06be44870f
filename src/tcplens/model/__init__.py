"""The RFC 9293 connection state machine as a pure library.

No I/O and no imports from other layers (a test checks this in a fresh
interpreter): sources, packets, analysis and views all import their state
names, transitions and explanation texts from here.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# Eager, unlike the rest: the submodule ``explain`` and the function ``explain``
# share a name, and importing the submodule sets the package attribute to it;
# importing it here first and then binding the function keeps the function.
from tcplens.model.explain import (
    LABELS,
    LANGS,
    Explanation,
    explain,
    pick_lang,
    summary_line,
)

if TYPE_CHECKING:
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


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module 'tcplens.model' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"tcplens.model.{home}"), name)
    globals()[name] = value
    return value
