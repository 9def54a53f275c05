"""The device API, /mobile/v1: how agents and phones register, fetch and report."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import StreamingResponse
from pydantic import ValidationError

from simgate.server import sse
from simgate.server.auth import bearer_token, client_address, current_device, registrant
from simgate.server.deps import GatewayDep, aware, public_base, user_with
from simgate.server.schemas import (
    AppMmsDownloadedIn,
    AppReceivedIn,
    AppWebhookIn,
    DeviceInfoOut,
    DeviceOut,
    DeviceUpdateRequest,
    IncomingIn,
    LogIn,
    MobileMessageOut,
    PasswordChange,
    PatchMessageItem,
    PatchResultItem,
    RegisterRequest,
    RegisterResponse,
    StartedIn,
    UsageQueryIn,
    UserCodeOut,
    WebhookOut,
    millis,
    placed,
)
from simgate.server.wirejson import StrictJSONRoute, loads
from simgate.services.devices import DeviceIdentity
from simgate.services.inbox import Incoming, Part
from simgate.services.ingest import AGENT_USER_AGENT, first_post, signed
from simgate.services.logs import Entry, Priority
from simgate.services.messages import RecipientUpdate, StateUpdate, wire_id
from simgate.services.tokens import ALL
from simgate.services.webhooks import WebhookEvent

router = APIRouter(tags=["device"], route_class=StrictJSONRoute)

# The app's received events and the inbox type each is stored as.
RECEIVED_TYPES = {"sms:received": "SMS", "sms:data-received": "DATA_SMS", "mms:received": "MMS"}
# The app's own events of a message's states: they say which SIM it chose.
SENT_EVENTS = ("sms:sent", "sms:delivered", "sms:failed")

Device = Annotated[DeviceIdentity, Depends(current_device)]

# An SSE comment line this often keeps proxies and NAT from closing an idle stream
# (SIMGATE_SSE_KEEPALIVE_SECONDS).
KEEPALIVE_SECONDS = 15.0


@router.post("/device", response_model=RegisterResponse, status_code=status.HTTP_201_CREATED)
async def register(body: RegisterRequest, request: Request, response: Response,
                   gateway: GatewayDep) -> RegisterResponse:
    """Register a device, with its SIM slots; returns the device's own token, and the login
    and password of the user made for it when it joined with the server key. A card in no
    slot (`slotIndex` -1) is left out and named in the Warning header, not refused: the
    app would fail its whole registration."""
    sims, skipped = placed(body.sim_cards) if body.sim_cards is not None else (None, [])
    gateway.devices.check_slots(sims or [])
    who = await registrant(request)  # after the checks: it may spend a code or make a user
    # before the device exists: its first settings already carry the webhook signing key
    await gateway.device_settings.ensure_signing_key(who.user_id)
    registration = await gateway.devices.register(
        who.user_id, body.name or "simgate device", body.push_token, sims
    )
    await _left_out(gateway, DeviceIdentity(device_id=registration.device.id,
                                            user_id=who.user_id), skipped,
                    response)
    return RegisterResponse(id=registration.device.id, token=registration.token,
                            login=who.login, password=who.password)


@router.get("/device", response_model=DeviceInfoOut, response_model_exclude_none=True)
async def device_info(request: Request, gateway: GatewayDep) -> DeviceInfoOut:
    """The caller's address as the server sees it and, with a device token, the device."""
    info = DeviceInfoOut(external_ip=client_address(request) or None)
    if bearer_token(request) is not None:
        identity = await current_device(request)
        info.device = DeviceOut.of(await gateway.devices.get(identity.user_id,
                                                             identity.device_id))
    return info


@router.get("/user/code", response_model=UserCodeOut)
async def user_code(gateway: GatewayDep,
                    user_id: Annotated[int, user_with(ALL)]) -> UserCodeOut:
    """A one-time code to type into a device, which joins this user with it."""
    issued = await gateway.enrolment.issue_code(user_id)
    return UserCodeOut(code=issued.code, valid_until=issued.valid_until)


