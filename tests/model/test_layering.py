"""The model is the foundation: importing it must not pull in any other layer."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

LAYERS = (
    "tcplens.sources",
    "tcplens.packets",
    "tcplens.analysis",
    "tcplens.views",
    "tcplens.lab",
    "tcplens.exporter",
)


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
#: ``tcplens._engine`` is the compiled helper of the layers that own hot paths (the capture
#: engine for packets; the sock_diag walk and the trace-page decoder for sources): it sits
#: beside them, below analysis and views, and each use keeps a Python fallback
ENGINE = "tcplens._engine"
ALLOWED = {
    "tcplens.sources": {"tcplens.errors", "tcplens.model", "tcplens.sources", ENGINE},
    "tcplens.packets": {
        "tcplens.errors",
        "tcplens.model",
        "tcplens.sources",
        "tcplens.packets",
        ENGINE,
    },
    "tcplens.analysis": {
        "tcplens.errors",
        "tcplens.model",
        "tcplens.sources",
        "tcplens.analysis",
        ENGINE,
    },
    # the exporter's HTTP service (web config, TLS, basic auth, server) serves any registry
    "tcplens.exporter": {"tcplens.errors", "tcplens.exporter"},
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


def _public_classes() -> dict[str, set[str]]:
    """Class name -> the modules defining a class of that name in their ``__all__``."""
    import importlib
    import inspect
    import pkgutil

    import tcplens

    homes: dict[str, set[str]] = {}
    for info in pkgutil.walk_packages(tcplens.__path__, "tcplens."):
        if info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        for name in getattr(module, "__all__", ()):
            value = getattr(module, name, None)
            if inspect.isclass(value):
                homes.setdefault(name, set()).add(value.__module__)
    return homes


def test_owners_and_columns_each_name_one_thing() -> None:
    """Views import who holds a socket and the columnar dump from sources, under one name each."""
    homes = _public_classes()
    for name in ("Owners", "OwnerCache", "Columns", "SocketColumns"):
        assert len(homes.get(name, set())) <= 1, (name, homes[name])
    assert homes["OwnerCache"] == homes["Owners"] == {"tcplens.sources.processes"}
    assert homes["SocketColumns"] == {"tcplens.sources.columns"}


def test_no_view_reads_process_descriptors_itself() -> None:
    """One route per job: the /proc/<pid>/fd scans live in tcplens.sources.processes."""
    from pathlib import Path

    import tcplens.views

    root = Path(tcplens.views.__file__).parent
    readers = [
        str(path.relative_to(root))
        for path in root.rglob("*.py")
        if "readlink" in path.read_text() or '/fd"' in path.read_text()
    ]
    assert readers == []


def test_states_load_without_the_texts_and_explain_stays_the_function() -> None:
    """Every command's start pays for what ``tcplens.model.states`` imports: not the texts."""
    code = (
        "import sys, tcplens.model.states, tcplens.model as m\n"
        "print('tcplens.model.explain' in sys.modules, 'difflib' in sys.modules)\n"
        "import tcplens.model.explain\n"
        "from tcplens.model import explain\n"
        "print(callable(explain), m.explain is explain, explain('TIME_WAIT').state.value)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False", "True", "True", "TIME_WAIT"]
