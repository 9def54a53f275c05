"""The user API, /3rdparty/v1: what the sms-gate.app clients call."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, Response, status

from simgate.domain.phones import InvalidPhoneNumber, normalize
from simgate.domain.states import ProcessState
from simgate.server.deps import GatewayDep, UserId, aware
from simgate.server.schemas import DeviceOut, MessageStateOut, SendRequest
from simgate.services.errors import BadRequest
from simgate.services.messages import MessageQuery, NewMessage

router = APIRouter(tags=["messages"])



def _to_new_message(body: SendRequest, skip_validation: bool, region: str) -> NewMessage:
    numbers = body.phone_numbers
    if not (body.is_encrypted or skip_validation):
        try:
            numbers = [normalize(n, region) for n in numbers]
        except InvalidPhoneNumber as exc:
            raise BadRequest(str(exc)) from None
    if len(set(numbers)) != len(numbers):
        raise BadRequest("phoneNumbers: the same number is listed twice")
    valid_until = aware(body.valid_until)
    if body.ttl is not None:
        valid_until = datetime.now(UTC) + timedelta(seconds=body.ttl)
    return NewMessage(
        phone_numbers=numbers,
        text=body.text,
        data=body.data_message.data if body.data_message else None,
        port=body.data_message.port if body.data_message else None,
        sim_number=body.sim_number,
        with_delivery_report=body.with_delivery_report,
        is_encrypted=body.is_encrypted,
        priority=body.priority,
        valid_until=valid_until,
        schedule_at=aware(body.schedule_at),
        id=body.id,
        device_id=body.device_id,
    )


@router.post("/messages", status_code=status.HTTP_202_ACCEPTED, response_model=MessageStateOut,
             response_model_exclude_none=True, summary="Send a message")
@router.post("/message", status_code=status.HTTP_202_ACCEPTED, response_model=MessageStateOut,
             response_model_exclude_none=True, include_in_schema=False)
async def send_message(
    body: SendRequest,
    request: Request,
    response: Response,
    user_id: UserId,
    gateway: GatewayDep,
    skip_phone_validation: Annotated[bool, Query(alias="skipPhoneValidation")] = False,
    device_active_within: Annotated[int, Query(alias="deviceActiveWithin", ge=0)] = 0,
) -> MessageStateOut:
    """Accept a message for sending; `simNumber` picks the SIM slot (1-based)."""
    new = _to_new_message(body, skip_phone_validation, gateway.settings.default_region)
    message = await gateway.messages.enqueue(user_id, new, device_active_within)
    base = request.url.path.rsplit("/", 1)[0]  # keeps the /api prefix when called with it
    response.headers["Location"] = f"{base}/messages/{message.ext_id}"
    return MessageStateOut.of(message)


@router.get("/messages/{id}", response_model=MessageStateOut, response_model_exclude_none=True,
            name="get_message")
async def get_message(id: str, user_id: UserId, gateway: GatewayDep) -> MessageStateOut:
    return MessageStateOut.of(await gateway.messages.get(user_id, id))


@router.get("/message/{id}", response_model=MessageStateOut, response_model_exclude_none=True,
            include_in_schema=False)
async def get_message_legacy(id: str, user_id: UserId, gateway: GatewayDep) -> MessageStateOut:
    return MessageStateOut.of(await gateway.messages.get(user_id, id))


@router.get("/messages", response_model=list[MessageStateOut], response_model_exclude_none=True)
async def list_messages(
    user_id: UserId,
    gateway: GatewayDep,
    response: Response,
    since: Annotated[datetime | None, Query(alias="from")] = None,
    until: Annotated[datetime | None, Query(alias="to")] = None,
    state: ProcessState | None = None,
    device_id: Annotated[str | None, Query(alias="deviceId")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
    sort: Literal["created_at", "-created_at"] = "-created_at",
) -> list[MessageStateOut]:
    query = MessageQuery(since=aware(since), until=aware(until), state=state,
                         device_id=device_id, limit=limit, offset=offset,
                         newest_first=sort == "-created_at")
    return [MessageStateOut.of(m) for m in await gateway.messages.list(user_id, query)]


@router.delete("/messages/{id}", status_code=status.HTTP_204_NO_CONTENT)
async def cancel_message(id: str, user_id: UserId, gateway: GatewayDep) -> Response:
    """Cancel a message that is still Pending."""
    await gateway.messages.cancel(user_id, id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/devices", response_model=list[DeviceOut], tags=["devices"])
async def list_devices(user_id: UserId, gateway: GatewayDep) -> list[DeviceOut]:
    """Devices with their SIM slots (`simCards`)."""
    return [DeviceOut.of(d) for d in await gateway.devices.list(user_id)]


@router.delete("/devices/{id}", status_code=status.HTTP_204_NO_CONTENT, tags=["devices"])
async def remove_device(id: str, user_id: UserId, gateway: GatewayDep) -> Response:
    await gateway.devices.remove(user_id, id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)

