"""Socket inode -> owning process, by reading ``/proc/<pid>/fd`` symlinks.

This is what ``netstat -p`` and ``ss -p`` do and it is the slow part of both
(``ss -tanp`` spends seconds on 100k sockets).  We keep it fast by doing the
least per file descriptor: one ``readlink`` relative to an open directory
descriptor (no path walk per fd), no per-process psutil objects, and reading
``comm``/``status``/``cmdline`` only for processes that own a socket we show.

Races and permissions degrade, they never raise: a process that exits mid-scan
(ENOENT/ESRCH) simply owns nothing, and a process we may not inspect (EACCES,
not root) leaves its sockets' ``pid`` as ``None`` while the snapshot's
``missing`` says so in netstat's words.
"""

from __future__ import annotations

import contextlib
import marshal
import os
import pwd
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final, NamedTuple

from tcplens.sources.records import Holder, Socket

__all__ = [
    "NOT_ALL_IDENTIFIED",
    "Owner",
    "OwnerCache",
    "Owners",
    "PendingScan",
    "ScanResult",
    "Tally",
    "attribute",
    "owners_of",
    "scan",
    "start_scan",
    "tally",
]

#: what net-tools netstat prints when some /proc/<pid>/fd could not be read
NOT_ALL_IDENTIFIED: Final = (
    "Not all processes could be identified, non-owned process info will not be shown, "
    "you would have to be root to see it all."
)

_O_DIR: Final = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0)


class Owner(NamedTuple):
    """A process holding a socket open through one of its file descriptors."""

    pid: int
    fd: int


@dataclass(slots=True)
class ScanResult:
    """Which process owns each wanted inode, and how many processes we could not read."""

    owners: dict[int, Owner] = field(default_factory=dict)
    denied: int = 0
    vanished: int = 0
    scanned: int = 0
    #: inode -> the holders after the first (``owners``), in pid order: a socket
    #: shared after fork(), or a descriptor dup()ed
    shared: dict[int, list[Owner]] = field(default_factory=dict)

    def holders(self, inode: int) -> list[Owner]:
        """Every process (and descriptor) holding the socket, lowest pid first."""
        first = self.owners.get(inode)
        if first is None:
            return []
        return [first, *self.shared.get(inode, ())]


def _pids(proc_root: str) -> list[int] | None:
    try:
        return sorted(int(name) for name in os.listdir(proc_root) if name.isdigit())
    except OSError:
        return None


def scan(
    wanted: set[int] | None = None, proc_root: str = "/proc", pids: Iterable[int] | None = None
) -> ScanResult:
    """Map socket inodes to the first process (lowest pid) holding them, and its fd.

    Every other holder goes to ``shared``: after ``fork()`` a socket has one
    per process (as ``ss -p`` lists them), so every process is read even
    once each wanted socket has an owner.  ``wanted`` limits the result (the
    readlinks still happen: a link's target is the only way to learn an
    fd's inode).  ``None`` means every socket.  ``pids`` scans only those
    processes (default: every one in ``proc_root``).
    """
    result = ScanResult()
    owners = result.owners
    shared = result.shared
    readlink = os.readlink
    listdir = os.listdir
    new = tuple.__new__
    chosen = _pids(proc_root) if pids is None else sorted(pids)
    if chosen is None:
        return result
    # lowest pid first, so "the" owner of a shared socket is deterministic
    for pid in chosen:
        name = str(pid)
        try:
            dirfd = os.open(f"{proc_root}/{name}/fd", _O_DIR)
        except PermissionError:
            result.denied += 1
            continue
        except OSError:  # ENOENT/ESRCH: exited; ENOTDIR: a zombie kernel thread entry
            result.vanished += 1
            continue
        result.scanned += 1
        try:
            try:
                fds = listdir(dirfd)
            except PermissionError:
                result.denied += 1
                continue
            except OSError:
                result.vanished += 1
                continue
            # A comprehension is ~30% faster than a loop with try per fd; an fd
            # closed between listdir and readlink sends us to the careful path.
            try:
                links = [readlink(fd, dir_fd=dirfd) for fd in fds]
            except OSError:
                links = [_readlink_or_empty(fd, dirfd) for fd in fds]
        finally:
            os.close(dirfd)
        for fd, target in zip(fds, links, strict=True):
            if target[:8] == "socket:[":
                inode = int(target[8:-1])
                if wanted is None or inode in wanted:
                    if inode not in owners:
                        owners[inode] = new(Owner, (pid, int(fd)))
                    else:
                        shared.setdefault(inode, []).append(new(Owner, (pid, int(fd))))
    return result


