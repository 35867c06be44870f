"""Two model endpoints joined by a wire that can delay, reorder and drop segments.

:class:`Pair` is the harness the tests, ``tcplens simulate`` and the lab's
predictions share: a client and a server :class:`~tcplens.model.machine.Endpoint`
and the segments in flight between them.  Every action returns a
:class:`Step` recording what happened and both states afterwards, which is
exactly what a ladder chart draws.

Named scenarios are scripts in the small text language below, kept as data
here, so ``tcplens simulate NAME`` and ``tcplens simulate --script FILE``
run the same interpreter.

Script language (one action per line, ``#`` starts a comment)::

    msl 30                   set MSL in seconds (before the first action)
    server listen            application call: listen, connect, close, shutdown, abort
    client connect
    client shutdown          shutdown(SHUT_WR): send FIN, keep reading (half-close);
                             after close() new data is answered with RST instead
    client send 100          send 100 bytes
    deliver                  deliver the oldest segment in flight
    deliver to server        deliver the oldest segment heading to the server
    deliver all              deliver everything, in order, until the wire is quiet
    drop to client           lose the oldest segment heading to the client
    delay to server          move it behind the others (reordering)
    server timeout retransmit    a timer fires: retransmit (SYN, SYN+ACK, data or FIN),
                             give-up (retries exhausted), keepalive (probes
                             unanswered); 2MSL: use wait
    wait 60                  advance the clock; due 2MSL timers fire when they are due
    expect client TIME_WAIT  stop with an error unless the state matches

JSON scripts are ``{"msl": 30, "steps": ["server listen", ...]}`` with the
same lines as strings.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final, Literal

from tcplens.errors import IllegalTransition, ScenarioError, UnknownStateError
from tcplens.model.machine import Endpoint, Event, Segment
from tcplens.model.states import State

__all__ = [
    "SCENARIOS",
    "InFlight",
    "Pair",
    "Scenario",
    "Side",
    "Step",
    "load_script",
    "run_scenario",
    "run_script",
]

Side = Literal["client", "server"]
SIDES: Final[tuple[Side, Side]] = ("client", "server")
#: Bound on deliveries in one ``deliver all`` so a ping-pong bug cannot loop forever.
MAX_FLUSH: Final = 1000


@dataclass(frozen=True, slots=True)
class InFlight:
    """A segment on the wire: who sent it, when, and a number for the ladder."""

    number: int
    src: Side
    segment: Segment
    sent_at: float

    @property
    def dst(self) -> Side:
        return "server" if self.src == "client" else "client"


@dataclass(frozen=True, slots=True)
class Step:
    """What one action did and both endpoints' states after it."""

    time: float
    kind: Literal["call", "deliver", "drop", "delay", "timer", "wait"]
    side: Side | None
    action: str
    client: State
    server: State
    segment: Segment | None = None
    direction: Literal["->", "<-"] | None = None
    sent_at: float | None = None
    sent: tuple[tuple[Side, Segment], ...] = ()
    changed: tuple[Side, ...] = ()
    note: str = ""

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready form (the ``simulate --json`` contract)."""
        return {
            "time": self.time,
            "kind": self.kind,
            "side": self.side,
            "action": self.action,
            "segment": None if self.segment is None else str(self.segment),
            "direction": self.direction,
            "sent": [{"by": side, "segment": str(seg)} for side, seg in self.sent],
            "client": str(self.client),
            "server": str(self.server),
            "changed": list(self.changed),
            "note": self.note,
        }


def _in_flight(
    kind: str, flight: InFlight, suffix: str, note: str, **extra: object
) -> dict[str, object]:
    """The fields of a step that acts on a segment in flight (deliver, drop, delay)."""
    return {
        "kind": kind,
        "side": flight.dst,
        "action": f"{flight.src} -> {flight.dst}: {flight.segment}{suffix}",
        "segment": flight.segment,
        "direction": "->" if flight.src == "client" else "<-",
        **extra,
        "note": note,
    }


class Pair:
    """A client and a server endpoint and the wire between them."""

    def __init__(self, *, msl: float = 30.0, client_isn: int = 0, server_isn: int = 0) -> None:
        self.msl = msl
        self.client = Endpoint(name="client", msl=msl, isn=client_isn)
        self.server = Endpoint(name="server", msl=msl, isn=server_isn)
        self.wire: list[InFlight] = []
        self.steps: list[Step] = []
        self.now = 0.0
        self._numbers = 0

    def endpoint(self, side: Side) -> Endpoint:
        return self.client if side == "client" else self.server

    def _put(self, src: Side, segments: Iterable[Segment]) -> tuple[tuple[Side, Segment], ...]:
        sent = []
        for seg in segments:
            self._numbers += 1
            self.wire.append(InFlight(self._numbers, src, seg, self.now))
            sent.append((src, seg))
        return tuple(sent)

    def _record(self, step_kwargs: dict[str, object], before: tuple[State, State]) -> Step:
        changed = tuple(
            side
            for side, old in zip(SIDES, before, strict=True)
            if self.endpoint(side).state is not old
        )
        step = Step(
            time=self.now,
            client=self.client.state,
            server=self.server.state,
            changed=changed,
            **step_kwargs,  # type: ignore[arg-type]
        )
        self.steps.append(step)
        return step

    def _states(self) -> tuple[State, State]:
        return (self.client.state, self.server.state)

    def call(self, side: Side, event: Event, *, size: int = 0) -> Step:
        """An application call or a timer on one side."""
        before = self._states()
        endpoint = self.endpoint(side)
        endpoint.trail = []
        try:
            out = endpoint.handle(event, self.now, size=size)
            note = "; ".join(endpoint.trail)
        finally:
            endpoint.trail = None
        label = f"{event.value}({size})" if event is Event.SEND else f"{event.value}()"
        if event is Event.SHUTDOWN:
            label = "shutdown(SHUT_WR)"
        if event.kind == "timer":
            label = event.value
        sent = self._put(side, out)
        kind: Literal["call", "timer"] = "timer" if event.kind == "timer" else "call"
        return self._record(
            {"kind": kind, "side": side, "action": f"{side}: {label}", "sent": sent, "note": note},
            before,
        )

    def timer(self, side: Side, event: Event) -> Step:
        """A timer fires on one side (retransmission or give-up)."""
        if event.kind != "timer":
            raise ScenarioError(f"{event.value} is not a timer")
        return self.call(side, event)

    def _pick(self, to: Side | None, index: int = 0) -> InFlight:
        candidates = [f for f in self.wire if to is None or f.dst == to]
        if len(candidates) <= index:
            where = f" heading to the {to}" if to else ""
            raise ScenarioError(f"no segment in flight{where}")
        return candidates[index]

    def deliver(self, to: Side | None = None, index: int = 0) -> Step:
        """Deliver the ``index``-th oldest segment in flight (heading to ``to``)."""
        flight = self._pick(to, index)
        self.wire.remove(flight)
        before = self._states()
        receiver = self.endpoint(flight.dst)
        # The note says what this segment did, from the endpoint's own account: a
        # held or ignored segment changes no row, so no row's note may stand for it.
        receiver.trail = []
        try:
            out = receiver.receive(flight.segment, self.now)
            note = "; ".join(receiver.trail)
        finally:
            receiver.trail = None
        sent = self._put(flight.dst, out)
        return self._record(
            _in_flight("deliver", flight, "", note, sent_at=flight.sent_at, sent=sent), before
        )

    def drop(self, to: Side | None = None, index: int = 0) -> Step:
        """Lose a segment in flight."""
        flight = self._pick(to, index)
        self.wire.remove(flight)
        return self._record(
            _in_flight("drop", flight, " (lost)", "segment lost in flight", sent_at=flight.sent_at),
            self._states(),
        )

    def delay(self, to: Side | None = None, index: int = 0) -> Step:
        """Move a segment behind every other one in flight (reordering)."""
        flight = self._pick(to, index)
        self.wire.remove(flight)
        self.wire.append(flight)
        return self._record(
            _in_flight("delay", flight, " (delayed)", "segment overtaken by later ones"),
            self._states(),
        )

    def flush(self) -> list[Step]:
        """Deliver everything in flight, in order, until the wire is quiet."""
        steps: list[Step] = []
        for _ in range(MAX_FLUSH):
            if not self.wire:
                return steps
            steps.append(self.deliver())
        raise ScenarioError(f"wire still busy after {MAX_FLUSH} deliveries")

    def wait(self, seconds: float) -> list[Step]:
        """Advance the clock; timers that fall due fire (2MSL) at the moment they are due."""
        if seconds < 0:
            raise ScenarioError("cannot wait a negative time")
        end = self.now + seconds
        steps: list[Step] = []
        due = sorted(
            (deadline, side)
            for side in SIDES
            if (deadline := self.endpoint(side).timer_deadline) is not None and deadline <= end
        )
        for deadline, side in due:
            self.now = max(self.now, deadline)
            steps.append(self.call(side, Event.TIMEOUT_2MSL))
        self.now = end
        if not steps:
            steps.append(
                self._record(
                    {"kind": "wait", "side": None, "action": f"{seconds:g} s pass"},
                    self._states(),
                )
            )
        return steps


# -- the script language ---------------------------------------------------

_CALLS: Final = {
    "listen": Event.LISTEN,
    "connect": Event.CONNECT,
    "send": Event.SEND,
    "close": Event.CLOSE,
    "shutdown": Event.SHUTDOWN,
    "abort": Event.ABORT,
}
_TIMERS: Final = {
    "retransmit": Event.TIMEOUT_RTO,
    "rto": Event.TIMEOUT_RTO,
    "give-up": Event.TIMEOUT_CONNECT,
    "giveup": Event.TIMEOUT_CONNECT,
    "keepalive": Event.TIMEOUT_KEEPALIVE,
    "2msl": Event.TIMEOUT_2MSL,
}


def _target(words: list[str], line: int) -> tuple[Side | None, int]:
    """Parse ``[to client|server] [N]`` after deliver/drop/delay."""
    to: Side | None = None
    index = 0
    rest = list(words)
    if rest and rest[0] == "to":
        rest.pop(0)
        if not rest or rest[0] not in SIDES:
            raise ScenarioError(f"line {line}: expected 'to client' or 'to server'")
        to = "client" if rest.pop(0) == "client" else "server"
    if rest:
        try:
            index = int(rest.pop(0)) - 1
        except ValueError:
            raise ScenarioError(f"line {line}: expected a segment number, got {words!r}") from None
        if index < 0:
            raise ScenarioError(f"line {line}: segment numbers start at 1")
    if rest:
        raise ScenarioError(f"line {line}: unexpected {' '.join(rest)!r}")
    return to, index


def _run_line(pair: Pair, words: list[str], line: int) -> None:
    head = words[0].lower()
    if head in SIDES:
        side: Side = "client" if head == "client" else "server"
        if len(words) < 2:
            raise ScenarioError(f"line {line}: '{head}' needs an action")
        verb = words[1].lower()
        if verb == "timeout":
            if len(words) != 3 or words[2].lower() not in _TIMERS:
                names = ", ".join(sorted(_TIMERS))
                raise ScenarioError(f"line {line}: timeout takes one of {names}")
            if _TIMERS[words[2].lower()] is Event.TIMEOUT_2MSL:
                raise ScenarioError(f"line {line}: use 'wait SECONDS' to let 2MSL expire")
            pair.timer(side, _TIMERS[words[2].lower()])
            return
        if verb not in _CALLS:
            names = ", ".join([*_CALLS, "timeout"])
            raise ScenarioError(f"line {line}: unknown action {verb!r} (one of {names})")
        event = _CALLS[verb]
        size = 0
        if event is Event.SEND:
            if len(words) != 3 or not words[2].isdigit() or int(words[2]) == 0:
                raise ScenarioError(f"line {line}: send takes a positive byte count")
            size = int(words[2])
        elif len(words) != 2:
            raise ScenarioError(f"line {line}: {verb} takes no argument")
        pair.call(side, event, size=size)
    elif head == "deliver":
        if words[1:] == ["all"]:
            pair.flush()
        else:
            to, index = _target(words[1:], line)
            pair.deliver(to, index)
    elif head in ("drop", "delay"):
        to, index = _target(words[1:], line)
        (pair.drop if head == "drop" else pair.delay)(to, index)
    elif head == "wait":
        try:
            seconds = float(words[1]) if len(words) == 2 else -1.0
        except ValueError:
            seconds = -1.0
        if not (math.isfinite(seconds) and seconds >= 0):
            raise ScenarioError(f"line {line}: wait takes a number of seconds")
        pair.wait(seconds)
    elif head == "expect":
        if len(words) != 3 or words[1] not in SIDES:
            raise ScenarioError(f"line {line}: expect takes a side and a state")
        try:
            want = State.parse(words[2])
        except UnknownStateError as exc:
            raise ScenarioError(f"line {line}: {exc}") from None
        got = pair.endpoint("client" if words[1] == "client" else "server").state
        if got is not want:
            raise ScenarioError(f"line {line}: expected {words[1]} in {want}, it is in {got}")
    else:
        raise ScenarioError(f"line {line}: unknown action {words[0]!r}")


def _positive(value: float) -> bool:
    """A usable duration: NaN and infinity would stall or never fire the timers."""
    return math.isfinite(value) and value > 0


def load_script(text: str) -> tuple[float, list[tuple[int, list[str]]]]:
    """Parse a text or JSON script into (msl, [(line number, words)])."""
    stripped = text.lstrip()
    msl = 30.0
    lines: list[tuple[int, str]]
    if stripped.startswith("{"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ScenarioError(f"line {exc.lineno}: invalid JSON: {exc.msg}") from None
        steps = data.get("steps") if isinstance(data, dict) else None
        if not isinstance(steps, list) or not all(isinstance(s, str) for s in steps):
            raise ScenarioError("JSON script needs a 'steps' list of strings")
        if "msl" in data:
            if not isinstance(data["msl"], int | float) or not _positive(data["msl"]):
                raise ScenarioError("JSON script: 'msl' must be a positive number")
            msl = float(data["msl"])
        lines = [(n, s) for n, s in enumerate(steps, 1)]
    else:
        lines = list(enumerate(text.splitlines(), 1))
    parsed: list[tuple[int, list[str]]] = []
    for number, raw in lines:
        words = raw.split("#", 1)[0].split()
        if not words:
            continue
        if words[0].lower() == "msl":
            if parsed:
                raise ScenarioError(f"line {number}: msl must come before the first action")
            try:
                msl = float(words[1])
            except (IndexError, ValueError):
                raise ScenarioError(f"line {number}: msl takes a number of seconds") from None
            if not _positive(msl):
                raise ScenarioError(f"line {number}: msl must be positive")
            continue
        parsed.append((number, words))
    if not parsed:
        raise ScenarioError("script has no actions")
    return msl, parsed


def run_script(text: str) -> Pair:
    """Run a script; errors name the line (ScenarioError), including illegal events."""
    msl, lines = load_script(text)
    pair = Pair(msl=msl)
    for number, words in lines:
        try:
            _run_line(pair, words, number)
        except IllegalTransition as exc:
            raise ScenarioError(f"line {number}: {exc}") from None
        except ScenarioError as exc:
            if str(exc).startswith("line "):
                raise
            raise ScenarioError(f"line {number}: {exc}") from None
    return pair


@dataclass(frozen=True, slots=True)
class Scenario:
    """A named script with a title for ``simulate --list``."""

    name: str
    title: str
    script: str
    tags: tuple[str, ...] = field(default=())


def _s(name: str, title: str, script: str) -> Scenario:
    return Scenario(name, title, script.strip() + "\n")


_HANDSHAKE = """
server listen
client connect
deliver          # SYN
deliver          # SYN+ACK
deliver          # ACK
expect client ESTABLISHED
expect server ESTABLISHED
"""

_SCENARIOS: Final = [
    _s("three-way-handshake", "Three-way handshake (三次握手): SYN, SYN+ACK, ACK", _HANDSHAKE),
    _s(
        "client-close",
        "Client closes first (四次挥手): FIN_WAIT1/2, TIME_WAIT; server CLOSE_WAIT, LAST_ACK",
        _HANDSHAKE
        + """
