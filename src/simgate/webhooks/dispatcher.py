"""Delivers the webhook outbox: signed POSTs, retries with backoff, at least once.

Each due delivery is leased (its next attempt pushed past the timeout) before it is
sent, so a crash or a second replica re-sends it only after the lease ran out. Every
delivery is its own task under a concurrency cap: a slow receiver holds one slot, not
the queue. Slots are shared fairly: due deliveries are taken round-robin across users,
and a user past its share (a quarter of the slots) or one of its receivers (host and
port) past its share (an eighth) gets no slot of the reserve (a quarter), which stays free for the
others: one user's hanging receiver cannot keep another user's events waiting, and a
user alone still uses most of the slots.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import async_sessionmaker

from simgate.mail.relay import MailRelay, NoRelay, is_mailto, mailto_address
from simgate.store.models import Webhook, WebhookDelivery, utcnow
from simgate.webhooks.signing import sign
from simgate.webhooks.transport import Resolver, checked_client, resolve
from simgate.webhooks.urls import ForbiddenUrl, check_form

log = logging.getLogger(__name__)

GATHER_SECONDS = 0.01

# The owner's `webhooks` settings group (retry_count, signing_key, ...), by user id.
WebhookSettings = Callable[[int], Awaitable[dict[str, Any]]]


def retry_delay(attempts: int, base: float, cap: float) -> float:
    """Seconds before the next try after `attempts` failed ones: doubling from `base`, at
    most `cap`, then spread by +-20% so receivers that failed together are not all tried
    again in the same second."""
    return min(base * 2 ** min(attempts - 1, 64), cap) * random.uniform(0.8, 1.2)


@dataclass(frozen=True)
class _Leased:
    delivery: WebhookDelivery
    url: str
    webhook_id: str  # as its owner named it
    settings: dict[str, Any]  # the owner's webhooks settings group

    @property
    def receiver(self) -> str:
        return receiver_of(self.delivery.user_id, self.url)


TWILIO = "twilio+"  # a webhook URL twilio+https://...: Twilio's form POST and TwiML


def receiver_of(user_id: int, url: str) -> str:
    """Who answers a user's URL, for sharing slots: its host and port, for this user
    (users of one webhook service must not share one user's slow endpoint's fate)."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    return f"{user_id}/{(parts.hostname or '').lower()}:{port or parts.scheme}"


