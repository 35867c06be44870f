"""TCP connection states and every spelling of them that users paste.

The enum's values are what Linux net-tools ``netstat`` prints, because that is
the vocabulary of the articles and outputs our users start from.  Every other
spelling is an alias that lives in the tables below, each table citing where
its spellings come from, so that parsers, views and the exporter never carry
their own copy.

Sources of the spellings:

* Linux kernel codes: ``include/net/tcp_states.h`` (``TCP_ESTABLISHED = 1`` …
  ``TCP_NEW_SYN_RECV = 12``, ``TCP_BOUND_INACTIVE = 13``), printed in hex by
  ``/proc/net/tcp``.  ``NEW_SYN_RECV`` is the request-socket form of SYN_RECV
  that Linux uses for half-open requests (since 4.1); users see it as SYN_RECV.
* net-tools ``netstat``: ``tcp_state[]`` in ``netstat.c`` (note ``CLOSE``
  rather than ``CLOSED``).
* iproute2 ``ss``: ``sstate_name[]`` in ``misc/ss.c`` (``ESTAB``,
  ``SYN-RECV``, ``FIN-WAIT-1``, ``UNCONN`` for code 7).
* RFC 9293 section 3.3.2 (``SYN-RECEIVED``, ``FIN-WAIT-1``).
* Windows ``MIB_TCP_STATE`` as printed by ``netstat`` (``LISTENING``,
  ``SYN_RECEIVED``, ``FIN_WAIT_1``, ``DELETE_TCB``).
* BSD/macOS ``tcpstates[]`` in ``netinet/tcp_fsm.h`` (``SYN_RCVD``,
  ``FIN_WAIT_1``); Solaris adds ``IDLE`` and ``BOUND``.
* psutil ``CONN_*`` constants (``NONE`` for sockets without a state).
* Localised Windows ``netstat`` (:data:`WINDOWS_LOCALISED`): Windows translates
  some state names.  Only spellings seen in real outputs are listed; where a
  language keeps the English name (Japanese, Chinese, and Korean except for
  LISTENING in the outputs found) nothing is needed.  A dump saved from a
  Western European console is in its OEM code page (850), so ``ABHÖREN``
  often arrives as ``ABH™REN`` or ``ABH\x99REN``: :meth:`State.parse` decodes
  such text again as code page 850, and a character lost to ``�`` is
  accepted only when exactly one state fits.
"""

from __future__ import annotations

import contextlib
import re
import unicodedata
from enum import StrEnum
from types import MappingProxyType
from typing import Final

from tcplens.errors import UnknownStateError

__all__ = [
    "KERNEL_CODES",
    "SPELLINGS",
    "STATE_BY_CODE",
    "STATE_GROUPS",
    "UNCONNECTED",
    "WINDOWS_LOCALISED",
    "State",
    "parse_state_filter",
    "shown_state",
]


class State(StrEnum):
    """The 11 RFC 9293 states plus UNKNOWN, named as Linux ``netstat`` prints them."""

    LISTEN = "LISTEN"
    SYN_SENT = "SYN_SENT"
    SYN_RECV = "SYN_RECV"
    ESTABLISHED = "ESTABLISHED"
    FIN_WAIT1 = "FIN_WAIT1"
    FIN_WAIT2 = "FIN_WAIT2"
    CLOSE_WAIT = "CLOSE_WAIT"
    CLOSING = "CLOSING"
    LAST_ACK = "LAST_ACK"
    TIME_WAIT = "TIME_WAIT"
    CLOSED = "CLOSED"
    UNKNOWN = "UNKNOWN"

    @classmethod
    def parse(cls, text: str | int | State) -> State:
        """Return the state for any spelling users paste (see the module docstring).

        Case, ``-``, ``_`` and spaces do not matter; two-digit hex strings are
        kernel codes from ``/proc/net/tcp`` and ints are kernel codes too.
        Raises :class:`UnknownStateError` with the closest names otherwise.
        """
        if isinstance(text, State):
            return text
        if isinstance(text, int):
            try:
                return KERNEL_CODES[text]
            except KeyError:
                raise UnknownStateError(str(text), []) from None
        raw = text.strip()
        if _HEX_CODE.fullmatch(raw):
            code = int(raw, 16)
            if code in KERNEL_CODES:
                return KERNEL_CODES[code]
            raise UnknownStateError(text, [])
        key = _compact(raw)
        try:
            return _ALIASES[key]
        except KeyError:
            pass
        found = _localised(raw)
        if found is not None:
            return found
        import difflib  # only for a name that is no state: not on every command's start

        close = difflib.get_close_matches(key, list(_ALIASES), n=6, cutoff=0.6)
        names: list[str] = []
        for match in close:
            name = _ALIASES[match].value
            if name not in names:
                names.append(name)
        raise UnknownStateError(text, names[:3])

    @property
    def kernel_code(self) -> int | None:
        """The Linux ``tcp_states.h`` number, or None for UNKNOWN."""
        return _CODE_OF.get(self)

    @property
    def synchronized(self) -> bool:
        """True once both sides' sequence numbers are known (RFC 9293 3.5.2)."""
        return self in STATE_GROUPS["synchronized"]


