"""``tcplens simulate``: a scenario played through two model endpoints, as a ladder."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import click

from tcplens.errors import InputError, ScenarioError
from tcplens.model.scenarios import SCENARIOS, Pair, run_scenario, run_script
from tcplens.model.states import State
from tcplens.views.ladder import render_ladder, rows_from_steps


def _play(name: str | None, script: str | None) -> Pair:
    if script is not None:
        try:
            raw = sys.stdin.buffer.read() if script == "-" else Path(script).read_bytes()
            text = raw.decode("utf-8-sig")  # Notepad saves a BOM
        except OSError as exc:
            raise InputError(f"cannot read script: {exc.strerror}", path=script) from None
        except UnicodeDecodeError as exc:
            raise InputError("not UTF-8 text", path=script, offset=exc.start) from None
        try:
            return run_script(text)
        except ScenarioError as exc:
            raise ScenarioError(f"{script}: {exc}") from None
    if name is None:
        raise click.UsageError("give a scenario NAME, --list or --script FILE")
    return run_scenario(name)


@click.command(name="simulate")
@click.argument("name", required=False)
@click.option("--list", "list_", is_flag=True, help="List the named scenarios.")
@click.option(
    "--script",
    type=str,
    metavar="FILE",
    help="Run a scenario script (text or JSON; '-' for stdin). See 'Script language' below.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json", "svg"]),
    default="text",
    show_default=True,
)
@click.option("--json", "as_json", is_flag=True, help="Same as --format json.")
def command(name: str | None, list_: bool, script: str | None, fmt: str, as_json: bool) -> None:
    """Play a scenario through a model client and server and draw the ladder chart.

    Each arrow is a segment with its flags and relative seq/ack; each side's
    state is shown where it changes.  Scenarios: three-way handshake, client or
    server closing first, simultaneous open and close, half-close, RST abort,
    refused connection, lost final ACK, TIME_WAIT expiry and more (--list).

    \b
    Script language (one action per line, # comments):
      msl 30                 client connect | listen | close | shutdown | abort
      client send 100        deliver [to server|client] [N] | deliver all
      drop to client         delay to server        wait 60
      server timeout retransmit|give-up|keepalive   expect client TIME_WAIT

    \b
    shutdown is shutdown(SHUT_WR): a FIN, but the side keeps reading (half-close);
    after close() new data from the peer is answered with RST (Linux, RFC 1122).
    retransmit re-sends what is unacknowledged (SYN, SYN+ACK, data, FIN);
    give-up ends a side whose retransmissions go unanswered (tcp_retries2,
    TCP_USER_TIMEOUT); keepalive ends an idle one whose probes do (RST).
    wait fires each due 2MSL timer at the moment it is due.

    \b
    Example: tcplens simulate simultaneous-close
    Example: tcplens simulate --list
    Example: tcplens simulate --script my.scn --format svg > ladder.svg
    """
    if as_json:
        fmt = "json"
    if list_:
        width = max(len(n) for n in SCENARIOS)
        for scenario in SCENARIOS.values():
            click.echo(f"{scenario.name.ljust(width)}  {scenario.title}")
        return
    pair = _play(name, script)
    rows = rows_from_steps(pair.steps, (State.CLOSED, State.CLOSED))
    if fmt == "json":
        doc = {
            "version": 1,
            "scenario": name if script is None else script,
            "msl": pair.msl,
            "steps": [step.as_dict() for step in pair.steps],
            "final": {"client": str(pair.client.state), "server": str(pair.server.state)},
        }
        click.echo(json.dumps(doc, indent=2, ensure_ascii=False))
    elif fmt == "svg":
        from tcplens.views.ladder_svg import ladder_svg

        title = script or ""
        if name is not None and name in SCENARIOS and script is None:
            title = SCENARIOS[name].title
        click.echo(ladder_svg(rows, title=title), nl=False)
    else:
        if name is not None and name in SCENARIOS and script is None:
            click.echo(SCENARIOS[name].title + "\n")
        width = shutil.get_terminal_size((100, 24)).columns if sys.stdout.isatty() else 100
        click.echo(render_ladder(rows, width=width), nl=False)
