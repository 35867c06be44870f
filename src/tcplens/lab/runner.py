"""Run a lab scenario: act on real sockets, play the model, observe, compare.

For every step the runner makes the real calls, plays the same step on the
model's two-endpoint harness (with the model's clock set to the real elapsed
time, so its 2MSL deadline can be compared with the kernel's timer), then
polls the kernel through the live source until both endpoints are in the
states the step expects and stay there.  That moment is a
:class:`Checkpoint`: kernel, model and, once the capture has been
reconstructed, capture states side by side.

A checkpoint the kernel never reaches ends the run (what follows would not
mean anything), and so does any error; either way every socket, process and
namespace the run made is removed, also on Ctrl+C or SIGTERM: signals are
deferred while namespaces are made and removed (:class:`_Deferred`), so a
second signal cannot leave half of them behind.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from tcplens.errors import ScenarioError, TcplensError
from tcplens.lab.capture import CaptureResult, Recorder
from tcplens.lab.netns import namespace_problem, sweep_stale
from tcplens.lab.rig import Lab, Rig, Side, View
from tcplens.lab.scenarios import LabScenario, LabStep
from tcplens.lab.witness import KernelPath, Witness, model_paths
from tcplens.model.scenarios import Pair, Step
from tcplens.model.states import State
from tcplens.sources.records import Socket

__all__ = ["Checkpoint", "LabRun", "Mismatch", "choose_rig", "run"]

SIDES: Final[tuple[Side, Side]] = ("client", "server")
#: kernel and model 2MSL timers may differ by this much (poll interval, jiffies)
TIMER_TOLERANCE: Final = 1.0
POLL: Final = 0.01
SETTLE: Final = 0.05
RigKind = Literal["auto", "loopback", "netns"]


@dataclass(frozen=True)
class Mismatch:
    """A checkpoint where the kernel and the model, the capture or a timer disagree."""

    step: int
    side: Side
    against: Literal["model", "capture", "timer"]
    kernel: str
    other: str
    #: why the wire cannot show it, when the scenario declared it (capture only)
    reason: str | None = None

    def __str__(self) -> str:
        why = f" ({self.reason})" if self.reason else ""
        return (
            f"step {self.step}: {self.side} kernel {self.kernel} != {self.against} "
            f"{self.other}{why}"
        )


@dataclass
class Checkpoint:
    """Both endpoints after one step, as the kernel, the model and the capture saw them."""

    step: int
    title: str
    at: float  # seconds since the run started
    wall: float  # time.time() of the kernel observation
    expect: tuple[State, State]
    reached: bool
    kernel: tuple[State, State]
    sockets: tuple[Socket | None, Socket | None]
    model: tuple[State, State]
    model_timers: tuple[float | None, float | None]
    blind: Mapping[str, str]
    capture: tuple[State, State] | None = None
    #: capture-clock time of the last frame read when the checkpoint was taken
    capture_time: float | None = None

    def kernel_timer(self, side: Side) -> str:
        """The ss-style timer of the side's socket, ``timewait,59.9s`` or ``""``."""
        sock = self.sockets[SIDES.index(side)]
        if sock is None or sock.timer is None or sock.timer.kind == "off":
            return ""
        t = sock.timer
        extra = f",{t.retransmits}" if t.retransmits else ""
        return f"{t.kind},{t.remaining:.1f}s{extra}"

    def mismatches(self) -> list[Mismatch]:
        out: list[Mismatch] = []
        for i, side in enumerate(SIDES):
            kernel = self.kernel[i]
            if kernel is not self.model[i]:
                out.append(Mismatch(self.step, side, "model", str(kernel), str(self.model[i])))
            if self.capture is not None and self.capture[i] is not kernel:
                out.append(
                    Mismatch(
                        self.step,
                        side,
                        "capture",
                        str(kernel),
                        str(self.capture[i]),
                        self.blind.get(side),
                    )
                )
            sock = self.sockets[i]
            predicted = self.model_timers[i]
            if kernel is State.TIME_WAIT and predicted is not None:
                left = sock.timer.remaining if sock is not None and sock.timer else None
                if left is None or abs(left - predicted) > TIMER_TOLERANCE:
                    shown = "no timer" if left is None else f"{left:.1f}s left"
                    out.append(Mismatch(self.step, side, "timer", shown, f"{predicted:.1f}s left"))
        return out

    def side_dict(self, i: int) -> dict[str, Any]:
        sock = self.sockets[i]
        return {
            "state": str(self.kernel[i]),
            "timer": self.kernel_timer(SIDES[i]) or None,
            "send_q": None if sock is None else sock.send_q,
            "recv_q": None if sock is None else sock.recv_q,
        }

    def as_dict(self) -> dict[str, Any]:
        timers = [None if t is None else round(t, 3) for t in self.model_timers]
        return {
            "step": self.step,
            "title": self.title,
            "at": round(self.at, 3),
            "time": self.wall,
            "expect": {"client": str(self.expect[0]), "server": str(self.expect[1])},
            "reached": self.reached,
            "kernel": {side: self.side_dict(i) for i, side in enumerate(SIDES)},
            "model": {
                side: {"state": str(self.model[i]), "timer_left": timers[i]}
                for i, side in enumerate(SIDES)
            },
            "capture": None
            if self.capture is None
            else {side: str(self.capture[i]) for i, side in enumerate(SIDES)},
            "wire_blind": dict(self.blind),
            "mismatches": [
                {
                    "side": m.side,
                    "against": m.against,
                    "kernel": m.kernel,
                    "other": m.other,
                    "known": m.reason,
                }
                for m in self.mismatches()
            ],
        }


