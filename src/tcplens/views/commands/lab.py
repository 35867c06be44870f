"""``tcplens lab``: a scenario on real sockets, with kernel, model and capture side by side."""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import sys
from collections.abc import Iterator
from types import FrameType
from typing import BinaryIO

import click

from tcplens.errors import InputError, Terminated
from tcplens.lab.capture import state_at
from tcplens.lab.rig import Rig
from tcplens.lab.runner import SIDES, Checkpoint, LabRun, RigKind, run
from tcplens.lab.scenarios import LAB_SCENARIOS, LabStep, get
from tcplens.model.states import State
from tcplens.model.words import plural
from tcplens.views.ladder import LadderRow, render_ladder, rows_from_steps


def _terminate(signum: int, frame: FrameType | None) -> None:
    """SIGTERM or Ctrl+C: unwind through the runner's cleanup, exiting 128 + signum.

    The first signal stops the run; later ones are ignored from here on (the
    runner defers them while it makes or removes namespaces, and they could
    only interrupt the unwinding on its way there), until the process exits.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise Terminated(signum)


@contextlib.contextmanager
def _signals() -> Iterator[None]:
    """SIGINT and SIGTERM stop a lab run through :func:`_terminate`, for this block.

    After a stop the signals stay ignored: the process is on its way out with
    the first signal's status, and a second SIGTERM must not turn that into
    death by signal before it gets there.
    """
    old = {sig: signal.signal(sig, _terminate) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        if signal.getsignal(signal.SIGTERM) is _terminate:
            for sig, handler in old.items():
                signal.signal(sig, handler)


def _cell(cp: Checkpoint, i: int) -> str:
    """``FIN_WAIT1 (persist,0.3s; send-q 8688)``: the state, ss's timer and queued bytes."""
    extra = []
    timer = cp.kernel_timer(SIDES[i])
    if timer:
        extra.append(timer)
    sock = cp.sockets[i]
    if sock is not None and sock.state is not State.LISTEN:
        if sock.recv_q:
            extra.append(f"recv-q {sock.recv_q}")
        if sock.send_q:
            extra.append(f"send-q {sock.send_q}")
    state = str(cp.kernel[i])
    return f"{state} ({'; '.join(extra)})" if extra else state


def _verdict(cp: Checkpoint, i: int) -> str:
    side = SIDES[i]
    mism = [m for m in cp.mismatches() if m.side == side]
    if not mism:
        return "agree" if cp.reached else "NOT REACHED"
    parts = []
    for m in mism:
        if m.reason:
            parts.append(f"wire cannot show it: {m.reason}")
        else:
            parts.append(f"DISAGREE with {m.against} ({m.other})")
    return "; ".join(parts)


def kernel_width(checkpoints: list[Checkpoint]) -> int:
    """Width of the kernel column: the longest cell plus two spaces."""
    cells = [len(_cell(cp, i)) for cp in checkpoints for i in range(2)]
    return max([12, *cells]) + 2


def format_checkpoint(cp: Checkpoint, *, capture: bool = True, width: int = 0) -> str:
    """One step's table: kernel (with ss-style timer and queues), model, capture, verdict."""
    kw = width or kernel_width([cp])
    head = f"  {'':7}{'kernel':{kw}}{'model':13}"
    lines = [(head + ("capture" if capture else "")).rstrip()]
    for i, side in enumerate(SIDES):
        row = f"  {side:7}{_cell(cp, i):{kw}}{cp.model[i]!s:13}"
        if capture:
            row += f"{'-' if cp.capture is None else str(cp.capture[i]):13}{_verdict(cp, i)}"
        lines.append(row.rstrip())
    return "\n".join(lines)


def _ladder(result: LabRun, width: int) -> str:
    """The captured segments as a ladder, with each checkpoint marked where it was taken."""
    assert result.capture is not None
    t0 = result.started
    events: list[tuple[float, int, LadderRow]] = []
    prev: tuple[State | None, State | None] = (None, None)
    client_h, server_h = result.capture.history("client"), result.capture.history("server")
    for seg in result.capture.segments():
        t = float(seg["time"])
        now = (state_at(client_h, t), state_at(server_h, t))
        row = LadderRow(
            time=t - t0,
            left=str(now[0]),
            right=str(now[1]),
            direction=seg["direction"],
            label=str(seg["text"]),
            left_changed=now[0] is not prev[0],
            right_changed=now[1] is not prev[1],
        )
        prev = (now[0], now[1])
        events.append((t, 0, row))
    for cp in result.checkpoints:
        at = cp.wall if cp.capture_time is None else cp.capture_time
        row = LadderRow(
            time=at - t0,
            left=str(cp.kernel[0]),
            right=str(cp.kernel[1]),
            note=f"◆ kernel after step {cp.step}",
            left_changed=True,
            right_changed=True,
        )
        events.append((at, 1, row))
    events.sort(key=lambda e: (e[0], e[1]))
    return render_ladder(
        [e[2] for e in events],
        left_title="client",
        right_title="server",
        width=width,
    )


