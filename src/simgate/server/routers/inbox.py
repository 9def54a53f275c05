"""Inbox API: received SMS, and asking for their webhooks again."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response, status

from simgate.server.deps import GatewayDep, aware, user_with
from simgate.server.schemas import ExportRequest, IncomingOut, Offset, RefreshRequest
from simgate.server.wirejson import StrictJSONRoute
from simgate.services.inbox import PREVIEW_CHARS, InboxQuery
from simgate.store.models import IncomingMessage

router = APIRouter(tags=["inbox"], route_class=StrictJSONRoute)


def _out(message: IncomingMessage) -> IncomingOut:
    preview = message.data if message.type == "DATA_SMS" else message.text
    return IncomingOut(
        id=message.id, type=message.type, sender=message.sender, recipient=message.recipient,
        sim_number=message.sim_number, content_preview=(preview or "")[:PREVIEW_CHARS],
        created_at=message.received_at,
    )


@router.get("/inbox", response_model=list[IncomingOut])
async def list_inbox(
    user_id: Annotated[int, user_with("inbox:list")], gateway: GatewayDep, response: Response,
    type: Literal["SMS", "DATA_SMS", "MMS", "MMS_DOWNLOADED"] | None = None,
    since: Annotated[datetime | None, Query(alias="from")] = None,
    until: Annotated[datetime | None, Query(alias="to")] = None,
    device_id: Annotated[str | None, Query(alias="deviceId")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[Offset, Query()] = 0,
) -> list[IncomingOut]:
    """Received messages, newest first, with the SIM that received each; X-Total-Count
    tells how many match across all pages."""
    query = InboxQuery(type=type, since=aware(since), until=aware(until), device_id=device_id,
                       limit=limit, offset=offset)
    response.headers["X-Total-Count"] = str(await gateway.inbox.count(user_id, query))
    return [_out(m) for m in await gateway.inbox.list(user_id, query)]


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
