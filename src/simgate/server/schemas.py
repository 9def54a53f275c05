"""Wire DTOs: camelCase JSON exactly as sms-gate.app speaks it."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import replace
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from simgate.domain.dates import millis
from simgate.domain.sims import MAX_SIM_SLOTS, SimSlot, SimStatus
from simgate.domain.states import ProcessState
from simgate.services.accept import AcceptedMessage
from simgate.services.usage import SimReport
from simgate.store.models import Device, Message


def json_body(model: str, description: str) -> dict[str, Any]:
    """An OpenAPI body (or response) of JSON shaped as the named model."""
    return {"description": description, "content": {"application/json": {
        "schema": {"$ref": f"#/components/schemas/{model}"}}}}


# A date as devices read it (/mobile/v1 and what it pushes).
DeviceDate = Annotated[datetime, PlainSerializer(millis, return_type=str, when_used="json")]


class Wire(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


class StrictWire(Wire):
    """Typed as Go's encoding/json reads the original's DTOs: a number for a number, true or
    false for a flag, a string for a string; no "2" for 2, no "yes" for true."""

    model_config = ConfigDict(**Wire.model_config, strict=True)


# Integers are bounded by what the store and the original's Go types hold: beyond them a
# request is a 400 naming the range, not an overflow deeper down.
INT64_MAX = 2**63 - 1
Int64 = Annotated[int, Field(ge=-INT64_MAX - 1, le=INT64_MAX)]
Offset = Annotated[int, Field(ge=0, le=INT64_MAX)]
SimNumber = Annotated[int | None, Field(ge=1, le=MAX_SIM_SLOTS)]  # 1-based
# The longest ttl and activity window the original turns into a time (Go nanoseconds)
MAX_TTL_SECONDS = INT64_MAX // 10**9  # about 292 years
MAX_ACTIVE_WITHIN_HOURS = INT64_MAX // (3600 * 10**9)


class TextMessageIn(StrictWire):
    text: Annotated[str, Field(min_length=1, max_length=65535)]


class DataMessageIn(StrictWire):
    data: Annotated[str, Field(min_length=1, max_length=65535)]
    port: Annotated[int, Field(ge=1, le=65535)]


def _check_base64(data: DataMessageIn | None) -> None:
    if data is None:
        return
    try:
        base64.b64decode(data.data, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("dataMessage.data must be base64-encoded bytes") from None


MIN_TTL = 5  # seconds, as the original's client-go `validate:"omitempty,min=5"`


class SendRequest(StrictWire):
    """POST /3rdparty/v1/messages (and the legacy /message).

    As in the original's Go DTO, `null` leaves a field at its default, and times carry
    their zone (RFC 3339)."""

    # any text, as the original, but "/", "." and ".." (the id would be unreachable at
    # /messages/{id}) and control characters
    id: Annotated[str | None, Field(min_length=1, max_length=36,
                                    pattern=r"^[^/\x00-\x1f\x7f]+$")] = None
    message: Annotated[str | None, Field(min_length=1, max_length=65535)] = None
    text_message: TextMessageIn | None = None
    data_message: DataMessageIn | None = None
    phone_numbers: Annotated[list[Annotated[str, Field(max_length=512)]],
                             Field(min_length=1, max_length=100)]
    # any slot number the store can hold: the service names the device's valid ones
    sim_number: Annotated[int | None, Field(ge=-32768, le=32767)] = None
    with_delivery_report: bool | None = True
    is_encrypted: bool | None = False
    priority: Annotated[int | None, Field(ge=-128, le=127)] = 0
    # 0 means none, as with the original (its `omitempty,min=5`)
    ttl: Annotated[int | None, Field(ge=0, le=MAX_TTL_SECONDS)] = None
    valid_until: AwareDatetime | None = None
    schedule_at: AwareDatetime | None = None
    device_id: Annotated[str | None, Field(max_length=36)] = None

    # unknown keys are kept only to be named when no content came (one is likely the
    # content misspelt, `textMesage`), then forgotten: the original ignores them
    model_config = ConfigDict(**StrictWire.model_config | {"extra": "allow"})

    @model_validator(mode="after")
    def _one_content(self) -> SendRequest:
        given = [n for n in ("message", "text_message", "data_message") if getattr(self, n)]
        stray, self.__pydantic_extra__ = list(self.model_extra or {})[:5], {}
        if not given and stray:
            raise ValueError(
                "give exactly one of message, textMessage or dataMessage (got none;"
                f" unknown key(s) {', '.join(json.dumps(k)[1:-1][:40] for k in stray)}:"
                " misspelt?)")
        if len(given) != 1:
            raise ValueError(
                "give exactly one of message, textMessage or dataMessage"
                f" (got {len(given) or 'none'})"
            )
        if self.ttl is not None and 0 < self.ttl < MIN_TTL:
            raise ValueError(f"ttl must be at least {MIN_TTL} seconds (or 0 for none)")
        if self.ttl == 0:
            self.ttl = None
        if self.ttl is not None and self.valid_until is not None:
            raise ValueError("give either ttl or validUntil, not both")
        if self.id in (".", ".."):
            raise ValueError(f"id {self.id!r} cannot be fetched at /messages/{{id}}:"
                             " choose another")
        if not self.is_encrypted:  # encrypted data is the client's ciphertext, not base64
            _check_base64(self.data_message)
        return self

    @property
    def text(self) -> str | None:
        return self.message if self.message is not None else (
            self.text_message.text if self.text_message else None
        )


class RecipientOut(Wire):
    phone_number: str
    state: ProcessState
    error: str | None = None


class HashedMessageOut(Wire):
    hash: str  # SHA-256 (hex) of the text, or of the base64 data


class AttemptWire(Wire):
    """One try at sending a message (simgate extension): which SIM of which device, the
    error if it failed, and when."""

    sim_number: SimNumber = None
    device_id: Annotated[str | None, Field(max_length=64)] = None
    error: Annotated[str | None, Field(max_length=4096)] = None
    at: datetime

    def stored(self) -> dict[str, Any]:
        return {"sim_number": self.sim_number, "device_id": self.device_id,
                "error": self.error, "at": self.at.isoformat()}


class MessageStateOut(Wire):
    id: str
    device_id: str
    state: ProcessState
    is_hashed: bool
    is_encrypted: bool
    recipients: list[RecipientOut]
    states: dict[str, datetime]
    created_at: datetime
    sim_number: int | None = None  # the SIM that sent it (simgate extension)
    attempts: list[AttemptWire] = []  # every send attempt, failovers included (simgate)
    reason: str | None = None  # why a Pending message waits, as its device said (simgate)
    text_message: TextMessageIn | None = None
    data_message: DataMessageIn | None = None
    hashed_message: HashedMessageOut | None = None

    @classmethod
    def of(cls, message: Message | AcceptedMessage, content: bool = True) -> MessageStateOut:
        """As the original's converter writes it: the content (text, data, or its hash
        once hashed) only when asked for; lists ask with `includeContent=true`."""
        text = data = hashed = None
        if content and message.is_hashed:
            hashed = HashedMessageOut(hash=message.text or message.data or "")
        elif content and message.text is not None:
            text = TextMessageIn.model_construct(text=message.text)
        elif content and message.data is not None:
            data = DataMessageIn.model_construct(data=message.data, port=message.port or 0)
        return cls(
            id=message.ext_id,
            device_id=message.device_id,
            state=ProcessState(message.state),
            is_hashed=message.is_hashed,
            is_encrypted=message.is_encrypted,
            recipients=[
                RecipientOut(phone_number=r.phone_number, state=ProcessState(r.state),
                             error=r.error)
                for r in message.recipients
            ],
            states={k: datetime.fromisoformat(v) for k, v in message.states.items()},
            created_at=message.created_at,
            sim_number=message.sim_used,
            attempts=[AttemptWire(**a) for a in message.attempts or []],
            reason=message.reason,
            text_message=text,
            data_message=data,
            hashed_message=hashed,
        )


class SimCardWire(Wire):
    """A SIM slot: the fields of the Go client's SimCard plus simgate's health fields."""

    slot_index: Annotated[int, Field(ge=0, le=MAX_SIM_SLOTS - 1)]
    sim_number: SimNumber = None
    phone_number: str | None = None
    carrier_name: str | None = None
    iccid: str | None = None
    state: SimStatus = SimStatus.READY
    signal: Annotated[int | None, Field(ge=-32768, le=32767)] = None  # as the store holds it
    detail: str = ""

    def to_slot(self) -> SimSlot:
        return SimSlot(
            slot_index=self.slot_index,
            status=self.state,
            phone_number=self.phone_number,
            carrier_name=self.carrier_name,
            iccid=self.iccid,
            signal=self.signal,
            detail=self.detail,
        )


Int32 = Annotated[int, Field(ge=-(2**31), le=2**31 - 1)]  # a Kotlin Int


class SimCardIn(SimCardWire):
    """A SIM slot as a device reports it. The Android app sends what Android's
    SubscriptionInfo says, `slotIndex` -1 for a card in no slot (an eSIM profile, a SIM
    being switched): such a card is left out, not the whole report (`placed`)."""

    slot_index: Int32
    sim_number: Int32 | None = None

    @property
    def in_a_slot(self) -> bool:
        return 0 <= self.slot_index < MAX_SIM_SLOTS


def placed(cards: list[SimCardIn]) -> tuple[list[SimSlot], list[str]]:
    """The cards in a SIM slot, as slots; and what is wrong with each card left out."""
    slots, skipped = [], []
    for n, card in enumerate(cards):
        if card.in_a_slot:
            slots.append(card.to_slot())
        else:
            skipped.append(f"simCards[{n}].slotIndex {card.slot_index} is no SIM slot"
                           f" (0..{MAX_SIM_SLOTS - 1}): that card was left out")
    return slots, skipped


class SimCardReport(SimCardIn):
    """A SIM slot as simgate's agent reports it: with its routing cool-down, if any."""

    paused_until: AwareDatetime | None = None
    pause_reason: Annotated[str | None, Field(max_length=1024)] = None

    def to_slot(self) -> SimSlot:
        return replace(super().to_slot(), paused_until=self.paused_until,
                       pause_reason=self.pause_reason)


