"""The Twilio-compatible Messages API as a use case: send, follow, list and cancel
messages the way Twilio's SDKs expect, on the user's own SIMs.

A message sent through this door is an ordinary simgate message (states, webhooks and
the dashboard as usual) whose id is 32 hex digits: its Twilio sid is "SM" and that id,
so the sid maps back without a lookup. Beside it a row keeps the account it was sent as,
the `From` asked for and where its status callbacks go.
"""

from __future__ import annotations

import base64
import hashlib
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session

from simgate.domain.phones import InvalidPhoneNumber, normalize
from simgate.domain.states import ProcessState
from simgate.services.errors import ServiceError
from simgate.services.messages import Messages, NewMessage
from simgate.sms.pdu import TooLong, check_fits, segment_count
from simgate.store.db import Sessions
from simgate.store.doors import TwilioCallback, TwilioMessage
from simgate.store.models import Device, Message, Recipient, SimCard
from simgate.webhooks.urls import ForbiddenUrl, check_form

API_VERSION = "2010-04-01"
_OUR_ID = re.compile(r"[0-9a-f]{32}")
_SID = re.compile(r"SM([0-9a-f]{32})")
MAX_VALIDITY_SECONDS = 36_000  # Twilio's bounds for ValidityPeriod
UNKNOWN_ERROR = 30008  # Twilio's "Unknown error": the reason is in error_message


class TwilioRefusal(Exception):
    """A refusal as Twilio words it: its error code, a text, the HTTP status."""

    def __init__(self, code: int, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


# simgate's refusals by status, as Twilio's generic codes of the same meaning
_GENERIC_CODES = {400: 20001, 401: 20003, 403: 20003, 404: 20404, 409: 20409, 429: 20429,
                  503: 20503}


def refusal_of(exc: ServiceError) -> TwilioRefusal:
    return TwilioRefusal(_GENERIC_CODES.get(exc.status, 20500), exc.message, exc.status)


def sid_of(ext_id: str) -> str:
    return "SM" + ext_id


def ext_id_of(sid: str) -> str:
    """The simgate id behind a message sid; 20404 for anything that is not one."""
    match = _SID.fullmatch(sid)
    if match is None:
        raise TwilioRefusal(20404, f"The requested resource /Messages/{sid}.json was not"
                                   " found: a message sid is SM and 32 hex digits", 404)
    return match.group(1)


def twilio_status(state: str, states: dict[str, str], schedule_at: datetime | None) -> str:
    """simgate's state in Twilio's words; a failure after the SIM sent is `undelivered`."""
    match ProcessState(state):
        case ProcessState.PENDING:
            due = schedule_at is None or schedule_at <= datetime.now(UTC)
            return "queued" if due else "scheduled"
        case ProcessState.PROCESSED:
            return "sending"
        case ProcessState.SENT:
            return "sent"
        case ProcessState.DELIVERED:
            return "delivered"
        case ProcessState.FAILED:
            return "undelivered" if ProcessState.SENT.value in states else "failed"
        case _:  # Cancelling, Cancelled
            return "canceled"


class Secrets:
    """AuthTokens kept to sign status callbacks, encrypted with the server's secret."""

    def __init__(self, server_key: str) -> None:
        digest = hashlib.sha256(b"twilio-callbacks:" + server_key.encode()).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(digest))

    def seal(self, value: str) -> str:
        return self._fernet.encrypt(value.encode()).decode()

    def open(self, sealed: str) -> str | None:
        try:
            return self._fernet.decrypt(sealed.encode()).decode()
        except InvalidToken:  # the server's secret changed: the callback goes unsigned
            return None


@dataclass(frozen=True)
class TwilioSend:
    """A POST to Messages.json, its parameters still as given."""

    to: str | None
    body: str | None
    sender: str | None = None
    messaging_service_sid: str | None = None
    status_callback: str | None = None
    validity_period: str | None = None
    send_at: str | None = None
    schedule_type: str | None = None


@dataclass(frozen=True)
class TwilioView:
    """One message as the Twilio resource describes it (plain Python names)."""

    sid: str
    account_sid: str
    to: str
    sender: str | None
    body: str | None
    status: str
    num_segments: int
    error_code: int | None
    error_message: str | None
    created_at: datetime
    updated_at: datetime
    sent_at: datetime | None
    messaging_service_sid: str | None = None