@router.patch("/user/password", status_code=status.HTTP_204_NO_CONTENT)
async def change_password(body: PasswordChange, device: Device, request: Request,
                          gateway: GatewayDep) -> Response:
    """A device changes its user's password (it knows the current one); wrong ones count
    as failed logins (429 past the limits)."""
    if not await gateway.users.change_password(device.user_id, body.current_password,
                                               body.new_password, client_address(request)):
        raise HTTPException(401, "invalid current password")
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.patch("/device", status_code=status.HTTP_204_NO_CONTENT)
async def update_device(body: DeviceUpdateRequest, device: Device, request: Request,
                        gateway: GatewayDep) -> Response:
    """Update the push token, name or SIM slots (the agent reports SIM changes here, with
    its own cool-downs; a phone's cool-downs are the server's, and stay). Another device's
    `id` is a 403, as with the original."""
    if body.id is not None and body.id != device.device_id:
        raise HTTPException(403, "id: this token belongs to another device; send the id"
                                 " POST /mobile/v1/device gave with it")
    sims, skipped = placed(body.sim_cards) if body.sim_cards is not None else (None, [])
    await gateway.devices.update(device, push_token=body.push_token, sims=sims, name=body.name,
                                 own_pauses=_is_simgate_agent(request))
    answer = Response(status_code=status.HTTP_204_NO_CONTENT)
    await _left_out(gateway, device, skipped, answer)
    return answer


async def _left_out(gateway: GatewayDep, device: DeviceIdentity, skipped: list[str],
                    response: Response) -> None:
    """SIM cards left out of a report: said in the answer and in the user's logs."""
    if not skipped:
        return
    response.headers["Warning"] = f'299 simgate "{"; ".join(skipped)[:512]}"'
    await gateway.logs.write(device.user_id, device.device_id, [
        Entry(Priority.WARN, "devices", "; ".join(skipped), None, None)])


@router.get("/message", response_model=list[MobileMessageOut], response_model_exclude_none=True)
async def pending_messages(
    request: Request,
    device: Device,
    gateway: GatewayDep,
    order: Literal["lifo", "fifo"] = "lifo",
    limit: Annotated[int, Query(ge=1, le=100)] = 100,
) -> list[MobileMessageOut]:
    """Pending messages for this device; they stay Pending until reported Processed.
    simgate's agent routes them itself; a phone gets each with the SIM the server's
    routing chose for it (what no SIM may take now is held back, with its reason)."""
    if _is_simgate_agent(request):
        messages = await gateway.messages.pending(device.device_id, order == "lifo", limit)
        return [MobileMessageOut.of(m) for m in messages]
    handed = await gateway.messages.hand_out(device, order == "lifo", limit)
    return [MobileMessageOut.of(m).model_copy(update={"id": wire_id(m), "sim_number": sim})
            for m, sim in handed]


@router.patch("/message", response_model=list[PatchResultItem])
async def report_states(body: list[PatchMessageItem], device: Device, request: Request,
                        gateway: GatewayDep) -> list[PatchResultItem]:
    """Per-message and per-recipient states; answers each message's resulting state.

    A device claims a message by reporting Processed and sends it only if the answer
    says Processed (not Cancelled), so a cancel never races a send.
    """
    updates = [
        StateUpdate(
            id=item.id,
            state=item.state,
            recipients=[RecipientUpdate(r.phone_number, r.state, r.error)
                        for r in item.recipients],
            states=item.states,
            sim_number=item.sim_number,
            attempts=[a.stored() for a in item.attempts],
            reason=item.reason,
            failover=item.failover,
        )
        for item in body
    ]
    result = await gateway.messages.apply_updates(device, updates,
                                                  routes_itself=_is_simgate_agent(request))
    return [PatchResultItem(id=i, state=s) for i, s in result.items()]


@router.post("/routing/usage")
async def routing_usage(body: UsageQueryIn, device: Device,
                        gateway: GatewayDep) -> dict[str, Any]:
    """simgate's agent asks this before routing a batch: each SIM's sends this minute,
    day and month, its distinct recipients this month (and which of the asked numbers it
    already counts), and each asked number's SIM of the last exchange on this device."""
    found = await gateway.usage.for_routing(device.user_id, device.device_id,
                                            body.phone_numbers)
    return {"sims": {str(slot + 1): {
        "minute": u.minute, "day": u.day, "month": u.month,
        "recipientsMonth": u.recipients_month, "known": sorted(u.known)}
        for slot, u in sorted(found.sims.items())},
        "contacts": {phone: slot + 1 for phone, slot in found.contacts.items()}}