client close
deliver          # FIN -> server: CLOSE_WAIT
expect server CLOSE_WAIT
deliver          # ACK -> client: FIN_WAIT2
expect client FIN_WAIT2
server close
expect server LAST_ACK
deliver          # FIN -> client: TIME_WAIT
expect client TIME_WAIT
deliver          # ACK -> server: CLOSED
expect server CLOSED
wait 60
expect client CLOSED
""",
    ),
    _s(
        "server-close",
        "Server closes first: the server waits in TIME_WAIT, the client passes CLOSE_WAIT",
        _HANDSHAKE
        + """
server close
deliver
expect client CLOSE_WAIT
deliver
expect server FIN_WAIT2
client close
deliver
expect server TIME_WAIT
deliver
expect client CLOSED
wait 60
expect server CLOSED
""",
    ),
    _s(
        "simultaneous-open",
        "Simultaneous open: both send SYN, both pass SYN_RECV",
        """
client connect
server connect
deliver to server   # client's SYN reaches the server in SYN_SENT
expect server SYN_RECV
deliver to client   # server's SYN reaches the client in SYN_SENT
expect client SYN_RECV
deliver all         # the crossing SYN+ACKs
expect client ESTABLISHED
expect server ESTABLISHED
""",
    ),
    _s(
        "simultaneous-close",
        "Simultaneous close: FINs cross, both sides pass CLOSING to TIME_WAIT",
        _HANDSHAKE
        + """