def _compact(text: str) -> str:
    return re.sub(r"[\s_\-]+", "", text).upper()


def _folded(text: str) -> str:
    """``_compact`` without accents: ÉCOUTE and ECOUTE, ABHÖREN and ABHOREN are one key."""
    decomposed = unicodedata.normalize("NFKD", _compact(text))
    kept = "".join(c for c in decomposed if not unicodedata.combining(c))
    return unicodedata.normalize("NFC", kept)


def _localised(raw: str) -> State | None:
    """A localised Windows spelling, also after code-page damage (module docstring)."""
    candidates = [raw]
    for codec in ("latin-1", "cp1252"):
        with contextlib.suppress(UnicodeEncodeError, UnicodeDecodeError):
            candidates.append(raw.encode(codec).decode("cp850"))
    for text in candidates:
        state = _FOLDED.get(_folded(text))
        if state is not None:
            return state
    if "\ufffd" in raw:
        pattern = re.compile(re.escape(_folded(raw)).replace("\ufffd", "."))
        fits = {state for key, state in _FOLDED.items() if pattern.fullmatch(key)}
        if len(fits) == 1:
            return fits.pop()
    return None


_HEX_CODE: Final = re.compile(r"0[0-9A-Fa-f]")

#: Linux ``include/net/tcp_states.h``; 12 (NEW_SYN_RECV) and 13 (BOUND_INACTIVE)
#: are kernel-internal forms users know as SYN_RECV and an unconnected socket.
KERNEL_CODES: Final = MappingProxyType(
    {
        1: State.ESTABLISHED,
        2: State.SYN_SENT,
        3: State.SYN_RECV,
        4: State.FIN_WAIT1,
        5: State.FIN_WAIT2,
        6: State.TIME_WAIT,
        7: State.CLOSED,
        8: State.CLOSE_WAIT,
        9: State.LAST_ACK,
        10: State.LISTEN,
        11: State.CLOSING,
        12: State.SYN_RECV,
        13: State.CLOSED,
    }
)

#: every byte value a kernel state field can hold -> State (unknown codes read UNKNOWN):
#: one list index per socket where the dump readers decode 100k states
STATE_BY_CODE: Final = tuple(KERNEL_CODES.get(code, State.UNKNOWN) for code in range(256))
_CODE_OF: Final = {state: code for code, state in sorted(KERNEL_CODES.items(), reverse=True)}