class PendingScan:
    """A :func:`scan` of every socket running in forked children, beside the caller's dump.

    Why processes and not threads: the scan and the netlink dump are both
    half system calls, half Python loop, so a thread shares one GIL with the
    dump; a child has its own.  With ``parts`` > 1 the processes are split
    into that many runs of consecutive pids holding about as many
    descriptors each, one child per run: at 100k sockets on two idle cores
    the scan (~0.3 s in one process) is ready about when the dump is.  On a
    busy machine it is no slower than scanning in line.  Each child sends
    its result back through a pipe with :mod:`marshal` (~3 ms for 70k owners).
    """

    def __init__(self, proc_root: str, parts: int = 1) -> None:
        self.proc_root = proc_root
        self.children: list[tuple[int, int]] = []  # (pid, read end of its pipe)
        pids = _pids(proc_root) or []
        try:
            for group in _split(pids, parts, proc_root):
                self._start(group)
        except OSError:
            self.cancel()  # no half-started scan: the caller scans in line instead
            raise

    def _start(self, group: list[int]) -> None:
        proc_root = self.proc_root
        read, write = os.pipe()
        try:
            child = os.fork()
        except OSError:
            os.close(read)
            os.close(write)
            raise
        if child == 0:  # scan, send, leave without running any cleanup
            code = 1
            try:
                os.close(read)
                for _, other in self.children:
                    os.close(other)
                _send(write, scan(None, proc_root, group))
                code = 0
            finally:
                os._exit(code)
        os.close(write)
        self.children.append((child, read))

    @property
    def pid(self) -> int:
        """The first child's pid."""
        return self.children[0][0]

    def result(self) -> ScanResult:
        """The children's scans; if any failed in any way, the whole scan done here."""
        parts: list[ScanResult] = []
        failed = False
        for child, read in self.children:
            with os.fdopen(read, "rb") as pipe:
                data = pipe.read()
            _, status = os.waitpid(child, 0)
            if status != 0 or not data:
                failed = True
            elif not failed:
                try:
                    parts.append(_receive(data))
                except (ValueError, EOFError, TypeError):
                    failed = True
        if failed or not parts:
            return scan(None, self.proc_root)
        merged = parts[0]
        owners, shared = merged.owners, merged.shared
        for part in parts[1:]:  # later parts hold higher pids: the lowest pid keeps a socket
            for inode, owner in part.owners.items():
                if inode in owners:
                    shared.setdefault(inode, []).extend(part.holders(inode))
                else:
                    owners[inode] = owner
                    if inode in part.shared:
                        shared[inode] = part.shared[inode]
            merged.denied += part.denied
            merged.vanished += part.vanished
            merged.scanned += part.scanned
        return merged

    def cancel(self) -> None:
        """The caller failed before it needed the scan: stop and reap the children."""
        import signal

        for child, read in self.children:
            os.close(read)
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGKILL)
            os.waitpid(child, 0)


def _split(pids: list[int], parts: int, proc_root: str) -> list[list[int]]:
    """Runs of consecutive pids, ``parts`` of them, holding about as many descriptors each."""
    if parts <= 1 or len(pids) < parts:
        return [pids]
    sizes = [_fd_count(proc_root, str(pid)) + 1 for pid in pids]
    share = sum(sizes) / parts
    groups: list[list[int]] = [[]]
    held = 0
    for pid, size in zip(pids, sizes, strict=True):
        if held >= share * len(groups) and len(groups) < parts:
            groups.append([])
        groups[-1].append(pid)
        held += size
    return groups


def _send(fd: int, found: ScanResult) -> None:
    payload = (
        {inode: tuple(owner) for inode, owner in found.owners.items()},
        found.denied,
        found.vanished,
        found.scanned,
        {inode: [tuple(owner) for owner in more] for inode, more in found.shared.items()},
    )
    with os.fdopen(fd, "wb") as out:
        out.write(marshal.dumps(payload))


