"""Webhooks: registrations, and the outbox of events written with the changes that cause them."""

from __future__ import annotations

import enum
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from sqlalchemy import Row, bindparam, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session

from simgate.domain.states import ProcessState
from simgate.services.devices import DeviceIdentity, SimChange
from simgate.services.errors import BadRequest, NotFound
from simgate.services.ids import new_id
from simgate.sms.pdu import segment_count
from simgate.store.models import (
    Device,
    Message,
    Recipient,
    SimCard,
    Webhook,
    WebhookDelivery,
    utcnow,
)
from simgate.webhooks.urls import ForbiddenUrl, check_form

# Asked in the transaction that would raise a device's event: whether it is new.
FirstTime = Callable[[AsyncSession], Awaitable[bool]]

log = logging.getLogger("simgate.webhooks")


class WebhookEvent(enum.StrEnum):
    """Every event the official client enumerates, and simgate's own (OWN_EVENTS)."""

    SMS_RECEIVED = "sms:received"
    SMS_DATA_RECEIVED = "sms:data-received"
    SMS_SENT = "sms:sent"
    SMS_DELIVERED = "sms:delivered"
    SMS_FAILED = "sms:failed"
    SMS_CANCELLED = "sms:cancelled"
    SYSTEM_PING = "system:ping"
    MMS_RECEIVED = "mms:received"
    MMS_DOWNLOADED = "mms:downloaded"
    APP_STARTED = "app:started"
    SMS_BATCH_RECEIVED = "sms:batch:received"
    SMS_DATA_BATCH_RECEIVED = "sms:batch:data-received"
    MMS_BATCH_RECEIVED = "mms:batch:received"
    MMS_BATCH_DOWNLOADED = "mms:batch:downloaded"
    SIM_CHANGED = "sim:changed"  # simgate's own: a SIM inserted, removed, locked, offline


# Events the original does not have: its clients cannot read a webhook of one (the
# official Python client turns each listed event into its own enum)
OWN_EVENTS = frozenset({WebhookEvent.SIM_CHANGED})
OFFICIAL_CLIENT_AGENT = "android-sms-gateway/"  # how the official clients introduce themselves


_STATE_EVENTS = {
    ProcessState.SENT: (WebhookEvent.SMS_SENT, "sentAt"),
    ProcessState.DELIVERED: (WebhookEvent.SMS_DELIVERED, "deliveredAt"),
    ProcessState.FAILED: (WebhookEvent.SMS_FAILED, "failedAt"),
    ProcessState.CANCELLED: (WebhookEvent.SMS_CANCELLED, "cancelledAt"),
}
_STATE_EVENT_NAMES = [event for event, _ in _STATE_EVENTS.values()]
# A phone handed a message without a SIM says which it used in its own event: the user's
# event waits this long for it (it goes out with simNumber null past that), and says so.
PHONE_SIM_WAIT = timedelta(seconds=30)
HELD_FOR_SIM = "waiting for the phone to say which SIM sent it"


def _parts(text: str) -> int | None:
    """The parts of a text, or None: a count must never fail the state change it rides on."""
    try:
        return segment_count(text)
    except (ValueError, TypeError):
        log.warning("could not count the SMS parts of a text of %d characters", len(text))
        return None


_HOOKS = select(Webhook.__table__.c.id, Webhook.__table__.c.device_id).where(
    Webhook.__table__.c.user_id == bindparam("user_id"),
    Webhook.__table__.c.event == bindparam("event"))


