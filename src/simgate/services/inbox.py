"""Incoming SMS and MMS: stored once per identity, each raising its webhook event; a
downloaded MMS keeps its parts in the store, within size caps."""

from __future__ import annotations

import base64
import json
from collections import defaultdict
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import undefer

from simgate.services import usage
from simgate.services.devices import DeviceIdentity
from simgate.services.ids import new_id
from simgate.services.logs import Entry, Logs, Priority
from simgate.services.webhooks import WebhookEvent, Webhooks
from simgate.store.models import Device, IncomingAttachment, IncomingMessage

PREVIEW_CHARS = 256
BATCH_SIZE = 100  # messages in one batch event at most: receivers get bounded bodies

# The event that carries many messages of one kind (inbox refresh, webhookDelivery: Batch).
BATCH_EVENTS = {
    WebhookEvent.SMS_RECEIVED: WebhookEvent.SMS_BATCH_RECEIVED,
    WebhookEvent.SMS_DATA_RECEIVED: WebhookEvent.SMS_DATA_BATCH_RECEIVED,
    WebhookEvent.MMS_RECEIVED: WebhookEvent.MMS_BATCH_RECEIVED,
    WebhookEvent.MMS_DOWNLOADED: WebhookEvent.MMS_BATCH_DOWNLOADED,
}


@dataclass(frozen=True)
class Incoming:
    """One SMS as the agent forwards it; `ident` is its identity on the device."""

    ident: str
    sender: str
    received_at: datetime
    sim_number: int | None = None
    recipient: str | None = None
    text: str | None = None
    data: str | None = None  # base64; for an MMS, JSON of its header fields
    port: int | None = None
    type: str | None = None  # SMS, DATA_SMS (told by `data`), MMS, MMS_DOWNLOADED
    attachments: tuple[Part, ...] = ()  # of an MMS_DOWNLOADED


@dataclass(frozen=True)
class Part:
    """One part of a downloaded MMS; `content` None when the phone sent no bytes."""

    part_id: int
    content_type: str
    name: str | None
    size: int | None
    content: bytes | None


@dataclass(frozen=True)
class Caps:
    """The bytes of MMS parts kept: per message and per user (all their messages)."""

    per_message: int = 3_145_728
    per_user: int = 268_435_456


@dataclass(frozen=True)
class InboxQuery:
    type: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    device_id: str | None = None
    limit: int = 50
    offset: int = 0


def _matching(user_id: int, query: InboxQuery) -> list[ColumnElement[bool]]:
    conditions = [IncomingMessage.user_id == user_id]
    if query.type:
        conditions.append(IncomingMessage.type == query.type)
    if query.since:
        conditions.append(IncomingMessage.received_at >= query.since)
    if query.until:
        conditions.append(IncomingMessage.received_at <= query.until)
    if query.device_id:
        conditions.append(IncomingMessage.device_id == query.device_id)
    return conditions


def event_of(message: IncomingMessage,
             parts: list[IncomingAttachment] | None = None) -> tuple[WebhookEvent, dict]:
    """The received event and payload of a stored message (`parts`: an MMS_DOWNLOADED's
    attachments, their content loaded)."""
    payload = {
        "messageId": message.id,
        "phoneNumber": message.sender,
        "sender": message.sender,
        "recipient": message.recipient,
        "simNumber": message.sim_number,
        "receivedAt": message.received_at.isoformat(),
    }
    if message.type == "DATA_SMS":
        return WebhookEvent.SMS_DATA_RECEIVED, payload | {"data": message.data,
                                                          "port": message.port}
    if message.type == "MMS_DOWNLOADED":  # as the app's mms:downloaded has it
        return WebhookEvent.MMS_DOWNLOADED, payload | {
            "body": message.text, "subject": _subject(message),
            "attachments": [_part_payload(p) for p in parts or []]}
    if message.type == "MMS":
        try:
            headers = json.loads(message.data or "{}")
        except ValueError:
            headers = {}
        return WebhookEvent.MMS_RECEIVED, payload | {"subject": message.text, **headers}
    return WebhookEvent.SMS_RECEIVED, payload | {"message": message.text}


def _subject(message: IncomingMessage) -> str | None:
    """A downloaded MMS keeps its subject in `data` (its text is the body)."""
    try:
        return json.loads(message.data or "{}").get("subject")
    except (ValueError, AttributeError):
        return None


def preview_of(message: IncomingMessage) -> str:
    """What the inbox shows of a message: its text, data, or an MMS's body or subject."""
    if message.type == "DATA_SMS":
        return message.data or ""
    if message.type == "MMS_DOWNLOADED":
        return message.text or _subject(message) or ""
    return message.text or ""


