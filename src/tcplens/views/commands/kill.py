"""``tcplens kill``: close matching TCP connections (SOCK_DESTROY, as ``ss -K``) with advice.

The command wires things together: the selection comes from the shared
filter options, the plan and the closing from :mod:`tcplens.sources.actions`,
the advice from :mod:`tcplens.analysis.kill_advice`; this module asks for
confirmation, renders, and picks the exit code.

Safety, in the order it applies: no filter at all is refused; LISTEN
sockets are held back unless ``--state`` names LISTEN itself (not through a
group such as ``all``); the plan is listed first; on a terminal it asks,
without one it needs ``--yes``; ``--dry-run`` stops after the listing.

Exit codes: 0 everything planned was closed (or nothing matched, or a dry
run), 1 some sockets could not be closed or the answer was no, 2 refused
(usage, no filter, no terminal without ``--yes``, not root, a platform or
kernel that cannot close sockets).
"""

from __future__ import annotations

import errno
import json
import os
import sys
from collections.abc import Sequence
from typing import Any, Final

import click

from tcplens.analysis.doctor_texts import Localized
from tcplens.analysis.kill_advice import Advice, advise, no_sock_destroy
from tcplens.errors import ActionError
from tcplens.model.states import STATE_GROUPS, State
from tcplens.sources.actions import Failure, KillResult, Plan, execute, plan, require_net_admin
from tcplens.sources.kernel import KernelSettings, read_kernel
from tcplens.sources.records import Socket
from tcplens.views.options import filter_from, filter_options
from tcplens.views.sockets import Columns, render_plain, socket_to_json

__all__ = ["JSON_VERSION", "command", "explicit_listen", "kill_json"]

#: version of the ``--json`` document (docs/kill.md); bump on any incompatible change
JSON_VERSION: Final = 1

L = Localized
_TEXT: Final = {
    "plan": L("{verb} {n} TCP connection{n:|s}:", "{verb} {n} 个 TCP 连接："),
    "would": L("Would close", "将关闭"),
    "will": L("Closing", "将关闭"),
    "nothing": L("No TCP connection matches.", "没有匹配的 TCP 连接。"),
    "held": L(
        "Held back {n} LISTEN socket{n:|s}: listeners are closed only when --state listen "
        "names them.",
        "保留了 {n} 个 LISTEN socket：只有用 --state listen 明确指定时才会关闭监听 socket。",
    ),
    "confirm": L("Close {n} connection{n:|s}?", "确定关闭这 {n} 个连接吗？"),
    "declined": L("Nothing closed.", "未关闭任何连接。"),
    "closed": L("Closed {n}:", "已关闭 {n} 个："),
    "failed": L("Could not close {n}:", "{n} 个无法关闭："),
    "dry": L("Dry run: nothing closed.", "演练模式：未关闭任何连接。"),
    "gone": L("it had gone already", "它已经不存在了"),
}