class Webhooks:
    def __init__(self, sessions: async_sessionmaker, allow_private: bool,
                 wake: Callable[[], None]) -> None:
        self._sessions = sessions
        self._allow_private = allow_private
        self.wake = wake
        # told the devices of a user whose webhooks changed (they fetch them again)
        self.changed: list[Callable[[list[str]], None]] = []

    # -- registrations ----------------------------------------------------------------

    async def create(self, user_id: int, url: str, event: str, device_id: str | None,
                     webhook_id: str | None = None) -> Webhook:
        try:
            kind = WebhookEvent(event)
        except ValueError:
            allowed = ", ".join(e.value for e in WebhookEvent)
            raise BadRequest(f"unknown webhook event {event!r}; allowed: {allowed}") from None
        try:
            check_form(url, self._allow_private)
        except ForbiddenUrl as exc:
            raise BadRequest(str(exc)) from None
        async with self._sessions.begin() as session:
            if device_id is not None and not await self._owns(session, user_id, device_id):
                raise BadRequest(f"unknown device {device_id!r}: give the id of one of your "
                                 "devices (GET /3rdparty/v1/devices), or none for all of them")
            existing = await self._named(session, user_id, webhook_id) if webhook_id else None
            if existing is not None:
                existing.url, existing.event, existing.device_id = url, kind.value, device_id
                return existing
            internal = new_id()
            webhook = Webhook(id=internal, ext_id=webhook_id or internal, user_id=user_id,
                              url=url, event=kind.value, device_id=device_id)
            session.add(webhook)
        return webhook

    @staticmethod
    async def _named(session: AsyncSession, user_id: int, name: str) -> Webhook | None:
        """The user's webhook of that id; other users' webhooks do not exist here."""
        return await session.scalar(select(Webhook).where(Webhook.user_id == user_id,
                                                          Webhook.ext_id == name))

    @staticmethod
    async def _owns(session: AsyncSession, user_id: int, device_id: str) -> bool:
        return await session.scalar(select(Device.id).where(
            Device.id == device_id, Device.user_id == user_id,
            Device.deleted_at.is_(None))) is not None

    async def list(self, user_id: int, device_id: str | None = None) -> list[Webhook]:
        query = select(Webhook).where(Webhook.user_id == user_id)
        if device_id:
            query = query.where(Webhook.device_id == device_id)
        async with self._sessions() as session:
            return list(await session.scalars(query.order_by(Webhook.created_at)))

    async def delete(self, user_id: int, webhook_id: str) -> None:
        """Idempotent, as the original: deleting a webhook that is not there is done."""
        async with self._sessions.begin() as session:
            webhook = await self._named(session, user_id, webhook_id)
            if webhook is not None:
                await session.delete(webhook)

    async def announce(self, user_id: int) -> None:
        """Tell the user's devices their webhooks changed (WebhooksUpdated): the Android
        app fetches them again, which it otherwise does once a day."""
        async with self._sessions() as session:
            devices = list(await session.scalars(
                select(Device.id).where(Device.user_id == user_id, Device.deleted_at.is_(None))))
        for callback in self.changed:
            callback(devices)

    # -- the outbox -------------------------------------------------------------------

    @staticmethod
    async def emit(session: AsyncSession, user_id: int, device_id: str | None,
                   event: WebhookEvent, payload: dict[str, Any]) -> int:
        """Write one event for every matching webhook, in the caller's transaction."""
        return await session.run_sync(Webhooks.emit_in, user_id, device_id, event, payload)

    @staticmethod
    def emit_in(session: Session, user_id: int, device_id: str | None,
                event: WebhookEvent, payload: dict[str, Any], held: bool = False) -> int:
        """`emit` for a plain (sync) session: state reports write in one stretch.
        `held`: the event waits (up to PHONE_SIM_WAIT) for the phone to say which SIM
        sent, see `release_held`."""
        hooks = Webhooks._hooks(session, user_id, event)
        event_id = new_id()
        count = 0
        now = utcnow()
        for hook in hooks:
            if hook.device_id and hook.device_id != device_id:
                continue
            session.add(WebhookDelivery(
                event_id=event_id, webhook_id=hook.id, user_id=user_id, device_id=device_id,
                event=event.value, payload=payload,
                next_attempt_at=now + PHONE_SIM_WAIT if held else now,
                last_error=HELD_FOR_SIM if held else None,
            ))
            count += 1
        if count:
            session.info["webhook_events"] = True
        return count

    @staticmethod
    def _hooks(session: Session, user_id: int, event: WebhookEvent) -> list[Row[Any]]:
        """The user's webhooks for an event (id, device_id), read once per transaction,
        on the session's connection: no flush (a batch of state changes stays one flush)
        and no ORM work on the path of every device report."""
        cache = session.info.setdefault("webhooks", {})
        key = (user_id, event.value)
        if key not in cache:
            cache[key] = session.connection().execute(
                _HOOKS, {"user_id": user_id, "event": event.value}).all()
        return cache[key]

    @staticmethod
    def _sim_numbers(session: Session, device_id: str) -> dict[int, str | None]:
        """A device's own numbers by simNumber, read once per transaction, unflushed."""
        cache = session.info.setdefault("sim_numbers", {})
        if device_id not in cache:
            with session.no_autoflush:
                rows = session.execute(select(SimCard.slot_index, SimCard.phone_number)
                                             .where(SimCard.device_id == device_id))
            cache[device_id] = {slot + 1: number for slot, number in rows}
        return cache[device_id]

    def on_sims_change(self, session: Session, device: DeviceIdentity,
                       changes: list[SimChange]) -> None:
        """Devices listener: one sim:changed event per slot that changed, in the
        transaction that stores the change."""
        at = utcnow().isoformat()
        for change in changes:
            slot = change.slot
            self.emit_in(session, device.user_id, device.device_id, WebhookEvent.SIM_CHANGED, {
                "simNumber": slot.sim_number, "change": change.change,
                "state": slot.status.value,
                "previousState": change.before.value if change.before else None,
                "phoneNumber": slot.phone_number, "carrierName": slot.carrier_name,
                "detail": slot.detail, "changedAt": at})

    def on_message_change(self, session: Session, message: Message,
                                changed: list[tuple[Recipient, ProcessState]]) -> None:
        """Messages listener: one event per recipient that reached sent/delivered/failed,
        with the SIM used and its own number (`sender`), as the original app sends them."""
        parts: int | None = None
        for recipient, state in changed:
            kind = _STATE_EVENTS.get(state)
            if kind is None:
                continue
            event, stamp_key = kind
            if not self._hooks(session, message.user_id, event):
                continue  # nobody listens: spare the payload
            sender = None
            if message.sim_used is not None:
                sender = self._sim_numbers(session, message.device_id).get(
                    message.sim_used)
            payload: dict[str, Any] = {
                "messageId": message.ext_id,
                "phoneNumber": recipient.phone_number,
                "recipient": recipient.phone_number,
                "simNumber": message.sim_used,
                stamp_key: message.states.get(state.value) or utcnow().isoformat(),
            }
            if sender:
                payload["sender"] = sender
            if state is ProcessState.SENT and message.text and not message.is_encrypted:
                parts = parts or _parts(message.text)
                if parts:
                    payload["partsCount"] = parts
            if state is ProcessState.FAILED:
                payload["reason"] = recipient.error or "Failed"
            self.emit_in(session, message.user_id, message.device_id, event, payload,
                         held=message.sim_used is None and message.phone_chooses_sim)

    @staticmethod
    def release_held(connection: Connection, user_id: int, message_id: str,
                     phone: str | None, sim_number: int | None) -> int:
        """The events of a message held for its SIM go out now, with the SIM the phone
        said (None: it does not know either). Returns how many were released."""
        now = utcnow()
        held = connection.execute(
            select(WebhookDelivery.pk, WebhookDelivery.payload, WebhookDelivery.device_id)
            .where(WebhookDelivery.user_id == user_id, WebhookDelivery.status == "pending",
                   WebhookDelivery.last_error == HELD_FOR_SIM, WebhookDelivery.attempts == 0,
                   WebhookDelivery.created_at > now - PHONE_SIM_WAIT,
                   WebhookDelivery.event.in_([e.value for e in _STATE_EVENT_NAMES]))).all()
        rows = [(pk, payload, device) for pk, payload, device in held
                if payload.get("messageId") == message_id
                and (phone is None or payload.get("phoneNumber") == phone)]
        senders: dict[int, str | None] = {}
        if rows and sim_number is not None:
            senders = {slot + 1: number for slot, number in connection.execute(
                select(SimCard.slot_index, SimCard.phone_number)
                .where(SimCard.device_id == rows[0][2]))}
        for pk, payload, _ in rows:
            payload = {**payload, "simNumber": sim_number}
            if senders.get(sim_number):
                payload["sender"] = senders[sim_number]
            connection.execute(update(WebhookDelivery).where(WebhookDelivery.pk == pk).values(
                payload=payload, next_attempt_at=now, last_error=None))
        return len(rows)

    async def ping(self, device: DeviceIdentity, health: dict[str, Any],
                   first: FirstTime | None = None) -> None:
        """A device heartbeat: the system:ping event with its health."""
        await self.device_event(device, WebhookEvent.SYSTEM_PING, {"health": health}, first)

    async def device_event(self, device: DeviceIdentity, event: WebhookEvent,
                           payload: dict[str, Any], first: FirstTime | None = None) -> None:
        """An event a device raised itself (a heartbeat, the app started), to the user's
        webhooks; when `first` says, in the same transaction, that the event came before,
        nothing is raised again."""
        async with self._sessions.begin() as session:
            if first is not None and not await first(session):
                return
            count = await self.emit(session, device.user_id, device.device_id, event, payload)
        if count:
            self.wake()

    # -- attempts and redrive ---------------------------------------------------------

    async def deliveries(self, user_id: int, webhook_id: str | None = None,
                         status: str | None = None, limit: int = 100
                         ) -> list[tuple[WebhookDelivery, str]]:
        """The user's delivery attempts, newest first, each with its webhook's id."""
        query = (select(WebhookDelivery, Webhook.ext_id)
                 .join(Webhook, Webhook.id == WebhookDelivery.webhook_id)
                 .where(WebhookDelivery.user_id == user_id))
        if webhook_id:
            query = query.where(Webhook.ext_id == webhook_id)
        if status:
            query = query.where(WebhookDelivery.status == status)
        async with self._sessions() as session:
            rows = await session.execute(query.order_by(WebhookDelivery.pk.desc()).limit(limit))
            return [(delivery, name) for delivery, name in rows]

    async def redrive(self, user_id: int, webhook_id: str,
                      event_id: str | None = None) -> int:
        """Send again events of the user's webhook that ran out of retries (or one)."""
        async with self._sessions() as session:
            webhook = await self._named(session, user_id, webhook_id)
        if webhook is None:
            raise NotFound(f"webhook {webhook_id!r} not found: GET /3rdparty/v1/webhooks "
                           "lists yours")
        conditions = [WebhookDelivery.webhook_id == webhook.id,
                      WebhookDelivery.status == "failed"]
        if event_id:
            conditions.append(WebhookDelivery.event_id == event_id)
        async with self._sessions.begin() as session:
            result = await session.execute(
                update(WebhookDelivery).where(*conditions)
                .values(status="pending", attempts=0, next_attempt_at=utcnow())
            )
        self.wake()
        return result.rowcount or 0