client close
server close
deliver to server   # client's FIN reaches the server in FIN_WAIT1
expect server CLOSING
deliver to client   # server's FIN reaches the client in FIN_WAIT1
expect client CLOSING
deliver all         # the crossing ACKs
expect client TIME_WAIT
expect server TIME_WAIT
wait 60
expect client CLOSED
expect server CLOSED
""",
    ),
    _s(
        "half-close",
        "Half-close: the client shuts down sending, the server keeps sending to FIN_WAIT2",
        _HANDSHAKE
        + """
client shutdown
deliver all
expect client FIN_WAIT2
expect server CLOSE_WAIT
server send 1000    # data still flows toward the side in FIN_WAIT2
deliver all
server send 500
deliver all
expect client FIN_WAIT2
server close
deliver all
expect client TIME_WAIT
expect server CLOSED
""",
    ),
    _s(
        "data-after-close",
        "Data after close(): nobody will read it, so the closed side answers RST",
        _HANDSHAKE
        + """
client close        # close(), not shutdown(): the client will read nothing more
deliver all
expect client FIN_WAIT2
expect server CLOSE_WAIT
server send 100     # the server still sends
deliver to client   # new data after close(): RST, and the client's side is gone
expect client CLOSED
deliver to server   # the RST: the server's next send fails (EPIPE)
expect server CLOSED
""",
    ),
    _s(
        "lost-data",
        "Lost data: the sender's retransmission timer re-sends it",
        _HANDSHAKE
        + """
