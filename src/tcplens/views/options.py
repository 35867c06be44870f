"""Click option groups every verb shares, defined once (like sqlite-utils ``output_options``).

Each group is a decorator that adds its options to a command, plus a helper
that turns the parsed values back into what sources and analysis take:

* :func:`source_options` -> ``--source``, ``--from``, ``--format``, ``--strict``,
  ``--proc-root``; :func:`snapshot_from` calls ``take_snapshot`` with them.
* :func:`output_options` -> ``--json``, ``--csv``, ``--netstat``;
  :func:`output_format` picks one.
* :func:`filter_options` -> ``--state`` … ``--process``; :func:`filter_from`
  builds a :class:`~tcplens.analysis.filters.SocketFilter`.

The helpers pop their keys from the command's ``**kwargs`` so a command can
pass the rest on without knowing every option.
"""

from __future__ import annotations

import functools
import ipaddress
import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal, TypeVar, cast

import click

from tcplens.analysis.filters import SocketFilter
from tcplens.errors import UnknownStateError
from tcplens.model.states import STATE_GROUPS, State, parse_state_filter
from tcplens.sources.records import Snapshot

if TYPE_CHECKING:
    from tcplens.sources.select import ColumnListing

__all__ = [
    "FiniteFloat",
    "check_source_options",
    "filter_from",
    "filter_options",
    "live_source_options",
    "output_format",
    "output_options",
    "snapshot_from",
    "source_options",
    "tracker_options",
    "valid_states_text",
]

F = TypeVar("F", bound=Callable[..., Any])

SOURCE_CHOICES = ("auto", "netlink", "procfs", "psutil")


class FiniteFloat(click.FloatRange):
    """A ``FloatRange`` that also refuses NaN, which passes every ``<``/``>`` bound check."""

    name = "float"  # metavar FLOAT, and "is not a valid float" like type=float

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{number} is not a finite number", param, ctx)
        return number


def _apply(fn: F, decorators: Sequence[Callable[[Any], Any]]) -> F:
    for decorator in reversed(decorators):
        fn = decorator(fn)
    return fn


def tracker_options(*, idle: bool) -> Callable[[F], F]:
    """Timing of the capture tracker, shared by ``pcap`` and ``capture``.

    ``idle`` adds ``--idle-timeout``: a file has capture time to measure
    idleness by; a live capture reports connections as they finish.
    """
    timing = [
        click.option(
            "--msl",
            type=FiniteFloat(min=0, min_open=True),
            default=30.0,
            show_default=True,
            help="MSL for TIME_WAIT (TIME_WAIT lasts 2MSL).",
        )
    ]
    if idle:
        timing.append(
            click.option(
                "--idle-timeout",
                type=FiniteFloat(min=0),
                default=300.0,
                show_default=True,
                help="Finish an idle open connection after this many seconds of capture time.",
            )
        )
    timing.append(
        click.option(
            "--close-timeout",
            type=FiniteFloat(min=0),
            default=5.0,
            show_default=True,
            help="Finish (report) a closed, reset or unanswered connection after this "
            "many idle seconds.",
        )
    )

    def decorate(fn: F) -> F:
        return _apply(fn, timing)

    return decorate


_LIVE_SOURCE = [
    click.option(
        "--source",
        type=click.Choice(SOURCE_CHOICES, case_sensitive=False),
        default=None,
        help="Live source (default: $TCPLENS_SOURCE, else auto: netlink, "
        "then /proc/net; psutil off Linux).",
    ),
    click.option(
        "--proc-root",
        default="/proc",
        show_default=True,
        type=click.Path(file_okay=False),
        help="Read /proc from here (recorded files); implies --source procfs.",
    ),
]

_SAVED_TEXT = [
    click.option(
        "--from",
        "from_file",
        metavar="FILE",
        default=None,
        help="Read saved netstat, ss or /proc/net text instead of this machine ('-' = stdin).",
    ),
    click.option(
        "--format",
        "fmt",
        default=None,
        metavar="NAME",
        help="Format of --from FILE (default: detect).",
    ),
    click.option(
        "--strict",
        is_flag=True,
        help="With --from: fail on the first line that cannot be parsed.",
    ),
]