@dataclass
class LabRun:
    """Everything one run produced; :attr:`ok` is the verdict the tests assert."""

    scenario: LabScenario
    rig: str
    rig_kind: str
    started: float
    checkpoints: list[Checkpoint] = field(default_factory=list)
    model_steps: list[Step] = field(default_factory=list)
    step_of_model: list[int] = field(default_factory=list)
    capture: CaptureResult | None = None
    capture_note: str = ""
    duration: float = 0.0
    error: str | None = None
    #: the fourth witness: each side's exact path from the kernel's tracepoints
    kernel_path: KernelPath | None = None

    def model_path(self) -> tuple[list[State], list[State]]:
        """Each side's states in the order the model entered them, from CLOSED."""
        steps = self.model_steps
        return model_paths([s.client for s in steps], [s.server for s in steps])

    def kernel_path_agrees(self) -> bool | None:
        """Whether the kernel's exact path is the model's, side by side; None without one."""
        kp = self.kernel_path
        if kp is None or not kp.available:
            return None
        client, server = self.model_path()
        return kp.client == client and kp.server == server

    def mismatches(self) -> list[Mismatch]:
        return [m for cp in self.checkpoints for m in cp.mismatches()]

    def unexpected(self) -> list[Mismatch]:
        """Disagreements no declaration explains: each one is a bug somewhere."""
        return [m for m in self.mismatches() if m.reason is None]

    def known(self) -> list[Mismatch]:
        """Capture disagreements the scenario declared (the wire cannot show them)."""
        return [m for m in self.mismatches() if m.reason is not None]

    def unconfirmed_blind(self) -> list[tuple[int, str, str]]:
        """Declared blind spots where the capture agreed after all (a wrong declaration)."""
        if self.capture is None:
            return []
        out = []
        for cp in self.checkpoints:
            for side, reason in cp.blind.items():
                i = SIDES.index(side)
                if cp.capture is not None and cp.capture[i] is cp.kernel[i]:
                    out.append((cp.step, side, reason))
        return out

    @property
    def ok(self) -> bool:
        return (
            self.error is None
            and all(cp.reached for cp in self.checkpoints)
            and not self.unexpected()
            and not self.unconfirmed_blind()
            and self.kernel_path_agrees() is not False
        )

    def states_seen(self, side: Side) -> list[State]:
        """Kernel states of one side at its checkpoints, repeats in a row collapsed."""
        seen: list[State] = []
        for cp in self.checkpoints:
            state = cp.kernel[SIDES.index(side)]
            if not seen or seen[-1] is not state:
                seen.append(state)
        return seen

    def as_dict(self) -> dict[str, Any]:
        """The ``tcplens lab --json`` contract (version 1)."""
        return {
            "version": 1,
            "scenario": self.scenario.name,
            "title": self.scenario.title,
            "rig": self.rig,
            "rig_kind": self.rig_kind,
            "ok": self.ok,
            "error": self.error,
            "duration": round(self.duration, 3),
            "checkpoints": [cp.as_dict() for cp in self.checkpoints],
            "model_steps": [
                {**s.as_dict(), "lab_step": n}
                for s, n in zip(self.model_steps, self.step_of_model, strict=True)
            ],
            "capture": None if self.capture is None else self.capture.as_dict(),
            "capture_note": self.capture_note or None,
            "states_seen": {side: [str(s) for s in self.states_seen(side)] for side in SIDES},
            "kernel_path": _path_dict(self.kernel_path),
            "agreement": {
                "model": not [m for m in self.mismatches() if m.against == "model"],
                "timer": not [m for m in self.mismatches() if m.against == "timer"],
                "capture": None
                if self.capture is None
                else not [
                    m for m in self.mismatches() if m.against == "capture" and m.reason is None
                ],
                "kernel_path": self.kernel_path_agrees(),
                "known_exceptions": len(self.known()),
                "unconfirmed_blind": [
                    {"step": s, "side": side, "reason": r}
                    for s, side, r in self.unconfirmed_blind()
                ],
            },
        }