client send 100
drop to server      # the data is lost
client send 50
deliver to server   # arrives ahead of the gap: held, duplicate ACK
deliver to client
expect client ESTABLISHED
client timeout retransmit   # everything unacknowledged again, in one segment
deliver to server
deliver to client
expect client ESTABLISHED
expect server ESTABLISHED
""",
    ),
    _s(
        "retries-exhausted",
        "Retransmissions unanswered: the sender gives up (tcp_retries2, TCP_USER_TIMEOUT)",
        _HANDSHAKE
        + """
client send 100
drop                # the peer is gone: nothing gets through any more
client timeout retransmit
drop
client timeout give-up
expect client CLOSED
expect server ESTABLISHED   # the server never hears about it
""",
    ),
    _s(
        "keepalive-timeout",
        "Keepalive probes unanswered: the idle side sends RST and gives up",
        _HANDSHAKE
        + """
client timeout keepalive   # SO_KEEPALIVE probes went unanswered
expect client CLOSED
drop                # the RST does not get through either
expect server ESTABLISHED
""",
    ),
    _s(
        "rst-abort",
        "Abort (SO_LINGER 0): RST instead of FIN, no TIME_WAIT",
        _HANDSHAKE
        + """
client send 100
deliver all
client abort
expect client CLOSED
deliver
expect server CLOSED
""",
    ),
    _s(
        "refused",
        "Refused connection: no listener, the SYN is answered with RST",
        """
