"""Counted nouns in English: "1 socket" and "2 sockets", never an "s" in parentheses.

Templates name the plural ending next to the noun, chosen by the count:
``"{n} socket{n:|s}"`` and ``"{n} process{n:|es}"`` (the part before ``|``
for one, after it for any other count), filled by :func:`fill`, which is
``str.format`` otherwise.  Code that builds a text itself uses :func:`plural`.
Chinese has no plural; a Chinese template simply does not use the spec.
"""

from __future__ import annotations

import string
from typing import Any

__all__ = ["fill", "plural"]


def _number(value: Any) -> float | None:
    if isinstance(value, int | float):
        return value
    try:
        return float(str(value).replace(",", "").lstrip("~≥"))
    except ValueError:
        return None


class _Counted(string.Formatter):
    def format_field(self, value: Any, format_spec: str) -> Any:
        if "|" not in format_spec:
            return super().format_field(value, format_spec)
        one, many = format_spec.split("|", 1)
        return one if _number(value) == 1 else many


_FORMATTER = _Counted()


def fill(template: str, /, **values: Any) -> str:
    """``template.format(**values)`` that also understands ``{n:one|many}`` endings."""
    return _FORMATTER.vformat(template, (), values)


def plural(n: int, singular: str, many: str | None = None) -> str:
    """``"1 socket"``, ``"3 sockets"``; ``many`` when it is not ``singular + "s"``."""
    return f"{n} {singular if n == 1 else many or singular + 's'}"
