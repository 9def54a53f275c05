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
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import async_sessionmaker

from simgate.services.settings import SettingsService
from simgate.store.models import Webhook, WebhookDelivery, utcnow
from simgate.webhooks.signing import sign
from simgate.webhooks.urls import ForbiddenUrl, check_url

log = logging.getLogger("simgate.webhooks")


@dataclass(frozen=True)
class _Leased:
    delivery: WebhookDelivery
    url: str
    settings: dict[str, Any]  # the owner's webhooks settings group


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
        self._results: list[dict[str, object]] = []
        self._recorded = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    async def close(self) -> None:
        for task in list(self._inflight):
            task.cancel()
        await asyncio.gather(*self._inflight, return_exceptions=True)
        await self._http.aclose()

    async def run(self) -> None:
        recorder = asyncio.create_task(self._record_loop())
        try:
            while True:
                try:
                    leased = await self._lease()
                except Exception:  # the store may be briefly unavailable; keep going
                    log.exception("leasing webhook deliveries failed")
                    leased = []
                for item in leased:
                    await self._slots.acquire()
                    task = asyncio.create_task(self._deliver(item))
                    self._inflight.add(task)
                    task.add_done_callback(self._done)
                if len(leased) < self._concurrency:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), self._poll_interval)
                    self._wake.clear()
        finally:
            recorder.cancel()
            await self._flush_results()

    def _done(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        self._slots.release()

    async def _lease(self) -> list[_Leased]:
        """Due deliveries with their URL and the owner's webhook settings, leased."""
        now = utcnow()
        lease_until = now + timedelta(seconds=self._timeout + 5)
        async with self._sessions.begin() as session:
            rows = (await session.execute(
                select(WebhookDelivery, Webhook.url)
                .join(Webhook, Webhook.id == WebhookDelivery.webhook_id)
                .where(WebhookDelivery.status == "pending", WebhookDelivery.next_attempt_at <= now)
                .order_by(WebhookDelivery.next_attempt_at)
                .limit(self._concurrency)
                .with_for_update(skip_locked=True, of=WebhookDelivery)
            )).all()
            if not rows:
                return []
            await session.execute(
                update(WebhookDelivery).where(WebhookDelivery.pk.in_([d.pk for d, _ in rows]))
                .values(next_attempt_at=lease_until)
            )
        settings = {user_id: (await self._settings.effective(user_id))["webhooks"]
                    for user_id in {d.user_id for d, _ in rows}}
        return [_Leased(d, url, settings[d.user_id]) for d, url in rows]

    async def _deliver(self, item: _Leased) -> None:
        delivery = item.delivery
        body = json.dumps({
            "id": delivery.event_id,
            "webhookId": delivery.webhook_id,
            "deviceId": delivery.device_id,
            "event": delivery.event,
            "payload": delivery.payload,
        }, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json", "User-Agent": "simgate-webhooks"}
        if item.settings["signing_key"]:
            headers.update(sign(item.settings["signing_key"], body))
        error, status = None, None
        try:
            await check_url(item.url, self._allow_private)
            response = await self._http.post(item.url, content=body, headers=headers)
            status = response.status_code
            if not 200 <= status < 300:
                error = f"receiver answered {status}"
        except ForbiddenUrl as exc:
            error = str(exc)
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        self._results.append(self._outcome(delivery, item.settings["retry_count"], error,
                                           status))
        self._recorded.set()

    def _outcome(self, delivery: WebhookDelivery, retry_count: int, error: str | None,
                 status: int | None) -> dict[str, object]:
        """The row update for one attempt: delivered, failed for good, or a retry time."""
        attempts = delivery.attempts + 1
        values: dict[str, object] = {
            "pk": delivery.pk, "attempts": attempts, "last_error": error,
            "last_status": status, "status": "pending", "delivered_at": None,
            "next_attempt_at": utcnow(),
        }
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
        return values

    async def _record_loop(self) -> None:
        """Write attempt outcomes in batches: one transaction for many deliveries."""
        while True:
            await self._recorded.wait()
            self._recorded.clear()
            try:
                await self._flush_results()
            except Exception:  # keep the outcomes; the next flush tries again
                log.exception("recording webhook attempts failed")
                await asyncio.sleep(1.0)
                self._recorded.set()

    async def _flush_results(self) -> None:
        if not self._results:
            return
        batch, self._results = self._results, []
        try:
            async with self._sessions.begin() as session:
                await session.execute(update(WebhookDelivery), batch)
        except Exception:
            self._results = batch + self._results
            raise
        if any(row["status"] == "pending" for row in batch):
            self.wake()