def _redact(iccid: str | None) -> str | None:
    return None if iccid is None else "*" * max(len(iccid) - 4, 0) + iccid[-4:]


class DeviceOut(Wire):
    id: str
    name: str
    created_at: DeviceDate
    updated_at: DeviceDate
    last_seen: DeviceDate
    sim_cards: list[SimCardWire]

    @classmethod
    def of(cls, device: Device) -> DeviceOut:
        return cls(
            id=device.id,
            name=device.name,
            created_at=device.created_at,
            updated_at=device.updated_at,
            last_seen=device.last_seen,
            sim_cards=[
                SimCardWire(
                    slot_index=s.slot_index,
                    sim_number=s.slot_index + 1,
                    phone_number=s.phone_number,
                    carrier_name=s.carrier_name,
                    iccid=_redact(s.iccid),
                    state=SimStatus(s.status),
                    signal=s.signal,
                    detail=s.detail,
                )
                for s in device.sims
            ],
        )


class ErrorOut(BaseModel):
    code: int
    message: str
    data: Any = None


# --- device API (/mobile/v1) ---------------------------------------------------------


class RegisterRequest(Wire):
    name: Annotated[str | None, Field(max_length=128)] = None
    push_token: Annotated[str | None, Field(max_length=256)] = None
    sim_cards: Annotated[list[SimCardIn] | None, Field(max_length=MAX_SIM_SLOTS)] = None