def _path_dict(kp: KernelPath | None) -> dict[str, Any] | None:
    if kp is None:
        return None
    return {
        "client": [str(s) for s in kp.client] if kp.available else None,
        "server": [str(s) for s in kp.server] if kp.available else None,
        "note": kp.note or None,
        "lost_events": kp.lost,
    }


def choose_rig(scenario: LabScenario, kind: RigKind = "auto") -> RigKind:
    """Namespaces when root (isolated, captured); plain loopback otherwise, if the scenario can."""
    if kind == "loopback" and scenario.needs_root:
        raise ScenarioError(
            f"{scenario.name} needs --rig netns (root): it drops segments with nftables "
            "in network namespaces it creates"
        )
    problem = namespace_problem()
    if kind == "netns" or (kind == "auto" and problem is None):
        if problem is not None:
            raise ScenarioError(f"{scenario.name}: {problem}")
        return "netns"
    if scenario.needs_root:
        raise ScenarioError(
            f"{scenario.name} needs root: it drops segments with nftables in network "
            f"namespaces it creates ({problem})"
        )
    return "loopback"


#: what stops a lab run: Ctrl+C, and SIGTERM (``kill``, systemd, a CI timeout)
_STOPPING: Final = (signal.SIGINT, signal.SIGTERM)


class _Deferred:
    """SIGINT and SIGTERM held back while namespaces are made or removed, then delivered.

    Making or removing a rig is several ``ip``/``nft`` commands; a signal
    between two of them would leave namespaces, veth pairs and nftables rules
    behind.  While deferred, the signals are blocked for this thread
    (``pthread_sigmask``) *and* their Python handlers only note them, because
    the capture thread does not block them and Python runs handlers in the
    main thread whichever thread the kernel chose.  :meth:`release` unblocks,
    restores the handlers and raises the first signal noted again, so it
    takes effect exactly as if it had arrived just then (and once).

    Signals live in the main thread; elsewhere (a test's worker thread) this
    does nothing.
    """

    def __init__(self) -> None:
        self.noted: list[int] = []
        self._handlers: dict[int, Any] = {}
        self._mask: set[int | signal.Signals] | None = None

    def hold(self) -> _Deferred:
        if threading.current_thread() is threading.main_thread() and self._mask is None:
            self._mask = signal.pthread_sigmask(signal.SIG_BLOCK, _STOPPING)
            for sig in _STOPPING:
                self._handlers[sig] = signal.signal(sig, self._note)
        return self

    def _note(self, signum: int, frame: object) -> None:
        self.noted.append(signum)

    def release(self) -> None:
        if self._mask is None:
            return
        # signals that arrived meanwhile are delivered (to _note) as the mask drops
        signal.pthread_sigmask(signal.SIG_SETMASK, self._mask)
        self._mask = None
        for sig, handler in self._handlers.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)
        self._handlers.clear()
        if self.noted:
            signal.raise_signal(self.noted[0])


@contextlib.contextmanager
def _shielded() -> Iterator[None]:
    """Cleanup that no Ctrl+C or SIGTERM can cut short (they come after it)."""
    deferred = _Deferred().hold()
    try:
        yield
    finally:
        deferred.release()


def _wait_for(lab: Lab, expect: tuple[State, State], timeout: float) -> tuple[View, bool, float]:
    """Poll until the kernel shows ``expect`` twice, SETTLE apart; give up after ``timeout``.

    Returns the last view, whether it matched, and when (monotonic) the kernel
    was first seen in the expected states.
    """
    deadline = time.monotonic() + timeout
    view = lab.observe()
    while True:
        if view.states == expect:
            first = time.monotonic()
            time.sleep(SETTLE)
            again = lab.observe()
            if again.states == expect:
                return again, True, first
            view = again
            continue
        if time.monotonic() >= deadline:
            return view, False, time.monotonic()
        time.sleep(POLL)
        view = lab.observe()


def _sync_clock(pair: Pair, elapsed: float) -> None:
    """Set the model's clock to real elapsed time (2MSL timers fire if due)."""
    delta = elapsed - pair.now
    if delta <= 0:
        return
    due = [
        e.timer_deadline
        for e in (pair.client, pair.server)
        if e.timer_deadline is not None and e.timer_deadline <= elapsed
    ]
    if due:
        pair.wait(delta)
    else:
        pair.now = elapsed


