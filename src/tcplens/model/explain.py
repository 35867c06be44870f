"""What each TCP state means, in English and Chinese, kept with the model as data.

``tcplens explain``, the overview table and any view that wants to say what a
state means read their texts from here, so there is one wording per state
and language.  Every text was written against RFC 9293 section 3.3.2 and the
Linux behaviour users actually see (timers from ``include/net/tcp.h`` and
``Documentation/networking/ip-sysctl.rst``, defaults checked on a 6.x
kernel).  The Chinese is written for Chinese readers in the vocabulary of the
articles they already know (主动关闭, 被动关闭, 三次握手, 四次挥手, 半关闭,
2MSL, 孤儿连接), not translated sentence by sentence.

Spellings are not repeated here: :attr:`Explanation.spellings` is
``SPELLINGS`` from :mod:`tcplens.model.states`.  Shell commands in
``inspect`` are the same in every language, so they are stored once.

Texts are written as short source lines and joined by :func:`_flow`, which
puts a space between two Latin words but none between two Chinese
characters, so wrapping in this file never leaks into the output.  A blank
line inside a text starts a new paragraph.

Language choice (:func:`pick_lang`) takes the environment as a parameter, so
the model stays free of I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from tcplens.model.linux import SYSCTLS, syn_schedule
from tcplens.model.states import SPELLINGS, State

__all__ = [
    "LABELS",
    "LANGS",
    "Explanation",
    "explain",
    "pick_lang",
    "summary_line",
]

#: languages every text exists in; the first is the fallback
LANGS: Final = ("en", "zh")

#: locale variables in POSIX precedence order (LC_ALL overrides the others)
_LOCALE_VARS: Final = ("LC_ALL", "LC_MESSAGES", "LANG")


@dataclass(frozen=True, slots=True)
class Explanation:
    """Everything ``tcplens explain`` says about one state in one language."""

    state: State
    lang: str
    #: short heading, after the state name
    title: str
    #: what the state means
    meaning: str
    #: by which call or segment, from which states, and where it goes next
    how_reached: str
    #: which end of the connection gets here (active/passive opener or closer)
    side: str
    #: how long it normally lasts, with the Linux timers and sysctls involved
    duration: str
    #: when many of them, or old ones, signal a problem
    trouble: str
    #: what to do about it, one item per line
    advice: tuple[str, ...]
    #: one line for the overview table
    summary: str
    #: one line: is it normal, and what would be a bad sign
    hint: str
    #: shell commands that show sockets in this state (not translated)
    inspect: tuple[str, ...]

    @property
    def spellings(self) -> Mapping[str, tuple[str, ...]]:
        """How each tool prints this state (``SPELLINGS``, not a copy)."""
        return SPELLINGS[self.state]

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready dict: the stable shape ``tcplens explain --json`` emits."""
        return {
            "state": self.state.value,
            "lang": self.lang,
            "kernel_code": self.state.kernel_code,
            "title": self.title,
            "summary": self.summary,
            "hint": self.hint,
            "meaning": self.meaning,
            "side": self.side,
            "how_reached": self.how_reached,
            "duration": self.duration,
            "trouble": self.trouble,
            "advice": list(self.advice),
            "inspect": list(self.inspect),
            "spellings": {tool: list(names) for tool, names in self.spellings.items()},
        }


def explain(state: State, lang: str = "en") -> Explanation:
    """The explanation of ``state`` in ``lang`` (one of :data:`LANGS`).

    Takes a :class:`State`, not a string: callers parse user input with
    :meth:`State.parse` first, so an unknown spelling is reported once, with
    suggestions, where the input was read.
    """
    if lang not in LANGS:
        raise ValueError(f"no texts in language {lang!r}; known: {', '.join(LANGS)}")
    return _EXPLANATIONS[(State(state), lang)]


def summary_line(state: State, lang: str = "en") -> str:
    """The one-line meaning of ``state`` used in the overview table."""
    return explain(state, lang).summary


def pick_lang(flag: str | None, env: Mapping[str, str]) -> str:
    """Choose the language: ``--lang``, else the locale, else English.

    The locale is read the way POSIX programs read it for messages: the first
    non-empty of ``LC_ALL``, ``LC_MESSAGES``, ``LANG`` decides, so
    ``LC_ALL=C`` with ``LANG=zh_CN.UTF-8`` is English, as ``ls`` would be.
    Any ``zh*`` locale (``zh_CN``, ``zh_TW``, ``zh_HK``) means Chinese.
    """
    if flag:
        lang = flag.strip().lower().replace("-", "_").split("_")[0]
        if lang not in LANGS:
            raise ValueError(f"unknown language {flag!r}; choose from {', '.join(LANGS)}")
        return lang
    for name in _LOCALE_VARS:
        value = env.get(name, "").strip()
        if value:
            return "zh" if value.lower().startswith("zh") else "en"
    return LANGS[0]


#: section labels of ``tcplens explain``, per language
LABELS: Final[Mapping[str, Mapping[str, str]]] = MappingProxyType(
    {
        "en": MappingProxyType(
            {
                "state": "State",
                "summary": "Meaning",
                "hint": "Normal or trouble?",
                "meaning": "Meaning",
                "side": "Who gets here",
                "how_reached": "How it gets here",
                "duration": "How long it lasts",
                "trouble": "When it means trouble",
                "advice": "What to do",
                "inspect": "Look at them",
                "spellings": "Spellings",
                "kernel_code": "Kernel code",
                "overview_title": "TCP connection states",
                "overview_footer": "Details: tcplens explain STATE (e.g. close-wait, 08)",
            }
        ),
        "zh": MappingProxyType(
            {
                "state": "状态",
                "summary": "含义",
                "hint": "正常还是异常？",
                "meaning": "含义",
                "side": "哪一端",
                "how_reached": "如何进入",
                "duration": "持续多久",
                "trouble": "何时说明有问题",
                "advice": "怎么办",
                "inspect": "查看命令",
                "spellings": "各工具中的写法",
                "kernel_code": "内核代码",
                "overview_title": "TCP 连接状态",
                "overview_footer": "详情：tcplens explain 状态名（任意写法，如 close-wait、08）",
            }
        ),
    }
)


# --------------------------------------------------------------------------
# Kernel figures the texts quote (computed once from tcplens.model.linux)

_SYN_RETRIES: Final = SYSCTLS["ipv4.tcp_syn_retries"].default
_SYN_LINEAR: Final = SYSCTLS["ipv4.tcp_syn_linear_timeouts"].default
assert isinstance(_SYN_RETRIES, int) and isinstance(_SYN_LINEAR, int)
_SYN_NEW: Final = syn_schedule(_SYN_RETRIES, _SYN_LINEAR)
_SYN_OLD: Final = syn_schedule(_SYN_RETRIES, None)


def _zh_list(text: str) -> str:
    return text.replace(", ", "、")


# --------------------------------------------------------------------------
# Text assembly


def _is_cjk(char: str) -> bool:
    return ord(char) >= 0x2E80


_CJK_PUNCT: Final = frozenset("\uff0c\u3002\uff1a\uff1b\u3001\uff08\uff09\u201c\u201d\uff01\uff1f")


def _joiner(left: str, right: str) -> str:
    """What goes between two wrapped source lines: nothing inside Chinese text.

    A Latin word next to a Chinese character keeps its space (``socket 在``),
    but not next to full-width punctuation (``RST，``).
    """
    if left in _CJK_PUNCT or right in _CJK_PUNCT:
        return ""
    if _is_cjk(left) and _is_cjk(right):
        return ""
    return " "


def _flow(text: str) -> str:
    """Join source lines into paragraphs: a space between Latin words, none in Chinese."""
    paragraphs: list[str] = []
    current = ""
    for raw in text.strip().splitlines():
        line = raw.strip()
        if not line:
            if current:
                paragraphs.append(current)
            current = ""
            continue
        if current:
            current += _joiner(current[-1], line[0])
        current += line
    if current:
        paragraphs.append(current)
    return "\n".join(paragraphs)


