"""The user API, /3rdparty/v1: what the sms-gate.app clients call."""

from __future__ import annotations

import contextlib
import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal, TypeVar
from urllib.parse import quote

from fastapi import APIRouter, HTTPException, Query, Request, Response, status
from fastapi.exceptions import RequestValidationError
from pydantic import Field, ValidationError

from simgate.domain.phones import InvalidPhoneNumber, normalize
from simgate.domain.sims import MAX_SIM_SLOTS
from simgate.domain.states import ProcessState
from simgate.server import wirejson
from simgate.server.auth import authorize
from simgate.server.deps import GatewayDep, aware, user_with
from simgate.server.schemas import (
    MAX_ACTIVE_WITHIN_HOURS,
    DeviceOut,
    Int64,
    MessageStateOut,
    SendRequest,
    Wire,
    json_body,
)
from simgate.server.wirejson import StrictJSONRoute
from simgate.services.errors import BadRequest
from simgate.services.gateway import Gateway
from simgate.services.messages import MessageQuery, NewMessage

router = APIRouter(tags=["messages"], route_class=StrictJSONRoute)

MAX_LIST_LIMIT = 100  # the original's maxLimit of GET /messages

W = TypeVar("W", bound=Wire)
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")  # C0, DEL, C1, line separators


def to_new_message(body: SendRequest, skip_validation: bool, region: str) -> NewMessage:
    """A send request as the messages service takes it (numbers in E.164); the dashboard's
    send form comes through here too, so both accept the same."""
    numbers = body.phone_numbers
    is_encrypted = bool(body.is_encrypted)
    for index, number in enumerate(numbers):  # as given too: a line break is no digit
        if _CONTROL.search(number):
            raise BadRequest(f"phoneNumbers[{index}]: control characters (a line break, a"
                             " tab) are not part of a phone number; remove them")
    if not (is_encrypted or skip_validation):
        try:
            numbers = [normalize(n, region) for n in numbers]
        except InvalidPhoneNumber as exc:
            raise BadRequest(str(exc)) from None
    if len(set(numbers)) != len(numbers):
        raise BadRequest("phone numbers must be unique: phoneNumbers lists a number twice")
    valid_until = aware(body.valid_until)
    if body.ttl is not None:
        valid_until = datetime.now(UTC) + timedelta(seconds=body.ttl)
    schedule_at = aware(body.schedule_at)
    if schedule_at is not None and valid_until is not None and schedule_at > valid_until:
        raise BadRequest("scheduleAt must be less than or equal to validUntil: the message"
                         " would expire before it is due")
    return NewMessage(
        phone_numbers=numbers,
        text=body.text,
        data=body.data_message.data if body.data_message else None,
        port=body.data_message.port if body.data_message else None,
        sim_number=body.sim_number,
        with_delivery_report=body.with_delivery_report is not False,  # null: the default
        is_encrypted=is_encrypted,
        priority=body.priority or 0,
        valid_until=valid_until,
        schedule_at=schedule_at,
        id=body.id,
        device_id=body.device_id,
    )


class SendOptions(Wire):
    """The query parameters of a send."""

    skip_phone_validation: bool = False
    device_active_within: Annotated[int, Field(ge=0, le=MAX_ACTIVE_WITHIN_HOURS)] = 0


def _validated(model: type[W], loc: str, value: bytes | dict) -> W:
    try:
        if isinstance(value, bytes):
            wirejson.screen(value)
            return model.model_validate_json(value)
        return model.model_validate(value)
    except ValidationError as exc:
        if isinstance(value, bytes):  # NaN or a number beyond 64 bits is named as such
            with contextlib.suppress(ValueError, RecursionError):
                wirejson.loads(value)
        raise RequestValidationError(
            [{**e, "loc": (loc, *e["loc"])} for e in exc.errors(include_url=False)]
        ) from None


def _require_json(request: Request) -> None:
    """A send's body must be declared JSON: a cross-site form or a no-cors fetch (plain
    text, form, multipart, no type) can carry a browser's remembered Basic credentials,
    but cannot declare application/json without the site's consent."""
    declared = request.headers.get("content-type", "")
    if declared.partition(";")[0].strip().lower() != "application/json":
        got = f"Content-Type: {declared[:64]}" if declared else "no Content-Type"
        raise HTTPException(415, f"the message must be sent as JSON with Content-Type:"
                                 f" application/json (got {got})")


async def send_message(request: Request) -> Response:
    """Accept a message for sending; `simNumber` picks the SIM slot (1-based)."""
    user_id = (await authorize(request, "messages:send")).user_id
    _require_json(request)
    body = _validated(SendRequest, "body", await request.body())
    options = _validated(SendOptions, "query", dict(request.query_params))
    gateway: Gateway = request.app.state.gateway
    new = to_new_message(body, options.skip_phone_validation,
                          gateway.settings.default_region)
    message = await gateway.messages.enqueue(user_id, new, options.device_active_within)
    base = request.scope["path"].rsplit("/", 1)[0]  # keeps the /api prefix if called with it
    if gateway.settings.public_url:
        base = gateway.settings.public_url + base
    return Response(
        MessageStateOut.of(message).model_dump_json(by_alias=True, exclude_none=True),
        status_code=status.HTTP_202_ACCEPTED,
        media_type="application/json",
        headers={"Location": f"{base}/messages/{quote(message.ext_id, safe='')}"},
    )


