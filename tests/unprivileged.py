"""Run the real CLI as user ``nobody`` (uid 65534), for tests of unprivileged use.

The interpreter and site-packages live under /root (mode 700) here, so the
child imports what the command needs while still root, then drops to nobody
and runs the command: ``preload`` names modules to import first, and
``warm_up`` runs the command once as root with its output discarded, which
pulls in everything it imports lazily (only for commands without side effects).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence

_CHILD = """
import contextlib, importlib, io, os, sys
from tcplens.views.cli import main
preload, warm_up, args = sys.argv[1].split(","), sys.argv[2] == "1", sys.argv[3:]
for name in filter(None, preload):
    importlib.import_module(name)
if warm_up:
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        with contextlib.suppress(SystemExit):
            main(args)
os.setgroups([])
os.setgid(65534)
os.setuid(65534)
assert os.geteuid() == 65534
main(args)
"""


def cli_as_nobody(
    *args: str, preload: Sequence[str] = (), warm_up: bool = False, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """``tcplens ARGS`` as nobody; needs root to drop privileges."""
    return subprocess.run(
        [sys.executable, "-c", _CHILD, ",".join(preload), "1" if warm_up else "0", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "HOME": "/tmp", "COLUMNS": "100"},
        cwd="/",
        timeout=timeout,
        check=False,
    )