def _parse_time(value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise TwilioRefusal(35111, f"SendAt {value!r} is not an ISO 8601 date and time:"
                                   " write it as 2026-12-24T18:00:00Z") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


class TwilioDoor:
    def __init__(self, sessions: Sessions, messages: Messages, secrets: Secrets,
                 region: str, allow_private: bool) -> None:
        self._sessions = sessions
        self._messages = messages
        self._secrets = secrets
        self._region = region
        self._allow_private = allow_private

    # -- sending ----------------------------------------------------------------------

    async def send(self, user_id: int, account_sid: str, auth_token: str,
                   request: TwilioSend) -> TwilioView:
        """Accept a message: stored Pending as any other, pinned to the SIM whose number
        is `From`, or left to the user's rotation without one (or with a
        MessagingServiceSid)."""
        if not request.to:
            raise TwilioRefusal(21604, "A 'To' phone number is required.")
        try:
            to = normalize(request.to, self._region)
        except InvalidPhoneNumber as exc:
            raise TwilioRefusal(21211, f"The 'To' number {request.to} is not a valid phone"
                                       f" number: {exc}") from None
        if not request.body:
            raise TwilioRefusal(21602, "Message body is required: give Body, the text to send.")
        try:
            check_fits(request.body)
        except TooLong as exc:
            raise TwilioRefusal(21617, f"The message body is too long to send: {exc}") from None
        device_id, sim_number, sender = None, None, None
        if request.sender and not request.messaging_service_sid:
            device_id, sim_number, sender = await self._sim_of(user_id, request.sender)
        if request.status_callback:
            try:
                check_form(request.status_callback, self._allow_private)
            except ForbiddenUrl as exc:
                raise TwilioRefusal(21609, f"The StatusCallback URL"
                                           f" {request.status_callback} is not allowed:"
                                           f" {exc}") from None
        valid_until = self._valid_until(request.validity_period)
        schedule_at = self._schedule_at(request)
        ext_id = uuid.uuid4().hex
        async with self._sessions.begin() as session:  # before the message: never without it
            session.add(TwilioMessage(
                user_id=user_id, ext_id=ext_id, account_sid=account_sid, sender=sender,
                callback_url=request.status_callback or None,
                secret=self._secrets.seal(auth_token) if request.status_callback else None))
        try:
            await self._messages.enqueue(user_id, NewMessage(
                phone_numbers=[to], text=request.body, sim_number=sim_number,
                device_id=device_id, valid_until=valid_until, schedule_at=schedule_at,
                id=ext_id))
        except ServiceError as exc:
            async with self._sessions.begin() as session:
                row = await session.get(TwilioMessage, (user_id, ext_id))
                if row is not None:
                    await session.delete(row)
            raise refusal_of(exc) from None
        return await self.get(user_id, ext_id)

    async def _sim_of(self, user_id: int, sender: str) -> tuple[str, int, str]:
        """The device and SIM (1-based) whose number is `sender`."""
        try:
            wanted = normalize(sender, self._region)
        except InvalidPhoneNumber:
            wanted = None
        numbers: list[str] = []
        async with self._sessions() as session:
            rows = await session.execute(
                select(SimCard.device_id, SimCard.slot_index, SimCard.phone_number)
                .join(Device, Device.id == SimCard.device_id)
                .where(Device.user_id == user_id, Device.deleted_at.is_(None),
                       SimCard.phone_number.is_not(None))
                .order_by(Device.last_seen.desc()))
            for device_id, slot, number in rows:
                try:
                    own = normalize(number, self._region)
                except InvalidPhoneNumber:
                    continue
                if own == wanted:
                    return device_id, slot + 1, own
                numbers.append(own)
        known = ", ".join(numbers) or "none of your SIMs has told its number"
        raise TwilioRefusal(21606, f"The From phone number {sender} is not the number of"
                                   f" one of your SIMs ({known}): give one of those, or no"
                                   " From for your rotation.")

    @staticmethod
    def _valid_until(period: str | None) -> datetime | None:
        if period is None or period == "":
            return None
        if not period.isdigit() or not 1 <= int(period) <= MAX_VALIDITY_SECONDS:
            raise TwilioRefusal(21623, f"ValidityPeriod {period!r} must be a whole number of"
                                       f" seconds from 1 to {MAX_VALIDITY_SECONDS}.")
        return datetime.now(UTC) + timedelta(seconds=int(period))

    @staticmethod
    def _schedule_at(request: TwilioSend) -> datetime | None:
        if not request.send_at:
            if request.schedule_type:
                raise TwilioRefusal(35111, "ScheduleType needs SendAt, the time to send at.")
            return None
        if request.schedule_type != "fixed":
            raise TwilioRefusal(35111, "SendAt needs ScheduleType=fixed.")
        at = _parse_time(request.send_at)
        if at <= datetime.now(UTC):
            raise TwilioRefusal(35114, f"SendAt {request.send_at} is in the past: give a"
                                       " time to come.")
        return at

    # -- reading ----------------------------------------------------------------------

    async def get(self, user_id: int, ext_id: str) -> TwilioView:
        views = await self._views(user_id, [Message.ext_id == ext_id], 1, 0)
        if not views:
            raise TwilioRefusal(20404, f"The requested resource /Messages/{sid_of(ext_id)}.json"
                                       " was not found", 404)
        return views[0]

    async def page(self, user_id: int, to: str | None, sender: str | None,
                   size: int, page: int) -> tuple[list[TwilioView], int]:
        """One page of the messages sent through this door, newest first, and how many
        there are in all."""
        conditions = []
        if to:
            conditions.append(Recipient.phone_number == self._number(to, "To"))
        if sender:
            conditions.append(TwilioMessage.sender == self._number(sender, "From"))
        async with self._sessions() as session:
            total = await session.scalar(self._joined(select(func.count()), user_id)
                                         .where(*conditions))
        return await self._views(user_id, conditions, size, page * size), total or 0

    def _number(self, value: str, name: str) -> str:
        try:
            return normalize(value, self._region)
        except InvalidPhoneNumber as exc:
            raise TwilioRefusal(21211 if name == "To" else 21212,
                                f"The '{name}' number {value} is not a valid phone number:"
                                f" {exc}") from None

    @staticmethod
    def _joined(query: Any, user_id: int) -> Any:
        return (query.select_from(Message)
                .join(TwilioMessage, and_(TwilioMessage.user_id == Message.user_id,
                                          TwilioMessage.ext_id == Message.ext_id))
                .join(Recipient, and_(Recipient.message_pk == Message.pk,
                                      Recipient.position == 0))
                .where(Message.user_id == user_id))

    async def _views(self, user_id: int, conditions: list[Any], limit: int,
                     offset: int) -> list[TwilioView]:
        async with self._sessions() as session:
            rows = (await session.execute(
                self._joined(select(Message, TwilioMessage, Recipient), user_id)
                .where(*conditions).order_by(Message.pk.desc()).limit(limit).offset(offset)
            )).all()
            numbers: dict[tuple[str, int], str | None] = {}
            devices = {m.device_id for m, _, _ in rows}
            if devices:
                for device_id, slot, number in await session.execute(
                        select(SimCard.device_id, SimCard.slot_index, SimCard.phone_number)
                        .where(SimCard.device_id.in_(devices))):
                    numbers[(device_id, slot + 1)] = number
        return [self._view(m, t, r, numbers) for m, t, r in rows]

    def _view(self, message: Message, twilio: TwilioMessage, recipient: Recipient,
              numbers: dict[tuple[str, int], str | None]) -> TwilioView:
        status = twilio_status(message.state, message.states, message.schedule_at)
        sender = twilio.sender
        if message.sim_used is not None:
            sender = numbers.get((message.device_id, message.sim_used)) or sender
        failed = status in ("failed", "undelivered")
        sent = message.states.get(ProcessState.SENT.value)
        return TwilioView(
            sid=sid_of(message.ext_id), account_sid=twilio.account_sid,
            to=recipient.phone_number, sender=sender,
            body=None if message.is_hashed else message.text, status=status,
            num_segments=_segments(message.text if not message.is_hashed else None),
            error_code=UNKNOWN_ERROR if failed else None,
            error_message=(recipient.error or "Failed") if failed else None,
            created_at=message.created_at, updated_at=message.updated_at,
            sent_at=datetime.fromisoformat(sent) if sent else None)

    async def cancel(self, user_id: int, ext_id: str) -> TwilioView:
        await self.get(user_id, ext_id)  # 20404 for another user's message
        try:
            await self._messages.cancel(user_id, ext_id)
        except ServiceError as exc:
            raise refusal_of(exc) from None
        return await self.get(user_id, ext_id)

    # -- status callbacks -------------------------------------------------------------

    def on_message_change(self, session: Session, message: Any,
                          changed: list[tuple[Any, ProcessState]]) -> None:
        """Messages listener: a status callback into the outbox for each change of a
        message sent through this door with a StatusCallback, in the same transaction."""
        if not _OUR_ID.fullmatch(message.ext_id):
            return  # not sent through this door: no lookup on everyone's path
        reported = [(r, s) for r, s in changed
                    if s in (ProcessState.SENT, ProcessState.DELIVERED, ProcessState.FAILED,
                             ProcessState.CANCELLED)]
        if not reported:
            return
        with session.no_autoflush:
            row = session.execute(
                select(TwilioMessage.account_sid, TwilioMessage.sender,
                       TwilioMessage.callback_url)
                .where(TwilioMessage.user_id == message.user_id,
                       TwilioMessage.ext_id == message.ext_id)).first()
            if row is None or not row.callback_url:
                return
            sender = row.sender
            if message.sim_used is not None:
                sender = session.scalar(
                    select(SimCard.phone_number).where(
                        SimCard.device_id == message.device_id,
                        SimCard.slot_index == message.sim_used - 1)) or sender
        for recipient, state in reported:
            states = message.states if state is ProcessState.FAILED else {}
            status = twilio_status(state.value, states, None)
            params = {"MessageSid": sid_of(message.ext_id), "SmsSid": sid_of(message.ext_id),
                      "MessageStatus": status, "SmsStatus": status,
                      "To": recipient.phone_number, "From": sender or "",
                      "AccountSid": row.account_sid, "ApiVersion": API_VERSION}
            if status in ("failed", "undelivered"):
                params["ErrorCode"] = str(UNKNOWN_ERROR)
            session.add(TwilioCallback(user_id=message.user_id, ext_id=message.ext_id,
                                       params=params))
        session.info["webhook_events"] = True  # wakes the deliveries after the commit


def _segments(text: str | None) -> int:
    if not text:
        return 1
    try:
        return segment_count(text)
    except (ValueError, TypeError):
        return 1
