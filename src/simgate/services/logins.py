"""Failed logins limited per address and per user, so passwords cannot be walked.

- An address (IPv4, or IPv6 /64) gets FAILURES_PER_ADDRESS failed logins a minute, its
  network (/24, /48) FAILURES_PER_NETWORK; then 429 until the oldest ages out.
- Past FAILURES_PER_USER failures for one user within a minute (from anywhere), that user
  is under attack: addresses that failed a login lately (for any user) wait, and the
  others are checked one at a time. So an attacker failing on purpose from other addresses
  slows the user down, never locks them out: the right password from an address that has
  not erred still gets in.

Counts are per server process (as for one-time codes).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from simgate.services.errors import TooManyRequests
from simgate.services.limits import SlidingCounts, address_groups

FAILURES_PER_ADDRESS = 10
FAILURES_PER_NETWORK = 30
FAILURES_PER_USER = 10
WINDOW = 60.0


class LoginThrottled(TooManyRequests):
    """Too many failed logins lately: the caller must wait."""


class LoginGuard:
    def __init__(self) -> None:
        self._failures = SlidingCounts(WINDOW)
        self._turns: dict[str, tuple[asyncio.Lock, int]] = {}  # lock, holders and waiters

    def admit(self, username: str, client: str) -> None:
        """LoginThrottled when `client` may not try a password now."""
        address, network = address_groups(client)
        failures = self._failures
        for key, limit in ((("address", address), FAILURES_PER_ADDRESS),
                           (("network", network), FAILURES_PER_NETWORK)):
            wait = failures.wait(key, limit)
            if wait > 0:
                raise LoginThrottled(f"too many failed logins from your address: wait"
                                     f" {max(1, round(wait))} s, then check the credentials",
                                     retry_after=wait)
        if self._under_attack(username) and failures.count(("address", address)):
            raise LoginThrottled("too many failed logins for this user lately, and one from"
                                 " your address: wait a minute, then check the credentials",
                                 retry_after=failures.wait(("address", address), 1))

    def failed(self, username: str, client: str) -> None:
        address, network = address_groups(client)
        self._failures.add((("address", address), ("network", network), ("user", username)))

    @contextlib.asynccontextmanager
    async def turn(self, username: str) -> AsyncIterator[None]:
        """While a user is under attack, their password is checked one request at a time."""
        if not self._under_attack(username):
            yield
            return
        lock, users = self._turns.get(username) or (asyncio.Lock(), 0)
        self._turns[username] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._turns[username]
            if users == 1:
                del self._turns[username]
            else:
                self._turns[username] = (lock, users - 1)

    def _under_attack(self, username: str) -> bool:
        return self._failures.count(("user", username)) >= FAILURES_PER_USER