def _receive(data: bytes) -> ScanResult:
    owners, denied, vanished, scanned, shared = marshal.loads(data)
    new = tuple.__new__
    return ScanResult(
        {inode: new(Owner, pair) for inode, pair in owners.items()},
        denied,
        vanished,
        scanned,
        {inode: [new(Owner, pair) for pair in more] for inode, more in shared.items()},
    )


def start_scan(proc_root: str = "/proc") -> PendingScan | None:
    """Start :class:`PendingScan` when forking is safe here, else None (scan later, in line).

    Forking a process that runs other threads (the exporter's HTTP server,
    the watch view) could copy a lock some thread holds; those keep scanning
    in line.
    """
    if not hasattr(os, "fork") or threading.active_count() > 1:
        return None
    try:
        return PendingScan(proc_root, parts=min(2, os.cpu_count() or 1))
    except OSError:
        return None


def _readlink_or_empty(name: str, dirfd: int) -> str:
    try:
        return os.readlink(name, dir_fd=dirfd)
    except OSError:
        return ""


def _read_text(path: str) -> str | None:
    try:
        with open(path, "rb") as fh:
            return fh.read().decode("utf-8", "replace")
    except OSError:
        return None


def _user(uid: int, cache: dict[int, str | None]) -> str | None:
    if uid not in cache:
        try:
            cache[uid] = pwd.getpwuid(uid).pw_name
        except KeyError:
            cache[uid] = str(uid)
    return cache[uid]


def attribute(
    sockets: Iterable[Socket],
    *,
    proc_root: str = "/proc",
    cmdline: bool = False,
    pending: PendingScan | None = None,
) -> list[str]:
    """Fill ``pid``, ``fd``, ``process``, ``user`` (and ``cmdline``) in place.

    Returns the notes for ``Snapshot.missing``: empty when everything that
    could be attributed was, netstat's sentence when some processes were
    unreadable.  ``pending`` is a scan started before the sockets were
    dumped (:func:`start_scan`); without one the scan happens now.
    """
    rows = list(sockets)
    users: dict[int, str | None] = {}
    for sock in rows:
        if sock.uid is not None and sock.user is None:
            sock.user = _user(sock.uid, users)
    wanted = {s.inode for s in rows if s.inode}
    if pending is not None:
        result = pending.result()
    elif not wanted:
        return []
    else:
        result = scan(wanted, proc_root)
    names: dict[int, str | None] = {}
    cmds: dict[int, str | None] = {}

    def name_of(pid: int) -> str | None:
        if pid not in names:
            comm = _read_text(f"{proc_root}/{pid}/comm")
            names[pid] = comm.rstrip("\n") if comm is not None else None
        return names[pid]

    shared = result.shared
    for sock in rows:
        if not sock.inode:
            continue
        owner = result.owners.get(sock.inode)
        if owner is None:
            continue
        sock.pid = owner.pid
        sock.fd = owner.fd
        sock.process = name_of(owner.pid)
        if sock.inode in shared:
            sock.holders = tuple(
                Holder(pid, fd, name_of(pid)) for pid, fd in result.holders(sock.inode)
            )
        if cmdline:
            if owner.pid not in cmds:
                raw = _read_text(f"{proc_root}/{owner.pid}/cmdline")
                cmds[owner.pid] = raw.rstrip("\0").replace("\0", " ") if raw else None
            sock.cmdline = cmds[owner.pid]
    if result.denied:
        return [NOT_ALL_IDENTIFIED]
    return []


@dataclass(slots=True)
class Owners:
    """Who holds each socket, one entry per socket asked about: :func:`attribute` as columns."""

    pid: list[int | None]
    fd: list[int | None]
    process: list[str | None]
    user: list[str | None]
    #: for ``Snapshot.missing``, as :func:`attribute` returns them
    notes: list[str]
    #: socket index -> every holder, for the sockets more than one process holds
    holders: dict[int, tuple[Holder, ...]] = field(default_factory=dict)