def _model_left(pair: Pair, at: float) -> tuple[float | None, float | None]:
    out: list[float | None] = []
    for e in (pair.client, pair.server):
        out.append(None if e.timer_deadline is None else e.timer_deadline - at)
    return (out[0], out[1])


def run(
    scenario: LabScenario,
    *,
    rig: RigKind = "auto",
    capture: bool = True,
    before_step: Callable[[int, LabStep], None] | None = None,
    after_step: Callable[[Checkpoint], None] | None = None,
    on_ready: Callable[[Rig], None] | None = None,
) -> LabRun:
    """Run ``scenario`` on real sockets; returns the run with every checkpoint.

    ``capture=False`` skips the packet capture (it needs root anyway).
    ``before_step``/``after_step`` let the CLI print as it goes and wait
    for Enter between steps; ``on_ready`` is told where the run lives once
    its namespaces and rules are in place.
    """
    kind = choose_rig(scenario, rig)
    # From here until the try below, signals wait: a rig half made, or made but
    # not yet in the hands of the finally that removes it, would be left behind.
    deferred = _Deferred().hold()
    try:
        if namespace_problem() is None:
            # namespaces of lab runs killed with SIGKILL, whichever rig this run uses
            sweep_stale()
        the_rig = Rig.netns() if kind == "netns" else Rig.loopback()
    except BaseException:
        deferred.release()
        raise
    started = time.time()
    result = LabRun(scenario, the_rig.describe(), kind, started)
    lab = Lab(the_rig)
    recorder: Recorder | None = None
    witness: Witness | None = None
    pair = Pair(msl=30.0)
    t0 = time.monotonic()
    try:
        deferred.release()  # a signal that came meanwhile is raised here, inside the try
        if scenario.setup is not None:
            scenario.setup(the_rig)
        if on_ready is not None:
            on_ready(the_rig)
        if capture and the_rig.capture_at is not None:
            recorder = Recorder(the_rig.capture_at[0].ns, the_rig.capture_at[1])
            recorder.start()
        elif capture:
            result.capture_note = "not captured: AF_PACKET capture needs root and the netns rig"
        else:
            result.capture_note = "not captured (--no-capture)"
        witness = Witness.start()
        for number, step in enumerate(scenario.steps, start=1):
            if before_step is not None:
                before_step(number, step)
            step.act(lab)
            # The model plays the step once the kernel is there, at that moment, so
            # transitions that waited on a kernel timer get the kernel's timing too.
            view, reached, first = None, True, time.monotonic()
            if step.expect is not None:
                view, reached, first = _wait_for(lab, step.expect, step.timeout)
            before = len(pair.steps)
            _sync_clock(pair, first - t0)
            step.model(pair)
            result.model_steps = list(pair.steps)
            result.step_of_model.extend([number] * (len(pair.steps) - before))
            if step.expect is None or view is None:
                continue
            at = time.monotonic() - t0
            cp = Checkpoint(
                step=number,
                title=step.title,
                at=at,
                wall=view.time,
                expect=step.expect,
                reached=reached,
                kernel=view.states,
                sockets=(view.client_socket, view.server_socket),
                model=(pair.client.state, pair.server.state),
                model_timers=_model_left(pair, at),
                blind=step.blind,
            )
            if recorder is not None:
                cp.capture_time = recorder.barrier()
            result.checkpoints.append(cp)
            if after_step is not None:
                after_step(cp)
            if not reached:
                want = f"{step.expect[0]}/{step.expect[1]}"
                got = f"{view.client}/{view.server}"
                result.error = (
                    f"step {number}: the kernel did not reach client/server {want} within "
                    f"{step.timeout:g} s (it shows {got})"
                )
                break
    except (TcplensError, OSError) as exc:
        # IllegalTransition from the model is a finding too: the step it could not play.
        result.error = f"{type(exc).__name__}: {exc}" if isinstance(exc, OSError) else str(exc)
    finally:
        with _shielded():
            if witness is not None:
                # before close_all: the cleanup's closes are not part of the scenario
                try:
                    result.kernel_path = witness.finish(lab, result.checkpoints)
                except (TcplensError, OSError) as exc:
                    result.kernel_path = KernelPath(note=f"no kernel path: {exc}")
                finally:
                    witness.close()
            if recorder is not None:
                try:
                    frames = recorder.stop()
                    result.capture = CaptureResult.build(
                        frames, recorder.linktype, lab.client_addr, lab.server_addr
                    )
                    for cp in result.checkpoints:
                        t = cp.capture_time
                        cp.capture = result.capture.states_at(float("-inf") if t is None else t)
                except (ScenarioError, OSError) as exc:
                    result.capture_note = f"capture failed: {exc}"
            try:
                lab.close_all()
            finally:
                the_rig.close()
        result.duration = time.monotonic() - t0
    return result
