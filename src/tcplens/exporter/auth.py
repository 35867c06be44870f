"""Basic auth of the metrics endpoint: bcrypt in a bounded pool, HMAC-keyed caches.

Why not a per-request ``bcrypt.checkpw``: each check takes a core for tens of
milliseconds, so a flood of bad passwords would starve scrapes and the host,
and an unknown user answered at once would tell an observer who exists.
"""

from __future__ import annotations

import base64
import concurrent.futures
import hmac
import logging
import os
import threading
from collections.abc import Callable
from queue import SimpleQueue
from typing import Any, Final

__all__ = ["BCRYPT_WORKERS", "BasicAuth", "bcrypt_cost"]

log = logging.getLogger(__name__)


#: bcrypt checks allowed to run at once.  Each takes a core for tens of
#: milliseconds; a flood of bad passwords otherwise starves the scrapes (and
#: the rest of the host) of CPU.  Verified credentials skip the queue (cache).
BCRYPT_WORKERS: Final = max(1, min(2, (os.cpu_count() or 2) // 2))


class _Workers:
    """A fixed pool of daemon threads running bcrypt checks from one queue.

    Not a ThreadPoolExecutor: its threads are joined at interpreter exit after
    the whole queue has run, so an exporter stopped during a flood would
    first finish every queued check (seconds); these threads just stop.
    (Nor are they niced: the systemd unit's ``SystemCallFilter=~@resources``
    kills a process that calls setpriority(2).)
    """

    def __init__(self, count: int) -> None:
        self._jobs: SimpleQueue[
            tuple[concurrent.futures.Future[Any], Callable[..., Any], tuple[Any, ...]]
        ] = SimpleQueue()
        for n in range(count):
            threading.Thread(target=self._run, name=f"tcplens-bcrypt-{n}", daemon=True).start()

    def submit(self, fn: Callable[..., Any], *args: Any) -> concurrent.futures.Future[Any]:
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._jobs.put((future, fn, args))
        return future

    def _run(self) -> None:
        while True:
            future, fn, args = self._jobs.get()
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn(*args))
            except BaseException as exc:  # handed to the waiting request
                future.set_exception(exc)


def bcrypt_cost(hashed: bytes) -> int:
    """The cost (log2 rounds) of a ``$2?$NN$…`` hash; load_web_config checked the prefix."""
    try:
        return int(hashed[4:6])
    except ValueError:
        return 10


class BasicAuth:
    """Check ``Authorization: Basic`` against bcrypt hashes, in bounded, user-blind work.

    Three properties, after Prometheus' exporter-toolkit (``web/users.go``):

    * **No user enumeration by timing.**  An unknown user's password is checked
      against a dummy hash made at start-up with the same cost (and variant) as
      the configured ones, so it costs what a known user's wrong password
      costs.  With users of different costs the dummy has the highest; the
      cheaper users are then told apart by timing (a warning says so).
    * **Bounded bcrypt work.**  Checks run in a pool of :data:`BCRYPT_WORKERS`
      threads; other requests wait their turn without spending CPU, so a
      flood of bad passwords costs the host at most that many cores.
    * **Scrapes skip bcrypt.**  Prometheus sends the same credentials every
      scrape; a verified pair is remembered under an HMAC with a key drawn at
      start-up (the cache never holds anything that could be attacked offline
      after the process ends), so authorised scrapes never queue behind the
      flood.  Failed pairs are remembered too (a separate, bounded table a
      flood cannot use to push good pairs out), so a client retrying one bad
      password costs one check.

    The scheme name is matched case-insensitively (RFC 9110, section 11.1).
    """

    #: remembered pairs per table; when full, the oldest half is dropped
    CACHE_SIZE: Final = 1024

    def __init__(self, users: dict[str, bytes]) -> None:
        import bcrypt

        self.users = users
        self._key = os.urandom(32)
        self._good: dict[bytes, None] = {}
        self._bad: dict[bytes, None] = {}
        self._lock = threading.Lock()
        self._pool = _Workers(BCRYPT_WORKERS)
        model = max(users.values(), key=bcrypt_cost, default=b"$2b$10$")
        costs = {bcrypt_cost(h) for h in users.values()}
        if len(costs) > 1:
            log.warning(
                "basic_auth_users have different bcrypt costs (%s): users with a lower cost "
                "answer faster, which tells an observer they exist; give every user the same cost",
                ", ".join(map(str, sorted(costs))),
            )
        salt = bcrypt.gensalt(rounds=bcrypt_cost(model), prefix=b"2b")
        self._dummy = bcrypt.hashpw(os.urandom(16).hex().encode(), salt)
        # the variant ($2a/$2b/$2y) of the model, for equal work (they cost the same)
        self._dummy = model[:4] + self._dummy[4:]

    def _remember(self, table: dict[bytes, None], key: bytes) -> None:
        with self._lock:
            if len(table) >= self.CACHE_SIZE:
                for old in list(table)[: self.CACHE_SIZE // 2]:
                    del table[old]
            table[key] = None

    def check(self, header: str | None) -> bool:
        import bcrypt

        if not header:
            return False
        scheme, _, token = header.strip().partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            decoded = base64.b64decode(token.strip(), validate=True).decode()
        except (ValueError, UnicodeDecodeError):
            return False
        user, _, password = decoded.partition(":")
        hashed = self.users.get(user)
        reference = hashed if hashed is not None else self._dummy
        key = hmac.digest(
            self._key,
            b"\0".join(base64.b64encode(p) for p in (user.encode(), password.encode(), reference)),
            "sha256",
        )
        with self._lock:
            if key in self._good:
                return True
            if key in self._bad:
                return False
        try:
            ok = self._pool.submit(bcrypt.checkpw, password.encode(), reference).result()
        except ValueError:
            ok = False
        ok = ok and hashed is not None
        self._remember(self._good if ok else self._bad, key)
        return ok