def owners_of(
    inodes: Sequence[int],
    uids: Sequence[int | None],
    result: ScanResult,
    proc_root: str = "/proc",
) -> Owners:
    """What :func:`attribute` would fill in, for sockets given as inode and uid columns.

    An inode of 0 (minisockets, orphans) has no owner; a uid of None no user.
    """
    get = result.owners.get
    found = [get(inode) if inode else None for inode in inodes]
    pids = [owner[0] if owner is not None else None for owner in found]
    names: dict[int | None, str | None] = {None: None}
    for pid in set(pids):
        if pid is not None:
            comm = _read_text(f"{proc_root}/{pid}/comm")
            names[pid] = comm.rstrip("\n") if comm is not None else None
    users: dict[int, str | None] = {}
    holders: dict[int, tuple[Holder, ...]] = {}
    if result.shared:
        for index, inode in enumerate(inodes):
            if inode in result.shared:
                for pid, _fd in result.shared[inode]:
                    if pid not in names:
                        comm = _read_text(f"{proc_root}/{pid}/comm")
                        names[pid] = comm.rstrip("\n") if comm is not None else None
                holders[index] = tuple(
                    Holder(pid, fd, names[pid]) for pid, fd in result.holders(inode)
                )
    return Owners(
        pid=pids,
        fd=[owner[1] if owner is not None else None for owner in found],
        process=list(map(names.__getitem__, pids)),
        user=[None if uid is None else _user(uid, users) for uid in uids],
        notes=[NOT_ALL_IDENTIFIED] if result.denied else [],
        holders=holders,
    )


@dataclass(slots=True)
class Tally:
    """Which socket inodes each process holds: all of them, or a sample of its descriptors."""

    #: pid -> socket inodes found among the descriptors read, lowest pid first
    inodes: dict[int, list[int]] = field(default_factory=dict)
    #: pid -> descriptors held / open descriptors read, for sampled processes only
    scale: dict[int, float] = field(default_factory=dict)
    #: process names (``comm``) of the pids in ``inodes``
    names: dict[int, str | None] = field(default_factory=dict)
    denied: int = 0
    #: descriptors read, and descriptors the readable processes hold in all
    read: int = 0
    held: int = 0

    @property
    def exact(self) -> bool:
        """Every descriptor of every readable process was read."""
        return not self.scale


def _fd_count(proc_root: str, pid: str) -> int:
    """How many descriptors a process holds, without listing them.

    Since Linux 6.2 ``stat()`` of ``/proc/<pid>/fd`` reports the count as its
    size; earlier kernels report 0, which reads as "unknown, list it".
    """
    try:
        return os.stat(f"{proc_root}/{pid}/fd").st_size
    except OSError:
        return 0


def _fd_slots(proc_root: str, pid: str) -> int:
    """``FDSize`` in ``/proc/<pid>/status``: the fd table's size, above every open fd."""
    text = _read_text(f"{proc_root}/{pid}/status") or ""
    for line in text.splitlines():
        if line.startswith("FDSize:"):
            return int(line.split()[1])
    return 0


def tally(
    proc_root: str = "/proc",
    *,
    budget: int = 20_000,
    probes: int = 512,
    seed: int | None = None,
) -> Tally:
    """The socket inodes each process holds, read exactly or estimated from a sample.

    Exact when the processes hold at most ``budget`` descriptors in all (one
    ``readlink`` each, ~2.5 µs).  Beyond that, a process holding more than
    ``probes`` descriptors is sampled instead: ``probes`` random slots of its
    fd table are read, and what is found there stands for
    ``Tally.scale[pid]`` descriptors each (a ratio estimate: with 512 probes,
    a kind of socket holding half a process's descriptors is estimated
    within about ±5%).  ``tcplens status`` uses this on hosts with 100k
    sockets, where reading every descriptor costs more than the rest of the
    command; it needs no socket list, so it can run while the dump does.
    """
    import random  # here: the listing verbs, which never sample, skip its import

    result = Tally()
    rng = random.Random(seed)
    try:
        pids = [name for name in os.listdir(proc_root) if name.isdigit()]
    except OSError:
        return result
    sizes = {pid: _fd_count(proc_root, pid) for pid in pids}
    sample = sum(sizes.values()) > budget
    readlink = os.readlink
    for pid in sorted(pids, key=int):
        try:
            dirfd = os.open(f"{proc_root}/{pid}/fd", _O_DIR)
        except PermissionError:
            result.denied += 1
            continue
        except OSError:
            continue
        try:
            held = sizes[pid]
            slots = _fd_slots(proc_root, pid) if sample and held > probes else 0
            sampled = slots > probes
            if sampled:
                names = [str(fd) for fd in rng.sample(range(slots), probes)]
            else:
                try:
                    names = os.listdir(dirfd)
                except OSError:
                    continue
                held = len(names)
            try:
                links = [readlink(fd, dir_fd=dirfd) for fd in names]
            except OSError:  # a probed slot that is not open, or an fd closed meanwhile
                links = [_readlink_or_empty(fd, dirfd) for fd in names]
        finally:
            os.close(dirfd)
        inodes = [int(link[8:-1]) for link in links if link[:8] == "socket:["]
        result.read += len(links)
        result.held += held
        number = int(pid)
        if sampled:
            opened = len(links) - links.count("")
            result.scale[number] = held / opened if opened else 0.0
        if inodes:
            result.inodes[number] = inodes
            comm = _read_text(f"{proc_root}/{pid}/comm")
            result.names[number] = comm.rstrip("\n") if comm is not None else None
    return result


