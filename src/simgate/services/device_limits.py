"""How much one device may post at once and per minute, so one tenant's device cannot
slow every other tenant down: the rows of /mobile/v1/inbox and /mobile/v1/logs.

A batch is at most MAX_BATCH rows (simgate's own agent sends at most that many: its
agent/outbox.py BATCH); a device posts at most ROWS_PER_MINUTE rows a minute to each,
then waits (429 with Retry-After; the agent keeps them in its journal and tries again).
Counts live in each server process, as the login limits do.
"""

from __future__ import annotations

from simgate.services.errors import TooLarge, TooManyRequests
from simgate.services.limits import SlidingCounts

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
        self._rows = SlidingCounts(WINDOW)

    def admit(self, device_id: str, rows: int) -> None:
        """Count a batch of `rows` from the device, or refuse it: TooLarge past
        max_batch, DeviceThrottled when the minute's rows would pass per_minute."""
        if rows > self.max_batch:
            raise TooLarge(f"{rows} entries in one request: {self.route} takes at most"
                           f" {self.max_batch} at a time; send them in batches")
        # room for `rows` more: at most per_minute - rows posted within the window
        wait = self._rows.wait(device_id, self.per_minute - rows + 1)
        if wait > 0:
            raise DeviceThrottled(
                f"this device posted {self._rows.count(device_id)} entries to {self.route}"
                f" in the last minute, at most {self.per_minute} a minute: wait"
                f" {max(1, round(wait))} s", wait)
        self._rows.add([device_id] * rows)
