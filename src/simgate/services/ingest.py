"""simgate as the hub of an Android phone's events.

The Android app does not post what it receives to the server: it fires its events
(sms:received, system:ping, ...) straight at the webhooks it downloads from
GET /mobile/v1/webhooks. So simgate hands such a phone its own ingest hooks, one secret
URL per device, instead of the user's. What arrives there is stored (an SMS once per id
the app gave it) and delivered to the user's webhooks by simgate itself: durable,
signed, retried, with the SIM, and not a second time from the phone.

Every post is signed with the user's webhook signing key (every user has one), and acted
on once by the event id the phone gave it: a post replayed within the signature's window
is answered as before and changes nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urlsplit

from sqlalchemy import delete
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from simgate.services.devices import DeviceIdentity, Devices
from simgate.services.webhooks import FirstTime, WebhookEvent
from simgate.store.models import IngestedEvent, utcnow
from simgate.webhooks.signing import verify

# How the server tells its own agent from an Android app (they get different webhooks).
AGENT_USER_AGENT = "simgate-agent/"
# The events a phone fires that simgate takes in.
INGEST_EVENTS = (WebhookEvent.SMS_RECEIVED, WebhookEvent.SMS_DATA_RECEIVED,
                 WebhookEvent.MMS_RECEIVED, WebhookEvent.MMS_DOWNLOADED,
                 WebhookEvent.SYSTEM_PING, WebhookEvent.APP_STARTED,
                 WebhookEvent.SMS_SENT, WebhookEvent.SMS_DELIVERED, WebhookEvent.SMS_FAILED)
# How far an X-Timestamp may be from our clock (the app signs each attempt afresh).
SIGNATURE_WINDOW_SECONDS = 15 * 60
# Event ids are kept past the window (clocks differ), then forgotten: a post that old is
# refused by its signature.
SEEN_FOR = timedelta(seconds=2 * SIGNATURE_WINDOW_SECONDS)


@dataclass(frozen=True)
class IngestHook:
    id: str
    url: str
    event: str


class Ingest:
    def __init__(self, key: str, devices: Devices) -> None:
        self._key = hmac.new(key.encode(), b"simgate ingest hooks", hashlib.sha256).digest()
        self._devices = devices
        # the ingest URL this process last handed each device (health tells of one the
        # app refuses)
        self.handed: dict[str, str] = {}

    def secret(self, device_id: str) -> str:
        """The part of a device's ingest URL that only the server and the device know."""
        return hmac.new(self._key, device_id.encode(), hashlib.sha256).hexdigest()[:40]

    def hooks(self, api_url: str, device_id: str) -> list[IngestHook]:
        """What a phone gets as its webhooks: one per event, all at its own secret URL
        under the API URL it uses (".../mobile/v1", so it reaches them the same way)."""
        url = f"{api_url.rstrip('/')}/ingest/{device_id}/{self.secret(device_id)}"
        self.handed[device_id] = url
        return [IngestHook(f"simgate-{event.value.replace(':', '-')}", url, event.value)
                for event in INGEST_EVENTS]

    async def device(self, device_id: str, secret: str) -> DeviceIdentity | None:
        """The device whose ingest URL this is, or None (unknown, removed or a wrong
        secret)."""
        if not hmac.compare_digest(secret, self.secret(device_id)):
            return None
        return await self._devices.identity_of(device_id)


def signed(key: str, body: bytes, timestamp: str | None, signature: str | None) -> bool:
    """The app's signature (PayloadSingingPlugin) is sms-gate.app's: hex HMAC-SHA256 of
    the body followed by X-Timestamp, with the user's webhooks.signing_key."""
    return verify(key, body, timestamp or "", (signature or "").lower(),
                  tolerance_seconds=SIGNATURE_WINDOW_SECONDS)


def refused_by_the_app(url: str) -> bool:
    """The app's release builds allow cleartext HTTP only to 127.0.0.1
    (res/xml/network_security_config.xml): a plain http:// URL to any other host is
    dropped, after its retries, with every event posted to it."""
    parts = urlsplit(url)
    if parts.scheme != "http":
        return False
    host = parts.hostname or ""
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host != "localhost"
def first_post(device_id: str, event_id: str) -> FirstTime:
    """Whether a phone's event id is new, recorded in the caller's transaction (so the
    event and its record commit together); the device's ids past SEEN_FOR are dropped."""

    async def first(session: AsyncSession) -> bool:
        await session.execute(delete(IngestedEvent).where(
            IngestedEvent.device_id == device_id, IngestedEvent.seen_at < utcnow() - SEEN_FOR))
        dialect = postgresql if session.bind.dialect.name == "postgresql" else sqlite
        added = await session.execute(dialect.insert(IngestedEvent).values(
            device_id=device_id, event_id=event_id, seen_at=utcnow()).on_conflict_do_nothing())
        return added.rowcount == 1

    return first