# The send route is a plain Starlette route that reads its own body and query: FastAPI's
# per-request dependency and body machinery costs more than accepting the message, on
# the one route that takes bulk traffic. Its OpenAPI operation is written out instead.
router.add_route("/messages", send_message, methods=["POST"], include_in_schema=False)
router.add_route("/message", send_message, methods=["POST"], include_in_schema=False)


SEND_OPERATION: dict[str, Any] = {
    "tags": ["messages"],
    "summary": "Send a message",
    "description": "Accept a message for sending; `simNumber` picks the SIM slot (1-based)."
                   " The legacy path POST /3rdparty/v1/message does the same.",
    "operationId": "send_message",
    "parameters": [
        {"name": "skipPhoneValidation", "in": "query", "schema": {"type": "boolean"},
         "description": "Send to numbers as given, without E.164 normalisation."},
        {"name": "deviceActiveWithin", "in": "query",
         "schema": {"type": "integer", "minimum": 0},
         "description": "Only pick a device seen within this many hours (0: any)."},
    ],
    "requestBody": {"required": True, **json_body("SendRequest", "The message")},
    "responses": {
        "202": json_body("MessageStateOut", "Stored as Pending; Location: its state"),
        "400": json_body("ErrorOut", "Bad input: the message says what to fix"),
        "401": json_body("ErrorOut", "Missing or wrong credentials (Basic, or a Bearer token)"),
        "403": json_body("ErrorOut", "The token lacks the messages:send scope"),
        "409": json_body("ErrorOut", "The client-chosen id is already used"),
        "415": json_body("ErrorOut", "The body is not declared application/json"),
        "503": json_body("ErrorOut", "The device's queue is full: it seems offline"),
    },
}


# The original still answers under the singular /message and /device: so does simgate,
# undocumented.
@router.get("/messages/{id}", response_model=MessageStateOut, response_model_exclude_none=True,
            name="get_message")
@router.get("/message/{id}", response_model=MessageStateOut, response_model_exclude_none=True,
            include_in_schema=False)
async def get_message(
    id: str,
    user_id: Annotated[int, user_with("messages:read")],
    gateway: GatewayDep,
) -> MessageStateOut:
    return MessageStateOut.of(await gateway.messages.get(user_id, id))


@router.get("/messages", response_model=list[MessageStateOut], response_model_exclude_none=True)
@router.get("/message", response_model=list[MessageStateOut], response_model_exclude_none=True,
            include_in_schema=False)
async def list_messages(
    user_id: Annotated[int, user_with("messages:list")],
    gateway: GatewayDep,
    response: Response,
    since: Annotated[datetime | None, Query(alias="from")] = None,
    until: Annotated[datetime | None, Query(alias="to")] = None,
    state: ProcessState | None = None,
    device_id: Annotated[str | None, Query(alias="deviceId")] = None,
    sim_number: Annotated[int | None, Query(alias="simNumber", ge=1, le=MAX_SIM_SLOTS)] = None,
    limit: Annotated[Int64, Query()] = 50,
    offset: Annotated[Int64, Query()] = 0,
    sort: Literal["created_at", "-created_at"] = "-created_at",
    include_content: Annotated[bool, Query(alias="includeContent")] = False,
) -> list[MessageStateOut]:
    """Messages, newest first unless `sort=created_at`; X-Total-Count tells how many match
    across all pages. As the original, `limit` is brought into 1..100 (not refused) and
    the text or data (or its hash) comes only with `includeContent=true`. `simNumber`
    (simgate's own) keeps those sent through that SIM, or, not sent yet, asking for it."""
    query = MessageQuery(since=aware(since), until=aware(until), state=state,
                         device_id=device_id, sim_number=sim_number,
                         limit=max(min(limit, MAX_LIST_LIMIT), 1), offset=max(offset, 0),
                         newest_first=sort == "-created_at")
    response.headers["X-Total-Count"] = str(await gateway.messages.count(user_id, query))
    return [MessageStateOut.of(m, content=include_content)
            for m in await gateway.messages.list(user_id, query)]


@router.delete("/messages/{id}", response_model=MessageStateOut,
               response_model_exclude_none=True)
@router.delete("/message/{id}", response_model=MessageStateOut,
               response_model_exclude_none=True, include_in_schema=False)
async def cancel_message(
    id: str,
    user_id: Annotated[int, user_with("messages:cancel")],
    gateway: GatewayDep,
) -> MessageStateOut:
    """Cancel a message that is still Pending; answers its state after."""
    return MessageStateOut.of(await gateway.messages.cancel(user_id, id))


@router.get("/devices", response_model=list[DeviceOut], tags=["devices"])
@router.get("/device", response_model=list[DeviceOut], tags=["devices"],
            include_in_schema=False)
async def list_devices(
    user_id: Annotated[int, user_with("devices:list")],
    gateway: GatewayDep,
) -> list[DeviceOut]:
    """Devices with their SIM slots (`simCards`)."""
    return [DeviceOut.of(d) for d in await gateway.devices.list(user_id)]


@router.delete("/devices/{id}", status_code=status.HTTP_204_NO_CONTENT, tags=["devices"])
@router.delete("/device/{id}", status_code=status.HTTP_204_NO_CONTENT, tags=["devices"],
               include_in_schema=False)
async def remove_device(
    id: str,
    user_id: Annotated[int, user_with("devices:delete")],
    gateway: GatewayDep,
) -> Response:
    await gateway.devices.remove(user_id, id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)

