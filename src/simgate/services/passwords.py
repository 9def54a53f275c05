"""Argon2 off the event loop.

A password check is some hundred milliseconds of CPU on purpose. It runs in a small pool
of threads at a lower priority than the event loop's (argon2 releases the GIL), so a
flood of logins slows logins, not the requests being served; past a number of checks
waiting, a login is refused for now (429) rather than queued without end.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from concurrent.futures import ThreadPoolExecutor

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from simgate.services.errors import TooManyRequests

# Checks waiting for a thread, past which a login is answered 429 at once.
MAX_WAITING = 64
_NICENESS = 10


def _lower_priority() -> None:
    """A pool thread (and the threads argon2 starts from it) yields the CPU to the loop."""
    with contextlib.suppress(AttributeError, OSError):  # elsewhere than Linux: as is
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), _NICENESS)


class Passwords:
    """Hashes and checks passwords, at most `threads` at a time."""

    def __init__(self, hasher: PasswordHasher | None = None, threads: int | None = None) -> None:
        self._hasher = hasher or PasswordHasher()
        threads = threads or max(1, (os.cpu_count() or 2) // 2)
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="argon2",
                                        initializer=_lower_priority)
        self._capacity = asyncio.Semaphore(threads + MAX_WAITING)
        self._dummy: str | None = None

    async def hash(self, password: str) -> str:
        return await self._run(self._hasher.hash, password)

    async def verify(self, password_hash: str | None, password: str) -> bool:
        """Whether `password` matches; with no hash (no such user) a made-up hash is
        checked all the same, so an unknown name costs what a wrong password does."""
        if password_hash is None:
            if self._dummy is None:
                self._dummy = await self.hash("no such user")
            await self._run(self._check, self._dummy, password)
            return False
        return await self._run(self._check, password_hash, password)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _check(self, password_hash: str, password: str) -> bool:
        try:
            return self._hasher.verify(password_hash, password)
        except (VerificationError, InvalidHashError):
            return False

    async def _run(self, work, *args):  # type: ignore[no-untyped-def]
        if self._capacity.locked():
            raise TooManyRequests("too many logins being checked just now: retry in a second",
                                  retry_after=1)
        async with self._capacity:
            return await asyncio.get_running_loop().run_in_executor(self._pool, work, *args)
