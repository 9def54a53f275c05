"""A stand-in of the SMS Gateway for Android app in private-server mode, for tests and bench.

It speaks what the app speaks, as read from its source (capcom6/android-sms-gateway,
app/src/main/java/me/capcom/smsgateway/): the calls of `modules/gateway/GatewayApi.kt`
and `GatewayService.kt`, dates through Gson's `yyyy-MM-dd'T'HH:mm:ss.SSSXXX`
(`extensions/GsonBuilder.kt`), null fields left out (Gson's default), SSE as OkHttp's
EventSource hands it to `SSEForegroundService.processEvent`, and webhook posts as
`modules/webhooks/WebHooksService.kt` and `plugins/PayloadSingingPlugin.kt` make them.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import re
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx

USER_AGENT = "me.capcom.smsgateway/1.40.0"
# The app's own zone for the dates it writes: a phone is rarely on UTC.
PHONE_ZONE = timezone(timedelta(hours=3))

# modules/events/ExternalEventType.kt: the only names the app routes.
EXTERNAL_EVENTS = {"MessageEnqueued", "WebhooksUpdated", "MessagesExportRequested",
                   "SettingsUpdated", "MessageCancelled"}
# modules/webhooks/domain/WebHookEvent.kt
WEBHOOK_EVENTS = {"sms:received", "sms:sent", "sms:delivered", "sms:failed", "system:ping",
                  "sms:data-received", "mms:received", "mms:downloaded", "app:started",
                  "sms:cancelled"}

_APP_DATE = re.compile(
    r"^(\d{4})-(\d{1,2})-(\d{1,2})T(\d{1,2}):(\d{1,2}):(\d{1,2})\.(\d+)(Z|[+-]\d{2}:\d{2})$")


def parse_app_date(text: str) -> datetime:
    """A date as the app's Gson reads it: SimpleDateFormat("yyyy-MM-dd'T'HH:mm:ss.SSSXXX"),
    lenient, so the fraction is a count of milliseconds whatever its length (".456789"
    is 456,789 ms) and a date without a fraction does not parse at all."""
    match = _APP_DATE.match(text)
    if match is None:
        raise ValueError(f"the app cannot parse the date {text!r}")
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    if zone == "Z":
        tz = UTC
    else:
        sign = -1 if zone[0] == "-" else 1
        tz = timezone(sign * timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6])))
    base = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second),
                    tzinfo=tz)
    return base + timedelta(milliseconds=int(fraction))


def format_app_date(value: datetime, zone: timezone = PHONE_ZONE) -> str:
    """A date as the app's Gson writes it, in the phone's zone."""
    local = value.astimezone(zone)
    offset = local.strftime("%z")
    return (local.strftime("%Y-%m-%dT%H:%M:%S.") + f"{local.microsecond // 1000:03d}"
            + f"{offset[:3]}:{offset[3:]}")


def _gson(value: dict[str, Any]) -> dict[str, Any]:
    """Gson leaves null fields out unless told otherwise; the app never tells it."""
    return {k: v for k, v in value.items() if v is not None}


def _redact(value: str | None) -> str | None:
    """GatewayService.redact: all but the last four characters become stars."""
    if value is None:
        return None
    return "*" * (len(value) - 4) + value[-4:] if len(value) > 4 else "****"


class SettingsImportFailed(ValueError):
    """The app's SettingsService.update threw: it imports none of the settings."""


def _number(value: Any) -> int | None:
    """`value?.toString()?.toFloat()?.toInt()`: a number or a numeric string, else the
    NumberFormatException the import turns into a failure."""
    if value is None:
        return None
    try:
        return int(float(str(value)))
    except ValueError:
        raise ValueError(f"For input string: \"{value}\"") from None


def _enum(value: Any, names: set[str]) -> None:
    if value is not None and str(value) not in names:
        raise ValueError(f"No enum constant {value}")


