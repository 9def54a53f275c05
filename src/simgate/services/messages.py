"""Outgoing messages: accept, follow, cancel, hand to devices, record their states."""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, bindparam, func, or_, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from simgate.domain.dates import utc
from simgate.domain.sims import InvalidSimNumber, check_sim_number
from simgate.domain.states import ProcessState, advance, aggregate
from simgate.services import failover, usage
from simgate.services.accept import (
    AcceptBatcher,
    AcceptedMessage,
    AcceptedRecipient,
    AcceptJob,
)
from simgate.services.devices import DeviceIdentity, Devices
from simgate.services.errors import BadRequest, Conflict, NotFound
from simgate.services.ids import new_id, sha256_hex
from simgate.services.logs import Entry, Logs, Priority
from simgate.services.queue_limit import QueueLimit
from simgate.services.router import PhoneRouter
from simgate.services.webhooks import Webhooks
from simgate.sms.pdu import TooLong, check_fits
from simgate.store.db import Sessions
from simgate.store.models import Message, Recipient, utcnow

log = logging.getLogger(__name__)

MAX_PENDING_FETCH = 100
FINISHED_STATES = [s.value for s in ProcessState if s.final] + [ProcessState.SENT.value]


@dataclass(frozen=True)
class NewMessage:
    """A validated request to send (numbers already normalised or encrypted)."""

    phone_numbers: list[str]
    text: str | None = None
    data: str | None = None
    port: int | None = None
    sim_number: int | None = None
    with_delivery_report: bool = True
    is_encrypted: bool = False
    priority: int = 0
    valid_until: datetime | None = None
    schedule_at: datetime | None = None
    id: str | None = None
    device_id: str | None = None


@dataclass(frozen=True)
class RecipientUpdate:
    phone_number: str
    state: ProcessState
    error: str | None = None


@dataclass(frozen=True)
class StateUpdate:
    """A device's report on one message."""

    id: str
    state: ProcessState
    recipients: list[RecipientUpdate] = field(default_factory=list)
    states: dict[str, datetime] = field(default_factory=dict)
    sim_number: int | None = None
    # send attempts, each {sim_number, device_id, error, at}; added to those stored
    attempts: list[dict[str, Any]] = field(default_factory=list)
    reason: str | None = None  # why a Pending message waits (simgate's agent says)
    # no SIM of the device could send it: hand it to another device of the user if the
    # routing settings allow (simgate's agent says)
    failover: bool = False


@dataclass(frozen=True)
class MessageQuery:
    since: datetime | None = None
    until: datetime | None = None
    state: ProcessState | None = None
    device_id: str | None = None
    # the SIM that sent it, or for one not sent yet, the SIM it asks for (1-based)
    sim_number: int | None = None
    limit: int = 50
    offset: int = 0
    newest_first: bool = True


def _matching(user_id: int, query: MessageQuery) -> list[ColumnElement[bool]]:
    conditions = [Message.user_id == user_id]
    if query.since:
        conditions.append(Message.created_at >= query.since)
    if query.until:
        conditions.append(Message.created_at <= query.until)
    if query.state:
        conditions.append(Message.state == query.state.value)
    if query.device_id:
        conditions.append(Message.device_id == query.device_id)
    if query.sim_number:
        conditions.append(or_(Message.sim_used == query.sim_number,
                              and_(Message.sim_used.is_(None),
                                   Message.sim_number == query.sim_number)))
    return conditions


def _is_final(message: Message) -> bool:
    state = ProcessState(message.state)
    if state.final:
        return True
    return state is ProcessState.SENT and not message.with_delivery_report


RECIPIENT_HASH_LENGTH = 16  # the original keeps the first 16 hex digits of a number's hash
HASH_BATCH = 500


def _hashable(message: Message) -> bool:
    return _is_final(message) and not (message.is_hashed or message.is_encrypted)


def _hash_contents(message: Message) -> None:
    """Text (or data) and numbers replaced by SHA-256 hashes, as the original does (privacy).

    Encrypted messages stay as they are: the server cannot read them anyway, and the
    client decrypts the numbers it gets back.
    """
    if not _hashable(message):
        return
    if message.text is not None:
        message.text = sha256_hex(message.text)
    if message.data is not None:
        message.data = sha256_hex(message.data)
    for recipient in message.recipients:
        recipient.phone_number = hashed_number(recipient.phone_number)
    message.is_hashed = True


