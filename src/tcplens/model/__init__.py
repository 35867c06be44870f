"""The RFC 9293 connection state machine as a pure library.

No I/O and no imports from other layers (a test checks this in a fresh
interpreter): sources, packets, analysis and views all import their state
names, transitions and explanation texts from here.
"""

from tcplens.model.explain import LABELS, LANGS, Explanation, explain, pick_lang, summary_line
from tcplens.model.machine import (
    TRANSITIONS,
    Endpoint,
    Event,
    Flags,
    Opening,
    Segment,
    Transition,
    format_flags,
)
from tcplens.model.states import KERNEL_CODES, SPELLINGS, STATE_GROUPS, State, parse_state_filter

__all__ = [
    "KERNEL_CODES",
    "LABELS",
    "LANGS",
    "SPELLINGS",
    "STATE_GROUPS",
    "TRANSITIONS",
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
