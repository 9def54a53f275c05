"""Server-sent event streams of a bus channel: a device's (what to fetch) or a user's
dashboard (what changed)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import Request
from fastapi.responses import StreamingResponse

from simgate.bus.local import LocalBus

HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def stream(request: Request, bus: LocalBus, channel: str, keepalive: float,
           encode: Callable[[dict[str, Any]], Any] = lambda data: data,
           hello: str = ": connected\n\n") -> StreamingResponse:
    """The channel's events as they come, a comment every `keepalive` seconds of quiet,
    until the client leaves or the server shuts down (the bus ends every stream)."""

    async def events() -> AsyncIterator[str]:
        async with bus.subscribe(channel) as queue:
            yield hello
            while not await request.is_disconnected():
                try:
                    async with asyncio.timeout(keepalive):  # wait_for (3.11) may drop a cancel
                        item = await queue.get()
                except TimeoutError:
                    yield ": keepalive\n\n"
                    continue
                if item["event"] is None:  # the server is shutting down
                    return
                yield f"event: {item['event']}\ndata: {json.dumps(encode(item['data']))}\n\n"

    return StreamingResponse(events(), media_type="text/event-stream", headers=HEADERS)