def _part_payload(part: IncomingAttachment) -> dict[str, Any]:
    return {"partId": part.part_id, "contentType": part.content_type, "name": part.name,
            "size": part.size,
            "data": base64.b64encode(part.content).decode() if part.content is not None
            else None}


def _keep(parts: tuple[Part, ...], caps: Caps, used: int) -> list[bool]:
    """Which parts' bytes are kept: in order, while the message's and the user's totals
    stay within their caps (the others keep their metadata only)."""
    kept, message_total = [], 0
    for part in parts:
        size = len(part.content) if part.content is not None else 0
        fits = (part.content is not None and message_total + size <= caps.per_message
                and used + size <= caps.per_user)
        if fits:
            message_total += size
            used += size
        kept.append(fits)
    return kept


class Inbox:
    def __init__(self, sessions: async_sessionmaker, wake: Callable[[], None],
                 caps: Caps | None = None) -> None:
        self._sessions = sessions
        self._wake = wake
        self.caps = caps or Caps()
        # told (device id, request) when devices are asked to upload a period again
        self.export_requested: list[Callable[[str, dict[str, Any]], None]] = []
        # told (user id, ids) of messages stored for the first time (the dashboard's inbox)
        self.received: list[Callable[[int, list[str]], None]] = []

    async def store(self, device: DeviceIdentity, items: list[Incoming]) -> list[str]:
        """Store new messages with their events; repeats (same ident) are ignored.

        Returns the ids of all given messages, old or new, so the agent can forget them.
        """
        ids, new = [], []
        events = 0
        async with self._sessions.begin() as session:
            known = {
                m.ident: m.id for m in await session.scalars(
                    select(IncomingMessage).where(
                        IncomingMessage.device_id == device.device_id,
                        IncomingMessage.ident.in_([i.ident for i in items]),
                    )
                )
            }
            for item in items:
                if item.ident in known:
                    ids.append(known[item.ident])
                    continue
                message = IncomingMessage(
                    id=new_id(), ident=item.ident, user_id=device.user_id,
                    device_id=device.device_id,
                    type=item.type or ("DATA_SMS" if item.data is not None else "SMS"),
                    sender=item.sender, recipient=item.recipient, sim_number=item.sim_number,
                    text=item.text, data=item.data, port=item.port,
                    received_at=item.received_at,
                )
                session.add(message)
                known[item.ident] = message.id
                ids.append(message.id)
                new.append(message.id)
                parts = await self._add_parts(session, device, message, item.attachments)
                event, payload = event_of(message, parts)
                events += await Webhooks.emit(session, device.user_id, device.device_id,
                                              event, payload)
                if item.sim_number is not None:  # Sticky answers through this SIM
                    await session.run_sync(lambda s, i=item: usage.exchanged(
                        s.connection(), device.user_id, device.device_id, i.sim_number - 1,
                        i.sender))
        if events:
            self._wake()
        if new:
            for callback in self.received:
                callback(device.user_id, new)
        return ids

    async def _add_parts(self, session: AsyncSession, device: DeviceIdentity,
                         message: IncomingMessage,
                         parts: tuple[Part, ...]) -> list[IncomingAttachment]:
        """Store a downloaded MMS's parts with it; bytes past the caps are not kept, and
        the user's logs say which parts lost them."""
        if not parts:
            return []
        await session.flush()  # the message's pk
        used = await session.scalar(
            select(func.coalesce(func.sum(IncomingAttachment.stored_bytes), 0))
            .where(IncomingAttachment.user_id == device.user_id))
        rows, dropped = [], []
        for part, kept in zip(parts, _keep(parts, self.caps, used), strict=True):
            content = part.content if kept else None
            if part.content is not None and not kept:
                dropped.append(part.part_id)
            row = IncomingAttachment(
                message_pk=message.pk, user_id=device.user_id, part_id=part.part_id,
                content_type=part.content_type, name=part.name,
                size=part.size if part.size is not None else len(part.content or b""),
                stored_bytes=len(content) if content is not None else 0, content=content)
            session.add(row)
            rows.append(row)
        if dropped:
            Logs.add(session, device.user_id, device.device_id, Entry(
                Priority.WARN, "inbox",
                f"MMS {message.id}: parts {dropped} not kept, over"
                f" SIMGATE_MMS_MAX_BYTES ({self.caps.per_message}) per message or"
                f" SIMGATE_MMS_MAX_BYTES_PER_USER ({self.caps.per_user}); their metadata"
                " is kept and the phone still has them",
                {"messageId": message.id, "partIds": dropped}))
        return rows

    async def parts(self, user_id: int,
                    message_ids: list[str]) -> dict[str, list[IncomingAttachment]]:
        """The parts of the user's messages (metadata only), by message id."""
        found: dict[str, list[IncomingAttachment]] = {m: [] for m in message_ids}
        if not message_ids:
            return found
        async with self._sessions() as session:
            rows = await session.execute(
                select(IncomingMessage.id, IncomingAttachment)
                .join(IncomingAttachment, IncomingAttachment.message_pk == IncomingMessage.pk)
                .where(IncomingMessage.user_id == user_id,
                       IncomingMessage.id.in_(message_ids))
                .order_by(IncomingAttachment.pk))
            for message_id, part in rows:
                found[message_id].append(part)
        return found

    async def part(self, user_id: int, message_id: str,
                   part_id: int) -> IncomingAttachment | None:
        """One part of one of the user's messages, its content loaded; None if unknown."""
        async with self._sessions() as session:
            return await session.scalar(
                select(IncomingAttachment)
                .join(IncomingMessage, IncomingAttachment.message_pk == IncomingMessage.pk)
                .where(IncomingMessage.user_id == user_id, IncomingMessage.id == message_id,
                       IncomingAttachment.part_id == part_id)
                .options(undefer(IncomingAttachment.content)))

    async def list(self, user_id: int, query: InboxQuery) -> list[IncomingMessage]:
        async with self._sessions() as session:
            return list(await session.scalars(
                select(IncomingMessage).where(*_matching(user_id, query))
                .order_by(IncomingMessage.received_at.desc(), IncomingMessage.pk.desc())
                .limit(query.limit).offset(query.offset)
            ))

    async def count(self, user_id: int, query: InboxQuery) -> int:
        """How many received messages match, all pages together (X-Total-Count)."""
        async with self._sessions() as session:
            return await session.scalar(select(func.count()).select_from(IncomingMessage)
                                        .where(*_matching(user_id, query)))

    async def export(self, user_id: int, device_id: str | None, since: datetime,
                     until: datetime, types: Collection[str] | None = None,
                     batch: bool = False) -> int:
        """Raise the received events again for stored messages of a period (of `types`,
        if given): one per message, or with `batch` one per device and kind, carrying up
        to BATCH_SIZE messages in the order they arrived (sms:batch:received, ...)."""
        count = 0
        async with self._sessions.begin() as session:
            conditions = [IncomingMessage.user_id == user_id,
                          IncomingMessage.received_at >= since,
                          IncomingMessage.received_at <= until]
            if types is not None:
                conditions.append(IncomingMessage.type.in_(types))
            if device_id:
                conditions.append(IncomingMessage.device_id == device_id)
            batches: dict[tuple[str, WebhookEvent], list[dict]] = defaultdict(list)
            for message in await session.scalars(
                    select(IncomingMessage).where(*conditions)
                    .order_by(IncomingMessage.received_at, IncomingMessage.pk)):
                parts = (list(await session.scalars(
                    select(IncomingAttachment)
                    .where(IncomingAttachment.message_pk == message.pk)
                    .order_by(IncomingAttachment.pk)
                    .options(undefer(IncomingAttachment.content))))
                    if message.type == "MMS_DOWNLOADED" else None)
                event, payload = event_of(message, parts)
                if batch:
                    batches[message.device_id, BATCH_EVENTS[event]].append(payload)
                    continue
                count += await Webhooks.emit(session, user_id, message.device_id, event,
                                             payload)
            for (sender, event), payloads in batches.items():
                for start in range(0, len(payloads), BATCH_SIZE):
                    count += await Webhooks.emit(
                        session, user_id, sender, event,
                        {"messages": payloads[start:start + BATCH_SIZE]})
        if count:
            self._wake()
        return count

    async def ask_devices(self, user_id: int, device_id: str | None, since: datetime,
                          until: datetime, types: Collection[str] | None,
                          trigger_webhooks: bool) -> None:
        """Ask the user's devices (or one) to upload what they received in a period
        (MessagesExportRequested): an Android app sends again what simgate may have
        missed, and what simgate has already is recognised by its id."""
        async with self._sessions() as session:
            query = select(Device.id).where(Device.user_id == user_id,
                                            Device.deleted_at.is_(None))
            if device_id:
                query = query.where(Device.id == device_id)
            devices = list(await session.scalars(query))
        request: dict[str, Any] = {"since": since, "until": until,
                                   "triggerWebhooks": trigger_webhooks}
        if types:
            request["messageTypes"] = ",".join(types)
        for device in devices:
            for callback in self.export_requested:
                callback(device, request)
