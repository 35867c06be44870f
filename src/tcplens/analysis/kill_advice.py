"""What to say when someone closes connections by force (``tcplens kill``), in English and Chinese.

Closing a socket rarely fixes what made it pile up, so the advice is given
at the point of action, from the same texts the doctor uses:

* CLOSE_WAIT: the doctor's leak finding for each owning process, run over
  the sockets just closed (the process keeps the descriptors and leaks the
  next connection the same way);
* TIME_WAIT: why removing it early gives up its protection, what this kernel
  answered (measured per socket, not assumed), and the doctor's TIME_WAIT
  advice with this machine's ``tcp_tw_reuse``;
* a kernel without SOCK_DESTROY: the other ways out.

Pure: takes the records and kernel settings, returns texts; views print them.
"""

from __future__ import annotations

import errno
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from tcplens.analysis.doctor import diagnose
from tcplens.analysis.doctor_texts import PHRASES, TEXTS, Localized, render
from tcplens.model.linux import TIME_WAIT_SECONDS
from tcplens.model.states import State
from tcplens.sources.actions import Failure
from tcplens.sources.kernel import KernelSettings
from tcplens.sources.records import Snapshot, Socket

__all__ = ["ADVICE", "Advice", "advise", "no_sock_destroy"]

L = Localized


@dataclass(frozen=True, slots=True)
class Advice:
    """One piece of advice: a heading and its paragraphs, each in both languages."""

    topic: str
    title: Localized
    paragraphs: tuple[Localized, ...]
    #: what this kernel answered when asked (empty for a dry run): facts, not advice
    measured: tuple[Localized, ...] = ()


#: the texts of this module; a test renders every one in both languages
ADVICE: Final[dict[str, Localized]] = {
    "close_wait_title": L(
        "CLOSE_WAIT is a leak in the application: closing the sockets does not fix it",
        "CLOSE_WAIT 是应用程序的泄漏：强行关闭这些连接并不能修复它",
    ),
    "close_wait_lead": L(
        "The peer of a CLOSE_WAIT socket has already closed. Closing the socket here sends the "
        "peer an RST, but the owning process keeps the descriptor until it calls close() (reads "
        "still return what had arrived, then end-of-file; the next write fails with "
        "ECONNABORTED), and the leak comes back with the next connection the peer closes.",
        "CLOSE_WAIT 连接的对端早已关闭。在本机强行关闭它，内核会向对端发送 RST，但持有它的进程仍然"
        "占着文件描述符，直到它调用 close()（读操作仍会先读到已收到的数据，然后是 EOF；下一次写会"
        "得到 ECONNABORTED）；对端下一次关闭连接时，泄漏还会再次出现。",
    ),
    "time_wait_title": L(
        "Closing TIME_WAIT is rarely right",
        "强行清除 TIME_WAIT 几乎从来都不是正确的做法",
    ),
    "time_wait_lead": L(
        "TIME_WAIT belongs to no process: it is the kernel's record that this end closed "
        "first, and it ends by itself after {seconds} s. While it lasts, delayed segments of "
        "the old connection cannot be taken for a new one on the same ports; removing it early "
        "gives that protection up, and the next burst of short connections builds the same "
        "pile again.",
        "TIME_WAIT 不属于任何进程：它是内核记下的“本端先关闭”的状态，{seconds} 秒后自动结束。"
        "在此期间，旧连接迟到的报文不会被误当成同一端口上新连接的数据；提前清除就放弃了这层保护，"
        "而下一波短连接又会堆出同样多的 TIME_WAIT。",
    ),
    "time_wait_removed": L(
        "This kernel removed {count} TIME_WAIT entr{count:y|ies} (SOCK_DESTROY on a minisocket "
        "removes it; no segment is sent).",
        "本机内核清除了 {count} 个 TIME_WAIT（对 TIME_WAIT 执行 SOCK_DESTROY 只是删除记录，不发送"
        "任何报文）。",
    ),
    "time_wait_refused": L(
        "This kernel cannot remove TIME_WAIT entries: SOCK_DESTROY answered '{reason}' for "
        "{count} of them (tcp_abort() handles TIME_WAIT only on newer kernels).",
        "本机内核无法清除 TIME_WAIT：其中 {count} 个的 SOCK_DESTROY 返回“{reason}”（只有较新的"
        "内核的 tcp_abort() 才能处理 TIME_WAIT）。",
    ),
    "time_wait_instead": L("What to change instead: ", "应该改的是："),
    "unsupported_title": L(
        "This kernel cannot close sockets from outside",
        "本机内核不支持从外部关闭连接",
    ),
    "unsupported_ways": L(
        "Other ways out: fix or restart the owning process (a CLOSE_WAIT leak ends when it "
        "closes its descriptors); let the timers end them (TIME_WAIT lasts {seconds} s; "
        "keepalive or TCP_USER_TIMEOUT end connections to dead peers); ss -K needs the same "
        "kernel support, a kernel built with CONFIG_INET_DIAG_DESTROY=y has it.",
        "其他办法：修复或重启持有连接的进程（进程关闭文件描述符后，CLOSE_WAIT 泄漏才会结束）；"
        "等计时器自然结束（TIME_WAIT 持续 {seconds} 秒；keepalive 或 TCP_USER_TIMEOUT 会结束连往"
        "已失联对端的连接）；ss -K 需要同样的内核支持，编译时打开 CONFIG_INET_DIAG_DESTROY=y 的"
        "内核才有。",
    ),
}