class RegisterResponse(Wire):
    id: str
    token: str
    login: str
    password: str | None = None  # only when the server made a user for the device


class DeviceInfoOut(Wire):
    external_ip: str | None = None
    device: DeviceOut | None = None


class UserCodeOut(Wire):
    code: str
    valid_until: DeviceDate


class PasswordChange(Wire):
    current_password: Annotated[str, Field(max_length=256)]
    new_password: Annotated[str, Field(max_length=256)]


class StartedIn(Wire):
    """simgate's agent started (what the Android app fires as app:started)."""

    sim_cards: Annotated[list[SimCardIn], Field(max_length=MAX_SIM_SLOTS)] = []

    def payload(self) -> dict[str, Any]:
        """The app:started payload as the original's docs show it."""
        return {"simCards": [{
            "slotIndex": sim.slot_index, "simNumber": sim.sim_number or sim.slot_index + 1,
            "phoneNumber": sim.phone_number, "carrierName": sim.carrier_name,
            "iccid": sim.iccid} for sim in self.sim_cards]}


class DeviceUpdateRequest(Wire):
    id: str | None = None
    name: Annotated[str | None, Field(max_length=128)] = None
    push_token: Annotated[str | None, Field(max_length=256)] = None
    sim_cards: Annotated[list[SimCardReport] | None, Field(max_length=MAX_SIM_SLOTS)] = None