def _given(name: str) -> bool:
    """True when the user typed the option (a default or the environment is no choice)."""
    ctx = click.get_current_context(silent=True)
    if ctx is None:
        return False
    return ctx.get_parameter_source(name) is click.core.ParameterSource.COMMANDLINE


def check_source_options(kwargs: dict[str, Any]) -> None:
    """Refuse option pairs where one would be silently ignored.

    ``--format``/``--strict`` only describe ``--from FILE``; ``--source`` and
    ``--proc-root`` only choose a live source, which ``--from`` replaces.
    """
    saved = kwargs.get("from_file") is not None
    if not saved:
        for flag, key in (("--format", "fmt"), ("--strict", "strict")):
            if key in kwargs and _given(key):
                raise click.UsageError(f"{flag} describes --from FILE; give --from or drop {flag}")
        return
    for flag, key in (("--source", "source"), ("--proc-root", "proc_root")):
        if key in kwargs and _given(key):
            raise click.UsageError(
                f"{flag} chooses a live source, --from FILE reads saved text; give one of them"
            )


def _checked(fn: F) -> F:
    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        check_source_options(kwargs)
        return fn(*args, **kwargs)

    return cast("F", run)


def source_options(fn: F) -> F:
    """Where sockets come from: a live source or saved text (``--from``)."""
    return _apply(_checked(fn), [*_LIVE_SOURCE[:1], *_SAVED_TEXT, *_LIVE_SOURCE[1:]])


def live_source_options(fn: F) -> F:
    """A live source only: for verbs that follow changes (a saved file is one moment)."""
    return _apply(fn, _LIVE_SOURCE)


def snapshot_from(
    kwargs: dict[str, Any],
    *,
    processes: bool = True,
    info: bool = False,
    cmdline: bool = False,
    narrow: SocketFilter | None = None,
) -> Snapshot:
    """Pop the source options from ``kwargs`` and take the snapshot they describe.

    ``narrow`` lets a live source skip sockets the filter would drop anyway
    (the kernel filters state, protocol and family for netlink); the caller
    still applies the filter.
    """
    snap = listing_from(kwargs, processes=processes, info=info, cmdline=cmdline, narrow=narrow)
    return cast(Snapshot, snap)  # records were asked for


def listing_from(
    kwargs: dict[str, Any],
    *,
    kind: Literal["records", "columns"] = "records",
    processes: bool | Literal["sample"] = True,
    info: bool = False,
    cmdline: bool = False,
    narrow: SocketFilter | None = None,
    fallback: bool = True,
) -> Snapshot | ColumnListing:
    """Pop the source options from ``kwargs`` and open the listing they describe.

    As :func:`snapshot_from`, in the ``kind`` asked for when the source can
    give it (:func:`tcplens.sources.select.open_listing`): columns, or the
    records instead.
    """
    from tcplens.sources.select import open_listing

    hints: dict[str, Any] = {}
    if narrow is not None:
        states = narrow.states
        if narrow.listening and not states:
            states = frozenset({State.LISTEN, State.CLOSED})
        hints = {
            "states": states or None,
            "protos": narrow.protos or None,
            "families": narrow.families or None,
            "sports": narrow.sports or None,
            "dports": narrow.dports or None,
            "ports": narrow.ports or None,
        }

    return open_listing(
        kind,
        kwargs.pop("source", None),
        from_file=kwargs.pop("from_file", None),
        fmt=kwargs.pop("fmt", None),
        strict=kwargs.pop("strict", False),
        processes=processes,
        info=info,
        cmdline=cmdline,
        proc_root=kwargs.pop("proc_root", "/proc"),
        fallback=fallback,
        **hints,
    )


def output_options(fn: F) -> F:
    """Machine-readable output instead of the table."""
    return _apply(
        fn,
        [
            click.option(
                "--json", "as_json", is_flag=True, help="JSON (versioned; see docs/json.md)."
            ),
            click.option("--csv", "as_csv", is_flag=True, help="CSV with a header row."),
            click.option(
                "--netstat",
                "as_netstat",
                is_flag=True,
                help="net-tools `netstat -tuanpW` columns, for existing scripts.",
            ),
        ],
    )