#: How each tool spells each state; the first entry is the canonical spelling
#: shown by ``tcplens explain``.  Keys of the inner dicts are tool names.
_SPELLINGS: dict[State, dict[str, tuple[str, ...]]] = {
    State.LISTEN: {
        "netstat (Linux)": ("LISTEN",),
        "ss": ("LISTEN",),
        "RFC 9293": ("LISTEN",),
        "Windows": ("LISTENING",),
        "BSD/macOS": ("LISTEN",),
        "/proc/net/tcp": ("0A",),
    },
    State.SYN_SENT: {
        "netstat (Linux)": ("SYN_SENT",),
        "ss": ("SYN-SENT",),
        "RFC 9293": ("SYN-SENT",),
        "Windows": ("SYN_SENT",),
        "BSD/macOS": ("SYN_SENT",),
        "/proc/net/tcp": ("02",),
    },
    State.SYN_RECV: {
        "netstat (Linux)": ("SYN_RECV",),
        "ss": ("SYN-RECV", "NEW-SYN-RECV"),
        "RFC 9293": ("SYN-RECEIVED",),
        "Windows": ("SYN_RECEIVED",),
        "BSD/macOS": ("SYN_RCVD",),
        "/proc/net/tcp": ("03", "0C (NEW_SYN_RECV)"),
    },
    State.ESTABLISHED: {
        "netstat (Linux)": ("ESTABLISHED",),
        "ss": ("ESTAB",),
        "RFC 9293": ("ESTABLISHED",),
        "Windows": ("ESTABLISHED",),
        "BSD/macOS": ("ESTABLISHED",),
        "/proc/net/tcp": ("01",),
    },
    State.FIN_WAIT1: {
        "netstat (Linux)": ("FIN_WAIT1",),
        "ss": ("FIN-WAIT-1",),
        "RFC 9293": ("FIN-WAIT-1",),
        "Windows": ("FIN_WAIT_1",),
        "BSD/macOS": ("FIN_WAIT_1",),
        "/proc/net/tcp": ("04",),
    },
    State.FIN_WAIT2: {
        "netstat (Linux)": ("FIN_WAIT2",),
        "ss": ("FIN-WAIT-2",),
        "RFC 9293": ("FIN-WAIT-2",),
        "Windows": ("FIN_WAIT_2",),
        "BSD/macOS": ("FIN_WAIT_2",),
        "/proc/net/tcp": ("05",),
    },
    State.CLOSE_WAIT: {
        "netstat (Linux)": ("CLOSE_WAIT",),
        "ss": ("CLOSE-WAIT",),
        "RFC 9293": ("CLOSE-WAIT",),
        "Windows": ("CLOSE_WAIT",),
        "BSD/macOS": ("CLOSE_WAIT",),
        "/proc/net/tcp": ("08",),
    },
    State.CLOSING: {
        "netstat (Linux)": ("CLOSING",),
        "ss": ("CLOSING",),
        "RFC 9293": ("CLOSING",),
        "Windows": ("CLOSING",),
        "BSD/macOS": ("CLOSING",),
        "/proc/net/tcp": ("0B",),
    },
    State.LAST_ACK: {
        "netstat (Linux)": ("LAST_ACK",),
        "ss": ("LAST-ACK",),
        "RFC 9293": ("LAST-ACK",),
        "Windows": ("LAST_ACK",),
        "BSD/macOS": ("LAST_ACK",),
        "/proc/net/tcp": ("09",),
    },
    State.TIME_WAIT: {
        "netstat (Linux)": ("TIME_WAIT",),
        "ss": ("TIME-WAIT",),
        "RFC 9293": ("TIME-WAIT",),
        "Windows": ("TIME_WAIT",),
        "BSD/macOS": ("TIME_WAIT",),
        "/proc/net/tcp": ("06",),
    },
    State.CLOSED: {
        "netstat (Linux)": ("CLOSE",),
        "ss": ("UNCONN", "BOUND"),
        "RFC 9293": ("CLOSED",),
        "Windows": ("CLOSED", "DELETE_TCB"),
        "BSD/macOS": ("CLOSED",),
        "Solaris": ("IDLE", "BOUND"),
        "/proc/net/tcp": ("07",),
    },
    State.UNKNOWN: {
        "netstat (Linux)": ("UNKNOWN",),
        "ss": ("UNKNOWN",),
    },
}
SPELLINGS: Final[MappingProxyType[State, MappingProxyType[str, tuple[str, ...]]]] = (
    MappingProxyType({state: MappingProxyType(tools) for state, tools in _SPELLINGS.items()})
)

# Spellings that are not in any "canonical" column above but that users paste:
# psutil's CONN_* values, older and looser forms, the seeds' lower-case forms
# (handled by case folding) and ss's short forms.
_EXTRA_ALIASES: Final = {
    "CLOSE": State.CLOSED,
    "NONE": State.CLOSED,  # psutil CONN_NONE: UDP and other stateless sockets
    "NEW_SYN_RECV": State.SYN_RECV,
    "SYN_RECEIVED": State.SYN_RECV,
    "SYNRCVD": State.SYN_RECV,
    "BOUND_INACTIVE": State.CLOSED,
    "ESTAB": State.ESTABLISHED,
    "LISTENING": State.LISTEN,
    "UNCONNECTED": State.CLOSED,
    "TIMEWAIT": State.TIME_WAIT,
    "TW": State.TIME_WAIT,
    "UNKNOWN": State.UNKNOWN,
}

