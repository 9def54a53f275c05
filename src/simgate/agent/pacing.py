"""Send pacing from the messages settings: random pauses and a count limit per period."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque

from simgate.domain.routing import BYPASS_PRIORITY
from simgate.domain.settings import LimitPeriod

PERIOD_SECONDS = {
    LimitPeriod.PER_MINUTE: 60.0,
    LimitPeriod.PER_30_MINUTES: 1800.0,
    LimitPeriod.PER_HOUR: 3600.0,
    LimitPeriod.PER_DAY: 86400.0,
}

log = logging.getLogger(__name__)

__all__ = ["BYPASS_PRIORITY", "Pacer"]


class Pacer:
    """Waits before a send as the settings ask; one per SIM slot."""

    def __init__(self) -> None:
        self.interval: tuple[int, int] | None = None
        self.limit: tuple[float, int] | None = None  # (window seconds, messages)
        self._sent: deque[float] = deque()
        self._last: float | None = None
        self._pause = 0.0  # drawn at each send, so a wait is not re-drawn while waiting
        self._changed = asyncio.Event()  # new settings: a wait is measured again

    def configure(self, messages: dict) -> None:
        low, high = messages.get("send_interval_min"), messages.get("send_interval_max")
        if low is None and high is None:
            self.interval = None
        else:
            low = low if low is not None else 0
            self.interval = (low, high if high is not None else low)
        period = LimitPeriod(messages.get("limit_period") or LimitPeriod.DISABLED)
        value = messages.get("limit_value")
        self.limit = (PERIOD_SECONDS[period], value) if period in PERIOD_SECONDS and value else None
        self._changed.set()
        self._changed = asyncio.Event()

    def delay(self, now: float) -> float:
        """Seconds to wait before the next send."""
        wait = 0.0
        if self.interval and self._last is not None:
            wait = max(wait, self._last + self._pause - now)
        if self.limit:
            window, count = self.limit
            while self._sent and self._sent[0] <= now - window:
                self._sent.popleft()
            if len(self._sent) >= count:
                wait = max(wait, self._sent[0] + window - now)
        return wait

    async def wait(self, priority: int) -> None:
        # one pacer per slot: nothing else sends through it meanwhile
        while priority < BYPASS_PRIORITY and (pause := self.delay(time.monotonic())) > 0:
            if self.limit:
                log.info("send limit of %d message(s) per %.0f s: the next waits %.0f s",
                         self.limit[1], self.limit[0], pause)
            with contextlib.suppress(TimeoutError):  # wait_for (3.11) may drop a cancel
                async with asyncio.timeout(pause):
                    await self._changed.wait()
        now = time.monotonic()
        self._last = now
        self._pause = random.randint(*self.interval) if self.interval else 0.0
        self._sent.append(now)

    def done(self) -> None:
        """The send just finished: its place in the window counts from now, so a slow send
        cannot let the one a window later in early."""
        if self._sent:
            self._sent[-1] = time.monotonic()
