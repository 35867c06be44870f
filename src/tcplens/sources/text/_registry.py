"""The saved-text formats: every module of this package that declares ``TEXT_FORMAT``.

Found by listing the package, so adding a format is adding its module
(:class:`~tcplens.sources.text._common.TextFormat` says what to declare);
``--format``, detection and parsing all read this one table.
"""

from __future__ import annotations

import importlib
import pkgutil
from types import MappingProxyType
from typing import Final

from tcplens.sources.text._common import TextFormat

__all__ = ["ALIASES", "FORMATS", "REGISTRY"]


def _discover() -> list[TextFormat]:
    package = importlib.import_module(__package__ or "tcplens.sources.text")
    found: list[TextFormat] = []
    for info in pkgutil.iter_modules(package.__path__):
        if info.name.startswith("_") or info.name == "detect":
            continue
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        declared = getattr(module, "TEXT_FORMAT", None)
        if isinstance(declared, TextFormat):
            found.append(declared)
    return sorted(found, key=lambda f: (f.listed, f.name))


#: name -> format, in ``--format`` order
REGISTRY: Final = MappingProxyType({f.name: f for f in _discover()})

#: names accepted by ``--format`` (``auto`` detects)
FORMATS: Final = tuple(REGISTRY)

#: friendlier names users type for the same formats
ALIASES: Final = MappingProxyType({alias: f.name for f in REGISTRY.values() for alias in f.aliases})