def output_format(kwargs: dict[str, Any]) -> str:
    """Pop the output flags; return ``table``, ``json``, ``csv`` or ``netstat``."""
    chosen = [
        name
        for name, key in (("json", "as_json"), ("csv", "as_csv"), ("netstat", "as_netstat"))
        if kwargs.pop(key, False)
    ]
    if len(chosen) > 1:
        raise click.UsageError(f"choose one of --{' / --'.join(chosen)}")
    return chosen[0] if chosen else "table"


def valid_states_text() -> str:
    states = ", ".join(s.value for s in State if s is not State.UNKNOWN)
    groups = ", ".join(STATE_GROUPS)
    return f"valid states: {states} (any spelling: ss, RFC, Windows, BSD); groups: {groups}"


def _states(
    ctx: click.Context, param: click.Parameter, values: tuple[str, ...]
) -> frozenset[State]:
    chosen: set[State] = set()
    for value in values:
        if not value.replace(",", "").strip():
            # an empty filter would silently mean "every state"
            raise click.BadParameter(f"{value!r} names no state; {valid_states_text()}")
        for part in value.split(","):
            if not part.strip():
                continue
            try:
                chosen |= parse_state_filter(part)
            except UnknownStateError as exc:
                raise click.BadParameter(f"{exc}; {valid_states_text()}") from None
    return frozenset(chosen)


def _networks(
    ctx: click.Context, param: click.Parameter, values: tuple[str, ...]
) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    out = []
    for value in values:
        try:
            out.append(ipaddress.ip_network(value.strip("[]"), strict=False))
        except ValueError:
            raise click.BadParameter(f"{value!r} is not an address or CIDR network") from None
    return tuple(out)


_PORT = click.IntRange(0, 65535)


def filter_options(fn: F) -> F:
    """Which sockets: state, protocol, family, ports, addresses, process."""
    return _apply(
        fn,
        [
            click.option(
                "--state",
                "states",
                multiple=True,
                callback=_states,
                metavar="STATE",
                help="State in any spelling (close-wait, CLOSE_WAIT, 08) or an ss group "
                "(connected, synchronized, bucket, big, all); repeatable, comma-separated.",
            ),
            click.option("-t", "--tcp", is_flag=True, help="TCP sockets."),
            click.option("-u", "--udp", is_flag=True, help="UDP sockets."),
            click.option(
                "-l", "--listening", is_flag=True, help="Listening TCP and unconnected UDP only."
            ),
            click.option("-4", "ipv4", is_flag=True, help="IPv4 only."),
            click.option("-6", "ipv6", is_flag=True, help="IPv6 only."),
            click.option("--sport", multiple=True, type=_PORT, help="Local port (repeatable)."),
            click.option("--dport", multiple=True, type=_PORT, help="Peer port (repeatable)."),
            click.option("--port", multiple=True, type=_PORT, help="Local or peer port."),
            click.option(
                "--src",
                multiple=True,
                callback=_networks,
                metavar="CIDR",
                help="Local address or network.",
            ),
            click.option(
                "--dst",
                multiple=True,
                callback=_networks,
                metavar="CIDR",
                help="Peer address or network.",
            ),
            click.option(
                "--pid",
                "pids",
                multiple=True,
                type=click.IntRange(min=0),
                help="Owning process id.",
            ),
            click.option(
                "--process",
                default=None,
                metavar="NAME",
                help="Process name: substring, or a glob like 'ngin*'.",
            ),
        ],
    )


def filter_from(kwargs: dict[str, Any]) -> SocketFilter:
    """Pop the filter options from ``kwargs`` into a :class:`SocketFilter`."""
    protos = {p for p, flag in (("tcp", "tcp"), ("udp", "udp")) if kwargs.pop(flag, False)}
    families = {f for f, flag in ((4, "ipv4"), (6, "ipv6")) if kwargs.pop(flag, False)}
    return SocketFilter(
        states=kwargs.pop("states", frozenset()),
        protos=frozenset(protos),
        families=frozenset(families),
        listening=kwargs.pop("listening", False),
        sports=frozenset(kwargs.pop("sport", ())),
        dports=frozenset(kwargs.pop("dport", ())),
        ports=frozenset(kwargs.pop("port", ())),
        src=kwargs.pop("src", ()),
        dst=kwargs.pop("dst", ()),
        pids=frozenset(kwargs.pop("pids", ())),
        process=kwargs.pop("process", None),
    )
