"""Network namespaces, veth pairs and nftables rules the lab creates and removes.

Theory of operation.  ``ip netns add`` pins a namespace at ``/run/netns/NAME``.
Instead of wrapping every action in ``ip netns exec`` (a fork and a mount
namespace each time), the calling thread enters the namespace with
``setns(2)`` for the duration of a ``with`` block (:func:`inside`) and returns
to where it was afterwards.  Network namespaces are per thread, and what the
thread creates meanwhile keeps the namespace it was born in:

* sockets (``socket()``) - including the sock_diag netlink socket the live
  source opens, so a snapshot taken inside sees that namespace's sockets;
* child processes (``fork`` copies the calling thread's namespaces), so
  ``ip``, ``nft`` and the lab's peer programs started inside run there;
* ``/proc/sys/net`` files opened inside belong to that namespace, so sysctls
  such as ``net.ipv4.tcp_fin_timeout`` are changed only there.

Names carry ``os.getpid()`` so parallel runs never clash, and
:func:`sweep_stale` removes namespaces left by a lab process that no longer
exists (one killed with SIGKILL cannot clean up after itself).
"""

from __future__ import annotations

import ctypes
import itertools
import os
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from tcplens.errors import ScenarioError

__all__ = [
    "PREFIX",
    "Namespace",
    "can_create_namespaces",
    "inside",
    "namespace_problem",
    "run",
    "sweep_stale",
    "veth_pair",
]

#: every namespace the lab creates is named ``tcplens-lab-<pid>-<n><side>``
PREFIX: Final = "tcplens-lab-"
NETNS_DIR: Final = Path("/run/netns")
CLONE_NEWNET: Final = 0x40000000

_counter = itertools.count(1)
_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise ScenarioError(f"setns: {os.strerror(err)}")


def can_create_namespaces() -> bool:
    """Root (CAP_SYS_ADMIN) and the ``ip`` tool: what the namespace scenarios need."""
    return namespace_problem() is None


#: the package that ships each setup tool, named when the tool is missing
PACKAGES: Final = {"ip": "iproute2", "nft": "nftables"}


def namespace_problem() -> str | None:
    """Why --rig netns cannot run here, in words that say what to do; None when it can."""
    if os.geteuid() != 0:
        return "--rig netns needs root (CAP_SYS_ADMIN): run it with sudo"
    if _which("ip") is None:
        return "--rig netns needs the ip command: install iproute2"
    return None


def _which(tool: str) -> str | None:
    path = os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
    for d in [*path.split(":"), "/usr/sbin"]:
        p = Path(d) / tool
        if p.is_file() and os.access(p, os.X_OK):
            return str(p)
    return None


def run(argv: Sequence[str], *, stdin: str | None = None) -> str:
    """Run a setup tool (``ip``, ``nft``) in the current thread's namespace."""
    try:
        done = subprocess.run(
            list(argv), input=stdin, capture_output=True, text=True, timeout=10, check=False
        )
    except FileNotFoundError:
        package = PACKAGES.get(argv[0], argv[0])
        raise ScenarioError(f"{argv[0]}: command not found: install {package}") from None
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ScenarioError(f"{argv[0]}: {exc}") from exc
    if done.returncode != 0:
        msg = (done.stderr or done.stdout).strip().splitlines()
        raise ScenarioError(f"{' '.join(argv)}: {msg[-1] if msg else f'exit {done.returncode}'}")
    return done.stdout


@dataclass
class Namespace:
    """A network namespace this process created; :meth:`delete` removes it."""

    name: str
    fd: int = -1
    deleted: bool = field(default=False, repr=False)

    @classmethod
    def create(cls, side: str) -> Namespace:
        """Make ``tcplens-lab-<pid>-<n><side>`` with its loopback up."""
        name = f"{PREFIX}{os.getpid()}-{next(_counter)}{side}"
        run(["ip", "netns", "add", name])
        ns = cls(name)
        try:
            ns.fd = os.open(NETNS_DIR / name, os.O_RDONLY | os.O_CLOEXEC)
            with inside(ns):
                run(["ip", "link", "set", "lo", "up"])
        except BaseException:
            ns.delete()
            raise
        return ns

    def sysctl(self, key: str, value: int | str) -> None:
        """Set ``net.*`` sysctl ``key`` in this namespace only."""
        if not key.startswith("net."):
            raise ScenarioError(f"{key}: only net.* sysctls are per namespace")
        path = Path("/proc/sys") / key.replace(".", "/")
        with inside(self), open(path, "w") as fh:
            fh.write(f"{value}\n")

    def nft(self, ruleset: str) -> None:
        """Load an nftables ruleset into this namespace (its tables die with it)."""
        with inside(self):
            run(["nft", "-f", "-"], stdin=ruleset)

    def delete(self) -> None:
        """Remove the namespace; its sockets, interfaces and rules go with it."""
        if self.deleted:
            return
        self.deleted = True
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        if (NETNS_DIR / self.name).exists():
            run(["ip", "netns", "del", self.name])


@contextmanager
def inside(ns: Namespace | None) -> Iterator[None]:
    """Run the ``with`` body with this thread in ``ns`` (``None``: stay where we are)."""
    if ns is None:
        yield
        return
    if ns.fd < 0:
        raise ScenarioError(f"namespace {ns.name} is gone")
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        _setns(ns.fd)
        try:
            yield
        finally:
            _setns(home)
    finally:
        os.close(home)


def veth_pair(
    left: Namespace, right: Namespace, left_addr: str, right_addr: str, prefix: int = 24
) -> tuple[str, str]:
    """Join two namespaces with a veth pair, addressed and up; returns the names."""
    tag = left.name.removeprefix(PREFIX).replace("-", "x")
    lname, rname = f"tl{tag}a"[:15], f"tl{tag}b"[:15]
    run(
        [
            "ip",
            "link",
            "add",
            lname,
            "netns",
            left.name,
            "type",
            "veth",
            "peer",
            "name",
            rname,
            "netns",
            right.name,
        ]
    )
    for ns, dev, addr in ((left, lname, left_addr), (right, rname, right_addr)):
        with inside(ns):
            run(["ip", "addr", "add", f"{addr}/{prefix}", "dev", dev])
            run(["ip", "link", "set", dev, "up"])
    return lname, rname


def sweep_stale() -> list[str]:
    """Delete lab namespaces whose creating process is gone; returns their names."""
    removed: list[str] = []
    if not NETNS_DIR.is_dir():
        return removed
    for entry in NETNS_DIR.iterdir():
        if not entry.name.startswith(PREFIX):
            continue
        pid_text = entry.name.removeprefix(PREFIX).split("-", 1)[0]
        if not pid_text.isdigit() or Path(f"/proc/{pid_text}").exists():
            continue
        try:
            run(["ip", "netns", "del", entry.name])
        except ScenarioError:
            continue
        removed.append(entry.name)
    return removed