def format_run(result: LabRun, *, width: int = 100, header: bool = True) -> str:
    """The whole report: steps with their tables, the ladder, and the verdict."""
    sc = result.scenario
    out = []
    if header:
        out.append(f"lab {sc.name}: {sc.title}")
        out.append(sc.description)
    out.append(f"rig: {result.rig}")
    out.append("")
    for cp in result.checkpoints:
        out.append(f"step {cp.step}  {cp.title}   (t={cp.at:.3f}s)")
        out.append(format_checkpoint(cp, width=kernel_width(result.checkpoints)))
    if result.capture is not None and result.capture.connection is not None:
        conn = result.capture.connection
        out.append("")
        out.append(
            f"packets on the wire ({plural(result.capture.frames, 'frame')}; Zeek conn_state "
            f"{conn.conn_state}, history {conn.history}); states from the capture, "
            "◆ rows: the kernel at each checkpoint"
        )
        out.append(_ladder(result, width).rstrip("\n"))
    else:
        if result.capture_note:
            out.append("")
            out.append(result.capture_note)
        if result.model_steps:
            out.append("the model's ladder for the same steps:")
            rows = rows_from_steps(result.model_steps, (State.CLOSED, State.CLOSED))
            out.append(render_ladder(rows, width=width).rstrip("\n"))
    last = result.checkpoints[-1].kernel if result.checkpoints else ()
    if result.rig_kind == "loopback" and State.TIME_WAIT in last:
        out.append(
            "note: this run's TIME_WAIT stays in this machine's table for up to 60 s; "
            "it is the kernel's, and removing it early needs root"
        )
    out.append("")
    kp = result.kernel_path
    if kp is not None and kp.available:
        for side in ("client", "server"):
            path = " → ".join(str(state) for state in kp.side(side))
            out.append(f"kernel path of the {side} (tracepoints): {path}")
    elif kp is not None:
        out.append(f"({kp.note})")
    out.append(summary_line(result))
    if result.error:
        out.append(f"error: {result.error}")
    return "\n".join(out) + "\n"


def summary_line(result: LabRun) -> str:
    n = len(result.checkpoints)
    model_bad = sum(1 for m in result.mismatches() if m.against == "model")
    timer_bad = sum(1 for m in result.mismatches() if m.against == "timer")
    disagree = plural(model_bad, "disagreement")
    text = f"kernel = model: {'yes' if not model_bad else f'NO ({disagree})'}"
    text += f" at {plural(n, 'checkpoint')}"
    if result.capture is not None:
        unexplained = [m for m in result.unexpected() if m.against == "capture"]
        known = len(result.known())
        text += "; kernel = capture: " + ("yes" if not unexplained else "NO")
        if known:
            text += f" except {plural(known, 'known blind spot')} of the wire"
        if result.unconfirmed_blind():
            text += f" ({len(result.unconfirmed_blind())} declared blind spots agreed)"
    if timer_bad:
        text += f"; TIME_WAIT timer: {plural(timer_bad, 'disagreement')}"
    agrees = result.kernel_path_agrees()
    if agrees is not None:
        text += "; kernel path (tracepoints) = model: " + ("yes" if agrees else "NO")
    return ("OK  " if result.ok else "FAIL  ") + text