def hashed_number(number: str) -> str:
    """A recipient's number as a hashed message keeps it."""
    return sha256_hex(number)[:RECIPIENT_HASH_LENGTH]


def _stamp(message: Message, state: ProcessState, at: datetime | None = None) -> None:
    """`states` keeps the first time each state was reached."""
    if state.value not in message.states:
        message.states = {**message.states, state.value: utc(at or utcnow()).isoformat()}


@dataclass(slots=True)
class RecipientRow:
    """A recipients row as device reports read and change it (plain data, no ORM)."""

    message_pk: int
    position: int
    phone_number: str
    state: str
    error: str | None


@dataclass(slots=True)
class MessageRow:
    """The columns of a messages row that device reports read and change; the state
    listeners read the same attributes from it as from a `Message`."""

    pk: int
    ext_id: str
    user_id: int
    device_id: str
    state: str
    text: str | None
    is_encrypted: bool
    is_hashed: bool
    with_delivery_report: bool
    sim_used: int | None
    states: dict[str, str]
    updated_at: datetime
    attempts: list[dict[str, Any]] | None
    reason: str | None
    device_pinned: bool
    sim_number: int | None
    handout_id: str | None
    phone_chooses_sim: bool
    recipients: list[RecipientRow] = field(default_factory=list)


_ROW_COLUMNS = [f for f in MessageRow.__slots__ if f != "recipients"]  # type: ignore[attr-defined]


_MESSAGES, _RECIPIENTS = Message.__table__, Recipient.__table__
# Built once: building a statement costs more than SQLite running it, on the path every
# device report takes. The IN lists expand at execution.
_SELECT_ROWS = select(*[_MESSAGES.c[k] for k in _ROW_COLUMNS]).where(
    _MESSAGES.c.user_id == bindparam("user_id"),
    _MESSAGES.c.ext_id.in_(bindparam("ext_ids", expanding=True)),
    _MESSAGES.c.device_id == bindparam("device_id"))
_SELECT_RECIPIENTS = select(
    *[_RECIPIENTS.c[k] for k in RecipientRow.__slots__]  # type: ignore[attr-defined]
).where(
    _RECIPIENTS.c.message_pk.in_(bindparam("pks", expanding=True))
).order_by(_RECIPIENTS.c.message_pk, _RECIPIENTS.c.position)
# A phone reports a message by the id it was handed: the message's own, or the one it got
# when the message came back to it for another SIM.
_SELECT_HANDED_ROWS = select(*[_MESSAGES.c[k] for k in _ROW_COLUMNS]).where(
    _MESSAGES.c.device_id == bindparam("device_id"),
    or_(_MESSAGES.c.handout_id.in_(bindparam("wire_ids", expanding=True)),
        and_(_MESSAGES.c.user_id == bindparam("user_id"), _MESSAGES.c.handout_id.is_(None),
             _MESSAGES.c.ext_id.in_(bindparam("ext_ids", expanding=True)))))
_UPDATE_MESSAGES = update(_MESSAGES).where(_MESSAGES.c.pk == bindparam("row_pk"))
_UPDATE_RECIPIENTS = update(_RECIPIENTS).where(
    _RECIPIENTS.c.message_pk == bindparam("row_pk"),
    _RECIPIENTS.c.position == bindparam("row_position"))


def wire_id(message: Message | MessageRow) -> str:
    """The id a device knows the message by."""
    return message.handout_id or message.ext_id


