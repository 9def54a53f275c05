"""Inbox API: received SMS and MMS (with their parts), and asking for their webhooks
again."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from urllib.parse import quote

from fastapi import APIRouter, HTTPException, Query, Response, status

from simgate.server.deps import GatewayDep, aware, user_with
from simgate.server.schemas import (
    AttachmentOut,
    ExportRequest,
    IncomingOut,
    Offset,
    RefreshRequest,
)
from simgate.server.wirejson import StrictJSONRoute
from simgate.services.inbox import PREVIEW_CHARS, InboxQuery, preview_of
from simgate.store.models import IncomingAttachment, IncomingMessage

router = APIRouter(tags=["inbox"], route_class=StrictJSONRoute)


def _out(message: IncomingMessage,
         parts: list[IncomingAttachment] | None = None) -> IncomingOut:
    out = IncomingOut(
        id=message.id, type=message.type, sender=message.sender, recipient=message.recipient,
        sim_number=message.sim_number, content_preview=preview_of(message)[:PREVIEW_CHARS],
        created_at=message.received_at,
    )
    if parts is not None:
        out.attachments = [AttachmentOut(part_id=p.part_id, name=p.name, size=p.size,
                                         content_type=p.content_type) for p in parts]
    return out


@router.get("/inbox", response_model=list[IncomingOut], response_model_exclude_unset=True)
async def list_inbox(
    user_id: Annotated[int, user_with("inbox:list")], gateway: GatewayDep, response: Response,
    type: Literal["SMS", "DATA_SMS", "MMS", "MMS_DOWNLOADED"] | None = None,
    since: Annotated[datetime | None, Query(alias="from")] = None,
    until: Annotated[datetime | None, Query(alias="to")] = None,
    device_id: Annotated[str | None, Query(alias="deviceId")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[Offset, Query()] = 0,
    include_attachments: Annotated[bool, Query(alias="includeAttachments")] = False,
) -> list[IncomingOut]:
    """Received messages, newest first, with the SIM that received each; X-Total-Count
    tells how many match across all pages. `includeAttachments=true` lists each
    message's MMS parts (their bytes: GET /inbox/{id}/attachments/{partId})."""
    query = InboxQuery(type=type, since=aware(since), until=aware(until), device_id=device_id,
                       limit=limit, offset=offset)
    response.headers["X-Total-Count"] = str(await gateway.inbox.count(user_id, query))
    messages = await gateway.inbox.list(user_id, query)
    if not include_attachments:
        return [_out(m) for m in messages]
    parts = await gateway.inbox.parts(user_id, [m.id for m in messages])
    return [_out(m, parts[m.id]) for m in messages]


@router.get("/inbox/{message_id}/attachments/{part_id}", response_class=Response,
            responses={200: {"description": "The part's bytes, with its content type",
                             "content": {"application/octet-stream": {}}}})
async def download_attachment(message_id: str, part_id: int,
                              user_id: Annotated[int, user_with("inbox:read")],
                              gateway: GatewayDep) -> Response:
    """One part of a downloaded MMS, as the phone sent it. It is served as a download
    (never rendered in the API's origin), with its content type."""
    part = await gateway.inbox.part(user_id, message_id, part_id)
    if part is None:
        raise HTTPException(404, f"no part {part_id} of message {message_id}: list them"
                                 " with GET /inbox?includeAttachments=true")
    if part.content is None:
        raise HTTPException(404, f"part {part_id} of message {message_id} was not kept"
                                 " (over the size caps, or the phone sent no bytes): the"
                                 " phone still has it")
    filename = quote(part.name or f"part-{part.part_id}", safe="")
    return Response(part.content, media_type=part.content_type, headers={
        "Content-Disposition": f"attachment; filename*=UTF-8''{filename}",
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "sandbox; default-src 'none'"})


@router.post("/inbox/refresh", status_code=status.HTTP_202_ACCEPTED)
async def refresh_inbox(body: RefreshRequest, user_id: Annotated[int, user_with("inbox:refresh")],
                        gateway: GatewayDep) -> dict[str, int]:
    """Raise the received-message webhooks again for a period, from the stored inbox:
    one event per message (`webhookDelivery: Individual`, or the older `triggerWebhooks:
    true`), events of many messages (`Batch`: sms:batch:received, ...), or none
    (`Disabled`, and the default, as the original). `messageTypes` picks the types."""
    delivery = body.delivery()
    await gateway.inbox.ask_devices(user_id, body.device_id, aware(body.since),
                                    aware(body.until), body.message_types,
                                    delivery != "Disabled")
    if delivery == "Disabled":
        return {"events": 0}
    count = await gateway.inbox.export(user_id, body.device_id, aware(body.since),
                                       aware(body.until), body.message_types,
                                       batch=delivery == "Batch")
    return {"events": count}


@router.post("/messages/inbox/export", status_code=status.HTTP_202_ACCEPTED)
@router.post("/message/inbox/export", status_code=status.HTTP_202_ACCEPTED,
             include_in_schema=False)
async def export_inbox(body: ExportRequest,
                       user_id: Annotated[int, user_with("messages:export")],
                       gateway: GatewayDep, response: Response) -> dict[str, int]:
    """The older form of /inbox/refresh: as the original, received SMS only, one event
    each."""
    response.headers["Deprecation"] = "true"
    await gateway.inbox.ask_devices(user_id, body.device_id, aware(body.since),
                                    aware(body.until), ["SMS"], True)
    count = await gateway.inbox.export(user_id, body.device_id, aware(body.since),
                                       aware(body.until), ["SMS"])
    return {"events": count}
