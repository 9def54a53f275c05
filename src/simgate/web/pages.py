"""The dashboard's pages (GET): the overview, devices, messages, a message, send, inbox, webhooks,
settings and logs; the `rows`/`part` fragments are what the live pages fetch again."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from simgate.domain.routing import SimSelectionMode, Strategy
from simgate.domain.settings import public_view
from simgate.domain.sims import MAX_SIM_SLOTS
from simgate.domain.states import ProcessState
from simgate.services.errors import NotFound
from simgate.services.inbox import InboxQuery
from simgate.services.messages import MessageQuery
from simgate.services.overview import overview
from simgate.services.webhooks import WebhookEvent
from simgate.web import panels
from simgate.web.render import Viewer, ViewerDep, render

router = APIRouter(include_in_schema=False)

LIST_SIZE = 50  # messages on the live list; older ones by ?page=


Context = Callable[[Request, Viewer], Awaitable[dict[str, Any]]]


def live_page(path: str, fragment: str, template: str, part: str, context: Context,
              around: Context | None = None) -> None:
    """A page, and at `fragment` the part of it that its live updates fetch again;
    `around` adds what only the whole page shows (its filters' choices)."""

    async def whole(request: Request, who: ViewerDep) -> HTMLResponse:
        extra = await around(request, who) if around else {}
        return render(request, template, {**await context(request, who), **extra}, who=who)

    async def piece(request: Request, who: ViewerDep) -> HTMLResponse:
        return render(request, part, await context(request, who), who=who)

    router.add_api_route(path, whole, methods=["GET"])
    router.add_api_route(fragment, piece, methods=["GET"])


async def _devices_context(_: Request, who: Viewer) -> dict[str, Any]:
    return {"devices": await panels.devices(who.gateway, who.user_id)}


live_page("/devices", "/devices/part", "devices.html", "_devices.html", _devices_context)


async def _overview_context(_: Request, who: Viewer) -> dict[str, Any]:
    return {"overview": await overview(who.gateway.sessions, who.user_id,
                                       who.gateway.settings.max_queued_per_device)}


live_page("/", "/overview/part", "overview.html", "_overview.html", _overview_context)


def _query(request: Request) -> MessageQuery:
    """The list's filters from the address; a value that cannot be one is no filter."""
    params = request.query_params
    state, sim, page = params.get("state"), params.get("sim", ""), params.get("page", "1")
    page_number = max(int(page), 1) if page.isdigit() else 1
    return MessageQuery(
        state=ProcessState(state) if state in ProcessState._value2member_map_ else None,
        device_id=params.get("device") or None,
        sim_number=int(sim) if sim.isdigit() and 1 <= int(sim) <= MAX_SIM_SLOTS else None,
        limit=LIST_SIZE, offset=(page_number - 1) * LIST_SIZE)


async def _messages_context(request: Request, who: Viewer) -> dict[str, Any]:
    query = _query(request)
    filters = {"state": query.state.value if query.state else "",
               "device": query.device_id or "", "sim": query.sim_number or ""}
    return {"messages": await who.gateway.messages.list(who.user_id, query),
            "total": await who.gateway.messages.count(who.user_id, query),
            "page": query.offset // LIST_SIZE + 1, "page_size": LIST_SIZE,
            "filtered": urlencode({k: v for k, v in filters.items() if v}),
            **filters}


async def _message_filters(_: Request, who: Viewer) -> dict[str, Any]:
    """The choices of the list's filters: states, the user's devices, their SIM numbers."""
    found = await who.gateway.devices.list(who.user_id)
    slots = max((len(d.sims) for d in found), default=0)
    return {"states": [s.value for s in ProcessState],
            "devices": [(d.id, d.name) for d in found] if len(found) > 1 else [],
            "sims": list(range(1, slots + 1))}


live_page("/messages", "/messages/rows", "messages.html", "_message_rows.html",
          _messages_context, _message_filters)  # before /messages/{message_id}


async def _message(request: Request, who: Viewer, message_id: str,
                   template: str) -> HTMLResponse:
    try:
        message = await who.gateway.messages.get(who.user_id, message_id)
    except NotFound as exc:
        return render(request, "error.html", {"error": exc.message}, 404, who=who)
    return render(request, template, {"message": message, "timeline": panels.timeline(message)},
                  who=who)


@router.get("/messages/{message_id}")
async def message(request: Request, message_id: str, who: ViewerDep) -> HTMLResponse:
    return await _message(request, who, message_id, "message.html")


@router.get("/messages/{message_id}/part")
async def message_part(request: Request, message_id: str, who: ViewerDep) -> HTMLResponse:
    return await _message(request, who, message_id, "_message.html")


async def send_context(who: Viewer) -> dict[str, Any]:
    return {"choices": panels.sim_choices(await panels.devices(who.gateway, who.user_id))}


@router.get("/send")
async def send_form(request: Request, who: ViewerDep) -> HTMLResponse:
    return render(request, "send.html", {**await send_context(who), "form": {}}, who=who)


async def _inbox_context(_: Request, who: Viewer) -> dict[str, Any]:
    received = await who.gateway.inbox.list(who.user_id, InboxQuery(limit=100))
    downloaded = [m.id for m in received if m.type == "MMS_DOWNLOADED"]
    return {"received": received,
            "parts": await who.gateway.inbox.parts(who.user_id, downloaded),
            "shown_inline": INLINE_IMAGES}


live_page("/inbox", "/inbox/rows", "inbox.html", "_inbox_rows.html", _inbox_context)

# MMS parts the inbox shows as pictures; any other (SVG, which may hold scripts, among
# them) is a download.
INLINE_IMAGES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp", "image/bmp"})


@router.get("/inbox/{message_id}/parts/{part_id}")
async def inbox_part(message_id: str, part_id: int, who: ViewerDep) -> Response:
    """A part of one of the viewer's MMS: a picture shown in the page, or a download."""
    part = await who.gateway.inbox.part(who.user_id, message_id, part_id)
    if part is None or part.content is None:
        raise NotFound("no such part, or it was not kept (over the size caps)")
    inline = part.content_type.lower() in INLINE_IMAGES
    filename = quote(part.name or f"part-{part.part_id}", safe="")
    return Response(part.content, media_type=part.content_type, headers={
        "Content-Disposition": f"{'inline' if inline else 'attachment'};"
                               f" filename*=UTF-8''{filename}",
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "sandbox; default-src 'none'"})


async def webhooks_context(who: Viewer) -> dict[str, Any]:
    return {"webhooks": await who.gateway.webhooks.list(who.user_id),
            "deliveries": await who.gateway.webhooks.deliveries(who.user_id, limit=50),
            "events": [e.value for e in WebhookEvent],
            "devices": await who.gateway.devices.list(who.user_id)}


@router.get("/webhooks")
async def webhooks(request: Request, who: ViewerDep) -> HTMLResponse:
    notice = _redriven(request.query_params.get("redriven", ""))
    return render(request, "webhooks.html", {**await webhooks_context(who), "notice": notice},
                  who=who)


def _redriven(count: str) -> str:
    if not count.isdigit():
        return ""
    if count == "0":
        return "No failed delivery to send again."
    return f"{count} failed deliver{'y' if count == '1' else 'ies'} queued to be sent again."


async def settings_context(who: Viewer) -> dict[str, Any]:
    shown = public_view(await who.gateway.device_settings.get(who.user_id))
    numbers = sorted({sim.number for device in await panels.devices(who.gateway, who.user_id)
                      for sim in device.sims}
                     | {int(n) for n in shown["routing"]["sims"] if n.isdigit()})
    return {"settings": shown, "modes": [m.value for m in SimSelectionMode],
            "strategies": [s.value for s in Strategy], "sim_numbers": numbers}


@router.get("/settings")
async def settings(request: Request, who: ViewerDep) -> HTMLResponse:
    notice = "Settings saved." if request.query_params.get("saved") else ""
    return render(request, "settings.html", {**await settings_context(who), "notice": notice},
                  who=who)


@router.get("/logs")
async def logs(request: Request, who: ViewerDep) -> HTMLResponse:
    entries = await who.gateway.logs.list(who.user_id, None, None, limit=200)
    return render(request, "logs.html", {"entries": entries}, who=who)
