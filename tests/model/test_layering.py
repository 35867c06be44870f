"""The model is the foundation: importing it must not pull in any other layer."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

LAYERS = ("tcplens.sources", "tcplens.packets", "tcplens.analysis", "tcplens.views", "tcplens.lab")


def test_model_imports_no_other_layer_in_a_fresh_interpreter() -> None:
    code = (
        "import json, sys\n"
        "import tcplens.model, tcplens.model.scenarios, tcplens.model.diagram\n"
        "import tcplens.model.explain\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('tcplens'))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = json.loads(out.stdout)
    assert "tcplens.model.machine" in loaded
    assert not [m for m in loaded if m.startswith(LAYERS)], loaded


def test_model_does_no_io() -> None:
    code = (
        "import sys\nbefore = set(sys.modules)\n"
        "import tcplens.model, tcplens.model.scenarios, tcplens.model.diagram\n"
        "print(sorted(set(sys.modules) - before))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    for banned in ("'socket'", "'subprocess'", "'psutil'", "'click'", "'rich'"):
        assert banned not in out.stdout


#: layer -> the tcplens packages it may import (model <- sources/packets <- analysis <- views)
ALLOWED = {
    "tcplens.sources": {"tcplens.errors", "tcplens.model", "tcplens.sources"},
    "tcplens.packets": {"tcplens.errors", "tcplens.model", "tcplens.sources", "tcplens.packets"},
    "tcplens.analysis": {"tcplens.errors", "tcplens.model", "tcplens.sources", "tcplens.analysis"},
}


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_every_module_of_a_layer_imports_only_the_layers_below(layer: str) -> None:
    code = (
        "import importlib, json, pkgutil, sys\n"
        f"pkg = importlib.import_module({layer!r})\n"
        f"for info in pkgutil.walk_packages(pkg.__path__, {layer + '.'!r}):\n"
        "    importlib.import_module(info.name)\n"
        "print(json.dumps(sorted({'.'.join(m.split('.')[:2]) for m in sys.modules"
        " if m.startswith('tcplens.')})))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = set(json.loads(out.stdout))
    assert layer in loaded
    assert loaded <= ALLOWED[layer], sorted(loaded - ALLOWED[layer])