def app_import(settings: dict[str, Any]) -> None:
    """What v1.68.0's settings import does with GET /settings: each group's `import()`
    (modules/*/…Settings.kt) throws on a value it refuses, and SettingsService.update
    then fails as a whole ("Failed to import <group>: ...")."""
    checks = {
        "messages": {
            "send_interval_min": _number, "send_interval_max": _number,
            "limit_period": lambda v: _enum(v, {"Disabled", "PerMinute", "Per30Minutes",
                                                "PerHour", "PerDay"}),
            "limit_value": lambda v: _at_least(v, 0, "Limit value must be >= 0"),
            "sim_selection_mode": lambda v: _enum(v, {"OSDefault", "RoundRobin", "Random"}),
            "processing_order": lambda v: _enum(v, {"LIFO", "FIFO"}),
            "log_lifetime_days": lambda v: _at_least(v, 1, "Log lifetime days must be >= 1"),
        },
        "webhooks": {"retry_count": lambda v: _at_least(v, 1, "Retry count must be >= 1")},
        "ping": {"interval_seconds": _number},
        "logs": {"lifetime_days": _number},
        "gateway": {
            "cloud_url": lambda v: _https(v),
            "notification_channel": lambda v: _enum(v, {"AUTO", "SSE_ONLY"}),
        },
        "encryption": {},
    }
    for group, keys in settings.items():
        if group not in checks:
            continue  # a group the app does not know is skipped
        try:
            if not isinstance(keys, dict):
                raise ValueError(f"{keys!r} is not a map")
            for key, value in keys.items():
                check = checks[group].get(key)
                if check is not None:
                    check(value)
        except ValueError as exc:
            raise SettingsImportFailed(f"Failed to import {group}: {exc}") from None


def _at_least(value: Any, low: int, message: str) -> None:
    number = _number(value)
    if number is not None and number < low:
        raise ValueError(message)


def _https(value: Any) -> None:
    if value is not None and not str(value).startswith("https://"):
        raise ValueError("url must start with https://")


class UnknownEvent(Exception):
    """An SSE event name the app cannot route (it logs "Unknown event type")."""


@dataclass
class Sim:
    slot_index: int
    phone_number: str | None = None
    carrier_name: str | None = "simgate Mobile"
    iccid: str | None = None


# SmsManager result texts as the app writes them into a recipient's error
# (MessagesService.resultToErrorMessage, after "Send result: ").
APP_ERRORS = {
    "RESULT_ERROR_NO_SERVICE": "Failed because service is currently unavailable",
    "RESULT_ERROR_RADIO_OFF": "Failed because radio was explicitly turned off",
    "RESULT_ERROR_GENERIC_FAILURE": "Generic failure cause",
    "RESULT_ERROR_LIMIT_EXCEEDED": "Failed because we reached the sending queue limit",
    "RESULT_ERROR_FDN_CHECK_FAILURE": "Failed because FDN is enabled",
}


def app_error(code: str) -> str:
    """A recipient's error as the app reports a failed send."""
    return f"Send result: {code} ({APP_ERRORS[code]})"


@dataclass
class Sent:
    """One send the stand-in made: the id it was handed, the number, the SIM (1-based;
    None: the OS default, which the app does not know) and the outcome."""

    id: str
    phone: str
    sim_number: int | None
    state: str
    error: str | None = None


