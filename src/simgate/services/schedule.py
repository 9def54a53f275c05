"""Wakes devices when their scheduled messages fall due.

A message with `scheduleAt` is handed out only from that time on, so its device must hear
of it then: without a push, it would wait for its next poll (15 minutes for the app).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import async_sessionmaker

from simgate.domain.states import ProcessState
from simgate.store.models import Message, utcnow

log = logging.getLogger(__name__)

# Looked at again at least this often, so a missed wake costs a minute at most.
LONGEST_SLEEP = 60.0


class DueTimer:
    def __init__(self, sessions: async_sessionmaker, notify: Callable[[str], None],
                 longest: float = LONGEST_SLEEP) -> None:
        self._sessions = sessions
        self._notify = notify
        self._longest = longest
        self._changed = asyncio.Event()

    def wake(self) -> None:
        """A scheduled message was accepted: the next due time may be sooner."""
        self._changed.set()

    async def run(self) -> None:
        last = utcnow()
        while True:
            now = utcnow()
            try:
                for device_id in await self._due_between(last, now):
                    self._notify(device_id)
                upcoming = await self._next_after(now)
            except Exception:  # the store may be away for a moment; try again later
                log.exception("looking for scheduled messages failed")
                upcoming = None
            last = now
            delay = self._longest
            if upcoming is not None:
                delay = min(delay, max((upcoming - utcnow()).total_seconds(), 0.0))
            # asyncio.timeout, not wait_for: on Python 3.11, wait_for drops a cancel that
            # comes as the event is set, and the loop would outlive the gateway's close
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._changed.wait()
            self._changed.clear()

    async def _due_between(self, after: datetime, until: datetime) -> list[str]:
        async with self._sessions() as session:
            return list(await session.scalars(
                select(Message.device_id).where(
                    Message.state == ProcessState.PENDING.value,
                    Message.schedule_at > after, Message.schedule_at <= until,
                ).distinct()))

    async def _next_after(self, now: datetime) -> datetime | None:
        async with self._sessions() as session:
            return await session.scalar(
                select(func.min(Message.schedule_at)).where(
                    Message.state == ProcessState.PENDING.value, Message.schedule_at > now))
