"""In-process bus: device push to live event streams, and signals between services."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

# What crosses to sibling workers: ("push", device_id, event, data), ("signal", topic, args),
# and ("stream", device_id, open) when this worker starts or stops holding a device's stream.
Frame = tuple[Any, ...]


def user_channel(user_id: int) -> str:
    """The stream a user's live dashboard pages follow, beside the devices' own streams
    (device ids are UUID-like and never hold a colon)."""
    return f"user:{user_id}"


class LocalBus:
    """Fan-out of small events to the live event streams of each device, and of signals
    (wake the webhook dispatcher, drop a cached device) to whoever listens for them.

    Queues are bounded: a device that does not read loses nothing that matters,
    because every event only says "come and fetch", and the agent polls as well.
    When the server runs as several workers, `forward` carries every event to the
    siblings (bus.peers), whose `receive` delivers it there as if it were local.
    """

    def __init__(self, queue_size: int = 64) -> None:
        self._streams: dict[str, set[asyncio.Queue[dict[str, Any]]]] = defaultdict(set)
        self._handlers: dict[str, list[Callable[..., None]]] = defaultdict(list)
        self._queue_size = queue_size
        self.forward: Callable[[Frame], None] | None = None

    def notify(self, device_id: str, event: str, data: dict[str, Any] | None = None) -> None:
        """Tell a device's event streams, here and in sibling workers."""
        data = data or {}
        self._push(device_id, event, data)
        self._to_siblings(("push", device_id, event, data))

    def on(self, topic: str, handler: Callable[..., None]) -> None:
        self._handlers[topic].append(handler)

    def signal(self, topic: str, *args: Any) -> None:
        """Call the handlers of a topic, here and in sibling workers."""
        self._call(topic, args)
        self._to_siblings(("signal", topic, args))

    def receive(self, frame: Frame) -> None:
        """An event from a sibling worker: deliver it here only."""
        if frame[0] == "push":
            self._push(*frame[1:])
        elif frame[0] == "signal":
            self._call(frame[1], frame[2])

    def _push(self, device_id: str, event: str, data: dict[str, Any]) -> None:
        message = {"event": event, "data": data}
        for queue in self._streams.get(device_id, ()):
            if queue.full():
                continue  # the pending "come and fetch" already covers this one
            queue.put_nowait(message)

    def devices_streaming(self) -> list[str]:
        """The devices with an event stream open here."""
        return list(self._streams)

    def _to_siblings(self, frame: Frame) -> None:
        if self.forward is not None:
            self.forward(frame)

    def _call(self, topic: str, args: tuple[Any, ...]) -> None:
        for handler in self._handlers.get(topic, ()):
            handler(*args)

    def close(self) -> None:
        """End every open stream (at shutdown): subscribers get a None event."""
        for queues in self._streams.values():
            for queue in queues:
                while queue.full():
                    queue.get_nowait()
                queue.put_nowait({"event": None, "data": {}})

    def end_streams(self, device_id: str) -> None:
        """End the device's open streams here (a removed device): a None event, ahead of
        anything still queued for it."""
        for queue in self._streams.get(device_id, ()):
            while not queue.empty():
                queue.get_nowait()
            queue.put_nowait({"event": None, "data": {}})

    @asynccontextmanager
    async def subscribe(self, device_id: str) -> AsyncIterator[asyncio.Queue[dict[str, Any]]]:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(self._queue_size)
        if device_id not in self._streams:
            self._to_siblings(("stream", device_id, True))
        self._streams[device_id].add(queue)
        try:
            yield queue
        finally:
            self._streams[device_id].discard(queue)
            if not self._streams[device_id]:
                del self._streams[device_id]
                self._to_siblings(("stream", device_id, False))