@dataclass(frozen=True, slots=True)
class _Text:
    title: str
    summary: str
    hint: str
    meaning: str
    side: str
    how_reached: str
    duration: str
    trouble: str
    advice: tuple[str, ...]


def _t(
    *,
    title: str,
    summary: str,
    hint: str,
    meaning: str,
    side: str,
    how_reached: str,
    duration: str,
    trouble: str,
    advice: tuple[str, ...],
) -> _Text:
    return _Text(
        title=_flow(title),
        summary=_flow(summary),
        hint=_flow(hint),
        meaning=_flow(meaning),
        side=_flow(side),
        how_reached=_flow(how_reached),
        duration=_flow(duration),
        trouble=_flow(trouble),
        advice=tuple(_flow(item) for item in advice),
    )


#: commands that list sockets in each state; ss filter names per ``man ss``
_INSPECT: Final[Mapping[State, tuple[str, ...]]] = MappingProxyType(
    {
        State.LISTEN: (
            "ss -ltnp",
            "nstat -az TcpExtListenOverflows TcpExtListenDrops",
            "netstat -ano | findstr LISTENING",
        ),
        State.SYN_SENT: ("ss -tnp state syn-sent", "netstat -ano | findstr SYN_SENT"),
        State.SYN_RECV: (
            "ss -tn state syn-recv",
            "nstat -az TcpExtSyncookiesSent TcpExtListenOverflows",
            "netstat -ano | findstr SYN_RECEIVED",
        ),
        State.ESTABLISHED: ("ss -tnpi state established", "netstat -ano | findstr ESTABLISHED"),
        State.FIN_WAIT1: ("ss -tnoe state fin-wait-1", "netstat -ano | findstr FIN_WAIT_1"),
        State.FIN_WAIT2: ("ss -tnoe state fin-wait-2", "netstat -ano | findstr FIN_WAIT_2"),
        State.CLOSE_WAIT: (
            "ss -tnp state close-wait",
            "netstat -antp | grep CLOSE_WAIT",
            "netstat -ano | findstr CLOSE_WAIT",
        ),
        State.CLOSING: ("ss -tnoi state closing", "netstat -ano | findstr CLOSING"),
        State.LAST_ACK: ("ss -tnoi state last-ack", "netstat -ano | findstr LAST_ACK"),
        State.TIME_WAIT: ("ss -tan state time-wait", "ss -s", "netstat -ano | findstr TIME_WAIT"),
        State.CLOSED: ("ss -tan state closed", "ss -uan", "ls -l /proc/PID/fd"),
        State.UNKNOWN: ("cat /proc/net/tcp", "ss -tan"),
    }
)


# --------------------------------------------------------------------------
# English