class MobileMessageOut(Wire):
    """A message as a device fetches it."""

    id: str
    message: str | None = None
    text_message: TextMessageIn | None = None
    data_message: DataMessageIn | None = None
    phone_numbers: list[str]
    sim_number: int | None = None
    with_delivery_report: bool
    is_encrypted: bool
    priority: int
    valid_until: DeviceDate | None = None
    schedule_at: DeviceDate | None = None
    state: ProcessState
    created_at: DeviceDate

    @classmethod
    def of(cls, message: Message | AcceptedMessage) -> MobileMessageOut:
        return cls(
            id=message.ext_id,
            message=message.text,
            text_message=TextMessageIn(text=message.text) if message.text is not None else None,
            data_message=(
                DataMessageIn(data=message.data, port=message.port)
                if message.data is not None and message.port is not None else None
            ),
            phone_numbers=[r.phone_number for r in message.recipients],
            sim_number=message.sim_number,
            with_delivery_report=message.with_delivery_report,
            is_encrypted=message.is_encrypted,
            priority=message.priority,
            valid_until=message.valid_until,
            schedule_at=message.schedule_at,
            state=ProcessState(message.state),
            created_at=message.created_at,
        )


class PatchRecipient(Wire):
    phone_number: Annotated[str, Field(max_length=512)]
    state: ProcessState
    error: Annotated[str | None, Field(max_length=4096)] = None


class PatchMessageItem(Wire):
    id: Annotated[str, Field(max_length=36)]
    state: ProcessState
    recipients: list[PatchRecipient] = []
    states: dict[str, datetime] = {}
    sim_number: SimNumber = None
    attempts: Annotated[list[AttemptWire], Field(max_length=20)] = []  # simgate extension
    reason: Annotated[str | None, Field(max_length=1024)] = None  # why it waits (simgate)
    failover: bool = False  # no SIM of the device could send it: to another (simgate)


class SimLimitsOut(Wire):
    rate_per_minute: int | None = None
    daily_limit: int | None = None
    monthly_limit: int | None = None
    unique_recipients_monthly: int | None = None


class SimUsageOut(Wire):
    """GET /3rdparty/v1/routing/usage: one SIM's usage against its limits (simgate's own)."""

    device_id: str
    device_name: str
    sim_number: int
    state: SimStatus
    sent_this_minute: int
    sent_today: int
    sent_this_month: int
    recipients_this_month: int
    limits: SimLimitsOut
    enabled: bool
    at_limit: str | None = None  # why routing skips the SIM now, if a limit does
    paused_until: datetime | None = None  # a cool-down after failed sends
    pause_reason: str | None = None

    @classmethod
    def of(cls, report: SimReport) -> SimUsageOut:
        rule, usage = report.rule, report.usage
        return cls(
            device_id=report.device_id, device_name=report.device_name,
            sim_number=report.slot_index + 1, state=SimStatus(report.state),
            sent_this_minute=usage.minute, sent_today=usage.day, sent_this_month=usage.month,
            recipients_this_month=usage.recipients_month,
            limits=SimLimitsOut(rate_per_minute=rule.rate_per_minute,
                                daily_limit=rule.daily_limit, monthly_limit=rule.monthly_limit,
                                unique_recipients_monthly=rule.unique_recipients_monthly),
            enabled=rule.enabled, at_limit=report.at_limit,
            paused_until=report.paused_until, pause_reason=report.pause_reason)


class UsageQueryIn(Wire):
    """What an agent asks before routing a batch (simgate's own)."""

    phone_numbers: Annotated[list[Annotated[str, Field(max_length=512)]],
                             Field(max_length=10000)] = []


class PatchResultItem(Wire):
    id: str
    state: ProcessState


# --- webhooks, inbox ------------------------------------------------------------------


class WebhookIn(Wire):
    id: Annotated[str | None, Field(max_length=36)] = None
    url: Annotated[str, Field(min_length=1, max_length=2048)]
    event: Annotated[str, Field(max_length=64)]
    device_id: Annotated[str | None, Field(max_length=36)] = None