@router.get("/events", response_class=StreamingResponse, responses={200: {
    "description": "A server-sent event stream (it stays open)",
    "content": {"text/event-stream": {"schema": {"type": "string"}}}}})
async def events(request: Request, device: Device, gateway: GatewayDep) -> StreamingResponse:
    """Server-sent events telling the device what to fetch (MessageEnqueued, ...)."""

    keepalive = getattr(request.app.state, "sse_keepalive", KEEPALIVE_SECONDS)

    def encode(data: dict[str, Any]) -> dict[str, Any]:
        data = {k: millis(v) if isinstance(v, datetime) else v for k, v in data.items()}
        if "messages" in data:  # the new messages themselves, as GET /message has them
            data["messages"] = [
                MobileMessageOut.of(m).model_dump(mode="json", by_alias=True, exclude_none=True)
                for m in data["messages"]
            ]
        return data

    return sse.stream(request, gateway.bus, device.device_id, keepalive, encode)


@router.post("/inbox")
async def forward_incoming(body: list[IncomingIn], device: Device,
                           gateway: GatewayDep) -> list[dict[str, str]]:
    """Incoming SMS from the device; the same id twice is stored once. At most
    MAX_BATCH a request (413) and ROWS_PER_MINUTE a minute (429) per device."""
    gateway.inbox_rows.admit(device.device_id, len(body))
    items = [
        Incoming(ident=i.id, sender=i.sender, recipient=i.recipient, sim_number=i.sim_number,
                 received_at=aware(i.at), text=i.text, data=i.data,
                 port=i.data_message.port if i.data_message else None,
                 type=i.type if i.type in ("MMS", "MMS_DOWNLOADED") else None)
        for i in body
    ]
    ids = await gateway.inbox.store(device, items)
    return [{"id": i.id, "messageId": m} for i, m in zip(body, ids, strict=True)]


@router.get("/settings")
async def device_settings(device: Device, gateway: GatewayDep) -> dict[str, Any]:
    """The settings the device applies (its owner's), secrets included; a phone with an
    FCM token is told to keep an event stream open when no FCM push is sent."""
    found = await gateway.devices.get(device.user_id, device.device_id)
    return await gateway.device_settings.for_device(device.user_id, found.push_token)


def _is_simgate_agent(request: Request) -> bool:
    return request.headers.get("User-Agent", "").startswith(AGENT_USER_AGENT)


@router.get("/webhooks", response_model=list[WebhookOut], response_model_exclude_none=True)
async def device_webhooks(request: Request, device: Device,
                          gateway: GatewayDep) -> list[WebhookOut]:
    """The webhooks a device fires itself. An Android app gets simgate's ingest hooks
    (its received SMS, pings and starts come to simgate, which stores them and calls the
    user's webhooks once); simgate's own agent gets the user's hooks, as before."""
    if not _is_simgate_agent(request):
        api_url = public_base(request) + request.url.path.removesuffix("/webhooks")
        return [WebhookOut(id=h.id, url=h.url, event=h.event)
                for h in gateway.ingest.hooks(api_url, device.device_id)]
    hooks = await gateway.webhooks.list(device.user_id)
    return [WebhookOut(id=h.ext_id, url=h.url, event=h.event, device_id=h.device_id)
            for h in hooks if h.device_id in (None, device.device_id)]