_EN: Final[Mapping[State, _Text]] = {
    State.LISTEN: _t(
        title="Waiting for connections",
        summary="A server socket waiting for incoming connections (passive open).",
        hint="Normal for servers; watch the accept queue (Recv-Q) and the bind address.",
        meaning="""
            The socket accepts new connections on its local address and port. It is
            not a connection itself: every client that completes the three-way
            handshake becomes a new ESTABLISHED socket, queued in the listener's accept
            queue until the application takes it with accept(). The foreign address is
            shown as 0.0.0.0:* or [::]:*.
        """,
        side="The server only (passive opener). A client never listens.",
        how_reached="""
            The application calls socket(), bind() and listen(); this moves the socket
            from CLOSED to LISTEN without sending any segment. It goes back to CLOSED
            only when the application closes it. RFC 9293 lets a passively opened
            connection in SYN_RECV fall back to LISTEN on RST; Linux does the same by
            dropping the pending request, so the listener itself never moves.
        """,
        duration="""
            As long as the service runs: hours to months. A LISTEN socket that
            disappears means the service stopped or crashed.
        """,
        trouble="""
            LISTEN itself is never the problem, but look at two things. First the
            accept queue: for a LISTEN socket, ss shows in Recv-Q how many finished
            handshakes wait for accept() and in Send-Q the backlog limit. When Recv-Q
            reaches Send-Q new handshakes are dropped, clients time out or get resets,
            and TcpExtListenOverflows grows: the application accepts too slowly or the
            backlog is too small. Then the address: 127.0.0.1:8080 is reachable from
            this machine only, 0.0.0.0:8080 or [::]:8080 from everywhere. A service
            clients cannot reach often listens on the wrong address, or not at all
            (connection refused).
        """,
        advice=(
            """Accept queue full: accept faster (more workers, nothing slow in the
            accept loop) and raise the backlog; listen()'s backlog is capped by
            net.core.somaxconn (4096 since Linux 5.4, 128 before).""",
            """Clients refused: check that a LISTEN socket exists on the address and
            port they use, and that no firewall rejects their SYN.""",
            """Unexpected listener: find its process with ss -ltnp and decide whether
            it should be reachable.""",
        ),
    ),
    State.SYN_SENT: _t(
        title="Connecting: SYN sent, waiting for SYN+ACK",
        summary="A client sent SYN (connect()) and waits for the server's SYN+ACK.",
        hint="Lasts one round trip; many or lasting ones mean the peer does not answer.",
        meaning="""
            The first step of the three-way handshake: this side has sent a SYN and
            waits for the peer's SYN+ACK. No data can flow yet.
        """,
        side="The client (active opener).",
        how_reached="""
            connect() on a new socket (CLOSED) sends SYN and enters SYN_SENT. On
            SYN+ACK it sends ACK and becomes ESTABLISHED. On RST (nothing listens on
            that port, or a firewall rejects) connect() fails with ECONNREFUSED and
            the socket is CLOSED again. If a bare SYN arrives instead, because both
            sides connect to each other at once (simultaneous open), it answers
            SYN+ACK and moves to SYN_RECV.
        """,
        duration=f"""
            One round trip, usually milliseconds. Without an answer Linux retransmits
            the SYN and finally fails connect() with ETIMEDOUT, unless the
            application's own connect timeout fires first. Since Linux 6.5 the wait
            stays at 1 s for the first net.ipv4.tcp_syn_linear_timeouts =
            {_SYN_LINEAR} retransmissions before it doubles, and those come on top of
            net.ipv4.tcp_syn_retries = {_SYN_RETRIES}: {_SYN_NEW.count} retransmissions,
            at {_SYN_NEW.spelled()} s, and ETIMEDOUT {_SYN_NEW.give_up:g} s after the
            first SYN. Before 6.5 (or with tcp_syn_linear_timeouts = 0) the wait
            doubles from 1 s: {_SYN_OLD.count} retransmissions at {_SYN_OLD.spelled()}
            s and ETIMEDOUT after {_SYN_OLD.give_up:g} s. Long timers fire a little
            late, so measured give-ups come a few seconds later.
        """,
        trouble="""
            Many SYN_SENT sockets, or ones that last for seconds, mean SYNs get no
            answer: the server is down or overloaded, a firewall silently drops them
            (a closed port or a rejecting firewall answers at once with RST), the
            route is broken, or the address is wrong (stale DNS). One process with
            SYN_SENT to many different addresses can also be a scanner or malware.
        """,
        advice=(
            "Find the destinations and the process: ss -tnp state syn-sent.",
            """Test from this host: nc -vz HOST PORT, and see whether a SYN+ACK ever
            comes back: tcpdump -ni any 'host HOST and tcp[tcpflags] & tcp-syn != 0'.""",
            f"""Give the application a connect timeout shorter than
            {_SYN_NEW.give_up:g} s ({_SYN_OLD.give_up:g} s before Linux 6.5), or lower
            net.ipv4.tcp_syn_retries (and tcp_syn_linear_timeouts) for the whole
            host.""",
            "Check firewalls and security groups on both ends for that port.",
        ),
    ),
    State.SYN_RECV: _t(
        title="Handshake half done: SYN received, SYN+ACK sent",
        summary="A server got a SYN, answered SYN+ACK and waits for the final ACK.",
        hint="Lasts one round trip; a pile from many addresses is a SYN flood.",
        meaning="""
            The second step of the three-way handshake: a SYN came in, this side
            answered SYN+ACK and waits for the peer's ACK. Current Linux keeps these
            as lightweight request sockets attached to the listener (kernel state
            NEW_SYN_RECV, code 0C), kept in its SYN queue: not yet full sockets, and
            not owned by any process.
        """,
        side="The server (passive opener). A client gets here only in a simultaneous open.",
        how_reached="""
            A SYN arrives at a LISTEN socket and the kernel answers SYN+ACK on its
            own; the application is not involved. The peer's ACK makes the connection
            ESTABLISHED and puts it in the accept queue for accept(). A client in
            SYN_SENT that receives a bare SYN (simultaneous open) also gets here. An
            RST sends a passive open back to LISTEN (Linux drops the request).
        """,
        duration="""
            One round trip. Without the ACK Linux retransmits the SYN+ACK up to
            net.ipv4.tcp_synack_retries = 5 times, doubling the wait from 1 s, and
            drops the request after about 63 s (1+2+4+8+16+32).
        """,
        trouble="""
            A few are normal on a busy server. Hundreds or thousands from many (often
            random, spoofed) source addresses that never complete are a SYN flood; the
            kernel logs "Possible SYN flooding on port … Sending cookies". Real
            clients stuck here mean their ACK is lost on the way back: asymmetric
            routing, a firewall or NAT dropping it, MTU trouble. If the clients already
            show ESTABLISHED while the server still shows SYN_RECV, the listener's
            accept queue is full and Linux is dropping their ACKs (see LISTEN).
        """,
        advice=(
            """Keep SYN cookies on: net.ipv4.tcp_syncookies = 1 (the default) answers
            from a cookie instead of queueing once the SYN queue overflows.""",
            """Under a flood: raise net.ipv4.tcp_max_syn_backlog, lower
            net.ipv4.tcp_synack_retries (for example to 2) so half-open entries expire
            sooner, and filter upstream.""",
            """Legitimate clients stuck: capture both directions with tcpdump to find
            where the ACK disappears.""",
            "Count them per listener and source address: ss -tn state syn-recv.",
        ),
    ),
    State.ESTABLISHED: _t(
        title="Open connection: data flows both ways",
        summary="The handshake is complete; data can flow in both directions.",
        hint="Normal; watch the count, Recv-Q/Send-Q, and peers that are gone.",
        meaning="""
            The data transfer state. Both sides know each other's sequence numbers and
            can send and receive. On a healthy machine most sockets are ESTABLISHED or
            LISTEN.
        """,
        side="Both sides.",
        how_reached="""
            The client: in SYN_SENT, on the server's SYN+ACK, sending the final ACK of
            the three-way handshake (connect() returns). The server: in SYN_RECV, on
            that final ACK; the new socket then waits in the listener's accept queue
            until accept() returns it.
        """,
        duration="""
            As long as the applications keep the connection: milliseconds for one HTTP
            request, days for database pools or SSH. The kernel never closes an idle
            connection by itself: TCP keepalive is off unless the application sets
            SO_KEEPALIVE, and even then the first probe goes out only after
            net.ipv4.tcp_keepalive_time = 7200 s of silence.
        """,
        trouble="""
            Not a problem by itself. Watch for three things: a count far above what
            the load needs (a client that opens a connection per request instead of
            reusing one, or a leaking pool); a Recv-Q that stays high (this
            application is not reading) or a Send-Q that stays high (the peer or the
            network is not taking the data); and connections to peers that are gone
            (power loss, a NAT or firewall that forgot the flow), which stay
            ESTABLISHED forever while idle.
        """,
        advice=(
            "Reuse connections: HTTP keep-alive, connection pools with a size limit.",
            """Detect dead peers: SO_KEEPALIVE with shorter TCP_KEEPIDLE, TCP_KEEPINTVL
            and TCP_KEEPCNT, or TCP_USER_TIMEOUT, or heartbeats in the protocol.""",
            """Find who holds them: ss -tnp state established, grouped by process and
            peer.""",
        ),
    ),
    State.FIN_WAIT1: _t(
        title="Closing first: FIN sent, waiting for its ACK",
        summary="This side closed first (active close) and waits for its FIN to be ACKed.",
        hint="Lasts one round trip; many mean peers that do not ACK or do not read.",
        meaning="""
            The first step of the four-way close on the side that closes first. This
            side has sent FIN: it will send no more data. After shutdown(SHUT_WR) it
            still receives; after close() nobody will read, so Linux answers new data
            from the peer with RST and drops the connection. It waits for the peer to
            acknowledge the FIN. Data still in the send queue goes out before the FIN.
        """,
        side="""
            The active closer: whichever side calls close() first. For HTTP that is
            often the server; for most client programs the client.
        """,
        how_reached="""
            close() or shutdown(SHUT_WR) in ESTABLISHED (or close() in SYN_RECV) sends
            FIN. Then: the ACK of the FIN leads to FIN_WAIT2; the peer's FIN before
            that ACK (simultaneous close) leads to CLOSING; one segment carrying both
            the ACK and the peer's FIN leads straight to TIME_WAIT.
        """,
        duration="""
            One round trip. Without an ACK Linux retransmits the FIN with exponential
            backoff. Once the application has called close() the socket is an orphan,
            and Linux gives up after net.ipv4.tcp_orphan_retries retransmissions (0,
            the default, means 8); with a large retransmission timeout that can take
            minutes.
        """,
        trouble="""
            Many FIN_WAIT1 sockets mean peers that do not acknowledge: they vanished
            (crash, cable, a NAT or firewall that expired the flow), or they stopped
            reading, so their receive window is zero and this side cannot even send
            the rest of its data and the FIN (Send-Q stays above zero). Slow or
            malicious clients can pin server memory this way.
        """,
        advice=(
            """Look at Send-Q and the timer: ss -tnoe state fin-wait-1. Send-Q above
            zero with a persist timer means a zero-window peer.""",
            """On busy servers lower net.ipv4.tcp_orphan_retries (for example to 2 or
            3) so orphaned closes give up sooner; net.ipv4.tcp_max_orphans caps how
            many there can be.""",
            "Check the path to those peers: firewalls, NAT timeouts.",
        ),
    ),
    State.FIN_WAIT2: _t(
        title="Half-closed: our FIN is ACKed, waiting for the peer's FIN",
        summary="Our FIN was acknowledged; waiting for the peer to close its side (half-close).",
        hint="Brief once the peer closes; many mean the peer never closes (its CLOSE_WAIT).",
        meaning="""
            This side has closed its direction and the peer has acknowledged that: the
            connection is half-closed. The peer may still send data until it sends its
            own FIN: after shutdown(SHUT_WR) this side receives it; after close() Linux
            answers it with RST and drops the connection. Whether that FIN ever comes
            depends entirely on the peer's application.
        """,
        side="The active closer.",
        how_reached="""
            From FIN_WAIT1 when the ACK of our FIN arrives. It leaves on the peer's
            FIN: this side sends the last ACK and enters TIME_WAIT.
        """,
        duration="""
            Until the peer closes. If the application has already called close(), the
            socket is an orphan (netstat shows "-" instead of a process), and Linux
            waits at most net.ipv4.tcp_fin_timeout = 60 s for the peer's FIN before
            dropping it. If the application only called shutdown(SHUT_WR) and still
            holds the socket, there is no timeout: it waits as long as the peer keeps
            its side open.
        """,
        trouble="""
            Many FIN_WAIT2 sockets mean the peers never send their FIN: their
            application has read the end of the stream but never calls close(), so the
            matching sockets on the other host are in CLOSE_WAIT. The bug is on the
            other side. Orphans clean themselves up after tcp_fin_timeout; sockets a
            process still holds do not.
        """,
        advice=(
            """Look on the peer host for CLOSE_WAIT sockets on the same connections
            (tcplens explain CLOSE_WAIT).""",
            """net.ipv4.tcp_fin_timeout shortens the wait for orphans; it does not
            change TIME_WAIT.""",
            """If your program half-closes with shutdown(SHUT_WR), make it read until
            EOF and then call close(), with a timeout of its own.""",
        ),
    ),
    State.CLOSE_WAIT: _t(
        title="The peer has closed; waiting for this application to close()",
        summary="The peer closed (sent FIN); waiting for this application to call close().",
        hint="Should be brief; many or old ones mean the application never calls close().",
        meaning="""
            The peer sent FIN: it will send no more data. The kernel acknowledged it at
            once and reports end-of-file to the application (read() returns 0). Now it
            is this application's turn: it may still send data, and it must call
            close() (or shutdown()) to send its own FIN. Until then TCP has nothing
            left to do.
        """,
        side="The passive closer: the side that received the first FIN.",
        how_reached="""
            From ESTABLISHED when the peer's FIN arrives; the kernel answers with ACK.
            It leaves only when the application calls close(), which sends FIN and
            moves to LAST_ACK; also on RST, or when the process exits and the kernel
            closes its file descriptors.
        """,
        duration="""
            Normally just the time the program takes to notice EOF and close the
            socket: milliseconds. There is no kernel timeout at all: a socket the
            program never closes stays in CLOSE_WAIT until the process exits.
        """,
        trouble="""
            Many CLOSE_WAIT sockets, or ones that stay, are almost always a bug in the
            application that owns them (see the process column): it does not notice
            EOF, or it forgets to close the socket on some path (an error branch
            without finally, a connection pool that keeps connections the server
            closed, an HTTP response body never closed). Each one holds a file
            descriptor and memory until the process fails with "Too many open files".
            A Recv-Q of 1 is the peer's FIN itself, unread: the application has not
            even read to the end of the stream. Killing the sockets (ss -K, tcpkill)
            or restarting the process only hides the leak until it builds up again.
        """,
        advice=(
            """Find the owner: ss -tnp state close-wait, then the peers those
            connections went to.""",
            """Fix the code: close the socket when read() returns 0 and on every error
            path (try/finally, with, defer, RAII); make the pool drop connections the
            server has closed.""",
            """Until it is fixed, watch the process's descriptors: ls /proc/PID/fd |
            wc -l against ulimit -n.""",
            "No kernel setting helps: no sysctl times out CLOSE_WAIT.",
        ),
    ),
    State.CLOSING: _t(
        title="Both closed at once: waiting for the ACK of our FIN",
        summary="Both sides sent FIN at the same time (simultaneous close); waiting for the ACK.",
        hint="Rare and brief; lasting ones mean lost ACKs or a vanished peer.",
        meaning="""
            A rare state of a simultaneous close: this side sent FIN, and before that
            FIN was acknowledged the peer's FIN arrived. Both directions are closed;
            only the acknowledgment of our FIN is missing.
        """,
        side="""
            Both sides, when both close at about the same time: each is an active
            closer.
        """,
        how_reached="""
            From FIN_WAIT1 when the peer's FIN arrives without an ACK of our FIN; this
            side acknowledges the peer's FIN. The ACK of our FIN then moves it to
            TIME_WAIT.
        """,
        duration="""
            One round trip. If the ACK is lost our FIN is retransmitted; an orphan
            gives up after net.ipv4.tcp_orphan_retries retransmissions.
        """,
        trouble="""
            A CLOSING socket now and then is harmless. Many, or ones that stay, mean
            our FIN or its ACK keeps getting lost: a peer that vanished right after
            sending its FIN, or a lossy path or middlebox.
        """,
        advice=(
            "Check the path to those peers for loss (ss -tni shows retransmissions).",
            """They expire on their own when the FIN retransmissions run out; tune
            nothing unless there are very many (then see tcp_orphan_retries).""",
        ),
    ),
    State.LAST_ACK: _t(
        title="Closed second: FIN sent, waiting for the last ACK",
        summary="The passive closer has sent its FIN too and waits for the final ACK.",
        hint="Lasts one round trip; many mean the final ACKs are lost.",
        meaning="""
            The last step of the four-way close on the side that closes second: the
            peer closed first, then this application called close() and its FIN went
            out. When the peer acknowledges it the connection is gone, with no
            TIME_WAIT on this side.
        """,
        side="The passive closer.",
        how_reached="""
            From CLOSE_WAIT when the application calls close(), which sends FIN. The
            ACK of that FIN leads to CLOSED and the socket disappears from the tables;
            an RST ends it too.
        """,
        duration="""
            One round trip. If the ACK is lost the FIN is retransmitted with backoff
            (for orphans up to net.ipv4.tcp_orphan_retries times) until it is
            acknowledged or Linux gives up. The peer, in TIME_WAIT, answers a
            retransmitted FIN with a new ACK: that is exactly what TIME_WAIT is for.
        """,
        trouble="""
            Many LAST_ACK sockets mean the final ACK does not arrive: the peer vanished
            after sending its FIN (crash, a lost RST, NAT or firewall state already
            expired), or packets are dropped on the way.
        """,
        advice=(
            "Check the path and the firewall and NAT timeouts for those peers.",
            """They give up on their own after the FIN retransmissions; lower
            net.ipv4.tcp_orphan_retries if very many pile up.""",
        ),
    ),
    State.TIME_WAIT: _t(
        title="Closed first: waiting 2MSL before forgetting the connection",
        summary="The active closer waits 2MSL (60 s on Linux) so stray segments die out.",
        hint="Normal after an active close; tens of thousands can exhaust client ports.",
        meaning="""
            The connection is over, but the side that closed first keeps a small record
            of it for twice the Maximum Segment Lifetime (2MSL). Two reasons: if our
            final ACK was lost, the peer retransmits its FIN and this side can ACK it
            again instead of answering with RST; and old duplicate segments still in
            the network die out before the same address pair (4-tuple) carries a new
            connection.
        """,
        side="""
            The active closer only: the side that sent the first FIN. The passive
            closer goes through LAST_ACK to CLOSED without waiting.
        """,
        how_reached="""
            From FIN_WAIT2 when the peer's FIN arrives (this side sends the last ACK);
            from CLOSING when the ACK of our FIN arrives; from FIN_WAIT1 when one
            segment brings both the ACK and the peer's FIN.
        """,
        duration="""
            2MSL: on Linux a fixed 60 s (TCP_TIMEWAIT_LEN in include/net/tcp.h), and no
            sysctl changes it: tcp_fin_timeout is about FIN_WAIT2, not TIME_WAIT.
            BSD and macOS wait 2 × net.inet.tcp.msl; Windows uses the
            TcpTimedWaitDelay registry value. The timer restarts if the peer's FIN
            arrives again.
        """,
        trouble="""
            Thousands of TIME_WAIT sockets are normal on a busy host and cheap: Linux
            keeps them as small records with no process and no buffers. They hurt
            when one client opens many short connections to the same server ip:port:
            each holds a local port for 60 s, and the default port range 32768-60999
            has 28232 ports, so about 470 new connections per second is the limit
            before connect() fails with "Cannot assign requested address"
            (EADDRNOTAVAIL). Beyond net.ipv4.tcp_max_tw_buckets a closing socket skips
            TIME_WAIT altogether and TcpExtTCPTimeWaitOverflow counts it (older kernels
            log "time wait bucket table overflow").
        """,
        advice=(
            """Reuse connections: HTTP keep-alive and connection pools remove the
            problem at its source.""",
            """Let the client close first, so TIME_WAIT lands on the many clients, not
            on the one server.""",
            """For outgoing connections set net.ipv4.tcp_tw_reuse = 1 (the Linux
            default 2 means loopback only): a new connection may take over a TIME_WAIT
            port when TCP timestamps show it is safe. Widen
            net.ipv4.ip_local_port_range if needed.""",
            """A server that cannot restart because of "Address already in use" needs
            SO_REUSEADDR on its listening socket; that is the fix, not a sysctl.""",
            """Do not use net.ipv4.tcp_tw_recycle: it broke clients behind NAT and was
            removed in Linux 4.12. Do not set SO_LINGER to 0 for this either: it
            replaces the orderly close with an RST and can lose data.""",
        ),
    ),
    State.CLOSED: _t(
        title="No connection",
        summary="No connection: where every TCP socket starts and ends.",
        hint="Rarely listed; at most a socket its program has not closed yet.",
        meaning="""
            The fictional state before a connection exists and after it is gone (RFC
            9293: "no connection state at all"). The kernel keeps no connection, so
            Linux removes a socket from the tables netstat and ss read as soon as it
            gets here. What you may still see: net-tools netstat prints CLOSE for code
            07; ss prints UNCONN (every unconnected UDP socket in /proc/net/udp has
            code 07); since Linux 6.8 ss can list TCP sockets that are bound but
            unused (BOUND_INACTIVE, code 13); Windows prints CLOSED, and DELETE_TCB
            while a connection is being removed.
        """,
        side="Both sides, before the first call and after the end.",
        how_reached="""
            Every new socket starts here. A connection ends here: the passive closer
            on the ACK of its FIN (LAST_ACK); the active closer when the 2MSL timer
            expires (TIME_WAIT); a client whose SYN is refused with RST or times out
            (SYN_SENT); close() in LISTEN or SYN_SENT; and any state on an acceptable
            RST or an abort (SO_LINGER with timeout 0).
        """,
        duration="""
            Not a lasting state: the kernel frees the connection at once. The socket's
            file descriptor still exists until the program calls close(), for example
            after a failed connect() or a reset.
        """,
        trouble="""
            Not a problem by itself. A program that keeps many sockets that were reset
            or failed to connect, without closing them, leaks descriptors just as with
            CLOSE_WAIT: ls -l /proc/PID/fd shows them as socket:[inode] with no
            matching line in /proc/net/tcp, and lsof says "can't identify protocol".
        """,
        advice=(
            """Close the descriptor after a failed connect() or a reset, like on any
            other error path.""",
            """Compare a process's sockets with the tables: ls -l /proc/PID/fd | grep
            socket against ss -tanp.""",
            """Seen CLOSE or UNCONN in a UDP listing? UDP has no connection states; the
            code only means "not connected".""",
        ),
    ),
    State.UNKNOWN: _t(
        title="State not known",
        summary="Not a TCP state: the tool could not tell which state the socket is in.",
        hint="Should not appear; look at the raw line.",
        meaning="""
            tcplens, like net-tools netstat, says UNKNOWN when a socket's state maps
            to none of the eleven TCP states: a code newer than the tool's table, a
            damaged or cut-off line in a saved listing, or a value specific to some
            platform. It says nothing about the connection itself.
        """,
        side="Neither: it describes the listing, not the connection.",
        how_reached="""
            No TCP event leads here. It comes from reading a listing: a kernel code no
            table knows, or a state name no tool prints.
        """,
        duration="Not applicable: it is a label, not a stage of the connection.",
        trouble="""
            Any UNKNOWN is worth a look: the input may be damaged, or the tool that
            produced it may be older than the kernel.
        """,
        advice=(
            """Look at the raw line, or the hex code in /proc/net/tcp, and run tcplens
            explain on that code (for example tcplens explain 0A).""",
            """Compare with a current ss from iproute2, which knows the newest kernel
            states.""",
            "If tcplens shows UNKNOWN for a state you can name, please report the line.",
        ),
    ),
}


