"""FCM pushes through sms-gate.app's upstream service (opt-in: SIMGATE_PUSH_RELAY).

An Android app with Google Play waits for FCM and does not open the event stream; without
a push it polls every 15 minutes. Like the original server's private mode (its
push/upstream module), simgate can ask the public service to push for it:
`POST {SIMGATE_PUSH_RELAY_URL}/push` with `[{"token", "event", "data"}]`, where `token`
is the FCM token the app registered with and `data` a map of strings. Nothing else is
sent: no message text, no numbers, no user.

The contract is the original's: events are collected for a debounce (5 s), one per device
and event name; a batch that fails is retried up to 3 times, then the device's token is
left alone for 15 minutes. The upstream endpoint allows 5 requests a minute per address,
so simgate sends at most that many.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from datetime import datetime
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import async_sessionmaker

from simgate import __version__
from simgate.domain.dates import millis
from simgate.domain.text import unsendable
from simgate.store.models import Device

log = logging.getLogger(__name__)

DEFAULT_URL = "https://api.sms-gate.app/upstream/v1"
MAX_RETRIES = 3
BLOCK_SECONDS = 15 * 60
REQUESTS_PER_MINUTE = 5


def relay_data(data: dict[str, Any]) -> dict[str, str]:
    """What an event tells the app by FCM: strings only, and never the messages that a
    MessageEnqueued on the event stream carries (the app fetches them)."""
    out: dict[str, str] = {}
    for key, value in data.items():
        if key == "messages":
            continue
        if isinstance(value, datetime):
            out[key] = millis(value)
        elif isinstance(value, bool):
            out[key] = "true" if value else "false"
        else:
            out[key] = str(value)
    return out


class PushRelay:
    def __init__(self, sessions: async_sessionmaker, url: str = DEFAULT_URL,
                 debounce: float = 5.0, timeout: float = 10.0,
                 per_minute: int = REQUESTS_PER_MINUTE, window: float = 60.0) -> None:
        self._sessions = sessions
        self._url = url.rstrip("/") + "/push"
        self._debounce = debounce
        self._per_minute = per_minute
        self._window = window
        self._http = httpx.AsyncClient(timeout=timeout, headers={
            "User-Agent": f"simgate/{__version__} (server; python)"})
        self._pending: dict[tuple[str, str], dict[str, str]] = {}
        self._retries: dict[tuple[str, str], int] = {}
        self._blocked: dict[str, float] = {}  # token -> monotonic time it is free again
        self._sent: deque[float] = deque()
        self._wake = asyncio.Event()

    def enqueue(self, device_id: str, event: str, data: dict[str, str]) -> None:
        """Push `event` to the device, if it has a push token (the latest data wins)."""
        self._pending[(device_id, event)] = data
        self._wake.set()

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            await asyncio.sleep(self._debounce)  # a burst becomes one request
            await self._wait_for_room()
            self._wake.clear()
            batch, self._pending = self._pending, {}
            try:
                await self._send(batch)
            except Exception:  # a bug must not end pushes for good
                log.exception("pushing through the relay failed")

    async def close(self) -> None:
        await self._http.aclose()

    async def _wait_for_room(self) -> None:
        """At most `per_minute` requests in any minute (`window`)."""
        while True:
            now = time.monotonic()
            while self._sent and now - self._sent[0] >= self._window:
                self._sent.popleft()
            if len(self._sent) < self._per_minute:
                return
            await asyncio.sleep(self._window - (now - self._sent[0]))

    async def _tokens(self, device_ids: set[str]) -> dict[str, str]:
        async with self._sessions() as session:
            rows = await session.execute(select(Device.id, Device.push_token).where(
                Device.id.in_(device_ids), Device.deleted_at.is_(None),
                Device.push_token.is_not(None)))
        return {device_id: token for device_id, token in rows if token}

    async def _send(self, batch: dict[tuple[str, str], dict[str, str]]) -> None:
        tokens = await self._tokens({device_id for device_id, _ in batch})
        now = time.monotonic()
        keys, items = [], []
        for key, data in batch.items():
            token = tokens.get(key[0])
            if token is None or self._blocked.get(token, 0) > now:
                continue
            item = {"token": token, "event": key[1], "data": data}
            why = unsendable(item)
            if why is not None:  # set aside alone: the others still go
                log.warning("push relay: left out %s for device %s: %s", key[1], key[0], why)
                continue
            keys.append((key, token))
            items.append(item)
        if not items:
            return
        self._sent.append(now)
        retry_after = 0.0
        try:
            response = await self._http.post(self._url, json=items)
            failure = (f"answered {response.status_code}"
                       if response.status_code >= 400 else None)
            if response.status_code == 429:
                with contextlib.suppress(ValueError):
                    retry_after = float(response.headers.get("Retry-After", "60"))
        except Exception as exc:  # noqa: BLE001 - any failure is retried, then rested
            failure = repr(exc)
        if failure is None:
            for key, _ in keys:
                self._retries.pop(key, None)
            log.info("relay pushed %d events", len(items))
            return
        log.warning("push relay %s %s", self._url, failure)
        for key, token in keys:
            tries = self._retries.get(key, 0) + 1
            if tries >= MAX_RETRIES:
                self._retries.pop(key, None)
                self._blocked[token] = time.monotonic() + BLOCK_SECONDS
                log.warning("push relay: giving up on device %s for %d minutes", key[0],
                            BLOCK_SECONDS // 60)
                continue
            self._retries[key] = tries
            self._pending.setdefault(key, batch[key])
        if self._pending:
            await asyncio.sleep(retry_after)
            self._wake.set()
