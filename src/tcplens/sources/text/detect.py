"""Guess which tool and OS printed a dump, from the shape of its lines.

Each format scores the lines it would recognise: a few points for a banner
or header only that tool prints, one point per data row of its shape.  The
highest score wins; ties go to the earlier format in :data:`ORDER`.  Each
format declares its own scoring and place in that order with its parser
(:class:`~tcplens.sources.text._common.TextFormat`).  Data
rows outweigh banners as soon as there are a handful, so a grep'd paste with
no header at all is still recognised, and prose around the output (web
pages, chat logs) only costs warnings later, not the detection.
"""

from __future__ import annotations

from typing import Final

from tcplens.sources.text._common import Line
from tcplens.sources.text._registry import REGISTRY

__all__ = ["ORDER", "detect", "scores"]

#: tie-break order: the most specific signatures first (each format's ``precedence``)
ORDER: Final = tuple(
    f.name for f in sorted(REGISTRY.values(), key=lambda f: (f.precedence, f.name))
)
_SCORERS: Final = [(f.name, f.score) for f in REGISTRY.values()]


def scores(lines: list[Line]) -> dict[str, int]:
    """Points per format (see the module docstring)."""
    points = dict.fromkeys(ORDER, 0)
    for line in lines:
        text = line.text.strip()
        if not text:
            continue
        words = text.split()
        for name, score in _SCORERS:
            points[name] += score(text, words)
    return points


#: lines scored; enough to get past a page of prose, cheap for 100k-row dumps
SAMPLE: Final = 5000


def detect(lines: list[Line]) -> str | None:
    """The best-scoring format, or None when nothing looks like socket output."""
    points = scores(lines[:SAMPLE])
    best = max(ORDER, key=lambda name: (points[name], -ORDER.index(name)))
    return best if points[best] > 0 else None
