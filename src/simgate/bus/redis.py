"""Bus events between the replicas of a server on any hosts, over Redis pub/sub.

`PeerLink` joins the workers of one host over local sockets; with `SIMGATE_BUS_URL`
(`redis://...`, Valkey alike) every process of every replica joins one Redis channel
instead, and a push accepted on one host reaches the device's event stream on another.

Pub/sub, not streams: what crosses is hints ("come and fetch", "drop what you cached",
"look for webhooks"), and one missed while a replica was away costs a delay, never a
message (devices fetch when they connect and poll, caches expire, the dispatcher polls),
so there is nothing to replay. Frames are JSON (another host's Redis is no place for
pickles); a push drops the messages it carried in-process, and the device fetches them.
While Redis is unreachable the replica serves on, says so in /health, and reconnects.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import re
import secrets
from datetime import datetime
from typing import Any

import redis.asyncio as redis

from simgate.bus.local import Frame, LocalBus

logger = logging.getLogger(__name__)

RECONNECT_SECONDS = 1.0
BACKLOG = 10_000


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return {"$dt": value.isoformat()}
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    raise TypeError(f"{type(value).__name__} does not cross the bus")


def _hook(value: dict[str, Any]) -> Any:
    return datetime.fromisoformat(value["$dt"]) if value.keys() == {"$dt"} else value


def channel_of(store_url: str) -> str:
    """The channel of the replicas of one store: several gateways may share a Redis."""
    plain = re.sub(r"//[^@/]*@", "//", store_url)  # the store's password stays out
    return "simgate:bus:" + hashlib.sha256(plain.encode()).hexdigest()[:16]


def encode(origin: str, frame: Frame) -> str:
    """A bus frame as JSON, tagged with the process it comes from."""
    if frame[0] == "push":
        kind, device_id, event, data = frame
        frame = (kind, device_id, event, {k: v for k, v in data.items() if k != "messages"})
    return json.dumps([origin, *frame], default=_default, separators=(",", ":"))


def decode(text: str | bytes) -> tuple[str, Frame]:
    origin, *frame = json.loads(text, object_hook=_hook)
    if frame and frame[0] == "signal":
        frame[2] = tuple(frame[2])
    return origin, tuple(frame)


class RedisLink:
    """Joins this process's bus to every other process on the same Redis channel."""

    def __init__(self, bus: LocalBus, url: str, channel: str) -> None:
        self._bus = bus
        self._url = url
        self._channel = channel
        self._origin = secrets.token_hex(8)
        self._outgoing: asyncio.Queue[str] = asyncio.Queue(BACKLOG)
        self._tasks: list[asyncio.Task[None]] = []
        self.connected = False
        self.error: str | None = None  # why it is not connected, for /health

    async def start(self) -> None:
        self._bus.forward = self._send
        self._tasks = [asyncio.create_task(self._listen()), asyncio.create_task(self._publish())]

    async def close(self) -> None:
        self._bus.forward = None
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def health(self) -> dict[str, Any]:
        """The bus's check, as /health shows it."""
        if self.connected:
            return {"status": "pass", "description": "Redis bus connected"}
        return {"status": "warn", "description": "Redis bus unreachable"
                + (f" ({self.error})" if self.error else "")
                + ": serving on; other replicas' pushes reach devices at their next poll"}

    def _send(self, frame: Frame) -> None:
        if frame[0] == "stream":  # every replica hears every push: nothing to route
            return
        try:
            packet = encode(self._origin, frame)
        except (TypeError, ValueError) as exc:
            logger.warning("a %s event could not cross the bus: %s", frame[0], exc)
            return
        if not self._outgoing.full():  # past the backlog, hints are dropped
            self._outgoing.put_nowait(packet)

    async def _publish(self) -> None:
        client = redis.from_url(self._url)
        try:
            while True:
                packet = await self._outgoing.get()
                try:
                    await client.publish(self._channel, packet)
                except (redis.RedisError, OSError) as exc:
                    self._down(exc)
                    await asyncio.sleep(RECONNECT_SECONDS)
        finally:
            await client.aclose()

    async def _listen(self) -> None:
        while True:
            client = redis.from_url(self._url)
            try:
                async with client.pubsub() as pubsub:
                    await pubsub.subscribe(self._channel)
                    self._up()
                    async for message in pubsub.listen():
                        if message.get("type") == "message":
                            self._on_packet(message["data"])
            except (redis.RedisError, OSError) as exc:
                self._down(exc)
            finally:
                await client.aclose()
            await asyncio.sleep(RECONNECT_SECONDS)

    def _on_packet(self, data: bytes) -> None:
        try:
            origin, frame = decode(data)
        except (ValueError, TypeError, IndexError) as exc:
            logger.warning("a bus event that is not simgate's was skipped: %s", exc)
            return
        if origin == self._origin:
            return
        try:
            self._bus.receive(frame)
        except Exception:
            logger.exception("handling an event from another replica failed")

    def _up(self) -> None:
        if not self.connected:
            logger.info("Redis bus connected: %s", _safe(self._url))
        self.connected, self.error = True, None

    def _down(self, exc: BaseException) -> None:
        if self.connected or self.error is None:
            logger.warning("Redis bus unreachable (%s): serving on, retrying", exc)
        self.connected, self.error = False, str(exc)[:200]


def _safe(url: str) -> str:
    """The URL without its password, for the log."""
    if "@" not in url:
        return url
    scheme, _, rest = url.partition("://")
    return f"{scheme}://***@{rest.rpartition('@')[2]}"