# --------------------------------------------------------------------------
# 中文

_ZH: Final[Mapping[State, _Text]] = {
    State.LISTEN: _t(
        title="监听：等待连接到来",
        summary="服务端 socket 正在监听端口，等待客户端发起连接（被动打开）。",
        hint="服务端的正常状态；留意全连接队列（Recv-Q）和监听地址。",
        meaning="""
            socket 在本地地址和端口上等待新连接。它本身并不是一条连接：
            每个完成三次握手的客户端都会生成一个新的 ESTABLISHED socket，
            先放进监听 socket 的全连接队列（accept 队列），等应用调用
            accept() 取走。对端地址显示为 0.0.0.0:* 或 [::]:*。
        """,
        side="只有服务端（被动打开方）。客户端不会处于 LISTEN。",
        how_reached="""
            应用依次调用 socket()、bind()、listen()，socket 从 CLOSED 进入
            LISTEN，这一步不发送任何报文。只有应用关闭监听 socket 时才回到
            CLOSED。RFC 9293 规定，被动打开的连接在 SYN_RECV 收到 RST 时退回
            LISTEN；Linux 的做法是直接丢弃这个请求，监听 socket 本身始终不动。
        """,
        duration="""
            服务运行多久就持续多久，几小时到几个月都正常。LISTEN 消失，
            说明服务已经停止或崩溃。
        """,
        trouble="""
            LISTEN 本身不会有问题，但要看两点。一是全连接队列：对 LISTEN
            socket，ss 的 Recv-Q 是已完成握手、等待 accept() 的连接数，
            Send-Q 是 backlog 上限。Recv-Q 顶到 Send-Q 时，新的握手会被丢弃，
            客户端超时或收到 RST，TcpExtListenOverflows 计数随之增长，
            说明应用 accept() 太慢或 backlog 太小。二是监听地址：
            127.0.0.1:8080 只有本机能连，0.0.0.0:8080 或 [::]:8080 才对外开放。
            客户端连不上时，常常是监听错了地址，或者根本没有监听
            （Connection refused）。
        """,
        advice=(
            """全连接队列满：加快 accept（增加工作线程或进程，accept 循环里
            不做耗时操作），并调大 backlog；listen() 的 backlog 受
            net.core.somaxconn 限制（Linux 5.4 起默认 4096，之前是 128）。""",
            """客户端被拒绝：确认客户端使用的地址和端口上确实有 LISTEN，
            并且防火墙没有拒绝 SYN。""",
            """出现意料之外的监听端口：用 ss -ltnp 找到进程，判断它是否
            应该对外开放。""",
        ),
    ),
    State.SYN_SENT: _t(
        title="正在连接：已发送 SYN，等待 SYN+ACK",
        summary="客户端调用 connect() 发出 SYN，正在等服务端回 SYN+ACK。",
        hint="正常只持续一个往返；大量或长时间存在说明对端没有响应。",
        meaning="""
            三次握手的第一步：本端已发出 SYN，等待对端的 SYN+ACK。
            此时还不能传输数据。
        """,
        side="客户端（主动打开方）。",
        how_reached="""
            新建的 socket（CLOSED）调用 connect()，内核发出 SYN，进入
            SYN_SENT。收到 SYN+ACK 后回复 ACK，进入 ESTABLISHED；收到 RST
            （端口上没有监听，或防火墙以 RST 拒绝）时，connect() 返回
            ECONNREFUSED，回到 CLOSED。如果收到的是不带 ACK 的 SYN
            （双方同时向对方发起连接，即同时打开），则回复 SYN+ACK，
            进入 SYN_RECV。
        """,
        duration=f"""
            一个往返时间，通常是毫秒级。一直没有回应时，Linux 会重传 SYN，
            最后让 connect() 返回 ETIMEDOUT；应用自己设置的连接超时可能更早生效。
            Linux 6.5 起，前 net.ipv4.tcp_syn_linear_timeouts = {_SYN_LINEAR}
            次重传的间隔保持 1 秒，之后才逐次翻倍，而且这几次是在
            net.ipv4.tcp_syn_retries = {_SYN_RETRIES} 之外另加的：共重传
            {_SYN_NEW.count} 次，分别在第 {_zh_list(_SYN_NEW.spelled())} 秒，
            从第一个 SYN 算起 {_SYN_NEW.give_up:g} 秒后返回 ETIMEDOUT。
            Linux 6.5 之前（或 tcp_syn_linear_timeouts = 0 时）间隔从 1 秒起
            逐次翻倍：重传 {_SYN_OLD.count} 次，分别在第
            {_zh_list(_SYN_OLD.spelled())} 秒，{_SYN_OLD.give_up:g} 秒后放弃。
            较长的计时器会略晚触发，实测的放弃时间会晚几秒。
        """,
        trouble="""
            SYN_SENT 很多或持续好几秒，说明 SYN 得不到回应：服务端宕机或过载，
            防火墙静默丢弃了 SYN（端口未开放或防火墙 REJECT 会立即回 RST），
            路由不通，或者目标地址本身就错了（如 DNS 缓存过期）。同一个进程
            对大量不同地址处于 SYN_SENT，也可能是扫描程序或木马。
        """,
        advice=(
            "找出目标地址和进程：ss -tnp state syn-sent。",
            """在本机测试连通性：nc -vz HOST PORT；用 tcpdump -ni any
            'host HOST and tcp[tcpflags] & tcp-syn != 0' 看 SYN+ACK
            有没有回来过。""",
            f"""给应用设置短于 {_SYN_NEW.give_up:g} 秒（Linux 6.5 之前为
            {_SYN_OLD.give_up:g} 秒）的连接超时，或者在整机范围调低
            net.ipv4.tcp_syn_retries（以及 tcp_syn_linear_timeouts）。""",
            "检查两端的防火墙、安全组对该端口的规则。",
        ),
    ),
    State.SYN_RECV: _t(
        title="握手进行到一半：收到 SYN，已回 SYN+ACK",
        summary="服务端收到 SYN 并回复了 SYN+ACK，正在等客户端最后的 ACK。",
        hint="正常只持续一个往返；来自大量地址的堆积就是 SYN Flood。",
        meaning="""
            三次握手的第二步：收到对方的 SYN，本端已回复 SYN+ACK，等待对方
            确认。在现在的 Linux 中，这类连接只是挂在监听 socket 上的轻量请求
            （内核状态 NEW_SYN_RECV，代码 0C），放在半连接队列（SYN 队列）里，
            还不是完整的 socket，也不属于任何进程。
        """,
        side="服务端（被动打开方）。客户端只有在同时打开时才会进入。",
        how_reached="""
            SYN 到达处于 LISTEN 的 socket，内核直接回复 SYN+ACK，应用并不参与。
            收到对方的 ACK 后连接变为 ESTABLISHED，进入全连接队列，等待
            accept()。处于 SYN_SENT 的客户端收到不带 ACK 的 SYN（同时打开）
            也会进入此状态。被动打开时收到 RST 则退回 LISTEN
            （Linux 直接丢弃该请求）。
        """,
        duration="""
            一个往返时间。收不到 ACK 时，Linux 会重传 SYN+ACK，最多
            net.ipv4.tcp_synack_retries = 5 次，间隔从 1 秒起翻倍，
            约 63 秒（1+2+4+8+16+32）后丢弃该请求。
        """,
        trouble="""
            繁忙的服务器上有少量 SYN_RECV 很正常。成百上千、来自大量
            （往往是随机伪造的）源地址且始终完不成握手，就是 SYN Flood 攻击，
            内核日志里会出现“Possible SYN flooding on port … Sending cookies”。
            真实客户端也卡在这里，说明它们的 ACK 在回程中丢了：非对称路由、
            防火墙或 NAT 丢包、MTU 问题等。如果客户端已经显示 ESTABLISHED，
            服务端却仍是 SYN_RECV，说明监听 socket 的全连接队列满了，
            Linux 正在丢弃这些 ACK（参见 LISTEN）。
        """,
        advice=(
            """保持 SYN Cookie 开启：net.ipv4.tcp_syncookies = 1（默认值），
            半连接队列溢出后改用 cookie 应答，不再占用队列。""",
            """遭受攻击时：调大 net.ipv4.tcp_max_syn_backlog，调低
            net.ipv4.tcp_synack_retries（例如 2）让半连接更快过期，
            并在上游做流量清洗。""",
            "正常客户端卡住：两个方向一起抓包（tcpdump），找出 ACK 在哪里丢失。",
            "按监听端口和来源地址统计：ss -tn state syn-recv。",
        ),
    ),
    State.ESTABLISHED: _t(
        title="连接已建立：双方可以收发数据",
        summary="三次握手已完成，双方可以互相收发数据。",
        hint="正常状态；留意数量、Recv-Q/Send-Q 以及已经失联的对端。",
        meaning="""
            连接的数据传输阶段。双方都已知道对方的序列号，可以收发数据。
            健康的机器上，大多数 socket 不是 ESTABLISHED 就是 LISTEN。
        """,
        side="双方。",
        how_reached="""
            客户端：在 SYN_SENT 收到服务端的 SYN+ACK，回复三次握手的最后一个
            ACK，connect() 返回。服务端：在 SYN_RECV 收到这个 ACK；新连接先进入
            监听 socket 的全连接队列，直到被 accept() 取走。
        """,
        duration="""
            应用用多久就持续多久：短到一次 HTTP 请求的几毫秒，长到数据库
            连接池、SSH 的好几天。内核不会主动关闭空闲连接：TCP keepalive
            默认关闭，应用开启 SO_KEEPALIVE 后，也要空闲
            net.ipv4.tcp_keepalive_time = 7200 秒才发第一个探测包。
        """,
        trouble="""
            本身不是问题。需要留意三点：一是数量远超业务所需（客户端每次请求
            都新建连接而不复用，或连接池泄漏）；二是 Recv-Q 持续偏高（本端应用
            没有及时读取）或 Send-Q 持续偏高（对端或网络收不动）；三是对端早已
            消失（断电、NAT 或防火墙忘记了这条流），空闲连接会一直停在
            ESTABLISHED。
        """,
        advice=(
            "复用连接：HTTP keep-alive、设置上限的连接池。",
            """检测失联的对端：开启 SO_KEEPALIVE 并调小 TCP_KEEPIDLE、
            TCP_KEEPINTVL、TCP_KEEPCNT，或者使用 TCP_USER_TIMEOUT、
            应用层心跳。""",
            "找出连接的持有者：ss -tnp state established，按进程和对端汇总。",
        ),
    ),
    State.FIN_WAIT1: _t(
        title="先关闭的一方：已发 FIN，等待确认",
        summary="本端先关闭（主动关闭），已发出 FIN，等待对方确认。",
        hint="正常只持续一个往返；大量出现说明对端不回 ACK 或不读数据。",
        meaning="""
            四次挥手中先关闭一方的第一步。本端发出 FIN，表示不再发送数据。
            如果用的是 shutdown(SHUT_WR)，本端仍然可以接收；如果调用了 close()，
            就没有人再读数据，对方再发来新数据时 Linux 回复 RST 并直接断开。
            然后等待对方确认这个 FIN。发送队列里还没发出的数据会先于 FIN 发出。
        """,
        side="""
            主动关闭方：谁先调用 close() 就是谁。HTTP 场景中常常是服务端，
            多数客户端程序则是客户端自己。
        """,
        how_reached="""
            在 ESTABLISHED 中调用 close() 或 shutdown(SHUT_WR)（或在 SYN_RECV
            中调用 close()），内核发出 FIN。之后：收到对 FIN 的 ACK，进入
            FIN_WAIT2；在此之前先收到对方的 FIN（同时关闭），进入 CLOSING；
            一个报文同时带着 ACK 和对方的 FIN，则直接进入 TIME_WAIT。
        """,
        duration="""
            一个往返时间。FIN 得不到确认时，Linux 按指数退避重传。应用已经
            close() 的 socket 成为孤儿连接，重传 net.ipv4.tcp_orphan_retries 次
            后放弃（默认值 0 表示 8 次）；重传超时较大时，可能持续好几分钟。
        """,
        trouble="""
            大量 FIN_WAIT1 说明对端不确认：对端已经消失（崩溃、断网、NAT 或
            防火墙表项过期），或者对端不再读取数据、接收窗口为 0，本端剩下的
            数据和 FIN 都发不出去（Send-Q 一直大于 0）。慢速或恶意客户端
            可以借此长期占用服务器内存。
        """,
        advice=(
            """查看 Send-Q 和定时器：ss -tnoe state fin-wait-1。Send-Q 大于 0
            且定时器为 persist，说明对端接收窗口为 0。""",
            """繁忙的服务器可调低 net.ipv4.tcp_orphan_retries（例如 2 或 3），
            让孤儿连接更早放弃；net.ipv4.tcp_max_orphans 限制孤儿连接总数。""",
            "检查到这些对端的网络路径：防火墙、NAT 超时。",
        ),
    ),
    State.FIN_WAIT2: _t(
        title="半关闭：FIN 已被确认，等待对方的 FIN",
        summary="本端的 FIN 已被确认，等待对方也关闭（半关闭）。",
        hint="对方一关闭就结束；大量存在说明对方迟迟不关闭（对端处于 CLOSE_WAIT）。",
        meaning="""
            本端方向已经关闭并得到确认，连接处于半关闭状态。对方发来自己的
            FIN 之前仍然可以继续发送数据：本端用的是 shutdown(SHUT_WR) 时照常
            接收；调用了 close() 时 Linux 回复 RST 并直接断开。这个 FIN
            什么时候来，完全取决于对端应用。
        """,
        side="主动关闭方。",
        how_reached="""
            在 FIN_WAIT1 收到对本端 FIN 的 ACK 后进入。收到对方的 FIN 时，
            回复最后一个 ACK，进入 TIME_WAIT。
        """,
        duration="""
            直到对方关闭为止。如果应用已经调用 close()，这个 socket 就成了
            孤儿连接（netstat 的进程列只显示“-”），Linux 最多再等
            net.ipv4.tcp_fin_timeout = 60 秒，收不到对方的 FIN 就直接回收。
            如果应用只调用了 shutdown(SHUT_WR) 并且仍持有 socket，则没有超时，
            对方不关闭就一直等下去。
        """,
        trouble="""
            大量 FIN_WAIT2 说明对方一直不发 FIN：对端应用已经读到 EOF，
            却没有调用 close()，对端机器上对应的连接都处于 CLOSE_WAIT。
            问题出在对端。孤儿连接会在 tcp_fin_timeout 之后自行清理，
            仍被进程持有的则不会。
        """,
        advice=(
            """到对端机器上查看同一批连接是否处于 CLOSE_WAIT
            （参见 tcplens explain CLOSE_WAIT）。""",
            """net.ipv4.tcp_fin_timeout 可以缩短孤儿连接的等待时间；
            它不影响 TIME_WAIT。""",
            """如果程序用 shutdown(SHUT_WR) 做半关闭，要继续读到 EOF 后再调用
            close()，并自己设置超时。""",
        ),
    ),
    State.CLOSE_WAIT: _t(
        title="对方已关闭：等待本端应用调用 close()",
        summary="对方已关闭（发来 FIN），正在等本端应用调用 close()。",
        hint="应当很短暂；大量或长期存在说明应用没有调用 close()。",
        meaning="""
            对方发来 FIN，表示不会再发送数据。内核立即回复 ACK，并把 EOF
            交给应用（read() 返回 0）。接下来轮到本端应用：它还可以继续发送
            数据，但必须调用 close()（或 shutdown()）发出自己的 FIN。在此之前，
            TCP 已经无事可做。
        """,
        side="被动关闭方：收到第一个 FIN 的一方。",
        how_reached="""
            在 ESTABLISHED 收到对方的 FIN 后进入，内核回复 ACK。只有应用调用
            close() 时才会离开：发出 FIN，进入 LAST_ACK；收到 RST，或者进程
            退出、内核关闭它的文件描述符时，也会离开。
        """,
        duration="""
            正常情况下，只是程序发现 EOF 并关闭 socket 所需的时间，毫秒级。
            内核没有任何超时：程序不关闭，它就一直停在 CLOSE_WAIT，
            直到进程退出。
        """,
        trouble="""
            CLOSE_WAIT 大量出现或长期不消失，几乎都是持有它的应用（看进程列）
            的 bug：没有处理 EOF，或者在某条代码路径上忘了关闭 socket
            （异常分支没有 finally、连接池留着已被服务端关闭的连接、HTTP
            响应体没有关闭）。每一个都占着一个文件描述符和内存，最终进程会报
            “Too many open files”。Recv-Q 为 1 就是对方那个还没被读取的 FIN：
            应用连 EOF 都还没读到。用 ss -K、tcpkill 杀掉这些连接或者重启进程，
            只能暂时掩盖泄漏，过一阵又会堆积起来。
        """,
        advice=(
            "找到持有者：ss -tnp state close-wait，再看这些连接原来连向哪些对端。",
            """修改代码：read() 返回 0 时以及每条错误路径上都要关闭 socket
            （try/finally、with、defer、RAII）；让连接池丢弃已被服务端关闭的
            连接。""",
            """修复之前，监控进程的文件描述符：ls /proc/PID/fd | wc -l，
            与 ulimit -n 对比。""",
            "调内核参数没有用：没有任何 sysctl 能让 CLOSE_WAIT 超时。",
        ),
    ),
    State.CLOSING: _t(
        title="双方同时关闭：等待对本端 FIN 的确认",
        summary="双方几乎同时发出 FIN（同时关闭），正在等对方确认本端的 FIN。",
        hint="罕见且短暂；长期存在说明 ACK 丢失或对端已经消失。",
        meaning="""
            同时关闭时才会出现的罕见状态：本端发出 FIN 后，还没等到对它的
            确认，却先收到了对方的 FIN。两个方向都已关闭，只差对方对本端
            FIN 的确认。
        """,
        side="双方几乎同时关闭时，两端都会进入，二者都是主动关闭方。",
        how_reached="""
            在 FIN_WAIT1 收到对方的 FIN（其中没有对本端 FIN 的 ACK），回复 ACK
            后进入 CLOSING。收到对本端 FIN 的 ACK 后进入 TIME_WAIT。
        """,
        duration="""
            一个往返时间。ACK 丢失时会重传 FIN；孤儿连接重传
            net.ipv4.tcp_orphan_retries 次后放弃。
        """,
        trouble="""
            偶尔看到一个 CLOSING 无关紧要。大量或长期存在，说明本端的 FIN
            或对它的 ACK 一再丢失：对端发完 FIN 就消失了，或者路径上丢包、
            有中间设备干扰。
        """,
        advice=(
            "检查到这些对端的路径是否丢包（ss -tni 能看到重传次数）。",
            """FIN 重传用完后它们会自行消失；除非数量很多，否则无需调参
            （数量多时参见 tcp_orphan_retries）。""",
        ),
    ),
    State.LAST_ACK: _t(
        title="后关闭的一方：已发 FIN，等待最后的 ACK",
        summary="被动关闭方也发出了 FIN，正在等最后一个 ACK。",
        hint="正常只持续一个往返；大量出现说明最后的 ACK 丢了。",
        meaning="""
            四次挥手中后关闭一方的最后一步：对方先关闭，本端应用随后调用
            close()，FIN 已经发出。对方一确认，连接就彻底结束，本端不需要
            经历 TIME_WAIT。
        """,
        side="被动关闭方。",
        how_reached="""
            在 CLOSE_WAIT 中应用调用 close()，发出 FIN 后进入。收到对该 FIN
            的 ACK 后进入 CLOSED，socket 从列表中消失；收到 RST 也会结束。
        """,
        duration="""
            一个往返时间。ACK 丢失时会按退避重传 FIN（孤儿连接最多重传
            net.ipv4.tcp_orphan_retries 次），直到得到确认或放弃。处于
            TIME_WAIT 的对方会对重传的 FIN 再回一个 ACK，这正是 TIME_WAIT
            存在的意义。
        """,
        trouble="""
            大量 LAST_ACK 说明最后的 ACK 没有回来：对方发完 FIN 就消失了
            （崩溃、RST 丢失、NAT 或防火墙表项已经过期），或者路径上丢包。
        """,
        advice=(
            "检查到这些对端的网络路径，以及防火墙、NAT 的超时设置。",
            """FIN 重传用完后它们会自行放弃；堆积很多时，可以调低
            net.ipv4.tcp_orphan_retries。""",
        ),
    ),
    State.TIME_WAIT: _t(
        title="先关闭的一方：等待 2MSL 后彻底释放",
        summary="主动关闭方等待 2MSL（Linux 上为 60 秒），让网络中残留的报文消失。",
        hint="主动关闭后的正常状态；数以万计时可能耗尽客户端端口。",
        meaning="""
            连接已经结束，但先关闭的一方还要保留一条简短的记录，时长为两倍
            最大报文段寿命（2MSL）。原因有二：一是本端最后的 ACK 如果丢了，
            对方会重传 FIN，本端可以再确认一次，而不是回一个 RST；二是让旧
            连接迟到的重复报文在网络中消失，之后同一个四元组才能用于新连接。
        """,
        side="""
            只有主动关闭方，即发出第一个 FIN 的一方。被动关闭方经 LAST_ACK
            直接到 CLOSED，无需等待。
        """,
        how_reached="""
            在 FIN_WAIT2 收到对方的 FIN（回复最后一个 ACK）；在 CLOSING 收到对
            本端 FIN 的 ACK；在 FIN_WAIT1 收到同时带 ACK 和 FIN 的报文。
        """,
        duration="""
            2MSL：Linux 上固定为 60 秒（include/net/tcp.h 中的
            TCP_TIMEWAIT_LEN），没有 sysctl 能修改；tcp_fin_timeout 管的是
            FIN_WAIT2，不是 TIME_WAIT。BSD 和 macOS 等待 2 × net.inet.tcp.msl，
            Windows 由注册表项 TcpTimedWaitDelay 决定。如果对方的 FIN 再次
            到达，计时会重新开始。
        """,
        trouble="""
            繁忙的主机上有几千个 TIME_WAIT 很正常，开销也很小：Linux 只保留
            一条不属于任何进程、没有缓冲区的精简记录。真正的问题出现在客户端
            向同一个服务端地址和端口频繁建立短连接时：每个连接要占用一个本地
            端口 60 秒，默认端口范围 32768-60999 只有 28232 个端口，也就是
            每秒大约 470 个新连接，再多 connect() 就会报
            “Cannot assign requested address”（EADDRNOTAVAIL）。超过
            net.ipv4.tcp_max_tw_buckets 后，新关闭的连接直接跳过 TIME_WAIT，
            计入 TcpExtTCPTimeWaitOverflow（旧内核还会在日志中打印
            “time wait bucket table overflow”）。
        """,
        advice=(
            "复用连接：HTTP keep-alive 和连接池能从根源上解决问题。",
            """让客户端先关闭，这样 TIME_WAIT 分散在众多客户端上，而不是集中在
            一台服务器上。""",
            """对外发起的连接可以设置 net.ipv4.tcp_tw_reuse = 1（Linux 默认为 2，
            只对回环地址生效）：在 TCP 时间戳能保证安全时，新连接可以接管处于
            TIME_WAIT 的端口。必要时扩大 net.ipv4.ip_local_port_range。""",
            """服务重启时报“Address already in use”，应在监听 socket 上设置
            SO_REUSEADDR，这才是正解，而不是改 sysctl。""",
            """不要使用 net.ipv4.tcp_tw_recycle：它会让 NAT 后面的客户端连不上，
            已在 Linux 4.12 中移除。也不要为此把 SO_LINGER 设为 0：那会用 RST
            代替正常关闭，可能丢数据。""",
        ),
    ),
    State.CLOSED: _t(
        title="没有连接",
        summary="没有连接：每个 TCP socket 的起点和终点。",
        hint="很少出现在列表中；最多是程序还没关闭的残留 socket。",
        meaning="""
            连接建立之前和结束之后的假想状态（RFC 9293 称之为“没有任何连接
            状态”）。内核不再保存连接，所以 socket 一进入 CLOSED，Linux 就把它
            从 netstat 和 ss 读取的表中移除。仍可能看到的写法有：net-tools 的
            netstat 把代码 07 显示为 CLOSE；ss 显示为 UNCONN（/proc/net/udp 里
            所有未连接的 UDP socket 都是 07）；Linux 6.8 起，ss 可以列出已绑定
            但未使用的 TCP socket（BOUND_INACTIVE，代码 13）；Windows 显示
            CLOSED，删除连接的过程中显示 DELETE_TCB。
        """,
        side="双方：第一次调用之前，以及连接结束之后。",
        how_reached="""
            每个新 socket 都从这里开始。连接在这里结束：被动关闭方在 LAST_ACK
            收到对 FIN 的 ACK；主动关闭方在 TIME_WAIT 的 2MSL 计时结束；客户端
            在 SYN_SENT 收到 RST（连接被拒绝）或超时；在 LISTEN 或 SYN_SENT
            中调用 close()；以及任何状态下收到合法的 RST 或中止连接
            （SO_LINGER 超时设为 0）。
        """,
        duration="""
            不是持续的状态：内核会立即释放连接。但在程序调用 close() 之前，
            socket 的文件描述符依然存在，例如 connect() 失败或连接被重置之后。
        """,
        trouble="""
            本身不是问题。如果程序留着大量已被重置或连接失败、却从未关闭的
            socket，就和 CLOSE_WAIT 一样在泄漏文件描述符：ls -l /proc/PID/fd
            能看到它们（socket:[inode]），/proc/net/tcp 里却没有对应的行，
            lsof 显示“can't identify protocol”。
        """,
        advice=(
            "connect() 失败或连接被重置后，要像其他错误路径一样关闭文件描述符。",
            """对比进程持有的 socket 和内核表：ls -l /proc/PID/fd | grep socket
            与 ss -tanp。""",
            """在 UDP 列表里看到 CLOSE 或 UNCONN？UDP 没有连接状态，
            这个代码只表示“未连接”。""",
        ),
    ),
    State.UNKNOWN: _t(
        title="状态未知",
        summary="不是 TCP 状态：工具无法判断这个 socket 处于哪个状态。",
        hint="不应出现；请查看原始输出行。",
        meaning="""
            当 socket 的状态对应不到 11 个 TCP 状态中的任何一个时，tcplens
            （和 net-tools 的 netstat 一样）会显示 UNKNOWN：可能是比工具更新的
            内核状态代码，保存的输出被截断或损坏，或者是某个平台特有的值。
            它并不说明连接本身有什么问题。
        """,
        side="与哪一端无关：它描述的是输出，而不是连接。",
        how_reached="""
            没有任何 TCP 事件会进入这个状态，它来自解析：工具的表里没有的
            内核代码，或者没有任何工具会打印的状态名。
        """,
        duration="不适用：它只是一个标签，不是连接的某个阶段。",
        trouble="""
            只要出现 UNKNOWN 就值得看一看：输入可能已经损坏，或者生成它的
            工具比内核旧。
        """,
        advice=(
            """查看原始输出行或 /proc/net/tcp 中的十六进制代码，再对该代码运行
            tcplens explain（例如 tcplens explain 0A）。""",
            "与新版 iproute2 的 ss 对比，它认识最新的内核状态。",
            "如果 tcplens 对一个你叫得出名字的状态显示 UNKNOWN，请把那一行报告给我们。",
        ),
    ),
}


def _build() -> Mapping[tuple[State, str], Explanation]:
    table: dict[tuple[State, str], Explanation] = {}
    for lang, texts in (("en", _EN), ("zh", _ZH)):
        missing = [state.value for state in State if state not in texts]
        if missing:  # pragma: no cover - a test asserts both languages are complete
            raise RuntimeError(f"explain: no {lang} text for {', '.join(missing)}")
        for state, text in texts.items():
            table[(state, lang)] = Explanation(
                state=state,
                lang=lang,
                title=text.title,
                meaning=text.meaning,
                how_reached=text.how_reached,
                side=text.side,
                duration=text.duration,
                trouble=text.trouble,
                advice=text.advice,
                summary=text.summary,
                hint=text.hint,
                inspect=_INSPECT[state],
            )
    return MappingProxyType(table)


_EXPLANATIONS: Final = _build()