class Dispatcher:
    def __init__(self, sessions: async_sessionmaker, webhook_settings: WebhookSettings, *,
                 allow_private: bool, timeout: float = 30.0, retry_base: float = 10.0,
                 retry_cap: float = 6 * 3600.0, concurrency: int = 64,
                 per_user: int | None = None, per_receiver: int | None = None,
                 poll_interval: float = 1.0, resolver: Resolver = resolve) -> None:
        self._sessions = sessions
        self._webhook_settings = webhook_settings
        self._allow_private = allow_private
        self._timeout = timeout
        self._retry_base = retry_base
        self._retry_cap = retry_cap
        self._concurrency = concurrency
        self._per_user = per_user or max(1, concurrency // 4)
        self._per_receiver = per_receiver or max(1, concurrency // 8)
        self._reserve = max(1, concurrency // 4)  # slots kept for those within their share
        self._poll_interval = poll_interval
        self._wake = asyncio.Event()
        self._inflight: set[asyncio.Task[None]] = set()
        self._by_user: Counter[int] = Counter()
        self._by_receiver: Counter[str] = Counter()
        self._hooks_of: defaultdict[str, set[str]] = defaultdict(set)  # receiver -> webhooks
        self._next_user = 0  # where the round-robin over users starts next
        self._http = checked_client(timeout, allow_private, resolver)
        self.mailer: MailRelay | None = None  # where mailto: webhooks go
        self.twilio_inbound: Any = None  # who posts twilio+ webhooks and sends the replies
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
                self._wake.clear()
                try:
                    leased = await self._lease()
                except Exception:  # the store may be briefly unavailable; keep going
                    log.exception("leasing webhook deliveries failed")
                    leased = []
                for item in leased:
                    self._start(item)
                if not leased or len(self._inflight) >= self._concurrency:
                    # woken by new events, by a finished delivery, or the poll
                    # wait_for (3.11) may drop a cancel
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(self._poll_interval):
                            await self._wake.wait()
                    # let the deliveries finishing together free their slots, and lease
                    # for all of them at once
                    await asyncio.sleep(GATHER_SECONDS)
        finally:
            # the recorder stops first (a flush of its own may be under way, and gives its
            # outcomes back when cancelled): then one last flush writes them all
            recorder.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await recorder
            await self._flush_results()

    def _start(self, item: _Leased) -> None:
        user, receiver = item.delivery.user_id, item.receiver
        self._by_user[user] += 1
        self._by_receiver[receiver] += 1
        self._hooks_of[receiver].add(item.delivery.webhook_id)
        task = asyncio.create_task(self._deliver(item))
        self._inflight.add(task)

        def done(finished: asyncio.Task[None]) -> None:
            self._inflight.discard(finished)
            self._by_user[user] -= 1
            self._by_receiver[receiver] -= 1
            self._wake.set()  # a slot is free: someone may now be due a turn

        task.add_done_callback(done)

    async def _lease(self) -> list[_Leased]:
        """Due deliveries that fit the free slots, taken round-robin across users;
        leased, with URL and settings. Past its share a user or receiver takes only
        slots beyond the reserve, which stays for those within theirs."""
        free = self._concurrency - len(self._inflight)
        if free <= 0:
            return []
        now = utcnow()
        due = [WebhookDelivery.status == "pending", WebhookDelivery.next_attempt_at <= now]
        sharing = free <= self._reserve  # only those within their share may start now
        if sharing:
            full_users = [u for u, n in self._by_user.items() if n >= self._per_user]
            full_hooks = [h for r, n in self._by_receiver.items() if n >= self._per_receiver
                          for h in self._hooks_of[r]]
            if full_users:
                due.append(WebhookDelivery.user_id.not_in(full_users))
            if full_hooks:
                due.append(WebhookDelivery.webhook_id.not_in(full_hooks))
        async with self._sessions.begin() as session:
            users = sorted(await session.scalars(
                select(WebhookDelivery.user_id).where(*due).distinct()))
            if not users:
                return []
            start = next((i for i, u in enumerate(users) if u >= self._next_user), 0)
            users = (users[start:] + users[:start])[:free]
            candidates: list[list[tuple[WebhookDelivery, str, str]]] = []
            for user in users:
                room = min(self._per_user - self._by_user[user], free) if sharing else free
                candidates.append([(d, url, name) for d, url, name in await session.execute(
                    select(WebhookDelivery, Webhook.url, Webhook.ext_id)
                    .join(Webhook, Webhook.id == WebhookDelivery.webhook_id)
                    .where(*due, WebhookDelivery.user_id == user)
                    .order_by(WebhookDelivery.next_attempt_at)
                    .limit(room)
                    .with_for_update(skip_locked=True, of=WebhookDelivery)
                )])
            picked = self._pick(candidates, free)
            if not picked:
                return []
            self._next_user = picked[-1][0].user_id + 1
            await session.execute(
                update(WebhookDelivery).where(WebhookDelivery.pk.in_([p[0].pk for p in picked]))
                .values(next_attempt_at=self._lease_end(now))
            )
        settings = {user_id: await self._webhook_settings(user_id)
                    for user_id in {p[0].user_id for p in picked}}
        return [_Leased(d, url, name, settings[d.user_id]) for d, url, name in picked]

    def _lease_end(self, now: datetime) -> datetime:
        return now + timedelta(seconds=self._timeout + 5)

    def _pick(self, candidates: list[list[tuple[WebhookDelivery, str, str]]],
              free: int) -> list[tuple[WebhookDelivery, str, str]]:
        """One delivery per user in turn; past a share only while slots beyond the
        reserve are free."""
        picked: list[tuple[WebhookDelivery, str, str]] = []
        users: Counter[int] = Counter()
        receivers: Counter[str] = Counter()
        queues = [list(reversed(c)) for c in candidates]
        while len(picked) < free and any(queues):
            for queue in queues:
                while queue:
                    delivery, url, name = queue.pop()
                    user, receiver = delivery.user_id, receiver_of(delivery.user_id, url)
                    within = (self._by_user[user] + users[user] < self._per_user
                              and self._by_receiver[receiver] + receivers[receiver]
                              < self._per_receiver)
                    if not within and free - len(picked) <= self._reserve:
                        self._hooks_of[receiver].add(delivery.webhook_id)
                        continue
                    users[user] += 1
                    receivers[receiver] += 1
                    picked.append((delivery, url, name))
                    break
                if len(picked) >= free:
                    break
        return picked

    async def _deliver(self, item: _Leased) -> None:
        """One attempt; whatever goes wrong is a failed attempt, retried and then given
        up on as any other, never a task that dies and leaves the delivery pending."""
        delivery = item.delivery
        error, status = None, None
        try:
            if is_mailto(item.url):
                await self._mail(item)
            elif item.url[:len(TWILIO)].lower() == TWILIO:
                status = await self._twilio(item)
                if not 200 <= status < 300:
                    error = f"receiver answered {status}"
            else:
                status = await self._post(item)
                if not 200 <= status < 300:
                    error = f"receiver answered {status}"
        except ForbiddenUrl as exc:
            error = str(exc)
        except Exception as exc:  # noqa: BLE001 - the HTTP client's errors, and any other
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            if not isinstance(exc, httpx.HTTPError) and not delivery.attempts:
                log.warning("webhook event %s to %s cannot be delivered: %s",
                            delivery.event_id, delivery.webhook_id, error)  # logged once
        self._results.append(self._outcome(delivery, item.settings["retry_count"], error,
                                           status))
        self._recorded.set()

    async def _post(self, item: _Leased) -> int:
        """The event as a signed JSON POST: the receiver's status."""
        delivery = item.delivery
        check_form(item.url, self._allow_private)  # stored before today's rules?
        body = json.dumps({
            "id": delivery.event_id,
            "webhookId": item.webhook_id,
            "deviceId": delivery.device_id,
            "event": delivery.event,
            "payload": delivery.payload,
        }, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json", "User-Agent": "simgate-webhooks"}
        if item.settings["signing_key"]:
            headers.update(sign(item.settings["signing_key"], body))
        response = await self._http.post(item.url, content=body, headers=headers)
        return response.status_code

    async def _twilio(self, item: _Leased) -> int:
        """A twilio+ webhook: the event as Twilio's form POST, its TwiML answered."""
        url = item.url[len(TWILIO):]
        check_form(url, self._allow_private)
        if self.twilio_inbound is None:
            raise RuntimeError("Twilio-style webhooks are not served by this process")
        return await self.twilio_inbound.deliver(self._http, url,
                                                 item.settings["signing_key"], item.delivery)

    async def _mail(self, item: _Leased) -> None:
        """A mailto: webhook: the event as an email through the admin's relay."""
        address = mailto_address(item.url)
        if address is None:
            raise ForbiddenUrl(f"webhook url {item.url!r} is not mailto:ONE-ADDRESS")
        if self.mailer is None:
            raise NoRelay("no SMTP relay to send email through: the admin sets"
                          " SIMGATE_SMTP_RELAY (smtp://user:password@host:port)")
        await self.mailer.send(address, item.delivery.event, item.delivery.payload)

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
            delay = retry_delay(attempts, self._retry_base, self._retry_cap)
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
        except BaseException:  # cancelled too: the outcomes stay for the next flush
            self._results = batch + self._results
            raise
        if any(row["status"] == "pending" for row in batch):
            self.wake()
