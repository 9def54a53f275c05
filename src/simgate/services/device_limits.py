"""How much one device may post at once and per minute, so one tenant's device cannot
slow every other tenant down: the rows of /mobile/v1/inbox and /mobile/v1/logs.

A batch is at most MAX_BATCH rows (simgate's own agent sends at most that many: its
REPORT_BATCH); a device posts at most ROWS_PER_MINUTE rows a minute to each, then waits
(429 with Retry-After; the agent keeps them in its journal and tries again). Counts live
in each server process, as the login limits do.
"""

from __future__ import annotations

import time
from collections import deque

from simgate.services.errors import TooLarge, TooManyRequests

MAX_BATCH = 500
ROWS_PER_MINUTE = 1_000
WINDOW = 60.0


class DeviceThrottled(TooManyRequests):
    """A device posted too many rows lately: it waits."""


class DeviceRows:
    """Rows each device posted to one route within the last WINDOW seconds."""

    def __init__(self, route: str, max_batch: int = MAX_BATCH,
                 per_minute: int = ROWS_PER_MINUTE) -> None:
        self.route = route
        self.max_batch = max_batch
        self.per_minute = per_minute
        self._posts: dict[str, deque[tuple[float, int]]] = {}  # (when, rows) per device
        self._swept_at = 0.0

    def admit(self, device_id: str, rows: int) -> None:
        """Count a batch of `rows` from the device, or refuse it: TooLarge past
        max_batch, DeviceThrottled when the minute's rows would pass per_minute."""
        if rows > self.max_batch:
            raise TooLarge(f"{rows} entries in one request: {self.route} takes at most"
                           f" {self.max_batch} at a time; send them in batches")
        now = time.monotonic()
        self._sweep(now)
        posts = self._posts.setdefault(device_id, deque())
        while posts and posts[0][0] <= now - WINDOW:
            posts.popleft()
        total = sum(count for _, count in posts)
        if total + rows > self.per_minute:
            wait, freed = 0.0, 0
            for at, count in posts:  # until enough of the oldest rows age out
                freed += count
                wait = at + WINDOW - now
                if total - freed + rows <= self.per_minute:
                    break
            raise DeviceThrottled(
                f"this device posted {total} entries to {self.route} in the last minute, at"
                f" most {self.per_minute} a minute: wait {max(1, round(wait))} s", wait)
        posts.append((now, rows))

    def _sweep(self, now: float) -> None:
        """Forget devices that went quiet, now and then."""
        if now - self._swept_at < 10:
            return
        self._swept_at = now
        self._posts = {d: p for d, p in self._posts.items() if p and p[-1][0] > now - WINDOW}
