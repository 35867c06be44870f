"""Lab: scenarios on real sockets that check kernel, model and capture agree.

``run(LAB_SCENARIOS["closing"])`` plays a scenario on real sockets (in fresh
network namespaces when root, on loopback otherwise) and returns a
:class:`LabRun` whose checkpoints hold the kernel's, the model's and the
capture's states side by side.
"""

from tcplens.lab.runner import Checkpoint, LabRun, Mismatch, run
from tcplens.lab.scenarios import LAB_SCENARIOS, LabScenario, LabStep, get

__all__ = [
    "LAB_SCENARIOS",
    "Checkpoint",
    "LabRun",
    "LabScenario",
    "LabStep",
    "Mismatch",
    "get",
    "run",
]