def _read_rows(connection: Connection, device: DeviceIdentity, ext_ids: list[str],
               handed: bool = False) -> dict[str, MessageRow]:
    """The device's messages of these ids with their recipients: two SELECTs. By (user,
    id), the unique index: by device, SQLite would walk all the device's messages.
    `handed`: the ids are those a phone was handed (`wire_id`); a report under an id the
    phone held before the message came back to it is stale, and finds nothing."""
    params = {"user_id": device.user_id, "ext_ids": ext_ids, "device_id": device.device_id}
    if handed:
        rows = connection.execute(_SELECT_HANDED_ROWS, {**params, "wire_ids": ext_ids})
    else:
        rows = connection.execute(_SELECT_ROWS, params)
    found = {wire_id(m): m for m in (MessageRow(*row) for row in rows)}
    by_pk = {m.pk: m for m in found.values()}
    if by_pk:
        for row in connection.execute(_SELECT_RECIPIENTS, {"pks": list(by_pk)}):
            by_pk[row[0]].recipients.append(RecipientRow(*row))
    return found


def _write_rows(connection: Connection, messages: list[MessageRow],
                recipients: list[RecipientRow]) -> None:
    """One executemany UPDATE for the messages, one for the recipients that changed."""
    if messages:
        connection.execute(
            _UPDATE_MESSAGES,
            [{"row_pk": m.pk, "state": m.state, "states": m.states, "sim_used": m.sim_used,
              "attempts": m.attempts, "reason": m.reason, "device_id": m.device_id,
              "handout_id": m.handout_id, "phone_chooses_sim": m.phone_chooses_sim,
              "updated_at": m.updated_at} for m in messages])
    if recipients:
        connection.execute(
            _UPDATE_RECIPIENTS,
            [{"row_pk": r.message_pk, "row_position": r.position, "state": r.state,
              "error": r.error} for r in recipients])


def _claims(device: DeviceIdentity, message: MessageRow, report: StateUpdate, was: str,
            first_sim: int | None) -> list[usage.Claim]:
    """The sends a report makes count on its SIMs: the SIM a message is claimed for
    (Pending -> Processed), and each other SIM of this device a failover tried."""
    claims = []
    if (was == ProcessState.PENDING.value and message.state == ProcessState.PROCESSED.value
            and report.sim_number is not None):
        phones = [] if message.is_encrypted else [r.phone_number for r in message.recipients]
        claims.append(usage.Claim(message.user_id, device.device_id, report.sim_number - 1,
                                  phones))
        first_sim = report.sim_number
    claims.extend(usage.Claim(message.user_id, device.device_id, a["sim_number"] - 1)
                  for a in report.attempts
                  if a.get("sim_number") not in (None, first_sim)
                  and a.get("device_id") in (None, device.device_id))
    return claims


def _failover_target(connection: Connection, device: DeviceIdentity, message: MessageRow,
                     report: StateUpdate) -> str | None:
    """The device to hand the message to, when its device says no SIM of it could send it
    (a Failed or waiting report with `failover`): not when the caller pinned the device or
    the SIM, nor once routing.max_attempts are used, nor when nothing else can send."""
    if (not report.failover or message.device_pinned or message.sim_number is not None
            or message.is_hashed or report.state not in (ProcessState.FAILED,
                                                         ProcessState.PENDING)
            or message.state not in (ProcessState.PENDING.value, ProcessState.PROCESSED.value)
            or any(r.state != message.state for r in message.recipients)):
        return None
    attempts = [*(message.attempts or []), *report.attempts]
    if len(attempts) >= failover.attempts_allowed(connection, message.user_id):
        return None
    tried = {device.device_id, *(a["device_id"] for a in attempts if a.get("device_id"))}
    return failover.next_device(connection, message.user_id, tried)


def _move(message: MessageRow, report: StateUpdate, target: str,
          handout_id: str | None = None) -> list[RecipientRow]:
    """The message Pending again, on `target`, with the attempts so far; its recipients.
    `handout_id`: the new id a phone that held it already gets it under."""
    message.device_id = target
    message.state = ProcessState.PENDING.value
    message.sim_used = None
    message.reason = None
    message.handout_id = handout_id
    message.phone_chooses_sim = False
    message.attempts = [*(message.attempts or []), *report.attempts][-50:]
    message.updated_at = utcnow()
    for recipient in message.recipients:
        recipient.state, recipient.error = ProcessState.PENDING.value, None
    return list(message.recipients)