client connect
deliver          # SYN reaches a closed port
expect server CLOSED
deliver          # RST+ACK
expect client CLOSED
""",
    ),
    _s(
        "lost-final-ack",
        "Lost final ACK: LAST_ACK retransmits its FIN, TIME_WAIT answers again",
        _HANDSHAKE
        + """
client close
deliver all
server close
deliver          # FIN -> client: TIME_WAIT
drop             # the final ACK is lost
expect server LAST_ACK
server timeout retransmit
deliver          # FIN again: TIME_WAIT re-ACKs and restarts 2MSL
expect client TIME_WAIT
deliver
expect server CLOSED
""",
    ),
    _s(
        "combined-fin-ack",
        "Peer's FIN carries the ACK of ours: FIN_WAIT1 goes straight to TIME_WAIT",
        _HANDSHAKE
        + """
client close
deliver to server   # FIN -> server: CLOSE_WAIT, it ACKs at once
server close        # and closes straight away: FIN+ACK acks the client's FIN too
drop to client      # the bare ACK is lost (or was never sent: delayed ACK)
deliver to client
expect client TIME_WAIT
deliver
expect server CLOSED
""",
    ),
    _s(
        "time-wait-expiry",
        "TIME_WAIT lasts 2MSL, then the connection is forgotten",
        _HANDSHAKE
        + """