class WebhookOut(Wire):
    id: str
    url: str
    event: str
    device_id: str | None = None


class DeliveryOut(Wire):
    """One event for one webhook, with how its delivery went."""

    id: str
    webhook_id: str
    event: str
    status: str
    attempts: int
    next_attempt_at: datetime | None
    last_error: str | None
    last_status: int | None
    created_at: datetime
    delivered_at: datetime | None


class AttachmentIn(Wire):
    part_id: int | None = None
    content_type: Annotated[str | None, Field(max_length=255)] = None
    name: Annotated[str | None, Field(max_length=255)] = None
    size: int | None = None
    data: str | None = None


class IncomingIn(Wire):
    """An incoming message as an agent forwards it (`message` or `dataMessage`,
    `receivedAt`), or in the original server's batch format that newer app versions
    upload (`type`, `content`, `isEncrypted`, `createdAt`, `attachments`)."""

    id: Annotated[str, Field(min_length=1, max_length=255)]
    sender: Annotated[str, Field(min_length=1, max_length=64)]
    recipient: Annotated[str | None, Field(max_length=64)] = None
    sim_number: SimNumber = None
    message: Annotated[str | None, Field(max_length=65535)] = None
    data_message: DataMessageIn | None = None
    received_at: datetime | None = None
    type: Literal["SMS", "DATA_SMS", "MMS", "MMS_DOWNLOADED"] | None = None
    content: Annotated[str | None, Field(max_length=65535)] = None
    is_encrypted: bool = False
    created_at: datetime | None = None
    attachments: Annotated[list[AttachmentIn] | None, Field(max_length=64)] = None

    @model_validator(mode="after")
    def _complete(self) -> IncomingIn:
        _check_base64(self.data_message)
        if self.received_at is None and self.created_at is None:
            raise ValueError("give receivedAt (or createdAt) of the message")
        if self.type == "DATA_SMS" and self.content and not self.is_encrypted:
            try:
                base64.b64decode(self.content, validate=True)
            except (binascii.Error, ValueError):
                raise ValueError("content of a DATA_SMS must be base64-encoded bytes") from None
        return self

    @property
    def at(self) -> datetime:
        return self.received_at or self.created_at  # type: ignore[return-value]

    @property
    def text(self) -> str | None:
        if self.type is not None and self.type != "DATA_SMS":
            return self.content
        return self.message

    @property
    def data(self) -> str | None:
        if self.type == "DATA_SMS":
            return self.content or ""
        return self.data_message.data if self.data_message else None


class AppWebhookIn(Wire):
    """What the Android app posts to a webhook (modules/webhooks/domain/WebHookEventDTO.kt)."""

    id: Annotated[str, Field(max_length=64)]
    webhook_id: Annotated[str | None, Field(max_length=64)] = None
    event: Annotated[str, Field(max_length=64)]
    device_id: Annotated[str | None, Field(max_length=36)] = None
    payload: dict[str, Any] = {}


class AppReceivedIn(Wire):
    """The payload of the app's sms:received, sms:data-received and mms:received
    (SmsEventPayload.kt, MmsReceivedPayload.kt); `messageId` is the app's own id."""

    message_id: Annotated[str, Field(min_length=1, max_length=255)]
    sender: Annotated[str, Field(min_length=1, max_length=64)]
    recipient: Annotated[str | None, Field(max_length=64)] = None
    sim_number: SimNumber = None
    message: Annotated[str | None, Field(max_length=65535)] = None
    data: Annotated[str | None, Field(max_length=65535)] = None
    transaction_id: Annotated[str | None, Field(max_length=255)] = None
    subject: Annotated[str | None, Field(max_length=4096)] = None
    size: int | None = None
    content_class: Annotated[str | None, Field(max_length=64)] = None
    received_at: datetime

    def mms_headers(self) -> str:
        return json.dumps({"transactionId": self.transaction_id, "size": self.size,
                           "contentClass": self.content_class})