# Called inside the transaction of every change, with the message after the change:
# the webhook outbox hangs here, so an event is stored with the state that causes it.
# Plain (sync) sessions: a batch of reports is written in one stretch, without awaits.
StateListener = Callable[
    [Session, "Message | MessageRow", list[tuple["Recipient | RecipientRow", ProcessState]]], None
]


class Messages:
    def __init__(self, sessions: Sessions, devices: Devices,
                 notify: Callable[[str, list[AcceptedMessage]], None],
                 max_queued: int = 0) -> None:
        self._sessions = sessions
        self.router = PhoneRouter()
        self._devices = devices
        self._notify = notify
        # Pending messages a device may have; 0: no limit
        self._queue_limit = QueueLimit(max_queued) if max_queued else None
        self._batcher = AcceptBatcher(sessions, self._build, self._accepted)
        self.listeners: list[StateListener] = []
        self.committed: list[Callable[[], None]] = []
        self.scheduled: list[Callable[[], None]] = []  # told of messages due later
        # told (device id, message id) of a cancel the device must confirm
        self.cancelling: list[Callable[[str, str], None]] = []
        self._to_hash: set[int] = set()  # finished since the last hashing round
        # told (user id, message ids) after a commit that stored or changed messages:
        # the dashboard's live list follows these
        self.changes: list[Callable[[int, list[str]], None]] = []

    async def enqueue(self, user_id: int, new: NewMessage,
                      active_within_hours: int = 0) -> AcceptedMessage:
        """Store the message and its recipients as Pending, then wake the device."""
        if not new.is_encrypted:  # ciphertext: only the device knows how long it is
            try:
                check_fits(new.text, base64.b64decode(new.data) if new.data else None)
            except TooLong as exc:
                raise BadRequest(str(exc)) from None
        return await self._batcher.submit(user_id, new, new.id or new_id(), active_within_hours,
                                          client_id=new.id is not None)

    async def close(self) -> None:
        await self._batcher.close()

    async def _build(self, session: AsyncSession, request: AcceptJob) -> AcceptedMessage:
        """The Message row for one accepted request (device chosen, SIM checked)."""
        new: NewMessage = request.payload  # type: ignore[assignment]
        target = await self._devices.target(session, request.user_id, new.device_id,
                                            request.active_within_hours)
        if new.sim_number is not None:
            try:
                check_sim_number(new.sim_number, target.slots, target.device_id)
            except InvalidSimNumber as exc:
                raise BadRequest(str(exc)) from None
        if self._queue_limit:
            await self._queue_limit.take_place(session, target.device_id)
        now = utcnow()
        return AcceptedMessage(
            ext_id=request.ext_id,
            user_id=request.user_id,
            device_id=target.device_id,
            device_pinned=new.device_id is not None,
            state=ProcessState.PENDING.value,
            text=new.text,
            data=new.data,
            port=new.port,
            is_encrypted=new.is_encrypted,
            with_delivery_report=new.with_delivery_report,
            priority=new.priority,
            sim_number=new.sim_number,
            valid_until=new.valid_until,
            schedule_at=new.schedule_at,
            states={ProcessState.PENDING.value: now.isoformat()},
            created_at=now,
            updated_at=now,
            recipients=[
                AcceptedRecipient(position=i, phone_number=p, state=ProcessState.PENDING.value)
                for i, p in enumerate(new.phone_numbers)
            ],
        )

    def _accepted(self, messages: list[AcceptedMessage]) -> None:
        """Push the new messages themselves: a device can claim them without a fetch."""
        if log.isEnabledFor(logging.INFO):  # the ids are joined only for a line written
            ids = ", ".join(m.ext_id for m in messages[:5]) + (", ..." if len(messages) > 5
                                                               else "")
            log.info("accepted %d message(s) as Pending: %s", len(messages), ids)
        if self._queue_limit:
            self._queue_limit.accepted(m.device_id for m in messages)
        by_device: dict[str, list[Message]] = {}
        now = utcnow()
        later = False
        for message in messages:
            if message.schedule_at is None or message.schedule_at <= now:
                by_device.setdefault(message.device_id, []).append(message)
            else:
                later = True
        for device_id in by_device:
            self._notify(device_id, by_device[device_id])
        if self.changes:
            by_user: dict[int, list[str]] = {}
            for message in messages:
                by_user.setdefault(message.user_id, []).append(message.ext_id)
            self._tell_changes(by_user)
        if later:
            for callback in self.scheduled:
                callback()

    async def get(self, user_id: int, ext_id: str) -> Message:
        async with self._sessions() as session:
            return await self._get(session, user_id, ext_id)

    async def list(self, user_id: int, query: MessageQuery) -> list[Message]:
        order = Message.pk.desc() if query.newest_first else Message.pk.asc()
        async with self._sessions() as session:
            result = await session.scalars(
                select(Message).where(*_matching(user_id, query)).order_by(order)
                .limit(query.limit).offset(query.offset)
            )
            return list(result)

    async def count(self, user_id: int, query: MessageQuery) -> int:
        """How many messages match, all pages together (the X-Total-Count of a list)."""
        async with self._sessions() as session:
            return await session.scalar(
                select(func.count()).select_from(Message).where(*_matching(user_id, query)))

    async def cancel(self, user_id: int, ext_id: str) -> Message:
        """Cancel a message no device has claimed yet.

        One its device may already hold (it is due, so it was pushed or could be fetched)
        becomes Cancelling and the device is told (MessageCancelled): it ends Cancelled when
        the device confirms, or Sent if the device had sent it already. One still waiting
        for its scheduleAt was never handed out: Cancelled at once.
        """
        async with self._sessions.begin() as session:
            message = await self._get(session, user_id, ext_id)
            state = ProcessState(message.state)
            if state is not ProcessState.PENDING:  # Cancelling, Cancelled too, as the original
                raise Conflict(
                    f"message is not pending: {ext_id!r} is {state.value}, and only Pending"
                    " messages can be cancelled"
                )
            held = message.schedule_at is None or message.schedule_at <= utcnow()
            after = ProcessState.CANCELLING if held else ProcessState.CANCELLED
            changed = [(r, after) for r in message.recipients]
            for recipient in message.recipients:
                recipient.state = after.value
            message.state = after.value
            _stamp(message, after)
            await session.run_sync(self._emit, message, changed)
            if not held:
                self._to_hash.add(message.pk)
        self._after_commit(session.info)
        if held:
            for callback in self.cancelling:
                callback(message.device_id, wire_id(message))
        return message

    async def pending(self, device_id: str, newest_first: bool = True,
                      limit: int = MAX_PENDING_FETCH) -> list[Message]:
        """Messages waiting for the device, highest priority first, and those being
        cancelled (the device confirms it did not send them, or reports what it did)."""
        now = utcnow()
        order = Message.pk.desc() if newest_first else Message.pk.asc()
        async with self._sessions() as session:
            result = await session.scalars(
                select(Message)
                .where(
                    Message.device_id == device_id,
                    Message.state.in_([ProcessState.PENDING.value,
                                       ProcessState.CANCELLING.value]),
                    or_(Message.schedule_at.is_(None), Message.schedule_at <= now),
                )
                .order_by(Message.priority.desc(), order)
                .limit(limit)
            )
            return list(result)

    async def apply_updates(self, device: DeviceIdentity, updates: Iterable[StateUpdate],
                            routes_itself: bool = True) -> dict[str, ProcessState]:
        """Record device reports in one transaction; returns each message's new state.

        Reports never move a state backwards and never overwrite Failed/Cancelled, so a
        repeated or late report is harmless; unknown ids (and other devices') are skipped.
        For a device the server routes (`routes_itself` false: the Android app), a send
        failed for a SIM or network reason goes to its next SIM or another device.
        """
        updates = list(updates)
        if not updates:
            return {}
        # One write transaction in a few statements of Core, that never waits for the
        # event loop: on SQLite the write lock is held for the rows, not loop iterations.
        result, info = await self._sessions.write(
            lambda connection: self._apply_all(connection, device, updates, routes_itself))
        self._after_commit(info)
        for target in dict.fromkeys(info.get("moved", ())):
            self._notify(target, [])  # it fetches what it was given
        return result

    def _apply_all(self, connection: Connection, device: DeviceIdentity,
                   updates: list[StateUpdate],
                   routes_itself: bool = True) -> tuple[dict[str, ProcessState], dict]:
        messages = _read_rows(connection, device, [u.id for u in updates],
                              handed=not routes_itself)
        result: dict[str, ProcessState] = {}
        touched: dict[int, MessageRow] = {}
        recipients: list[RecipientRow] = []
        session: Session | None = None  # for the listeners, made when one is needed
        claims: list[usage.Claim] = []
        moved: list[str] = []  # devices given a message another device could not send
        for report in updates:
            message = messages.get(report.id)
            if message is None:
                continue
            was, first_sim = message.state, message.sim_used
            target = None
            if not routes_itself:
                report, target, note = self._phone_report(connection, device, message, report)
                if note:
                    session = session or Session(bind=connection)
                    Logs.add(session, device.user_id, device.device_id,
                             Entry(Priority.WARN, "routing", note))
                if target == device.device_id:  # back to this phone, for its next SIM
                    recipients.extend(_move(message, report, target, handout_id=new_id()))
                    touched[message.pk] = message
                    moved.append(target)
                    result[report.id] = ProcessState.PENDING
                    continue
            else:
                target = _failover_target(connection, device, message, report)
            if target is not None:
                recipients.extend(_move(message, report, target))
                touched[message.pk] = message
                claims.extend(_claims(device, message, report, was, first_sim))
                moved.append(target)
                result[report.id] = ProcessState.PENDING
                continue
            changed = self._apply(message, report)
            claims.extend(_claims(device, message, report, was, first_sim))
            touched[message.pk] = message
            recipients.extend(r for r, _ in changed)
            if changed and self.listeners:
                session = session or Session(bind=connection)
                self._emit(session, message, changed)
            if _hashable(message):
                self._to_hash.add(message.pk)
            result[report.id] = ProcessState(message.state)
        _write_rows(connection, list(touched.values()), recipients)
        usage.count(connection, claims)
        info: dict = {}
        if session is not None:
            session.flush()
            info = session.info
            session.close()
        if moved:
            info["moved"] = moved
        return result, info

    def _phone_report(self, connection: Connection, device: DeviceIdentity,
                      message: MessageRow, report: StateUpdate
                      ) -> tuple[StateUpdate, str | None, str | None]:
        """What the server's routing makes of a phone's report: the report with the send
        attempt it records, the device the message goes to next (this one: through its
        next SIM), and a log line when a SIM was paused."""
        if report.state is ProcessState.SENT and message.state in (
                ProcessState.PENDING.value, ProcessState.PROCESSED.value):
            self.router.sent(connection, device.device_id, message.sim_used)
            attempt = {"sim_number": message.sim_used, "device_id": device.device_id,
                       "error": None, "at": (report.states.get(ProcessState.SENT.value)
                                             or utcnow()).isoformat()}
            return replace(report, attempts=[*report.attempts, attempt]), None, None
        failed = (report.state is ProcessState.FAILED and not message.is_hashed
                  and message.state in (ProcessState.PENDING.value,
                                        ProcessState.PROCESSED.value)
                  and all(r.state is ProcessState.FAILED for r in report.recipients))
        if not failed:
            return report, None, None
        errors = [r.error for r in report.recipients] or [None]
        attempt, target, note = self.router.failed(
            connection, device.user_id, device.device_id, message, errors,
            report.states.get(ProcessState.FAILED.value) or utcnow())
        report = replace(report, attempts=[*report.attempts, attempt])
        return report, target, note

    async def hand_out(self, device: DeviceIdentity, newest_first: bool = True,
                       limit: int = MAX_PENDING_FETCH) -> list[tuple[Message, int | None]]:
        """What a phone that does not route itself gets from GET /mobile/v1/message: the
        due Pending messages, each with the SIM the server chose for it (None: the phone
        picks), and those being cancelled. What no SIM may take now stays Pending with
        its reason; what no SIM can ever take fails. One write transaction: two workers
        never hand one message to two SIMs."""
        result, info = await self._sessions.write(
            lambda connection: self._hand_out(connection, device, newest_first, limit))
        self._after_commit(info)
        for target in dict.fromkeys(info.get("moved", ())):
            self._notify(target, [])
        return result

    def _hand_out(self, connection: Connection, device: DeviceIdentity, newest_first: bool,
                  limit: int) -> tuple[list[tuple[Message, int | None]], dict]:
        session = Session(bind=connection)
        order = Message.pk.desc() if newest_first else Message.pk.asc()
        now = utcnow()
        found = list(session.scalars(
            select(Message).where(
                Message.device_id == device.device_id,
                Message.state.in_([ProcessState.PENDING.value, ProcessState.CANCELLING.value]),
                or_(Message.schedule_at.is_(None), Message.schedule_at <= now))
            .order_by(Message.priority.desc(), order).limit(limit)
            # two workers answering the phone at once never hand one message out twice
            .with_for_update(skip_locked=True, of=Message)))
        pending = [m for m in found if m.state == ProcessState.PENDING.value]
        fresh = [m for m in pending if m.sim_used is None and not m.phone_chooses_sim]
        closed, decisions = self.router.hand_out(connection, device.user_id,
                                                 device.device_id, fresh)
        handed: list[tuple[Message, int | None]] = []
        moved: list[str] = []
        for message in found:
            if message.state == ProcessState.CANCELLING.value:
                handed.append((message, message.sim_used or message.sim_number))
                continue
            decision = decisions.get(message.ext_id)
            if closed or (decision is not None and decision.hold):
                why = closed or decision.hold  # type: ignore[union-attr]
                if message.reason != why:
                    message.reason = why
                    Logs.add(session, device.user_id, device.device_id, Entry(
                        Priority.WARN, "routing", f"message {message.ext_id} waits: {why}",
                        {"messageId": message.ext_id, "reason": why}))
                continue
            if decision is not None and decision.fail:
                changed = self._apply(message, StateUpdate(  # type: ignore[arg-type]
                    message.ext_id, ProcessState.FAILED, recipients=[
                        RecipientUpdate(r.phone_number, ProcessState.FAILED, decision.fail)
                        for r in message.recipients]))
                self._emit(session, message, changed)  # type: ignore[arg-type]
                self._to_hash.add(message.pk)
                continue
            if decision is not None and decision.move_to:
                message.device_id, message.handout_id = decision.move_to, None
                message.reason = None
                moved.append(decision.move_to)
                continue
            if decision is not None:
                message.reason = None
                message.sim_used = decision.sim_number
                message.phone_chooses_sim = decision.sim_number is None
                message.handed_at = message.updated_at = now
            handed.append((message, message.sim_used))
        session.flush()
        info = session.info
        if moved:
            info["moved"] = moved
        session.close()
        return handed, info

    async def phone_event(self, device: DeviceIdentity, handed_id: str, phone: str | None,
                          sim_number: int | None) -> None:
        """The app's own sms:sent/delivered/failed for a message it was handed without a
        SIM: the SIM it says it used becomes the message's (and is counted), and the
        user's events held for it go out now, with it."""
        info = await self._sessions.write(
            lambda connection: self._phone_event(connection, device, handed_id, phone,
                                                 sim_number))
        self._after_commit(info)

    def _phone_event(self, connection: Connection, device: DeviceIdentity, handed_id: str,
                     phone: str | None, sim_number: int | None) -> dict:
        message = _read_rows(connection, device, [handed_id], handed=True).get(handed_id)
        if message is None or not message.phone_chooses_sim:
            return {}
        if sim_number is not None and message.sim_used is None:
            message.sim_used = sim_number
            phones = [] if message.is_encrypted else [r.phone_number for r in message.recipients]
            usage.count(connection, [usage.Claim(device.user_id, device.device_id,
                                                 sim_number - 1, phones)])
            _write_rows(connection, [message], [])
        released = Webhooks.release_held(connection, device.user_id, message.ext_id, phone,
                                         message.sim_used)
        return {"webhook_events": True} if released else {}

    async def run_hashing(self, interval: float) -> None:
        """Hash finished messages every `interval` seconds, as the original's hashing worker
        (HashingIntervalSeconds): their content and numbers stay readable until then.

        Each process hashes what it finished; a first round takes all that a stopped
        process had left.
        """
        await self.hash_finished(None)
        while True:
            await asyncio.sleep(interval)
            due, self._to_hash = self._to_hash, set()
            if due:
                await self.hash_finished(due)

    async def hash_finished(self, pks: set[int] | None) -> int:
        """Hash the given finished messages (None: every finished one not hashed yet)."""
        done, after = 0, 0
        pending = sorted(pks) if pks is not None else None
        while True:
            async with self._sessions.begin() as session:
                query = select(Message).where(Message.is_hashed.is_(False),
                                              Message.is_encrypted.is_(False))
                if pending is not None:
                    batch, pending = pending[:HASH_BATCH], pending[HASH_BATCH:]
                    if not batch:
                        return done
                    query = query.where(Message.pk.in_(batch))
                else:  # in pages of the primary key: Sent ones awaiting a report stay
                    query = query.where(Message.state.in_(FINISHED_STATES),
                                        Message.pk > after).order_by(Message.pk).limit(HASH_BATCH)
                found = list(await session.scalars(query))
                hashed = {m.pk: {r.phone_number: hashed_number(r.phone_number)
                                 for r in m.recipients} for m in found if _hashable(m)}
                for message in found:
                    if message.pk in hashed:
                        _hash_contents(message)
                        done += 1
                # a failed send's log entry names its number: hashed with the message
                await Logs.hash_numbers(session, [m for m in found if m.pk in hashed], hashed)
            if pending is None:
                if len(found) < HASH_BATCH:
                    return done
                after = found[-1].pk

    @staticmethod
    def _apply(message: MessageRow,
               update: StateUpdate) -> list[tuple[RecipientRow, ProcessState]]:
        """Apply one report; returns the recipients whose state changed."""
        if message.is_hashed:
            return []
        changed: list[tuple[RecipientRow, ProcessState]] = []
        by_number = {r.phone_number: r for r in message.recipients}
        reports = update.recipients or [
            RecipientUpdate(r.phone_number, update.state) for r in message.recipients
        ]
        for report in reports:
            recipient = by_number.get(report.phone_number)
            if recipient is None:
                continue
            before = ProcessState(recipient.state)
            after = advance(before, report.state)
            if after is not before:
                recipient.state = after.value
                if after is ProcessState.FAILED:
                    recipient.error = report.error or "Failed"
                changed.append((recipient, after))
        # the SIM that sent wins over the one first chosen (a failover changes it)
        if update.sim_number is not None and (message.sim_used is None
                                              or update.state is ProcessState.SENT):
            message.sim_used = update.sim_number
        if update.attempts:
            message.attempts = [*(message.attempts or []), *update.attempts][-50:]
        new_state = aggregate([ProcessState(r.state) for r in message.recipients])
        if new_state.value != message.state:
            message.state = new_state.value
            _stamp(message, new_state, update.states.get(new_state.value))
        message.reason = update.reason if new_state is ProcessState.PENDING else None
        message.updated_at = utcnow()
        return changed

    def _emit(self, session: Session, message: Message | MessageRow,
              changed: list[tuple[Recipient | RecipientRow, ProcessState]]) -> None:
        for listener in self.listeners:
            listener(session, message, changed)
        if self.changes:
            session.info.setdefault("changed_messages", {}).setdefault(
                message.user_id, []).append(message.ext_id)

    def _after_commit(self, info: dict) -> None:
        """Wake whoever waits for what the transaction wrote (the webhook dispatcher)."""
        if info.pop("webhook_events", False):
            for callback in self.committed:
                callback()
        self._tell_changes(info.pop("changed_messages", {}))

    def _tell_changes(self, by_user: dict[int, list[str]]) -> None:
        for user_id, ext_ids in by_user.items():
            for callback in self.changes:
                callback(user_id, ext_ids)

    @staticmethod
    async def _get(session: AsyncSession, user_id: int, ext_id: str) -> Message:
        message = await session.scalar(
            select(Message).where(Message.user_id == user_id, Message.ext_id == ext_id)
        )
        if message is None:
            raise NotFound(f"message {ext_id!r} not found")
        return message