@router.post("/ingest/{device_id}/{secret}", include_in_schema=False)
async def ingest(device_id: str, secret: str, request: Request,
                 gateway: GatewayDep) -> dict[str, str]:
    """An event the Android app fired at the ingest hook it got from GET /webhooks."""
    device = await gateway.ingest.device(device_id, secret)
    if device is None:
        raise HTTPException(404, "unknown ingest URL: the phone gets its current one"
                                 " with GET /mobile/v1/webhooks")
    body = await request.body()
    # always signed: every user has a key (made now if none was ever set)
    key = (await gateway.device_settings.webhooks_of(device.user_id))["signing_key"]
    if not signed(key, body, request.headers.get("X-Timestamp"),
                  request.headers.get("X-Signature")):
        raise HTTPException(401, "missing, wrong or stale X-Signature/X-Timestamp: sign with"
                                 " webhooks.signing_key of GET /mobile/v1/settings")
    try:  # read as every JSON route reads its body: what cannot be stored is a 400
        post = AppWebhookIn.model_validate(loads(body))
        received = (AppReceivedIn.model_validate(post.payload)
                    if post.event in RECEIVED_TYPES else None)
        downloaded = (AppMmsDownloadedIn.model_validate(post.payload)
                      if post.event == "mms:downloaded" else None)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors()) from None
    except ValueError as exc:  # not JSON at all
        raise HTTPException(400, f"request body is not valid JSON: {exc}; send the event"
                                 " as a JSON object") from None
    await gateway.devices.touch(device.device_id)
    if received is not None:
        gateway.inbox_rows.admit(device.device_id, 1)  # as a row of POST /inbox
        kind = RECEIVED_TYPES[post.event]
        await gateway.inbox.store(device, [Incoming(
            ident=received.message_id, sender=received.sender,
            recipient=received.recipient, sim_number=received.sim_number,
            received_at=aware(received.received_at),
            text=received.subject if kind == "MMS" else received.message,
            data=(received.mms_headers() if kind == "MMS"
                  else received.data or "" if kind == "DATA_SMS" else None),
            type=kind)])
    elif downloaded is not None:  # its text, subject and parts, once per messageId
        await gateway.inbox.store(device, [Incoming(
            # the app's id of a downloaded MMS is its row number: kept apart from SMS ids
            ident=f"mms:{downloaded.message_id}", sender=downloaded.sender,
            recipient=downloaded.recipient, sim_number=downloaded.sim_number,
            received_at=aware(downloaded.received_at), text=downloaded.body,
            data=json.dumps({"subject": downloaded.subject}), type="MMS_DOWNLOADED",
            attachments=tuple(Part(p.part_id, p.content_type, p.name, p.size, p.content())
                              for p in downloaded.attachments))])
    elif post.event in SENT_EVENTS:  # the SIM it chose; the user's event is simgate's
        payload = post.payload
        sim = payload.get("simNumber")
        await gateway.messages.phone_event(
            device, str(payload.get("messageId") or ""), payload.get("phoneNumber"),
            sim if isinstance(sim, int) and not isinstance(sim, bool) and 0 < sim <= 64
            else None)
    elif post.event == "system:ping":  # an SMS is once by its messageId; these by the post
        await gateway.webhooks.ping(device, post.payload.get("health") or {},
                                    first_post(device.device_id, post.id))
    elif post.event == "app:started":
        try:
            started = StartedIn.model_validate(post.payload)
        except ValidationError as exc:
            raise RequestValidationError(exc.errors()) from None
        await gateway.devices.describe_sims(device, placed(started.sim_cards)[0])
        await gateway.webhooks.device_event(device, WebhookEvent.APP_STARTED, post.payload,
                                            first_post(device.device_id, post.id))
    return {"id": post.id}


@router.post("/started", status_code=status.HTTP_204_NO_CONTENT)
async def started(body: StartedIn, device: Device, gateway: GatewayDep) -> Response:
    """simgate's agent started: the app:started event, with its SIM cards (the Android
    app fires the same event at its ingest hook)."""
    await gateway.webhooks.device_event(device, WebhookEvent.APP_STARTED, body.payload())
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/ping", status_code=status.HTTP_204_NO_CONTENT)
async def ping(device: Device, gateway: GatewayDep,
               body: dict[str, Any] | None = None) -> Response:
    """The device's health as the system:ping event, which its owner opts in to with
    ping.interval_seconds, as in the app (without it, only "last seen" is updated)."""
    settings = await gateway.device_settings.get(device.user_id)
    if (settings.get("ping") or {}).get("interval_seconds"):
        await gateway.webhooks.ping(device, (body or {}).get("health") or {})
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/logs", status_code=status.HTTP_204_NO_CONTENT)
async def device_logs(body: list[LogIn], device: Device, gateway: GatewayDep) -> Response:
    """Log entries of the device (SIM errors, send failures), kept with the server's; at
    most MAX_BATCH a request (413) and ROWS_PER_MINUTE a minute (429) per device."""
    gateway.log_rows.admit(device.device_id, len(body))
    await gateway.logs.write(device.user_id, device.device_id, [
        Entry(Priority(e.priority), e.module, e.message, e.context, aware(e.created_at))
        for e in body
    ])
    return Response(status_code=status.HTTP_204_NO_CONTENT)
