"""The ``tcplens`` command: dispatch to one module per verb, choose exit codes.

Verbs are registered in :data:`COMMANDS` with a one-line summary and one
example, so ``tcplens --help`` lists every verb without importing them all
(the netlink, capture and exporter modules are only imported when used).
Each verb module exposes a click command named ``command``; it computes
nothing itself, it calls sources/analysis and renders through views.

Exit codes (documented in the README): 0 success, 1 findings or a partial
result (doctor findings, truncated capture), 2 usage or input error.
"""

from __future__ import annotations

import importlib
import sys
from dataclasses import dataclass
from typing import Any, NoReturn

import click

from tcplens.cli import discard_stdout, prepare_process
from tcplens.errors import TcplensError, Terminated

__all__ = ["COMMANDS", "main"]


@dataclass(frozen=True)
class Verb:
    module: str
    summary: str
    example: str


#: name -> (module with a click ``command``, summary, example); order is help order.
COMMANDS: dict[str, Verb] = {
    "status": Verb(
        "tcplens.views.commands.status",
        "This machine at a glance: sockets per state, busiest ports and processes.",
        "tcplens status",
    ),
    "ls": Verb(
        "tcplens.views.commands.ls",
        "List sockets like ss/netstat, filtered; table, --json, --csv or --netstat.",
        "tcplens ls --state close-wait",
    ),
    "doctor": Verb(
        "tcplens.views.commands.doctor",
        "Findings with evidence and advice; exit 1 when something needs attention.",
        "tcplens doctor --from netstat.txt --lang zh",
    ),
    "explain": Verb(
        "tcplens.views.commands.explain",
        "What a TCP state means, how one gets there, and what to do.",
        "tcplens explain close-wait --lang zh",
    ),
    "diagram": Verb(
        "tcplens.views.commands.diagram",
        "The TCP state diagram, generated from the transition table.",
        "tcplens diagram --format dot | dot -Tsvg > tcp.svg",
    ),
    "simulate": Verb(
        "tcplens.views.commands.simulate",
        "Play a scenario through two model endpoints as a ladder chart.",
        "tcplens simulate simultaneous-close",
    ),
    "lab": Verb(
        "tcplens.views.commands.lab",
        "Run a scenario on real sockets: kernel, model and capture must agree.",
        "tcplens lab server-killed  (root for namespace scenarios)",
    ),
    "watch": Verb(
        "tcplens.views.commands.watch",
        "Live socket table: new green, closed red, changed yellow; one line per change piped.",
        "tcplens watch --port 443 --interval 0.5",
    ),
    "trace": Verb(
        "tcplens.views.commands.trace",
        "State transitions as they happen, checked against the model; time in each state.",
        "tcplens trace --port 8080 --duration 30 --json",
    ),
    "kill": Verb(
        "tcplens.views.commands.kill",
        "Close matching TCP connections (SOCK_DESTROY, as ss -K) safely, with advice.",
        "tcplens kill --state close-wait --sport 8080 --dry-run  (root)",
    ),
    "pcap": Verb(
        "tcplens.views.commands.pcap",
        "Reconstruct each connection's states from a pcap/pcapng; Zeek conn.log.",
        "tcplens pcap capture.pcapng --sort duration",
    ),
    "capture": Verb(
        "tcplens.views.commands.capture",
        "Live AF_PACKET capture (root) through the same tracker; optional -w out.pcap.",
        "tcplens capture -i lo --duration 10 -w out.pcap  (root)",
    ),
    "report": Verb(
        "tcplens.views.commands.report",
        "One self-contained HTML page: a capture's connections, a dump or this machine.",
        "tcplens report capture.pcapng -o report.html",
    ),
    "exporter": Verb(
        "tcplens.views.commands.exporter",
        "Prometheus /metrics: sockets by state, port and process, queues, findings.",
        "tcplens exporter --listen 127.0.0.1:9977",
    ),
}


class ReaderGone(Exception):
    """The process reading our stdout went away (``tcplens ls | head -1``).

    Not an ``OSError``: click's own main turns ``EPIPE`` into a silent exit 1,
    and a closed pipe is not an error, so it has to pass click untouched.
    """


class LazyGroup(click.Group):
    """A group whose subcommands are imported on first use."""

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        # `tcplens --help | head -1`: the help is written while parsing
        try:
            return super().make_context(info_name, args, parent, **extra)
        except BrokenPipeError:
            raise ReaderGone from None

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except BrokenPipeError:
            raise ReaderGone from None

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        verb = COMMANDS.get(cmd_name)
        if verb is None:
            return None
        module = importlib.import_module(verb.module)
        command: click.Command = module.command
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, f"{verb.summary}  e.g. {verb.example}") for name, verb in COMMANDS.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@click.group(
    cls=LazyGroup,
    invoke_without_command=True,
    context_settings=CONTEXT,
    epilog="Exit codes: 0 ok, 1 findings or partial input, 2 usage or input error.",
)
@click.version_option(package_name="tcplens", prog_name="tcplens")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Make TCP connection states visible and understandable.

    With no command, shows this machine at a glance.

    Example: tcplens explain TIME_WAIT
    """
    if ctx.invoked_subcommand is None:
        default = "status" if "status" in COMMANDS else "explain"
        ctx.invoke(LazyGroup.get_command(cli, ctx, default) or cli)


def main(argv: list[str] | None = None) -> NoReturn:
    """Console entry point: turn every tcplens error into one line and an exit code."""
    prepare_process()  # streams and Ctrl+C, as for the bare status (tcplens.cli)
    try:
        result = cli.main(args=argv, prog_name="tcplens", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        click.echo(_one_line(exc), err=True)
        sys.exit(2)
    except click.Abort as exc:
        click.echo("Aborted.", err=True)
        # a prompt turns any KeyboardInterrupt into Abort; keep a SIGTERM's status
        context = exc.__context__
        sys.exit(128 + context.signum if isinstance(context, Terminated) else 130)
    except TcplensError as exc:
        click.echo(f"tcplens: error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except (ReaderGone, BrokenPipeError):
        # `tcplens ls | head`: the reader went away; that is not an error.
        discard_stdout()
        sys.exit(0)
    except Terminated as exc:
        sys.exit(128 + exc.signum)
    except KeyboardInterrupt:
        sys.exit(130)
    try:
        # Flush here, not at interpreter exit, where a closed pipe would print
        # "Exception ignored ... BrokenPipeError" and exit 120.
        sys.stdout.flush()
    except BrokenPipeError:
        discard_stdout()
    # Verbs return an int exit code (doctor: 1 when it has findings) or None.
    sys.exit(result if isinstance(result, int) else 0)


def _one_line(exc: click.ClickException) -> str:
    """The README promises one line per error; click's own ``show`` prints four.

    Usage, "Try --help" and a blank line bury the one line that says what is
    wrong; the command path and the help hint fit on that line instead.
    """
    message = " ".join(exc.format_message().split()).rstrip(".")
    ctx = exc.ctx if isinstance(exc, click.UsageError) else None
    if ctx is None:
        return f"tcplens: error: {message}"
    return f"{ctx.command_path}: error: {message} (see '{ctx.command_path} --help')"