@dataclass
class Phone:
    """The app, signed in to `api_url` (".../mobile/v1", as typed in its settings)."""

    api_url: str
    private_token: str | None = None
    verify: Any = True
    name: str = "samsung/a52qnseea"
    sims: list[Sim] = field(default_factory=lambda: [
        Sim(0, "+12025550111", iccid="8901260123456789012"), Sim(1, "+12025550112")])
    device_id: str | None = None
    token: str | None = None
    login: str | None = None
    password: str | None = None
    hooks: list[dict[str, str]] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    answers: list[httpx.Response] = field(default_factory=list)  # of the last webhook fired
    comments: int = 0  # SSE comment lines read (keep-alives), which the app skips
    # how the app picks a SIM for a message handed without one (its own setting:
    # MessagesService.selectSimNumber): OSDefault leaves it to Android, unknown to the app
    local_mode: str = "OSDefault"
    failing: dict[int, str] = field(default_factory=dict)  # SIM number -> RESULT_ code
    held: set[str] = field(default_factory=set)  # ids it holds: handed again, skipped
    sent: list[Sent] = field(default_factory=list)
    zone: timezone = PHONE_ZONE  # the phone's own zone, in which it writes its dates
    registered: httpx.Response | None = None  # the answer to POST /device

    def __post_init__(self) -> None:
        self.http = httpx.AsyncClient(verify=self.verify, timeout=30,
                                      headers={"User-Agent": USER_AGENT})

    async def close(self) -> None:
        await self.http.aclose()

    def _bearer(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    # -- registration (GatewayService.registerDevice) --------------------------------

    async def register(self, *, code: str | None = None, login: str | None = None,
                       password: str | None = None, push_token: str | None = None) -> dict:
        """Join as the app does: with a code, with a login, or with the private token."""
        body = {"name": self.name, "pushToken": push_token, "simCards": self._sim_cards()}
        if code is not None:
            headers = {"Authorization": f"Code {code}"}
        elif login is not None:
            pair = base64.b64encode(f"{login}:{password or ''}".encode()).decode()
            headers = {"Authorization": f"Basic {pair}"}
        elif self.private_token is not None:
            headers = {"Authorization": f"Bearer {self.private_token}"}
        else:
            headers = {}
        response = await self.http.post(f"{self.api_url}/device", json=_gson(body),
                                        headers=headers)
        response.raise_for_status()  # the app's client has expectSuccess = true
        self.registered = response
        answer = response.json()
        self.device_id, self.token = answer["id"], answer["token"]
        self.login, self.password = answer["login"], answer.get("password")
        return answer

    def _sim_cards(self, masked: bool = True) -> list[dict[str, Any]]:
        """SubscriptionsHelper.getActiveSimCards; GatewayService masks them (`redact`)
        for the server, OrchestratorService's app:started sends them whole."""
        hide = _redact if masked else (lambda value: value)
        return [_gson({"slotIndex": s.slot_index, "simNumber": s.slot_index + 1,
                       "phoneNumber": hide(s.phone_number),
                       "carrierName": hide(s.carrier_name),
                       "iccid": hide(s.iccid)}) for s in self.sims]

    async def update(self, push_token: str | None = None, *, sims: bool = False,
                     device_id: str | None = None) -> httpx.Response:
        """PATCH /device, as at each start and on a new FCM token (with `sims`, its SIM
        cards masked as the app sends them; `device_id` to send another id)."""
        body = {"id": device_id or self.device_id, "pushToken": push_token,
                "simCards": self._sim_cards() if sims else None}
        response = await self.http.patch(f"{self.api_url}/device", headers=self._bearer(),
                                         json=_gson(body))
        response.raise_for_status()
        return response

    async def started(self) -> list[httpx.Response]:
        """The app starts (OrchestratorService): app:started with its SIM cards whole."""
        return await self.fire("app:started", {"simCards": self._sim_cards(masked=False)})

    # -- messages (GatewayService.getNewMessages / sendState) ------------------------

    async def messages(self, order: str = "lifo") -> list[dict[str, Any]]:
        """GET /message, each date read by the app's rule (a failure is the app's)."""
        response = await self.http.get(f"{self.api_url}/message", params={"order": order},
                                       headers=self._bearer())
        response.raise_for_status()
        items = response.json()
        for item in items:
            for key in ("validUntil", "scheduleAt", "createdAt"):
                if item.get(key) is not None:
                    item[key] = parse_app_date(item[key])
        return items

    async def report(self, message_id: str, phones: list[str], state: str,
                     error: str | None = None) -> None:
        """PATCH /message with one item, as SendStateWorker does after a state change."""
        now = format_app_date(datetime.now(UTC), self.zone)
        body = [{
            "id": message_id, "state": state,
            "recipients": [_gson({"phoneNumber": p, "state": state, "error": error})
                           for p in phones],
            "states": {state: now},
        }]
        response = await self.http.patch(f"{self.api_url}/message", json=body,
                                         headers=self._bearer())
        response.raise_for_status()

    async def process(self, order: str = "lifo") -> list[Sent]:
        """Fetch and send as the app does (getNewMessages, then SendMessagesWorker): each
        new id once, through the simNumber it came with, else its own choice; report the
        states with PATCH /message and fire its own sms:sent/sms:failed events (with the
        SIM it knows: none under OSDefault). Returns the sends made now."""
        made = []
        for item in await self.messages(order):
            if item["id"] in self.held or item.get("state") == "Cancelling":
                continue
            self.held.add(item["id"])
            sim = item.get("simNumber") or self._own_choice(item["id"])
            await self.report(item["id"], item["phoneNumbers"], "Processed")
            code = self.failing.get(sim or 1)
            state, error = ("Failed", app_error(code)) if code else ("Sent", None)
            for phone in item["phoneNumbers"]:
                made.append(Sent(item["id"], phone, sim, state, error))
            await self.report(item["id"], item["phoneNumbers"], state, error)
            for phone in item["phoneNumbers"]:
                await self.fire("sms:failed" if error else "sms:sent", {
                    "messageId": item["id"], "phoneNumber": phone, "simNumber": sim,
                    **({"failedAt": format_app_date(datetime.now(UTC)), "reason": error}
                       if error else {"sentAt": format_app_date(datetime.now(UTC))})})
        self.sent.extend(made)
        return made

    def _own_choice(self, message_id: str) -> int | None:
        """selectSimNumber without a simNumber: Android's default under OSDefault (the
        app writes no SIM), else its own rotation over its SIMs."""
        if self.local_mode == "OSDefault":
            return None
        slots = sorted(s.slot_index for s in self.sims)
        if self.local_mode == "Random":
            return secrets.choice(slots) + 1
        return slots[len(self.held) % len(slots)] + 1

    # -- push ------------------------------------------------------------------------

    async def events(self, opened: asyncio.Event | None = None
                     ) -> AsyncIterator[tuple[str, str]]:
        """GET /events (SSEManager): (type, data) as the app routes them; an event
        without a name is MessageEnqueued, an unknown name is an error. `opened` is set at
        the first line the server writes (for tests to know the stream is listening)."""
        async with self.http.stream("GET", f"{self.api_url}/events", headers=self._bearer(),
                                    timeout=httpx.Timeout(30, read=3600)) as response:
            response.raise_for_status()
            name: str | None = None
            data: list[str] = []
            async for line in response.aiter_lines():
                if opened is not None:
                    opened.set()
                if line == "":
                    if data:
                        kind = name or "MessageEnqueued"
                        if kind not in EXTERNAL_EVENTS:
                            raise UnknownEvent(f"Unknown event type: {name}")
                        yield kind, "\n".join(data)
                    name, data = None, []
                elif line.startswith(":"):
                    self.comments += 1
                elif line.startswith("event:"):
                    name = line[6:].strip()
                elif line.startswith("data:"):
                    data.append(line[5:].lstrip())

    # -- webhooks and settings (WebhooksUpdateWorker, SettingsUpdateWorker) ----------

    async def sync_webhooks(self) -> list[dict[str, str]]:
        response = await self.http.get(f"{self.api_url}/webhooks", headers=self._bearer())
        response.raise_for_status()
        self.hooks = [h for h in response.json() if h["event"] in WEBHOOK_EVENTS]
        return self.hooks

    async def sync_settings(self) -> dict[str, Any]:
        response = await self.http.get(f"{self.api_url}/settings", headers=self._bearer())
        response.raise_for_status()
        settings = response.json()
        app_import(settings)  # a refused value: the app keeps its old settings
        self.settings = settings
        return self.settings

    async def fire(self, event: str, payload: dict[str, Any]) -> list[httpx.Response]:
        """WebHooksService.emit: one POST per synced webhook of the event, signed with
        webhooks.signing_key when set (PayloadSingingPlugin)."""
        answers = []
        for hook in [h for h in self.hooks if h["event"] == event]:
            body = json.dumps({"id": secrets.token_urlsafe(15), "webhookId": hook["id"],
                               "event": event, "deviceId": self.device_id,
                               "payload": _gson(payload)})
            headers = {"Content-Type": "application/json"}
            key = (self.settings.get("webhooks") or {}).get("signing_key")
            if key:
                timestamp = str(int(time.time()))
                headers["X-Timestamp"] = timestamp
                headers["X-Signature"] = hmac.new(key.encode(), (body + timestamp).encode(),
                                                  hashlib.sha256).hexdigest()
            answers.append(await self.http.post(hook["url"], content=body, headers=headers))
        self.answers = answers
        return answers

    async def receive_sms(self, sender: str, text: str, sim_number: int = 1,
                          at: datetime | None = None, message_id: str | None = None) -> str:
        """An SMS arrives (ReceiverService): sms:received with the app's payload; returns
        its messageId (the app's hash of the message; the same again on an export)."""
        message_id = message_id or f"{secrets.randbits(32):x}"
        await self.fire("sms:received", {
            "message": text, "receivedAt": format_app_date(at or datetime.now(UTC), self.zone),
            "messageId": message_id, "sender": sender,
            "recipient": self.sims[sim_number - 1].phone_number,
            "simNumber": sim_number, "phoneNumber": sender,
        })
        return message_id


    async def receive_mms(self, sender: str, parts: list[tuple[str, str | None, bytes]],
                          body: str | None = None, subject: str | None = None,
                          sim_number: int = 1, at: datetime | None = None,
                          mms_id: int | None = None) -> str:
        """An MMS arrives (ReceiverService): mms:received for its WAP push, then, once the
        phone has downloaded it, mms:downloaded with its text and its parts, each
        (content type, name, bytes) sent in base64 as MmsContentReader reads them.
        Returns the downloaded message's id (the app's MMS row number)."""
        when = format_app_date(at or datetime.now(UTC), self.zone)
        recipient = self.sims[sim_number - 1].phone_number
        transaction = f"T{secrets.randbits(40):x}"
        await self.fire("mms:received", {
            "messageId": transaction, "transactionId": transaction, "subject": subject,
            "size": sum(len(data) for _, _, data in parts), "contentClass": None,
            "receivedAt": when, "sender": sender, "recipient": recipient,
            "simNumber": sim_number, "phoneNumber": sender,
        })
        message_id = str(mms_id if mms_id is not None else secrets.randbelow(10**6))
        await self.fire("mms:downloaded", {
            "messageId": message_id, "sender": sender, "recipient": recipient,
            "simNumber": sim_number, "phoneNumber": sender, "body": body,
            "subject": subject, "receivedAt": when,
            "attachments": [{"partId": 100 + n, "contentType": content_type, "name": name,
                             "size": len(data), "data": base64.b64encode(data).decode()}
                            for n, (content_type, name, data) in enumerate(parts)],
        })
        return message_id


class Listening:
    """The phone's event stream read in the background, event by event."""

    def __init__(self, phone: Phone) -> None:
        self._phone = phone
        self.events: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
        self.opened = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Listening:
        self._task = asyncio.create_task(self._read())
        await asyncio.wait_for(self.opened.wait(), 20)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _read(self) -> None:
        async for event in self._phone.events(self.opened):
            self.events.put_nowait(event)

    async def next(self, wait: float = 20.0) -> tuple[str, str]:
        """The next event; the reader's own failure (an unknown event) is raised here."""
        getter = asyncio.ensure_future(self.events.get())
        assert self._task is not None
        done, _ = await asyncio.wait({getter, self._task}, timeout=wait,
                                     return_when=asyncio.FIRST_COMPLETED)
        if getter in done:
            return getter.result()
        getter.cancel()
        if self._task in done:
            self._task.result()
            raise AssertionError("the event stream ended")
        raise AssertionError(f"no event in {wait} s")
