"""Incoming SMS: stored once per identity, each raising its webhook event."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.ext.asyncio import async_sessionmaker

from simgate.services import usage
from simgate.services.devices import DeviceIdentity
from simgate.services.ids import new_id
from simgate.services.webhooks import WebhookEvent, Webhooks
from simgate.store.models import Device, IncomingMessage

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


def event_of(message: IncomingMessage) -> tuple[WebhookEvent, dict]:
    """The sms:received / sms:data-received payload of a stored message."""
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
    if message.type in ("MMS", "MMS_DOWNLOADED"):
        try:
            headers = json.loads(message.data or "{}")
        except ValueError:
            headers = {}
        event = (WebhookEvent.MMS_RECEIVED if message.type == "MMS"
                 else WebhookEvent.MMS_DOWNLOADED)
        return event, payload | {"subject": message.text, **headers}
    return WebhookEvent.SMS_RECEIVED, payload | {"message": message.text}


class Inbox:
    def __init__(self, sessions: async_sessionmaker, wake: Callable[[], None]) -> None:
        self._sessions = sessions
        self._wake = wake
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
                event, payload = event_of(message)
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
                event, payload = event_of(message)
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