#: How localised Windows ``netstat`` spells states, seen in real outputs (netstat
#: -ano pasted in issues and in other tools' tests: Checkmk's Windows agent tests,
#: systeminformation's ``network.js``); every other state stays English there.
WINDOWS_LOCALISED: Final = MappingProxyType(
    {
        "de": {
            "ABHÖREN": State.LISTEN,
            "ABHOEREN": State.LISTEN,
            "SYN_GESENDET": State.SYN_SENT,
            "HERGESTELLT": State.ESTABLISHED,
            "FIN_WARTEN_1": State.FIN_WAIT1,  # by analogy with FIN_WARTEN_2
            "FIN_WARTEN_2": State.FIN_WAIT2,
            "SCHLIESSEN_WARTEN": State.CLOSE_WAIT,
            "SCHLIESSEND": State.CLOSING,
            "WARTEND": State.TIME_WAIT,
        },
        "fr": {"ÉCOUTE": State.LISTEN, "ÉTABLIE": State.ESTABLISHED},
        "es": {"ESCUCHANDO": State.LISTEN, "ESTABLECIDO": State.ESTABLISHED},
        "it": {"IN ASCOLTO": State.LISTEN, "STABILITA": State.ESTABLISHED,
               "STABILITO": State.ESTABLISHED},
        "pt": {"ESCUTANDO": State.LISTEN, "ESTABELECIDA": State.ESTABLISHED,
               "ESTABELECIDO": State.ESTABLISHED},
        "ko": {"수신 대기": State.LISTEN, "수신 대기 중": State.LISTEN},
    }
)  # fmt: skip


def _build_aliases() -> dict[str, State]:
    aliases: dict[str, State] = {}
    for state in State:
        aliases[_compact(state.value)] = state
        for spellings in SPELLINGS[state].values():
            for spelling in spellings:
                if not _HEX_CODE.match(spelling):
                    aliases[_compact(spelling)] = state
    for spelling, state in _EXTRA_ALIASES.items():
        aliases[_compact(spelling)] = state
    for localised in WINDOWS_LOCALISED.values():
        for spelling, state in localised.items():
            if aliases.setdefault(_compact(spelling), state) is not state:
                raise AssertionError(f"{spelling!r} would mean two states")
    return aliases


_ALIASES: Final = MappingProxyType(_build_aliases())
#: the same keys without accents, for input whose accents were lost or damaged
_FOLDED: Final = MappingProxyType({_folded(key): state for key, state in _ALIASES.items()})

_ALL: Final = frozenset(State)
_BUCKET: Final = frozenset({State.SYN_RECV, State.TIME_WAIT})
_CONNECTED: Final = _ALL - {State.LISTEN, State.CLOSED, State.UNKNOWN}

#: ss's state groups (``man ss``, STATE-FILTER): minisockets live in "bucket".
STATE_GROUPS: Final = MappingProxyType(
    {
        "all": _ALL,
        "connected": _CONNECTED,
        "synchronized": _CONNECTED - {State.SYN_SENT, State.SYN_RECV},
        "bucket": _BUCKET,
        "big": _ALL - _BUCKET,
    }
)


def parse_state_filter(text: str) -> frozenset[State]:
    """Resolve a ``--state`` argument: an ss group name or any state spelling."""
    group = STATE_GROUPS.get(text.strip().lower())
    if group is not None:
        return group
    return frozenset({State.parse(text)})


#: how listings show a bound, unconnected UDP socket: ``ss``'s ``UNCONN``, not CLOSED
UNCONNECTED: Final = SPELLINGS[State.CLOSED]["ss"][0]


def shown_state(proto: str, state: State) -> str:
    """The state column of a listing: the netstat name, but UNCONN for unconnected UDP.

    The kernel gives a UDP socket with no peer the code of TCP_CLOSE (7), so
    records and JSON say CLOSED; in a table that reads as "a closed
    connection" next to TCP rows, while the socket is bound and receiving.
    ``ss`` prints UNCONN there (``sstate_name[]`` in ``misc/ss.c``), as we do.
    """
    if proto == "udp" and state is State.CLOSED:
        return UNCONNECTED
    return state.value
