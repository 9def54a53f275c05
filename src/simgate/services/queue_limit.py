"""SIMGATE_MAX_QUEUED_PER_DEVICE: a 503 when a device already has that many Pending
messages, as it most likely is offline and the queue would only grow."""

from __future__ import annotations

import time
from collections.abc import Iterable

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from simgate.domain.states import ProcessState
from simgate.services.accept import MAX_BATCH
from simgate.services.errors import QueueFull
from simgate.store.models import Message

# How long a count stands while the device is well below its limit
RECOUNT_SECONDS = 1.0


class QueueLimit:
    """Counts a device's Pending messages (up to the limit, on an index) once per accept
    batch near the limit, and at most once a second well below it: under load the count
    of thousands of waiting rows per batch cost more than the batch's own INSERT. Between
    counts, what this process accepted is added; what left the queue is not subtracted
    (the estimate only errs high, and near the limit every batch counts again)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._counted: dict[str, tuple[float, int]] = {}  # device -> (when, how many)

    async def take_place(self, session: AsyncSession, device_id: str) -> None:
        """One more message for the device in this batch, or QueueFull (a 503)."""
        queued: dict[str, int] = session.info.setdefault("queued", {})
        if device_id not in queued:
            queued[device_id] = await self._waiting(session, device_id)
        if queued[device_id] >= self.limit:
            raise QueueFull(
                f"device {device_id} already has {self.limit} messages waiting: it seems"
                " offline; bring it online, or raise SIMGATE_MAX_QUEUED_PER_DEVICE")
        queued[device_id] += 1

    def accepted(self, device_ids: Iterable[str]) -> None:
        """Messages of these devices were stored (one id per message)."""
        for device_id in device_ids:
            if (counted := self._counted.get(device_id)) is not None:
                self._counted[device_id] = (counted[0], counted[1] + 1)

    async def _waiting(self, session: AsyncSession, device_id: str) -> int:
        counted = self._counted.get(device_id)
        if (counted is not None and time.monotonic() - counted[0] < RECOUNT_SECONDS
                and counted[1] + MAX_BATCH < self.limit * 0.9):
            return counted[1]
        waiting = select(Message.pk).where(
            Message.device_id == device_id, Message.state == ProcessState.PENDING.value
        ).limit(self.limit).subquery()
        count = await session.scalar(select(func.count()).select_from(waiting)) or 0
        self._counted[device_id] = (time.monotonic(), count)
        return count
