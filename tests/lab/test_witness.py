"""The lab's fourth witness: the kernel's exact path from its tracepoints, against the model."""

from __future__ import annotations

import os

import pytest

from tcplens.lab import report, witness
from tcplens.lab.runner import run
from tcplens.lab.scenarios import get
from tcplens.lab.witness import KernelPath
from tcplens.model.states import State as S

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="tracefs and namespaces need root")


@root_only
def test_the_kernel_path_shows_the_states_checkpoints_never_see() -> None:
    result = run(get("client-close"), capture=False)
    assert result.ok, result.error
    kp = result.kernel_path
    assert kp is not None and kp.available, kp
    assert kp.client == [S.CLOSED, S.SYN_SENT, S.ESTABLISHED, S.FIN_WAIT1, S.FIN_WAIT2,
                         S.TIME_WAIT]  # fmt: skip
    assert kp.server == [S.CLOSED, S.LISTEN, S.SYN_RECV, S.ESTABLISHED, S.CLOSE_WAIT,
                         S.LAST_ACK, S.CLOSED]  # fmt: skip
    assert S.FIN_WAIT1 not in result.states_seen("client")  # too short for a checkpoint
    assert result.kernel_path_agrees() is True
    data = result.as_dict()
    assert data["kernel_path"]["client"][-1] == "TIME_WAIT"
    assert data["agreement"]["kernel_path"] is True
    assert "| yes (also SYN_SENT, FIN_WAIT1, SYN_RECV, LAST_ACK) |" in report.row(result)


@root_only
def test_a_handshake_left_as_a_request_socket_is_taken_from_sock_diag_and_said() -> None:
    result = run(get("syn-ack-lost"), capture=False)
    assert result.ok, result.error
    kp = result.kernel_path
    assert kp is not None and kp.requests
    assert kp.server == [S.CLOSED, S.LISTEN, S.SYN_RECV]
    assert "SYN_RECV: request socket, from sock_diag" in report.row(result)


@root_only
def test_a_kernel_path_that_differs_from_the_model_fails_the_run() -> None:
    result = run(get("handshake"), capture=False)
    assert result.ok
    assert result.kernel_path is not None
    result.kernel_path.client = [S.CLOSED, S.ESTABLISHED]  # as if SYN_SENT were skipped
    assert result.kernel_path_agrees() is False and not result.ok
    assert "**NO** client kernel CLOSED → ESTABLISHED ≠ model CLOSED → SYN_SENT → ESTABLISHED" in (
        report.row(result)
    )


def test_without_tracefs_the_run_says_why_and_is_judged_without_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(witness, "unavailable_reason", lambda: "not root: test")
    result = run(get("handshake"), capture=False, rig="loopback")
    assert result.ok, result.error
    assert result.kernel_path == KernelPath(note="no kernel path: not root: test")
    assert result.kernel_path_agrees() is None
    assert result.as_dict()["kernel_path"]["note"] == "no kernel path: not root: test"
    assert "| - |" in report.row(result)


@root_only
def test_concurrent_runs_in_other_namespaces_do_not_leak_into_each_others_path() -> None:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(3) as pool:  # same addresses and port, each in its namespaces
        results = list(pool.map(lambda _: run(get("syn-sent"), capture=False), range(3)))
    for result in results:
        assert result.ok, (result.error, result.kernel_path)
        assert result.kernel_path is not None
        assert result.kernel_path.server == [S.CLOSED, S.LISTEN]
        assert result.kernel_path.client == [S.CLOSED, S.SYN_SENT, S.CLOSED]
