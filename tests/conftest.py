"""Suite-wide rules.

In CI (``CI=true``, root, with ``scripts/install-system-deps`` run first) every
test must really run: a skip there means a missing package or privilege that
the project's own files should have provided, so it is turned into a failure
instead of a quiet "s" in the summary.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

# Test this checkout, in process and in every `python -m tcplens` subprocess,
# whichever copy an editable install last pointed at (a CI run in a scratch
# clone re-points it, and the suite would then quietly test that clone).
_SRC = str(Path(__file__).resolve().parents[1] / "src")
sys.path.insert(0, _SRC)
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (_SRC, os.environ.get("PYTHONPATH", "")) if p)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> object:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if IN_CI and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, where everything must run: {reason}"
    return None