class MmsPartIn(Wire):
    """One part of the app's mms:downloaded (MmsDownloadedPayload.Attachment): `data` is
    its content in base64, absent when the app did not read it."""

    part_id: Annotated[int, Field(ge=0, le=INT64_MAX)]
    content_type: Annotated[str, Field(min_length=1, max_length=255)]
    name: Annotated[str | None, Field(max_length=255)] = None
    size: Annotated[int | None, Field(ge=0, le=INT64_MAX)] = None
    data: str | None = None

    @field_validator("data")
    @classmethod
    def _base64(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                raise ValueError("data is not base64: send the part's bytes"
                                 " base64-encoded") from None
        return value

    def content(self) -> bytes | None:
        """The part's bytes (None when the app sent none)."""
        return None if self.data is None else base64.b64decode(self.data)


class AppMmsDownloadedIn(Wire):
    """The payload of the app's mms:downloaded (MmsDownloadedPayload.kt): the message's
    text, subject and parts, read once the phone has downloaded it."""

    message_id: Annotated[str, Field(min_length=1, max_length=255)]
    sender: Annotated[str, Field(min_length=1, max_length=64)]
    recipient: Annotated[str | None, Field(max_length=64)] = None
    sim_number: SimNumber = None
    body: Annotated[str | None, Field(max_length=65535)] = None
    subject: Annotated[str | None, Field(max_length=4096)] = None
    attachments: Annotated[list[MmsPartIn], Field(max_length=256)] = []
    received_at: datetime

    @field_validator("attachments")
    @classmethod
    def _distinct_parts(cls, parts: list[MmsPartIn]) -> list[MmsPartIn]:
        ids = [p.part_id for p in parts]
        if len(set(ids)) != len(ids):
            raise ValueError("attachments: each partId once")
        return parts


class AttachmentOut(Wire):
    """An MMS part as the inbox lists it (includeAttachments=true); its bytes are at
    GET /inbox/{id}/attachments/{partId}."""

    part_id: int
    name: str | None
    size: int
    content_type: str


class IncomingOut(Wire):
    id: str
    type: str
    sender: str
    recipient: str | None
    sim_number: int | None
    content_preview: str
    created_at: datetime
    attachments: list[AttachmentOut] | None = None


class ExportRequest(Wire):
    device_id: Annotated[str | None, Field(max_length=36)] = None
    since: datetime
    until: datetime


class RefreshRequest(ExportRequest):
    message_types: list[Literal["SMS", "DATA_SMS", "MMS", "MMS_DOWNLOADED"]] | None = None
    webhook_delivery: Literal["Individual", "Batch", "Disabled"] | None = None
    trigger_webhooks: bool | None = None  # the older switch webhookDelivery replaced

    def delivery(self) -> Literal["Individual", "Batch", "Disabled"]:
        """As the original resolves it: webhookDelivery if given, else triggerWebhooks
        (true: Individual), else Disabled (a refresh raises no webhooks by default)."""
        if self.webhook_delivery is not None:
            return self.webhook_delivery
        return "Individual" if self.trigger_webhooks else "Disabled"


# --- logs ------------------------------------------------------------------------------


class LogIn(Wire):
    priority: Literal["DEBUG", "INFO", "WARN", "ERROR"]
    module: Annotated[str, Field(max_length=64)]
    message: Annotated[str, Field(max_length=8192)]
    context: dict[str, Any] | None = None
    created_at: datetime | None = None


class LogOut(Wire):
    id: int
    priority: str
    module: str
    message: str
    context: dict[str, Any] | None
    created_at: datetime


class TokenRequest(Wire):
    scopes: list[str]
    ttl: int | None = None  # seconds the access token lives


class TokenOut(BaseModel):
    """A token pair with the original's keys (client-go's `TokenResponse`: snake_case, as
    its docs read them, `jq .access_token`) and, beside them, the camelCase ones the
    official Python client reads."""

    id: str
    token_type: str = "Bearer"
    access_token: str
    refresh_token: str | None = None  # none for a token asked for with a token
    expires_at: datetime
    token_type_camel: str = Field("Bearer", serialization_alias="tokenType")
    access_token_camel: str = Field(serialization_alias="accessToken")
    refresh_token_camel: str | None = Field(None, serialization_alias="refreshToken")
    expires_at_camel: datetime = Field(serialization_alias="expiresAt")

    @classmethod
    def of(cls, id: str, access_token: str, refresh_token: str | None,
           expires_at: datetime) -> TokenOut:
        return cls(id=id, access_token=access_token, refresh_token=refresh_token,
                   expires_at=expires_at, access_token_camel=access_token,
                   refresh_token_camel=refresh_token, expires_at_camel=expires_at)
