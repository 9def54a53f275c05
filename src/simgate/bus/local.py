"""In-process device push: one queue per connected device stream."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any


class LocalBus:
    """Fan-out of small events to the live event streams of each device.

    Queues are bounded: a device that does not read loses nothing that matters,
    because every event only says "come and fetch", and the agent polls as well.
    """

    def __init__(self, queue_size: int = 64) -> None:
        self._streams: dict[str, set[asyncio.Queue[dict[str, Any]]]] = defaultdict(set)
        self._queue_size = queue_size

    def notify(self, device_id: str, event: str, data: dict[str, Any] | None = None) -> None:
        message = {"event": event, "data": data or {}}
        for queue in self._streams.get(device_id, ()):
            if queue.full():
                continue  # the pending "come and fetch" already covers this one
            queue.put_nowait(message)

    def close(self) -> None:
        """End every open stream (at shutdown): subscribers get a None event."""
        for queues in self._streams.values():
            for queue in queues:
                while queue.full():
                    queue.get_nowait()
                queue.put_nowait({"event": None, "data": {}})

    def connected(self, device_id: str) -> bool:
        return bool(self._streams.get(device_id))

    @asynccontextmanager
    async def subscribe(self, device_id: str) -> AsyncIterator[asyncio.Queue[dict[str, Any]]]:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(self._queue_size)
        self._streams[device_id].add(queue)
        try:
            yield queue
        finally:
            self._streams[device_id].discard(queue)
            if not self._streams[device_id]:
                del self._streams[device_id]