def _is_loopback(ip: str) -> bool:
    try:
        return ipaddress.ip_address(ip.split("%")[0]).is_loopback
    except ValueError:
        return False


def _close_wait(closed: Sequence[Socket], settings: KernelSettings) -> Advice | None:
    socks = [s for s in closed if s.state is State.CLOSE_WAIT and s.proto == "tcp"]
    if not socks:
        return None
    findings = [
        f
        for f in diagnose(Snapshot(list(socks), source="netlink"), settings)
        if f.rule == "close-wait"
    ]
    paragraphs = [ADVICE["close_wait_lead"]]
    for finding in findings:
        paragraphs.append(finding.title + L(": ", "：") + finding.advice)
    return Advice("close-wait", ADVICE["close_wait_title"], tuple(paragraphs))


def _time_wait(
    closed: Sequence[Socket], failed: Sequence[Failure], settings: KernelSettings, *, dry_run: bool
) -> Advice | None:
    removed = [s for s in closed if s.state is State.TIME_WAIT]
    refused = [f for f in failed if f.socket.state is State.TIME_WAIT]
    if not removed and not refused:
        return None
    paragraphs = [render(ADVICE["time_wait_lead"], seconds=TIME_WAIT_SECONDS)]
    measured: list[Localized] = []
    if removed and not dry_run:
        measured.append(render(ADVICE["time_wait_removed"], count=len(removed)))
    unsupported = [f for f in refused if f.errno == errno.EOPNOTSUPP]
    if unsupported:
        measured.append(
            render(
                ADVICE["time_wait_refused"], count=len(unsupported), reason=unsupported[0].reason
            )
        )
    reuse = settings.tcp_tw_reuse
    loopback = all(_is_loopback(f.remote.ip) for f in [*removed, *(x.socket for x in refused)])
    note = {0: "reuse_0", 1: "reuse_1"}.get(
        reuse, "reuse_2_local" if loopback else "reuse_2_remote"
    )
    paragraphs.append(
        ADVICE["time_wait_instead"]
        + render(TEXTS["time-wait"].advice, reuse=reuse, reuse_note=PHRASES[note])
    )
    return Advice("time-wait", ADVICE["time_wait_title"], tuple(paragraphs), tuple(measured))


def advise(
    closed: Sequence[Socket],
    failed: Sequence[Failure],
    settings: KernelSettings,
    *,
    dry_run: bool = False,
) -> list[Advice]:
    """The advice that goes with closing these sockets (CLOSE_WAIT, TIME_WAIT), if any.

    Also given for a dry run (the planned sockets as ``closed``, with
    ``dry_run``): the time to read it is before acting.  What the kernel
    answered is only reported when it was asked.
    """
    out = [_close_wait(closed, settings), _time_wait(closed, failed, settings, dry_run=dry_run)]
    return [advice for advice in out if advice is not None]


def no_sock_destroy() -> Advice:
    """What to do on a kernel whose SOCK_DESTROY answers EOPNOTSUPP."""
    return Advice(
        "unsupported",
        ADVICE["unsupported_title"],
        (render(ADVICE["unsupported_ways"], seconds=TIME_WAIT_SECONDS),),
    )
