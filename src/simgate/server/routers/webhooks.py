"""Webhooks API: register receivers, see delivery attempts, redrive what ran out."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response, status

from simgate.server.deps import GatewayDep, user_with
from simgate.server.schemas import DeliveryOut, WebhookIn, WebhookOut
from simgate.server.wirejson import StrictJSONRoute
from simgate.services.webhooks import OFFICIAL_CLIENT_AGENT, OWN_EVENTS
from simgate.store.models import Webhook, WebhookDelivery

router = APIRouter(prefix="/webhooks", tags=["webhooks"], route_class=StrictJSONRoute)


def _out(hook: Webhook) -> WebhookOut:
    return WebhookOut(id=hook.ext_id, url=hook.url, event=hook.event, device_id=hook.device_id)


def _delivery(d: WebhookDelivery, webhook_id: str) -> DeliveryOut:
    return DeliveryOut(
        id=d.event_id, webhook_id=webhook_id, event=d.event, status=d.status,
        attempts=d.attempts, next_attempt_at=d.next_attempt_at if d.status == "pending" else None,
        last_error=d.last_error, last_status=d.last_status, created_at=d.created_at,
        delivered_at=d.delivered_at,
    )


@router.get("", response_model=list[WebhookOut], response_model_exclude_none=True)
async def list_webhooks(request: Request,
                        user_id: Annotated[int, user_with("webhooks:list")], gateway: GatewayDep,
                        device_id: Annotated[str | None, Query(alias="deviceId")] = None
                        ) -> list[WebhookOut]:
    """The user's webhooks; to the official clients, not those of simgate's own events
    (sim:changed), which they cannot read."""
    official = request.headers.get("User-Agent", "").startswith(OFFICIAL_CLIENT_AGENT)
    return [_out(h) for h in await gateway.webhooks.list(user_id, device_id)
            if not (official and h.event in OWN_EVENTS)]


@router.post("", response_model=WebhookOut, status_code=status.HTTP_201_CREATED,
             response_model_exclude_none=True)
async def create_webhook(
    body: WebhookIn,
    user_id: Annotated[int, user_with("webhooks:write")],
    gateway: GatewayDep,
) -> WebhookOut:
    """One event per webhook; the same id again replaces that webhook."""
    hook = await gateway.webhooks.create(user_id, body.url, body.event, body.device_id, body.id)
    await gateway.device_settings.ensure_signing_key(user_id)  # every delivery is signed
    await gateway.webhooks.announce(user_id)
    return _out(hook)


@router.delete("/{webhook_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_webhook(
    webhook_id: str,
    user_id: Annotated[int, user_with("webhooks:delete")],
    gateway: GatewayDep,
) -> Response:
    await gateway.webhooks.delete(user_id, webhook_id)
    await gateway.webhooks.announce(user_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/deliveries", response_model=list[DeliveryOut])
async def list_deliveries(
    user_id: Annotated[int, user_with("webhooks:list")], gateway: GatewayDep,
    webhook_id: Annotated[str | None, Query(alias="webhookId")] = None,
    state: Annotated[str | None, Query(pattern="^(pending|delivered|failed)$")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[DeliveryOut]:
    """Delivery attempts, newest first (a simgate extension)."""
    found = await gateway.webhooks.deliveries(user_id, webhook_id, state, limit)
    return [_delivery(d, webhook_id) for d, webhook_id in found]


@router.post("/{webhook_id}/redrive")
async def redrive_webhook(
    webhook_id: str,
    user_id: Annotated[int, user_with("webhooks:write")],
    gateway: GatewayDep,
    event_id: Annotated[str | None, Query(alias="eventId")] = None,
) -> dict[str, int]:
    """Send again the events of this webhook that ran out of retries (or just one)."""
    return {"redriven": await gateway.webhooks.redrive(user_id, webhook_id, event_id)}
