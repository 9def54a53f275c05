"""Server-sent events for the dashboard's live pages.

A user's stream carries what the services publish on the bus for that user: `messages`
(ids of messages stored or changed, after the commit) and `devices` (a device or its SIM
slots changed). Pages fetch their changed part again; the events carry ids, never content.
Across workers the bus carries them to whichever worker holds the stream.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from simgate.bus.local import user_channel
from simgate.server import sse
from simgate.web.render import ViewerDep

router = APIRouter(include_in_schema=False)


@router.get("/events")
async def events(request: Request, who: ViewerDep) -> StreamingResponse:
    return sse.stream(request, who.gateway.bus, user_channel(who.user_id),
                      request.app.state.sse_keepalive, hello="retry: 2000\n: connected\n\n")
