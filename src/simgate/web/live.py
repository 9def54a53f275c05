"""Server-sent events for the dashboard's live pages.

A user's stream carries what the services publish on the bus for that user: `messages`
(ids of messages stored or changed, after the commit) and `devices` (a device or its SIM
slots changed). Pages fetch their changed part again; the events carry ids, never content.
Across workers the bus carries them to whichever worker holds the stream.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from simgate.bus.local import user_channel
from simgate.web.render import ViewerDep

router = APIRouter(include_in_schema=False)


@router.get("/events")
async def events(request: Request, who: ViewerDep) -> StreamingResponse:
    keepalive = request.app.state.sse_keepalive

    async def stream() -> AsyncIterator[str]:
        async with who.gateway.bus.subscribe(user_channel(who.user_id)) as queue:
            yield "retry: 2000\n: connected\n\n"
            while not await request.is_disconnected():
                try:
                    item = await asyncio.wait_for(queue.get(), keepalive)
                except TimeoutError:
                    yield ": keepalive\n\n"
                    continue
                if item["event"] is None:  # the server is shutting down
                    return
                yield f"event: {item['event']}\ndata: {json.dumps(item['data'])}\n\n"

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
