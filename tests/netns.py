"""Run a test body in a fresh network namespace of its own (root), so it sees only its sockets.

unshare(CLONE_NEWNET) moves only the calling thread; the sockets it opens and
the processes it starts live in the new namespace, whatever other suites hold
on the host.  The namespace goes away with the thread.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import threading
from collections.abc import Callable

CLONE_NEWNET = 0x40000000
#: ``netns.private`` is True in a test body that runs in its own network namespace
netns = threading.local()


def run_in_private_netns(body: Callable[[], None], *, required: bool = False) -> None:
    """Run ``body`` in a thread moved into a fresh network namespace.

    Without root (or where unshare is refused) the body runs on the host's
    loopback with ``netns.private`` False, unless ``required``: then that is
    a failure, since the caller's assertions need a namespace to itself.
    """
    if os.geteuid() != 0 or shutil.which("ip") is None:
        if required:
            raise AssertionError("this test needs root and iproute2 for a network namespace")
        body()
        return
    failure: list[BaseException] = []

    def target() -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            netns.private = libc.unshare(CLONE_NEWNET) == 0
            if netns.private:
                subprocess.run(["ip", "link", "set", "lo", "up"], check=True, timeout=10)
            elif required:
                raise AssertionError(f"unshare(CLONE_NEWNET) failed: errno {ctypes.get_errno()}")
            body()
        except BaseException as exc:
            failure.append(exc)

    thread = threading.Thread(target=target, name="private-netns")
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
