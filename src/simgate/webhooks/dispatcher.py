"""Delivers the webhook outbox: signed POSTs, retries with backoff, at least once.

Each due delivery is leased (its next attempt pushed past the timeout) before it is
sent, so a crash or a second replica re-sends it only after the lease ran out. Every
delivery is its own task under a concurrency cap: a slow receiver holds one slot, not
the queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from datetime import timedelta

import httpx
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import async_sessionmaker

from simgate.services.settings import SettingsService
from simgate.store.models import Webhook, WebhookDelivery, utcnow
from simgate.webhooks.signing import sign
from simgate.webhooks.urls import ForbiddenUrl, check_url

log = logging.getLogger("simgate.webhooks")


class Dispatcher:
    def __init__(self, sessions: async_sessionmaker, settings: SettingsService, *,
                 allow_private: bool, timeout: float = 30.0, retry_base: float = 10.0,
                 retry_cap: float = 6 * 3600.0, concurrency: int = 64,
                 poll_interval: float = 1.0) -> None:
        self._sessions = sessions
        self._settings = settings
        self._allow_private = allow_private
        self._timeout = timeout
        self._retry_base = retry_base
        self._retry_cap = retry_cap
        self._slots = asyncio.Semaphore(concurrency)
        self._concurrency = concurrency
        self._poll_interval = poll_interval
        self._wake = asyncio.Event()
        self._inflight: set[asyncio.Task[None]] = set()
        self._http = httpx.AsyncClient(timeout=timeout, follow_redirects=False)

    def wake(self) -> None:
        self._wake.set()

    async def close(self) -> None:
        for task in list(self._inflight):
            task.cancel()
        await asyncio.gather(*self._inflight, return_exceptions=True)
        await self._http.aclose()

    async def run(self) -> None:
        while True:
            try:
                leased = await self._lease()
            except Exception:  # the store may be briefly unavailable; keep going
                log.exception("leasing webhook deliveries failed")
                leased = []
            for delivery_pk in leased:
                await self._slots.acquire()
                task = asyncio.create_task(self._deliver(delivery_pk))
                self._inflight.add(task)
                task.add_done_callback(self._done)
            if len(leased) < self._concurrency:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._poll_interval)
                self._wake.clear()

    def _done(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        self._slots.release()

    async def _lease(self) -> list[int]:
        now = utcnow()
        lease_until = now + timedelta(seconds=self._timeout + 5)
        async with self._sessions.begin() as session:
            due = list(await session.scalars(
                select(WebhookDelivery.pk)
                .where(WebhookDelivery.status == "pending", WebhookDelivery.next_attempt_at <= now)
                .order_by(WebhookDelivery.next_attempt_at)
                .limit(self._concurrency)
                .with_for_update(skip_locked=True)
            ))
            if due:
                await session.execute(
                    update(WebhookDelivery).where(WebhookDelivery.pk.in_(due))
                    .values(next_attempt_at=lease_until)
                )
        return due

    async def _deliver(self, pk: int) -> None:
        async with self._sessions() as session:
            delivery = await session.get(WebhookDelivery, pk)
            hook = await session.get(Webhook, delivery.webhook_id) if delivery else None
        if delivery is None or hook is None:
            return
        settings = await self._settings.effective(delivery.user_id)
        body = json.dumps({
            "id": delivery.event_id,
            "webhookId": hook.id,
            "deviceId": delivery.device_id,
            "event": delivery.event,
            "payload": delivery.payload,
        }, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json", "User-Agent": "simgate-webhooks"}
        key = settings["webhooks"]["signing_key"]
        if key:
            headers.update(sign(key, body))
        error, status = None, None
        try:
            await check_url(hook.url, self._allow_private)
            response = await self._http.post(hook.url, content=body, headers=headers)
            status = response.status_code
            if not 200 <= status < 300:
                error = f"receiver answered {status}"
        except ForbiddenUrl as exc:
            error = str(exc)
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        await self._record(delivery, settings["webhooks"]["retry_count"], error, status)

    async def _record(self, delivery: WebhookDelivery, retry_count: int, error: str | None,
                      status: int | None) -> None:
        attempts = delivery.attempts + 1
        values: dict[str, object] = {"attempts": attempts, "last_error": error,
                                     "last_status": status}
        if error is None:
            values |= {"status": "delivered", "delivered_at": utcnow()}
        elif attempts > retry_count:
            values |= {"status": "failed"}
            log.warning("webhook event %s to %s gave up after %d attempts: %s",
                        delivery.event_id, delivery.webhook_id, attempts, error)
        else:
            delay = min(self._retry_base * 2 ** (attempts - 1), self._retry_cap)
            delay *= random.uniform(0.8, 1.2)
            values |= {"next_attempt_at": utcnow() + timedelta(seconds=delay)}
        async with self._sessions.begin() as session:
            await session.execute(
                update(WebhookDelivery).where(WebhookDelivery.pk == delivery.pk).values(**values)
            )
