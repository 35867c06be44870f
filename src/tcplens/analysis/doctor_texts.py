"""What the doctor says, in English and Chinese, kept apart from the rules as data.

Every finding text is a pair of ``str.format`` templates filled with the
same values; a value may itself be a :class:`Localized` pair (a process
description, a "where"), which is resolved to the same language as the
template.  The Chinese is written for Chinese readers in the vocabulary the
seeds use (主动关闭, 被动关闭, 三次握手, 四次挥手, 半连接, 全连接队列), not
translated word by word.  A test checks every template renders in both
languages with the values its rule passes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from tcplens.model.words import fill as fill_counted

__all__ = [
    "GLOSSARY",
    "LANGS",
    "PHRASES",
    "TEXTS",
    "Localized",
    "RuleTexts",
    "render",
    "typeset_zh",
]

#: languages every text exists in
LANGS: Final = ("en", "zh")


@dataclass(frozen=True, slots=True)
class Localized:
    """One text in every language the doctor speaks."""

    en: str
    zh: str

    def get(self, lang: str) -> str:
        """The text in ``lang``; English for a language we do not have."""
        return self.zh if lang == "zh" else self.en

    def __add__(self, other: Localized) -> Localized:
        return Localized(self.en + other.en, self.zh + other.zh)


_IDEOGRAPH: Final = "\u3400-\u4dbf\u4e00-\u9fff"
_FULL_WIDTH_PUNCT: Final = "，。：；、（）“”！？"


def typeset_zh(text: str) -> str:
    """Space Chinese text the way the Chinese ``explain`` texts are spaced.

    A filled template joins text written around a slot with a value that may
    begin or end with Chinese (进程 4242（java）) or Latin (nginx), so spacing
    is decided on the result, not in the template: no space between two
    Chinese characters or next to full-width punctuation, one space between
    a Chinese character and a Latin letter or digit.
    """
    text = re.sub(f"(?<=[{_IDEOGRAPH}])[ \t]+(?=[{_IDEOGRAPH}])", "", text)
    text = re.sub(f"[ \t]*([{_FULL_WIDTH_PUNCT}])[ \t]*", r"\1", text)
    text = re.sub(f"(?<=[{_IDEOGRAPH}])(?=[A-Za-z0-9])", " ", text)
    text = re.sub(f"(?<=[A-Za-z0-9%)\\]])(?=[{_IDEOGRAPH}])", " ", text)
    return text.strip()


def render(template: Localized, **values: object) -> Localized:
    """Fill both templates, resolving :class:`Localized` values per language."""

    def fill(lang: str) -> str:
        resolved = {k: v.get(lang) if isinstance(v, Localized) else v for k, v in values.items()}
        return fill_counted(template.get(lang), **resolved)

    return Localized(fill("en"), typeset_zh(fill("zh")))


@dataclass(frozen=True, slots=True)
class RuleTexts:
    """Title, explanation and advice templates of one kind of finding."""

    title: Localized
    explanation: Localized
    advice: Localized


L = Localized

#: one Chinese term per concept (the words the Chinese ``explain`` texts use);
#: the variants on the right must not appear in any Chinese doctor text
GLOSSARY: Final[dict[str, tuple[str, tuple[str, ...]]]] = {
    "socket": ("socket", ("套接字", "套接口")),
    "orphan": ("孤儿连接", ("无主", "orphan")),
    "peer": ("对端", ("对方",)),
    "timer": ("计时器", ("定时器",)),
    "accept queue": ("全连接队列", ("accept 队列", "接受队列")),
    "SYN queue": ("SYN 队列", ("半连接队列",)),
    "half-open connection": ("半连接", ("半开连接",)),
    "active closer": ("主动关闭方", ("主动断开方",)),
    "ephemeral port": ("临时端口", ("随机端口",)),
    "retransmission": ("重传", ("重发",)),
    "seconds": ("秒", (" s)", " s，", " s。", " seconds")),
}

#: finding kind -> templates; a rule may produce several kinds (server/client TIME_WAIT).
TEXTS: Final[dict[str, RuleTexts]] = {
    "close-wait": RuleTexts(
        L(
            "{who} holds {count} CLOSE_WAIT socket{count:|s} {where}{idle_title}",
            "{who}{where}有 {count} 个 CLOSE_WAIT 连接一直没有关闭{idle_title}",
        ),
        L(
            "The peer closed these connections (it sent FIN and this machine acknowledged it), "
            "but the application never called close() on its end. CLOSE_WAIT has no timeout: "
            "each socket keeps its file descriptor and buffers until the process closes it or "
            "exits, so a growing count is a descriptor leak in the application, typically a "
            "missing close() on an error path or a connection pool that does not notice that "
            "the server went away.{unread}{idle}",
            "对端已经关闭了这些连接（发来了 FIN，本机也回了 ACK），但本端应用程序一直没有调用 "
            "close()。CLOSE_WAIT 没有超时，每个连接都会一直占着文件描述符和缓冲区，直到进程关闭它"
            "或者退出；数量越来越多，就是应用程序在泄漏连接，常见原因是某个错误分支漏了 close()，"
            "或者连接池没有发现对端已经断开。{unread}{idle}",
        ),
        L(
            "Find where {who} sees end-of-file (read() returning 0, or a 'connection closed' "
            "error) and make sure every path closes the socket; make the connection pool "
            "validate and drop dead connections. Killing the sockets (ss -K) does not fix the "
            "leak: the process still holds the descriptors and will leak the next connection "
            "the same way; restarting the process only resets the count.",
            "检查 {who} 读到 EOF（read() 返回 0 或报“连接已关闭”）之后的代码，确保每条路径都会调用 "
            "close()；让连接池在取用时校验并丢弃失效连接。用 ss -K 强行关掉这些 socket 并不能修复"
            "泄漏：进程仍然持有这些文件描述符，下一个连接还会以同样的方式泄漏；重启进程也只是"
            "把数量清零。",
        ),
    ),
    "time-wait": RuleTexts(
        L(
            "{count} TIME_WAIT socket{count:|s} towards {peer}: {share} of the {ports} "
            "ephemeral ports",
            "连往 {peer} 的 TIME_WAIT 有 {count} 个，占用了 {ports} 个临时端口中的 {share}",
        ),
        L(
            "This machine is the active closer: it closed these connections first, and the side "
            "that closes first keeps TIME_WAIT for 60 seconds. Each one pins a local port for "
            "the same peer; once the {ports} ephemeral ports ({range}) are used up, connect() "
            "to {peer} fails with EADDRNOTAVAIL ('Cannot assign requested address').{closer}",
            "本机是主动关闭方：这些连接是本机先关闭的，先关闭的一方要在 TIME_WAIT 停留 60 秒。"
            "每个 TIME_WAIT 都占着一个连往同一对端的本地端口；{ports} 个临时端口（{range}）用完"
            "之后，再向 {peer} 发起 connect() 就会失败（EADDRNOTAVAIL，“Cannot assign requested "
            "address”）。{closer}",
        ),
        L(
            "Reuse connections (HTTP keep-alive, a connection pool) instead of opening one per "
            "request. tcp_tw_reuse is {reuse}: {reuse_note} Widening ip_local_port_range buys "
            "headroom. Do not hide TIME_WAIT with SO_LINGER 0 or a shorter timer: it protects "
            "new connections from delayed segments of old ones.",
            "复用连接（HTTP keep-alive、连接池），不要每个请求都新建连接。tcp_tw_reuse 当前为 "
            "{reuse}：{reuse_note}调大 ip_local_port_range 可以多留一些余量。不要用 SO_LINGER 0 "
            "或缩短计时器来“消灭”TIME_WAIT：它的作用是防止旧连接迟到的报文混进新连接。",
        ),
    ),
    "time-wait-server": RuleTexts(
        L(
            "{count} TIME_WAIT socket{count:|s} on server port {port}: the server closes first",
            "服务端口 {port} 上有 {count} 个 TIME_WAIT：服务端先关闭了连接",
        ),
        L(
            "The server on port {port}{server} closes connections before its clients do, so "
            "TIME_WAIT stays on the server. That does not exhaust ports (the server port is "
            "fixed and each client brings its own), but every entry costs memory and counts "
            "towards tcp_max_tw_buckets ({buckets}).",
            "端口 {port} 上的服务端{server}比客户端先关闭连接，所以 TIME_WAIT 留在了服务端。"
            "这不会耗尽端口（服务端口固定，每个客户端各用自己的端口），"
            "但每个 TIME_WAIT 都占内存，并计入 tcp_max_tw_buckets（{buckets}）。",
        ),
        L(
            "Usually harmless. To move TIME_WAIT to the clients, let them close first (keep "
            "connections alive and close only after the client's FIN).",
            "通常无害。如果想让 TIME_WAIT 留在客户端，就让客户端先关闭（保持长连接，等收到客户端的 "
            "FIN 之后再关闭）。",
        ),
    ),
    "time-wait-buckets": RuleTexts(
        L(
            "{count} TIME_WAIT socket{count:|s}: {share} of tcp_max_tw_buckets ({buckets})",
            "TIME_WAIT 共 {count} 个，达到 tcp_max_tw_buckets（{buckets}）的 {share}",
        ),
        L(
            "Beyond tcp_max_tw_buckets the kernel destroys new TIME_WAIT sockets at once and logs "
            "'TCP: time wait bucket table overflow' (counter TCPTimeWaitOverflow: {overflows}); "
            "delayed segments of old connections can then be taken for new ones.",
            "超过 tcp_max_tw_buckets 之后，内核会直接销毁新的 TIME_WAIT 并记录“TCP: time wait "
            "bucket table overflow”（计数器 TCPTimeWaitOverflow：{overflows}）；旧连接迟到的报文"
            "就可能被当成新连接的数据。",
        ),
        L(
            "Find the active closer (the TIME_WAIT findings per peer or port) and reuse "
            "connections; raise tcp_max_tw_buckets only if memory allows.",
            "先找出主动关闭方（按对端或端口统计的 TIME_WAIT 结论），改用长连接；内存充足时再考虑调"
            "大 "
            "tcp_max_tw_buckets。",
        ),
    ),
    "syn-recv": RuleTexts(
        L(
            "{count} half-open connection{count:|s} (SYN_RECV) on listener {listener}: {share} "
            "of its SYN backlog ({limit})",
            "监听 {listener} 上有 {count} 个半连接（SYN_RECV），占 SYN 队列（{limit}）的 {share}",
        ),
        L(
            "Clients sent SYN and this machine answered SYN-ACK, but the last ACK of the "
            "three-way handshake has not come back. Normally that takes one round trip. Many "
            "at once means a SYN flood (often from spoofed addresses; here {peers} distinct "
            "sources) or a return path that drops this machine's SYN-ACKs. The kernel "
            "retransmits each SYN-ACK up to tcp_synack_retries ({synack}) times.{retrans}",
            "客户端发来了 SYN，本机也回了 SYN-ACK，但三次握手的最后一个 ACK 一直没有回来。正常情况"
            "下这只需要一个往返时间。同时出现大量半连接，要么是 SYN 洪水攻击（来源地址常常是伪造的"
            "；"
            "这里共有 {peers} 个不同来源），要么是本机的 SYN-ACK 在回程路上被丢弃了。内核对每个 "
            "SYN-ACK 最多重传 tcp_synack_retries（{synack}）次。{retrans}",
        ),
        L(
            "{cookies} Check firewalls and routes on the SYN-ACK's way back; against a flood, "
            "rate-limit SYNs upstream. A larger listen() backlog, somaxconn ({somaxconn}) and "
            "tcp_max_syn_backlog ({max_syn}) make the queue longer.",
            "{cookies}检查 SYN-ACK 回程路径上的防火墙和路由；如果是洪水攻击，在上游对 SYN 限速。调"
            "大 "
            "listen() 的 backlog、somaxconn（{somaxconn}）和 tcp_max_syn_backlog（{max_syn}）可以"
            "加长队列。",
        ),
    ),
    "accept-queue": RuleTexts(
        L(
            "Accept queue of {listener} is {fullness}: {pending} connection{pending:|s} "
            "waiting for accept(), backlog {backlog}",
            "{listener} 的全连接队列{fullness}：{pending} 个连接在等待 accept()，"
            "backlog 为 {backlog}",
        ),
        L(
            "These connections completed the three-way handshake, but {who} has not called "
            "accept() on them. When the queue is full, Linux drops new SYNs and final ACKs "
            "(counted in ListenOverflows and ListenDrops{counters}), so clients see slow or "
            "failing connects: a Linux client retransmits its SYN after 1, 2, 3, 4, 5, 7, 11 s "
            "(Linux 6.5+ defaults; 1, 3, 7, 15 s before).",
            "这些连接已经完成了三次握手，但 {who} 还没有调用 accept() 把它们取走。队列满了以后，"
            "Linux 会丢弃新来的 SYN 和握手的最后一个 ACK（计入 ListenOverflows 和 ListenDrops"
            "{counters}），客户端就会感到连接很慢甚至失败：Linux 客户端会在第 1、2、3、4、5、7、11 "
            "秒"
            "重传 SYN（Linux 6.5 起的默认值；之前是第 1、3、7、15 秒）。",
        ),
        L(
            "Make {who} accept faster (more accept threads or workers, an event loop that is not "
            "blocked). A larger backlog (listen(fd, N), capped by somaxconn = {somaxconn}) absorbs "
            "bursts, but does not help a server that has stopped accepting.",
            "让 {who} 更快地 accept()（增加 accept 线程或工作进程，避免事件循环被阻塞）。调大 "
            "backlog（listen(fd, N)，上限为 somaxconn = {somaxconn}）能扛住突发流量，但救不了已经"
            "不再 accept() 的服务。",
        ),
    ),
    "listen-overflows": RuleTexts(
        L(
            "Accept queues overflowed {overflows} time{overflows:|s} since boot (ListenOverflows); "
            "{drops} connection attempts dropped at listeners (ListenDrops)",
            "开机以来全连接队列溢出 {overflows} 次（ListenOverflows），监听 socket 共丢弃 {drops} "
            "次"
            "连接请求（ListenDrops）",
        ),
        L(
            "No accept queue is full right now, but at some point since boot a server did not "
            "accept() fast enough and the kernel dropped handshakes.",
            "当前没有已满的全连接队列，但开机以来曾有服务端 accept() 跟不上，"
            "内核因此丢弃过握手报文。",
        ),
        L(
            "Run the doctor again during peak load, or watch the counter (nstat -az "
            "TcpExtListenOverflows) to see whether it is still growing.",
            "在业务高峰时再运行一次 doctor，或者观察计数器（nstat -az TcpExtListenOverflows）是否"
            "还在增长。",
        ),
    ),
    "fin-wait2": RuleTexts(
        L(
            "{count} FIN_WAIT2 socket{count:|s} towards {peer}: this side closed, the peer has not",
            "与 {peer} 之间的 FIN_WAIT2 有 {count} 个：本端已关闭，对端还没有关闭",
        ),
        L(
            "This side closed first and the peer acknowledged the FIN, but the peer has not "
            "closed its side. {owner}{peer_link}",
            "本端先关闭，对端也确认了 FIN，但对端自己一直没有关闭。{owner}{peer_link}",
        ),
        L(
            "Look at the peer: FIN_WAIT2 here usually mirrors CLOSE_WAIT there, an application "
            "that does not close its sockets. Lowering tcp_fin_timeout ({fin_timeout} s{assumed}) "
            "shortens how long orphaned FIN_WAIT2 sockets stay.",
            "问题通常在对端：这里的 FIN_WAIT2 对应着对端的 CLOSE_WAIT，也就是对端应用没有关闭连接。"
            "调小 tcp_fin_timeout（{fin_timeout} 秒{assumed}）可以缩短处于 FIN_WAIT2 的孤儿连接的停"
            "留时间。",
        ),
    ),
    "fin-wait1": RuleTexts(
        L(
            "{count} FIN_WAIT1 socket{count:|s} towards {peer} stuck waiting for the peer to take "
            "the remaining data and the FIN",
            "与 {peer} 之间的 FIN_WAIT1 有 {count} 个，卡在等对端收下剩余数据和 FIN",
        ),
        L(
            "This side closed with {bytes} still unacknowledged in Send-Q, and the FIN waits "
            "behind that data. {why} Sockets closed by their process (orphans) are retried "
            "tcp_orphan_retries times and count towards tcp_max_orphans.",
            "本端调用了关闭，但发送队列里还有 {bytes} 没被确认，FIN 排在这些数据后面发不出去。{why}"
            "已被进程关闭的孤儿连接会按 tcp_orphan_retries 重试，并计入 tcp_max_orphans。",
        ),
        L(
            "Check whether the application at {peer} still reads, and the path to it. Lowering "
            "tcp_orphan_retries frees orphaned FIN_WAIT1 sockets sooner.",
            "检查 {peer} 上的应用是否还在读数据，以及到它的网络路径。调小 tcp_orphan_retries 可以让"
            "处于 FIN_WAIT1 的孤儿连接更早释放。",
        ),
    ),
    "last-ack": RuleTexts(
        L(
            "{count} LAST_ACK socket{count:|s} towards {peer} waiting for the final ACK",
            "与 {peer} 之间的 LAST_ACK 有 {count} 个，在等最后一个 ACK",
        ),
        L(
            "The peer closed first; this side then closed too and sent its FIN, but the peer's "
            "ACK for it has not arrived{retrans}. Usually the peer vanished (crashed or "
            "rebooted), a firewall or NAT forgot the connection, or the path drops packets.",
            "对端先关闭，本端随后也关闭并发出了自己的 FIN，"
            "但对端对这个 FIN 的 ACK 一直没有到{retrans}。"
            "通常是对端已经不在了（崩溃或重启），防火墙或 NAT 丢掉了连接状态，或者路径上在丢包。",
        ),
        L(
            "Check that {peer} is reachable and whether a stateful firewall or NAT sits in "
            "between; the kernel gives up after its retransmissions run out.",
            "检查 {peer} 是否可达，中间是否有状态防火墙或 NAT；重传次数用完后内核会放弃这些连接。",
        ),
    ),
    "syn-sent": RuleTexts(
        L(
            "{count} connection attempt{count:|s} to {dest} stuck in SYN_SENT{retrans_title}",
            "连往 {dest} 的 {count} 个连接卡在 SYN_SENT{retrans_title}",
        ),
        L(
            "This machine sent SYN to {dest} and got neither SYN-ACK nor RST back. That is what "
            "a silently filtering firewall, an unreachable host, or a server with a full accept "
            "queue (it drops SYNs) looks like. connect() gives up with ETIMEDOUT after "
            "{syn_total} retransmissions{syn_how}, about {timeout} s after the first SYN.{local}",
            "本机向 {dest} 发出了 SYN，既没有收到 SYN-ACK，也没有收到 RST。防火墙静默丢包、主机"
            "不可达，或者对端的全连接队列已满（会丢弃 SYN），看起来都是这样。connect() 要在 "
            "{syn_total} 次重传{syn_how}、从第一个 SYN 算起约 {timeout} 秒之后才以 ETIMEDOUT 失败。"
            "{local}",
        ),
        L(
            "Test the path (ping, nc -vz {dest_host} {dest_port}), check firewalls and security "
            "groups, and whether the service at {dest} listens and keeps up with accept(). Give "
            "the application a shorter connect timeout so callers fail fast.",
            "测试网络路径（ping、nc -vz {dest_host} {dest_port}），检查防火墙和安全组，确认 {dest} "
            "上的服务在监听并且 accept() 跟得上。给应用设置更短的连接超时，让调用方尽快失败。",
        ),
    ),
    "recv-q": RuleTexts(
        L(
            "{who} is not reading: {bytes} unread on {count} connection{count:|s}",
            "{who}没有在读数据：{count} 个连接上共有 {bytes} 未读",
        ),
        L(
            "Data arrived and the kernel acknowledged it, but the application has not read it "
            "(Recv-Q). When the receive buffer fills, the window advertised to the sender drops "
            "to zero and the sender stalls. A single snapshot cannot tell a momentary backlog "
            "from a stuck reader: run the doctor again to see whether it grows.",
            "数据已经到达，内核也确认了，但应用程序没有读取（Recv-Q）。接收缓冲区满了以后，通告给发"
            "送方"
            "的窗口降为零，发送方就只能停下来。一次快照分不清是短暂积压还是读线程卡住了：再运行一次"
            " "
            "doctor，看它是否还在增长。",
        ),
        L(
            "See what {who} is blocked on (a stack dump: py-spy, jstack, gdb; or strace -p "
            "PID): a reader thread may be stuck or the process overloaded.",
            "查看 {who} 卡在哪里（打印调用栈：py-spy、jstack、gdb，或 strace -p PID）：可能是读线程"
            "卡住了，也可能是进程负载过高。",
        ),
    ),
    "send-q": RuleTexts(
        L(
            "{bytes} not yet acknowledged in Send-Q on {count} connection{count:|s} to {peer}",
            "连往 {peer} 的 {count} 个连接发送队列里有 {bytes} 尚未被确认",
        ),
        L(
            "This side has written data the peer has not acknowledged yet. {why}",
            "本端写出的数据对端还没有确认。{why}",
        ),
        L(
            "If the peer is on this machine, look at the process reading it (a recv-q "
            "finding); otherwise check the peer application and the path (loss, bandwidth).",
            "如果对端就在本机，查看负责读取的那个进程（见 recv-q 结论）；否则检查对端应用和网络路径"
            "（丢包、带宽）。",
        ),
    ),
    "orphans": RuleTexts(
        L(
            "{count} orphaned TCP socket{count:|s}: {share} of tcp_max_orphans ({limit})",
            "TCP 孤儿连接共 {count} 个，达到 tcp_max_orphans（{limit}）的 {share}",
        ),
        L(
            "Orphans are sockets no process owns any more: the application closed them and the "
            "kernel is still finishing the close (FIN_WAIT1, FIN_WAIT2, LAST_ACK, CLOSING). "
            "Beyond tcp_max_orphans the kernel resets them and logs 'too many orphaned "
            "sockets' (TCPAbortOnMemory: {aborts}).",
            "孤儿连接是已经没有进程持有的连接：应用已经关闭，内核还在完成四次挥手（FIN_WAIT1、"
            "FIN_WAIT2、LAST_ACK、CLOSING）。超过 tcp_max_orphans 后内核会直接重置它们，并记录"
            "“too many orphaned sockets”（TCPAbortOnMemory：{aborts}）。",
        ),
        L(
            "Find the peers that do not finish closing (the FIN_WAIT1 and LAST_ACK findings). "
            "Lower tcp_orphan_retries and tcp_fin_timeout to free orphans sooner; raise "
            "tcp_max_orphans only with memory to spare.",
            "找出迟迟不完成关闭的对端（见 FIN_WAIT1 和 LAST_ACK 的结论）。调小 tcp_orphan_retries "
            "和 tcp_fin_timeout 能让孤儿连接更早释放；内存充足时再考虑调大 tcp_max_orphans。",
        ),
    ),
}

#: small phrases the rules assemble into the templates above
PHRASES: Final[dict[str, Localized]] = {
    "pid_name": L("process {pid} ({name})", "进程 {pid}（{name}）"),
    "pid": L("process {pid}", "进程 {pid}"),
    "name": L("process {name}", "进程 {name}"),
    "unknown_process": L("an unidentified process", "未能识别的进程"),
    "the_application": L("the application", "应用程序"),
    "no_processes": L(
        " This dump does not show processes: netstat -p, ss -p or tcplens ls name them.",
        "这份输出不含进程信息：用 netstat -p、ss -p 或 tcplens ls 可以看到是哪个进程。",
    ),
    "no_processes_windows": L(
        " This dump does not show processes: netstat -ano adds the PID column, netstat -anob "
        "(elevated) the program.",
        "这份输出不含进程信息：netstat -ano 会加上 PID 列，netstat -anob（需管理员权限）会显示程序"
        "名。",
    ),
    "no_processes_bsd": L(
        " This dump does not show processes: lsof -nP -iTCP (macOS) or sockstat (FreeBSD) name "
        "them.",
        "这份输出不含进程信息：用 lsof -nP -iTCP（macOS）或 sockstat（FreeBSD）可以看到是哪个进程"
        "。",
    ),
    "no_processes_solaris": L(
        " This dump does not show processes.",
        "这份输出不含进程信息。",
    ),
    "more_processes": L(" and {n} other process{n:|es}", " 等 {n} 个进程"),
    "on_port": L("on port {port}", "在端口 {port} 上"),
    "to_peer": L("to {peer}", "在连往 {peer} 的连接上"),
    "unread": L(
        " Recv-Q is not empty on {n} of them: the application has not even read the end-of-file.",
        "其中 {n} 个的 Recv-Q 不为零：应用程序连对端的结束标志（EOF）都还没读到。",
    ),
    "idle": L(
        " The longest-idle one has received nothing for {age}.",
        "空闲最久的一个已经 {age} 没有收到任何数据。",
    ),
    "idle_title": L(", idle up to {age}", "，最久的已空闲 {age}"),
    "full": L("full", "已满"),
    "nearly_full": L("nearly full", "快满了"),
    "counters": L(
        ": {overflows} and {drops} since boot", "：开机以来分别为 {overflows} 和 {drops}"
    ),
    "reuse_0": L(
        "disabled; 1 lets new outgoing connections reuse ports in TIME_WAIT safely when TCP "
        "timestamps are on.",
        "已关闭；设为 1 可以在开启 TCP 时间戳时安全地复用处于 TIME_WAIT 的端口发起新连接。",
    ),
    "reuse_1": L(
        "enabled, so new outgoing connections may already reuse these ports; failures point "
        "at a peer without TCP timestamps.",
        "已开启，新的出向连接本可以复用这些端口；如果仍然失败，说明对端可能没有开启 TCP 时间戳。",
    ),
    "reuse_2_local": L(
        "loopback only, which applies to this peer; the pile-up still costs memory.",
        "仅对回环地址生效，对这个对端适用；但堆积的 TIME_WAIT 仍然占用内存。",
    ),
    "reuse_2_remote": L(
        "loopback only, which does not apply to this peer; 1 enables reuse for all outgoing "
        "connections when TCP timestamps are on.",
        "仅对回环地址生效，对这个对端不适用；设为 1 可以在开启 TCP 时间戳时对所有出向连接启用复用"
        "。",
    ),
    "owner_orphan": L(
        "No process owns them any more (the application closed or exited), so the kernel "
        "drops them tcp_fin_timeout ({fin_timeout} s{assumed}) after the close.",
        "它们已经没有进程持有（应用已关闭或退出），内核会在关闭后 tcp_fin_timeout（{fin_timeout} 秒"
        "{assumed}）将其清除。",
    ),
    "owner_unknown": L(
        "No owning process is shown for them (orphaned, or owned by another user); orphaned "
        "ones are dropped tcp_fin_timeout ({fin_timeout} s{assumed}) after the close.",
        "没有显示它们所属的进程（可能是孤儿连接，也可能属于其他用户）；孤儿连接会在关闭后 tcp_fin_t"
        "imeout"
        "（{fin_timeout} 秒{assumed}）被清除。",
    ),
    "owner_held": L(
        "{who} still holds them (it called shutdown() rather than close()), so no timer runs "
        "and they wait for the peer's FIN indefinitely.",
        "{who}仍然持有它们（调用的是 shutdown() 而不是 close()），因此没有计时器，它们会一直等对端"
        "的 FIN。",
    ),
    "peer_link": L(
        " The peer is on this machine: {who} holds the other end in CLOSE_WAIT; fix that "
        "leak first.",
        "对端就在本机：{who}持有的另一端处于 CLOSE_WAIT，应先修复那里的泄漏。",
    ),
    "peer_link_unknown": L(
        " The peer is on this machine and holds the other end in CLOSE_WAIT: the application "
        "there does not close; fix that leak first.",
        "对端就在本机，另一端处于 CLOSE_WAIT：那边的应用没有关闭连接，应先修复那里的泄漏。",
    ),
    "assumed": L(", assumed default", "，假定为默认值"),
    "synrecv_retrans": L(
        " The most patient entry has already had {n} SYN-ACK retransmissions.",
        "其中重传次数最多的已重传 SYN-ACK {n} 次。",
    ),
    "cookies_0": L(
        "tcp_syncookies is 0: enable it (1) so that a full SYN queue answers with cookies "
        "instead of dropping legitimate clients.",
        "tcp_syncookies 为 0：建议设为 1，这样 SYN 队列满时内核会用 syncookie 应答，而不是丢弃"
        "正常客户端。",
    ),
    "cookies_1": L(
        "tcp_syncookies is 1: once the queue is full the kernel answers with syncookies "
        "(SyncookiesSent: {sent}), so legitimate clients still get through.",
        "tcp_syncookies 为 1：队列满后内核会改用 syncookie 应答（SyncookiesSent：{sent}），"
        "正常客户端仍然可以连上。",
    ),
    "cookies_2": L(
        "tcp_syncookies is 2: every SYN is answered with a cookie.",
        "tcp_syncookies 为 2：所有 SYN 都用 syncookie 应答。",
    ),
    "fw1_persist": L(
        "The peer advertises a zero window (its application stops reading), so this side "
        "only sends window probes ({n} so far).",
        "对端通告的接收窗口为零（对端应用不再读数据），本端只能发送窗口探测（已发 {n} 次）。",
    ),
    "fw1_retrans": L(
        "Retransmissions go unanswered ({n} so far): the peer is gone or packets are dropped.",
        "重传一直没有回应（已重传 {n} 次）：对端已不在，或者报文被丢弃了。",
    ),
    "fw1_plain": L("The peer has not acknowledged it yet.", "对端还没有确认。"),
    "sq_persist": L(
        "The peer advertises a zero window: its application is not reading.",
        "对端通告的接收窗口为零：对端应用没有在读数据。",
    ),
    "sq_retrans": L(
        "Segments are being retransmitted ({n} time{n:|s}): packet loss or a congested path.",
        "报文正在重传（{n} 次）：路径上有丢包或拥塞。",
    ),
    "sq_plain": L(
        "The peer or the network is slower than the sender.",
        "对端或网络的速度跟不上发送方。",
    ),
    "last_ack_retrans": L(" after {n} retransmissions", "，FIN 已重传 {n} 次"),
    "peer_reader": L(
        " The other end is on this machine: {who} holds it.",
        "另一端就在本机，由{who}持有。",
    ),
    "server_is": L(" ({who})", "（{who}）"),
    "tw_dialers": L(
        " The sockets in TIME_WAIT have no owner any more; {who} has connections to {peer} "
        "open right now and is the likely active closer.",
        "TIME_WAIT 状态的连接已经没有所属进程；目前与 {peer} 仍有连接的是{who}，它很可能就是"
        "主动关闭方。",
    ),
    "syn_sent_local_full": L(
        " Here the destination is a listener on this machine, {listener}, whose accept queue "
        "is full: it drops these SYNs (see the accept-queue finding).",
        "这里的目标正是本机上的监听 {listener}，它的全连接队列已满，所以丢弃了这些 SYN"
        "（见 accept-queue 结论）。",
    ),
    "syn_sent_retrans": L(
        " ({n} of {total} SYN retransmissions so far)", "（SYN 已重传 {n} 次，最多 {total} 次）"
    ),
    "syn_how_linear": L(
        " (Linux 6.5+: tcp_syn_retries {syn_retries} plus tcp_syn_linear_timeouts {linear}"
        "{assumed}: retransmissions at {schedule} s)",
        "（Linux 6.5 起为 tcp_syn_retries {syn_retries} 加 tcp_syn_linear_timeouts {linear}"
        "{assumed}：分别在第 {schedule} 秒重传）",
    ),
    "syn_how_doubling": L(
        " (tcp_syn_retries {syn_retries}{assumed}, the interval doubling from 1 s: at {schedule} s"
        ")",
        "（tcp_syn_retries 为 {syn_retries}{assumed}，间隔从 1 秒起逐次翻倍：分别在第 {schedule} 秒"
        "重传）",
    ),
    "empty": L("", ""),
}


def _other_os(base: str, explanation: Localized | None, advice: Localized | None) -> RuleTexts:
    texts = TEXTS[base]
    return RuleTexts(texts.title, explanation or texts.explanation, advice or texts.advice)


_CLOSE_WAIT_ADVICE: Final = L(
    "Find where {who} sees end-of-file (read() returning 0, or a 'connection closed' "
    "error) and make sure every path closes the socket; make the connection pool "
    "validate and drop dead connections. Closing the connections from outside does not "
    "fix the leak: the process still holds the descriptors and will leak the next "
    "connection the same way; restarting the process only resets the count.",
    "检查{who}读到 EOF（read() 返回 0 或报“连接已关闭”）之后的代码，确保每条路径都会调用 "
    "close()；让连接池在取用时校验并丢弃失效连接。从外部强行关闭这些连接并不能修复泄漏：进程"
    "仍然持有这些文件描述符，下一个连接还会以同样的方式泄漏；重启进程也只是把数量清零。",
)
_TIME_WAIT_SERVER: Final = L(
    "The server on port {port}{server} closes connections before its clients do, so "
    "TIME_WAIT stays on the server. That does not exhaust ports (the server port is "
    "fixed and each client brings its own), but every entry costs memory.",
    "端口 {port} 上的服务端{server}比客户端先关闭连接，所以 TIME_WAIT 留在了服务端。"
    "这不会耗尽端口（服务端口固定，每个客户端各用自己的端口），但每个 TIME_WAIT 都占内存。",
)
_FIN_WAIT2: Final = L(
    "This side closed first and the peer acknowledged the FIN, but the peer has not "
    "closed its side. {os_fin_wait2}{peer_link}",
    "本端先关闭，对端也确认了 FIN，但对端自己一直没有关闭。{os_fin_wait2}{peer_link}",
)
_FIN_WAIT2_ADVICE: Final = L(
    "Look at the peer: FIN_WAIT2 here usually mirrors CLOSE_WAIT there, an application "
    "that does not close its sockets.",
    "问题通常在对端：这里的 FIN_WAIT2 对应着对端的 CLOSE_WAIT，也就是对端应用没有关闭连接。",
)
_SYN_SENT: Final = L(
    "This machine sent SYN to {dest} and got neither SYN-ACK nor RST back. That is what "
    "a silently filtering firewall, an unreachable host, or a server with a full accept "
    "queue (it drops SYNs) looks like. {os_connect}",
    "本机向 {dest} 发出了 SYN，既没有收到 SYN-ACK，也没有收到 RST。防火墙静默丢包、主机"
    "不可达，或者对端的全连接队列已满（会丢弃 SYN），看起来都是这样。{os_connect}",
)
_TIME_WAIT_ADVICE: Final = L(
    "Reuse connections (HTTP keep-alive, a connection pool) instead of opening one per "
    "request. {os_ports_advice} Do not hide TIME_WAIT with SO_LINGER 0 or a shorter timer: "
    "it protects new connections from delayed segments of old ones.",
    "复用连接（HTTP keep-alive、连接池），不要每个请求都新建连接。{os_ports_advice}"
    "不要用 SO_LINGER 0 或缩短计时器来“消灭”TIME_WAIT：它的作用是防止旧连接迟到的报文混进新连接。",
)
_TIME_WAIT: Final = L(
    "This machine is the active closer: it closed these connections first, and the side "
    "that closes first keeps TIME_WAIT{os_time_wait}. Each one pins a local port for the "
    "same peer; once the {ports} ephemeral ports ({range}{os_range}) are used up, connect() "
    "to {peer} fails.{closer}",
    "本机是主动关闭方：这些连接是本机先关闭的，先关闭的一方要在 TIME_WAIT 停留"
    "{os_time_wait}。每个 TIME_WAIT 都占着一个连往同一对端的本地端口；{ports} 个临时端口"
    "（{range}{os_range}）用完之后，再向 {peer} 发起 connect() 就会失败。{closer}",
)

#: per system (:mod:`tcplens.analysis.platforms`), the texts that replace Linux's
OS_TEXTS: Final[dict[str, dict[str, RuleTexts]]] = {
    os_key: {
        "close-wait": _other_os("close-wait", None, _CLOSE_WAIT_ADVICE),
        "time-wait": _other_os("time-wait", _TIME_WAIT, _TIME_WAIT_ADVICE),
        "time-wait-server": _other_os("time-wait-server", _TIME_WAIT_SERVER, None),
        "fin-wait2": _other_os("fin-wait2", _FIN_WAIT2, _FIN_WAIT2_ADVICE),
        "syn-sent": _other_os("syn-sent", _SYN_SENT, None),
    }
    for os_key in ("windows", "bsd", "solaris")
}
OS_TEXTS["windows"]["syn-sent"] = _other_os(
    "syn-sent",
    _SYN_SENT,
    L(
        "Test the path (in PowerShell: Test-NetConnection {dest_host} -Port {dest_port}), "
        "check firewalls and security groups, and whether the service at {dest} listens and "
        "keeps up with accept(). Give the application a shorter connect timeout so callers "
        "fail fast.",
        "测试网络路径（在 PowerShell 中运行 Test-NetConnection {dest_host} -Port {dest_port}），"
        "检查防火墙和安全组，确认 {dest} 上的服务在监听并且 accept() 跟得上。给应用设置更短的连接"
        "超时，让调用方尽快失败。",
    ),
)

#: the facts those texts are filled with, per system (sources: tcplens.analysis.platforms)
OS_FACTS: Final[dict[str, dict[str, Localized]]] = {
    "windows": {
        "os_time_wait": L(
            " for TcpTimedWaitDelay: 120 s by default since Windows Server 2003 (240 s on "
            "Windows 2000 and XP)",
            " TcpTimedWaitDelay 那么久：Windows Server 2003 起默认 120 秒（Windows 2000 和 XP 上"
            "是 240 秒）",
        ),
        "os_range": L(
            ", Windows' default dynamic port range since Vista: netsh int ipv4 show dynamicport tc"
            "p",
            "，Vista 起 Windows 默认的动态端口范围：netsh int ipv4 show dynamicport tcp",
        ),
        "os_ports_advice": L(
            "Widening the dynamic port range (netsh int ipv4 set dynamicport tcp) buys headroom.",
            "用 netsh int ipv4 set dynamicport tcp 扩大动态端口范围可以多留一些余量。",
        ),
        "os_fin_wait2": L(
            "Linux's limit for such sockets, tcp_fin_timeout, does not apply to this Windows dump.",
            "Linux 对这类连接的时限 tcp_fin_timeout 不适用于这份 Windows 输出。",
        ),
        "os_connect": L(
            "With Windows' defaults connect() fails after 2 SYN retransmissions, 21 s after "
            "the first SYN (MaxSynRetransmissions 2, initial RTO 3 s: netsh int tcp show "
            "global).",
            "按 Windows 的默认设置，connect() 在 2 次 SYN 重传之后、从第一个 SYN 算起 21 秒时失败"
            "（MaxSynRetransmissions 为 2，初始 RTO 为 3 秒，见 netsh int tcp show global）。",
        ),
    },
    "bsd": {
        "os_time_wait": L(
            " for 2 × net.inet.tcp.msl: 30 s on macOS (msl 15000 ms), 60 s on FreeBSD (30000 ms)",
            " 2 × net.inet.tcp.msl：macOS 上为 30 秒（msl 为 15000 毫秒），FreeBSD 上为 60 秒"
            "（30000 毫秒）",
        ),
        "os_range": L(
            ", macOS's default net.inet.ip.portrange.first to last; see sysctl "
            "net.inet.ip.portrange on FreeBSD",
            "，macOS 默认的 net.inet.ip.portrange.first 到 last；FreeBSD 上请查看 sysctl "
            "net.inet.ip.portrange",
        ),
        "os_ports_advice": L(
            "Widening net.inet.ip.portrange.first/last buys headroom.",
            "调大 net.inet.ip.portrange.first/last 的范围可以多留一些余量。",
        ),
        "os_fin_wait2": L(
            "FreeBSD drops orphaned ones after net.inet.tcp.finwait2_timeout (60 s by "
            "default); ones an application still holds after shutdown() wait for the peer.",
            "FreeBSD 会在 net.inet.tcp.finwait2_timeout（默认 60 秒）后清除孤儿连接；应用调用 "
            "shutdown() 后仍持有的连接会一直等对端。",
        ),
        "os_connect": L(
            "FreeBSD gives up on the connect() after net.inet.tcp.keepinit (75 s by default).",
            "FreeBSD 会在 net.inet.tcp.keepinit（默认 75 秒）之后放弃这次 connect()。",
        ),
    },
    "solaris": {
        "os_time_wait": L(
            " for tcp_time_wait_interval: 60 s by default (4 minutes on Solaris 8)",
            " tcp_time_wait_interval 那么久：默认 60 秒（Solaris 8 上是 4 分钟）",
        ),
        "os_range": L(
            ", Solaris' default tcp_smallest_anon_port to tcp_largest_anon_port: ndd -get "
            "/dev/tcp tcp_smallest_anon_port",
            "，Solaris 默认的 tcp_smallest_anon_port 到 tcp_largest_anon_port：ndd -get "
            "/dev/tcp tcp_smallest_anon_port",
        ),
        "os_ports_advice": L(
            "Lowering tcp_smallest_anon_port buys headroom.",
            "调小 tcp_smallest_anon_port 可以多留一些余量。",
        ),
        "os_fin_wait2": L(
            "Solaris limits orphaned ones with tcp_fin_wait_2_flush_interval; Linux's "
            "tcp_fin_timeout does not apply to this dump.",
            "Solaris 用 tcp_fin_wait_2_flush_interval 限制孤儿连接；Linux 的 tcp_fin_timeout "
            "不适用于这份输出。",
        ),
        "os_connect": L(
            "connect() gives up when Solaris' own connect timeout runs out; Linux's "
            "tcp_syn_retries does not apply to this dump.",
            "connect() 要等 Solaris 自己的连接超时用完才会放弃；Linux 的 tcp_syn_retries "
            "不适用于这份输出。",
        ),
    },
}

#: appended to a finding of another system's dump that still quotes Linux figures
LINUX_FIGURES: Final = L(
    " The limits and settings named here are Linux's; this dump comes from {os}, whose "
    "own settings differ.",
    "这里提到的限制和参数是 Linux 的；这份输出来自 {os}，其设置与 Linux 不同。",
)