#: how many recent owner pids :class:`OwnerCache` searches first
_HOT: Final = 64

_Known = tuple[int | None, int | None, str | None]  # pid, fd, process name


class OwnerCache:
    """Process attribution for a stream of snapshots (``watch``): each inode is looked up once.

    :func:`scan` reads every descriptor of every process, which is right for
    one listing but costs over a second per refresh on a host with busy
    processes.  Here only inodes not seen before are looked up, processes
    that owned sockets lately are searched first (new connections usually
    come from the same few), and the search stops once every new inode is
    found.  An inode nobody owns (or whose owner we may not read) is
    remembered as unowned, so it is not searched for again.
    """

    def __init__(self, proc_root: str = "/proc") -> None:
        self.proc_root = proc_root
        #: how many searches of /proc were made (tests check this stays low)
        self.scans = 0
        self.missing: list[str] = []
        self._known: dict[int, _Known] = {}
        self._hot: list[int] = []
        self._users: dict[int, str | None] = {}

    def _name(self, pid: int) -> str | None:
        comm = _read_text(f"{self.proc_root}/{pid}/comm")
        return comm.rstrip("\n") if comm is not None else None

    def _search(self, wanted: set[int]) -> tuple[dict[int, tuple[int, int]], bool]:
        """inode -> (pid, fd) for ``wanted``, recent owners first; and whether any was denied."""
        found: dict[int, tuple[int, int]] = {}
        denied = False
        try:
            pids = [int(n) for n in os.listdir(self.proc_root) if n.isdigit()]
        except OSError:
            return found, denied
        present = set(pids)
        hot = [p for p in self._hot if p in present]
        order = hot + [p for p in pids if p not in set(hot)]
        for pid in order:
            try:
                dirfd = os.open(f"{self.proc_root}/{pid}/fd", _O_DIR)
            except PermissionError:
                denied = True
                continue
            except OSError:  # exited meanwhile
                continue
            try:
                try:
                    fds = os.listdir(dirfd)
                except PermissionError:
                    denied = True
                    continue
                except OSError:
                    continue
                for fd in fds:
                    try:
                        target = os.readlink(fd, dir_fd=dirfd)
                    except OSError:
                        continue
                    if target.startswith("socket:["):
                        inode = int(target[8:-1])
                        if inode in wanted and inode not in found:
                            found[inode] = (pid, int(fd))
                            if len(found) == len(wanted):
                                return found, denied
            finally:
                os.close(dirfd)
        return found, denied

    def fill(self, sockets: Sequence[Socket]) -> None:
        """Set pid, fd, process and user on ``sockets`` in place."""
        fresh = {s.inode for s in sockets if s.inode and s.inode not in self._known}
        if fresh:
            self.scans += 1
            found, denied = self._search(fresh)
            if denied and len(found) < len(fresh) and NOT_ALL_IDENTIFIED not in self.missing:
                self.missing.append(NOT_ALL_IDENTIFIED)
            names = {pid: self._name(pid) for pid, _ in found.values()}
            for inode in fresh:
                pid, fd = found.get(inode, (None, None))
                self._known[inode] = (pid, fd, None if pid is None else names[pid])
            owners = [pid for pid, _ in found.values()]
            self._hot = list(dict.fromkeys(owners + self._hot))[:_HOT]
        alive: set[int] = set()
        for s in sockets:
            if s.user is None and s.uid is not None:
                s.user = _user(s.uid, self._users)
            if not s.inode:
                continue
            alive.add(s.inode)
            s.pid, s.fd, s.process = self._known[s.inode]
        if len(self._known) > 2 * len(alive) + 1024:
            self._known = {k: v for k, v in self._known.items() if k in alive}