class _KillCommand(click.Command):
    """Keeps the raw arguments: whether ``--state`` names LISTEN itself is in the spelling."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta["tcplens.kill.args"] = list(args)
        return super().parse_args(ctx, args)


def explicit_listen(args: Sequence[str]) -> bool:
    """True when a ``--state`` value names LISTEN by one of its own spellings.

    ``--state all`` (or any group) selects LISTEN too, but nobody who typed
    it meant to stop a server from accepting connections.
    """
    values: list[str] = []
    for i, arg in enumerate(args):
        if arg == "--":
            break
        if arg == "--state" and i + 1 < len(args):
            values.append(args[i + 1])
        elif arg.startswith("--state="):
            values.append(arg.split("=", 1)[1])
    for value in values:
        for part in value.split(","):
            word = part.strip()
            if not word or word.lower() in STATE_GROUPS:
                continue
            try:
                if State.parse(word) is State.LISTEN:
                    return True
            except ValueError:
                continue
    return False


def _pick_lang(flag: str | None) -> str:
    from tcplens.model.explain import pick_lang

    try:
        return pick_lang(flag, os.environ)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--lang") from None


def _listing(sockets: Sequence[Socket]) -> str:
    return render_plain(sockets, Columns(processes=True))


def _failure_line(failure: Failure, lang: str) -> str:
    sock = failure.socket
    why = f"{failure.reason} ({failure.code})"
    if failure.errno == errno.ENOENT:
        why += f": {_TEXT['gone'].get(lang)}"
    owner = f" {sock.pid}/{sock.process}" if sock.pid is not None else ""
    return f"  {sock.local} -> {sock.remote} {sock.state.value}{owner}: {why}"


def _advice_json(advice: Sequence[Advice], lang: str) -> list[dict[str, Any]]:
    return [
        {
            "topic": a.topic,
            "title": a.title.get(lang),
            "paragraphs": [p.get(lang) for p in a.paragraphs],
            "measured": [m.get(lang) for m in a.measured],
        }
        for a in advice
    ]


def kill_json(result: KillResult, advice: Sequence[Advice], lang: str) -> dict[str, Any]:
    """The ``--json`` document (docs/kill.md): what was planned, closed and not, and why."""
    return {
        "version": JSON_VERSION,
        "dry_run": result.dry_run,
        "lang": lang,
        "planned": [socket_to_json(s) for s in result.planned],
        "closed": [socket_to_json(s) for s in result.closed],
        "failed": [
            {
                "socket": socket_to_json(f.socket),
                "errno": f.errno,
                "error": f.code,
                "reason": f.reason,
            }
            for f in result.failed
        ],
        "held_listeners": [socket_to_json(s) for s in result.held_listeners],
        "missing": list(result.missing),
        "advice": _advice_json(advice, lang),
    }


def _print_advice(
    advice: Sequence[Advice], lang: str, *, measured_only: bool = False, err: bool = False
) -> None:
    from tcplens.views.console import Console

    console = Console(highlight=False, stderr=err)
    console.soft_wrap = not console.is_terminal
    for item in advice:
        paragraphs = item.measured if measured_only else (*item.paragraphs, *item.measured)
        if not paragraphs:
            continue
        console.print()
        console.print(item.title.get(lang), style="bold", markup=False)
        for paragraph in paragraphs:
            console.print("  " + paragraph.get(lang), markup=False)


def _settings() -> KernelSettings:
    """This machine's settings: the TIME_WAIT advice quotes its tcp_tw_reuse."""
    return read_kernel()


@click.command("kill", cls=_KillCommand)
@filter_options
@click.option("--dry-run", is_flag=True, help="Only list what would be closed.")
@click.option("-y", "--yes", is_flag=True, help="Do not ask (needed without a terminal).")
@click.option("--json", "as_json", is_flag=True, help="JSON (versioned; see docs/kill.md).")
@click.option(
    "--lang",
    type=click.Choice(["en", "zh"], case_sensitive=False),
    default=None,
    help="Language of the advice (default: from the locale, else English).",
)
@click.pass_context
def command(
    ctx: click.Context,
    /,
    dry_run: bool,
    yes: bool,
    as_json: bool,
    lang: str | None,
    **kwargs: Any,
) -> int:
    """Close matching TCP connections (root; SOCK_DESTROY, as ss -K), with advice.

    Takes the filters of ls. Lists what it would close and asks first (on a
    terminal; --yes otherwise); --dry-run only lists. No filter at all is
    refused, and LISTEN sockets are closed only when --state listen names
    them. The peer gets a reset; the owning process keeps its descriptor.
    Closing CLOSE_WAIT or TIME_WAIT rarely fixes anything: the advice says
    why and what to change instead.

    Exit codes: 0 closed (or nothing matched, or --dry-run), 1 some could not
    be closed or the answer was no, 2 refused.

    Example: tcplens kill --state close-wait --sport 8080 --dry-run
    """
    chosen = _pick_lang(lang)
    selection = filter_from(kwargs)
    args = ctx.meta.get("tcplens.kill.args", [])
    try:
        planned = plan(selection, listeners=explicit_listen(args))
    except ActionError as exc:
        if exc.cause == "refused":
            raise click.UsageError(str(exc), ctx) from None
        raise
    for note in planned.missing:
        click.echo(f"({note})", err=True)
    settings = _settings()
    if dry_run:
        return _finish_dry(planned, settings, chosen, as_json)
    if not planned.targets:
        return _finish(KillResult([], held_listeners=planned.held_listeners), [], chosen, as_json)
    require_net_admin()
    interactive = not yes
    if interactive and not sys.stdin.isatty():
        _show_plan(planned, chosen, out_err=as_json, dry_run=True)
        n = len(planned.targets)
        raise click.UsageError(
            f"not a terminal, nothing asked and nothing closed: add --yes to close "
            f"{'this connection' if n == 1 else f'these {n} connections'}",
            ctx,
        )
    if interactive:
        _show_plan(planned, chosen, out_err=as_json, dry_run=False)
        before = advise(planned.sockets, [], settings, dry_run=True)
        if not as_json:
            _print_advice(before, chosen)
        question = _fill("confirm", chosen, n=len(planned.targets))
        # the question goes where a person sees it: not into JSON or a pipe
        aside = as_json or not sys.stdout.isatty()
        if not click.confirm(question, default=False, err=aside):
            click.echo(_TEXT["declined"].get(chosen), err=aside)
            return 1
    try:
        result = execute(planned)
    except ActionError as exc:
        if exc.cause == "unsupported":
            click.echo(f"tcplens: error: {exc}", err=True)
            _print_advice([no_sock_destroy()], chosen, err=as_json)
            return 2
        raise
    advice = advise(result.closed, result.failed, settings)
    return _finish(result, advice, chosen, as_json, measured_only=interactive)