@click.command(name="lab")
@click.argument("name", required=False)
@click.option(
    "--list", "list_", is_flag=True, help="List the scenarios (and which need --rig netns); --json."
)
@click.option(
    "--all",
    "all_",
    is_flag=True,
    help="Run every scenario this user can and print the summary table.",
)
@click.option("--step", is_flag=True, help="Wait for Enter before each step (for teaching).")
@click.option("--json", "as_json", is_flag=True, help="Print the run as JSON (schema version 1).")
@click.option(
    "--rig",
    type=click.Choice(["auto", "loopback", "netns"]),
    default="auto",
    show_default=True,
    help="netns: fresh namespaces joined by veth (root); loopback: 127.0.0.1 here.",
)
@click.option("--no-capture", is_flag=True, help="Do not capture packets.")
@click.option("--pcap", type=click.Path(dir_okay=False), help="Save the run's capture here.")
def command(
    name: str | None,
    list_: bool,
    all_: bool,
    step: bool,
    as_json: bool,
    rig: str,
    no_capture: bool,
    pcap: str | None,
) -> int:
    """Run a TCP scenario on real sockets in this machine's kernel.

    At each step both endpoints' states are read from the kernel through the
    live netlink source (with ss-style timers), played on the model, and
    reconstructed from the packets captured on the wire; the three must agree,
    except where the wire cannot show the state (a FIN queued behind unsent
    data, a segment dropped after the capture point, a silent listener),
    which is said at that step.  As root each run gets its own network
    namespaces and capture; without root the loopback scenarios run on
    127.0.0.1 without capture.  Exit status 1 when anything disagrees.

    \b
    Example: tcplens lab server-killed      (as root: namespaces and capture)
    Example: tcplens lab --list
    Example: tcplens lab closing --step
    Example: tcplens lab --all
    """
    if list_:
        if name is not None or all_ or step or pcap is not None or no_capture:
            raise click.UsageError("--list runs nothing: no NAME, --all, --step, --pcap")
        _list(as_json=as_json)
        return 0
    if all_:
        if name is not None or step or pcap is not None:
            raise click.UsageError("--all runs every scenario: no NAME, --step or --pcap")
        return _run_all(_rig(rig), capture=not no_capture, as_json=as_json)
    if name is None:
        raise click.UsageError("give a scenario NAME, --list or --all")
    if step and as_json:
        raise click.UsageError("--step pauses a printed run; choose one of --step / --json")
    if no_capture and pcap is not None:
        raise click.UsageError("--pcap saves the capture; choose one of --pcap / --no-capture")
    scenario = get(name)
    width = shutil.get_terminal_size((100, 24)).columns if sys.stdout.isatty() else 100

    def before(number: int, st: LabStep) -> None:
        click.echo(f"step {number}  {st.title}")
        click.prompt("  press Enter to run it", default="", show_default=False)

    def after(cp: Checkpoint) -> None:
        click.echo(format_checkpoint(cp, capture=False))

    def ready(where: Rig) -> None:
        click.echo(f"rig: {where.describe()}")
        for ns in where.namespaces:
            click.echo(f"  while paused, look for yourself: ip netns exec {ns.name} ss -tanoi")

    if step and not as_json:
        click.echo(f"lab {scenario.name}: {scenario.title}")
        click.echo(scenario.description)
    # opened before the run, so a bad --pcap path fails now, not after the scenario
    sink = _open_output(pcap) if pcap is not None else None
    try:
        with _signals():
            result = run(
                scenario,
                rig=_rig(rig),
                capture=not no_capture,
                before_step=before if step and not as_json else None,
                after_step=after if step and not as_json else None,
                on_ready=ready if step and not as_json else None,
            )
        if sink is not None and result.capture is not None:
            try:
                sink.write(result.capture.pcap)
                sink.flush()
            except OSError as exc:
                raise InputError(f"cannot write: {exc.strerror}", path=pcap) from None
    finally:
        if sink is not None:
            with contextlib.suppress(OSError):
                sink.close()
    if as_json:
        click.echo(json.dumps(result.as_dict(), indent=2, ensure_ascii=False))
    else:
        if step:
            click.echo("\nthe whole run, with the capture:")
        click.echo(format_run(result, width=width, header=not step), nl=False)
    return 0 if result.ok else 1


def _list(*, as_json: bool) -> None:
    if as_json:
        doc = {
            "version": 1,
            "scenarios": [
                {"name": sc.name, "title": sc.title, "rig": sc.rig, "needs_root": sc.needs_root}
                for sc in LAB_SCENARIOS.values()
            ],
        }
        click.echo(json.dumps(doc, indent=2, ensure_ascii=False))
        return
    width = max(len(n) for n in LAB_SCENARIOS)
    for sc in LAB_SCENARIOS.values():
        root = "  (needs --rig netns: root)" if sc.needs_root else ""
        click.echo(f"{sc.name.ljust(width)}  {sc.title}{root}")


def _open_output(path: str) -> BinaryIO:
    try:
        return open(path, "wb")
    except OSError as exc:
        raise InputError(f"cannot write: {exc.strerror}", path=path) from None


def _run_all(rig: RigKind, *, capture: bool, as_json: bool) -> int:
    """Every scenario in turn; the ones this user cannot run are named and skipped."""
    from tcplens.lab.netns import can_create_namespaces
    from tcplens.lab.report import table

    results: list[LabRun] = []
    skipped: list[str] = []
    with _signals():
        for sc in LAB_SCENARIOS.values():
            if sc.needs_root and (rig == "loopback" or not can_create_namespaces()):
                skipped.append(sc.name)
                continue
            result = run(sc, rig=rig, capture=capture)
            results.append(result)
            if not as_json:
                click.echo(f"{sc.name}: {'ok' if result.ok else 'FAIL'}", err=True)
    if as_json:
        doc = {
            "version": 1,
            "runs": [r.as_dict() for r in results],
            "skipped": [{"scenario": n, "reason": "needs root"} for n in skipped],
        }
        click.echo(json.dumps(doc, indent=2, ensure_ascii=False))
    else:
        click.echo(table(results, "tcplens lab --all"), nl=False)
        if skipped:
            click.echo(f"skipped (need root for namespaces and nftables): {', '.join(skipped)}")
    return 0 if all(r.ok for r in results) else 1


def _rig(text: str) -> RigKind:
    if text == "loopback":
        return "loopback"
    if text == "netns":
        return "netns"
    return "auto"