client close
deliver all
server close
deliver all
expect client TIME_WAIT
wait 30
expect client TIME_WAIT
wait 30
expect client CLOSED
""",
    ),
    _s(
        "lost-syn-ack",
        "SYN+ACK lost: the server stays in SYN_RECV and retransmits",
        """
server listen
client connect
deliver
drop             # SYN+ACK lost
expect server SYN_RECV
server timeout retransmit
deliver
deliver
expect server ESTABLISHED
""",
    ),
    _s(
        "connect-timeout",
        "Connect timeout: SYNs go unanswered until the client gives up",
        """
client connect
drop
client timeout retransmit
drop
client timeout give-up
expect client CLOSED
""",
    ),
    _s(
        "reordered-fin",
        "Reordering: data overtaken by the FIN that follows it",
        _HANDSHAKE
        + """
client send 200
client close
delay to server  # the data segment arrives after the FIN
deliver to server
deliver to server
deliver all
expect server CLOSE_WAIT
expect client FIN_WAIT2
""",
    ),
]

#: Named scenarios, in ``simulate --list`` order.
SCENARIOS: Final = MappingProxyType({s.name: s for s in _SCENARIOS})


def run_scenario(name: str) -> Pair:
    """Run a named scenario; unknown names suggest the known ones."""
    scenario = SCENARIOS.get(name)
    if scenario is None:
        import difflib

        close = difflib.get_close_matches(name, list(SCENARIOS), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else "; see 'tcplens simulate --list'"
        raise ScenarioError(f"unknown scenario {name!r}{hint}")
    return run_script(scenario.script)