def _fill(key: str, lang: str, **values: Any) -> str:
    from tcplens.model.words import fill

    return fill(_TEXT[key].get(lang), **values)


def _show_plan(planned: Plan, lang: str, *, out_err: bool, dry_run: bool) -> None:
    verb = _TEXT["would" if dry_run else "will"].get(lang)
    click.echo(_fill("plan", lang, verb=verb, n=len(planned.targets)), err=out_err)
    click.echo(_listing(planned.sockets).rstrip("\n"), err=out_err)
    if planned.held_listeners:
        click.echo(_fill("held", lang, n=len(planned.held_listeners)), err=out_err)


def _finish_dry(planned: Plan, settings: KernelSettings, lang: str, as_json: bool) -> int:
    result = KillResult(
        planned.sockets,
        held_listeners=planned.held_listeners,
        missing=planned.missing,
        dry_run=True,
    )
    advice = advise(planned.sockets, [], settings, dry_run=True)
    if as_json:
        click.echo(json.dumps(kill_json(result, advice, lang), ensure_ascii=False))
        return 0
    if not planned.targets:
        click.echo(_TEXT["nothing"].get(lang))
        if planned.held_listeners:
            click.echo(_fill("held", lang, n=len(planned.held_listeners)))
        return 0
    _show_plan(planned, lang, out_err=False, dry_run=True)
    click.echo(_TEXT["dry"].get(lang))
    _print_advice(advice, lang)
    return 0


def _finish(
    result: KillResult,
    advice: Sequence[Advice],
    lang: str,
    as_json: bool,
    *,
    measured_only: bool = False,
) -> int:
    code = 1 if result.failed else 0
    if as_json:
        click.echo(json.dumps(kill_json(result, advice, lang), ensure_ascii=False))
        return code
    if not result.planned:
        click.echo(_TEXT["nothing"].get(lang))
        if result.held_listeners:
            click.echo(_fill("held", lang, n=len(result.held_listeners)))
        return code
    if result.closed:
        click.echo(_fill("closed", lang, n=len(result.closed)))
        click.echo(_listing(result.closed).rstrip("\n"))
    if result.failed:
        click.echo(_fill("failed", lang, n=len(result.failed)))
        for failure in result.failed:
            click.echo(_failure_line(failure, lang))
    if result.held_listeners and measured_only is False:
        click.echo(_fill("held", lang, n=len(result.held_listeners)))
    _print_advice(advice, lang, measured_only=measured_only)
    return code
