"""Status callbacks of the Twilio-compatible API: form POSTs from the outbox, signed
with X-Twilio-Signature, retried with the webhooks' backoff until the receiver answers
2xx or the attempts run out. Through the webhooks' checked transport: the same rules
for private addresses apply."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta

from sqlalchemy import and_, select, update

from simgate.services.twilio import Secrets
from simgate.store.db import Sessions
from simgate.store.doors import TwilioCallback, TwilioMessage
from simgate.store.models import utcnow
from simgate.webhooks.dispatcher import retry_delay
from simgate.webhooks.transport import checked_client
from simgate.webhooks.twilio_signing import twilio_signature
from simgate.webhooks.urls import ForbiddenUrl, check_form

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 12
BATCH = 50
IDLE_SECONDS = 5.0  # a look at the outbox this often even when nobody wakes it


class StatusCallbacks:
    def __init__(self, sessions: Sessions, secrets: Secrets, allow_private: bool,
                 timeout: float, retry_base: float, retry_cap: float = 3600.0) -> None:
        self._sessions = sessions
        self._secrets = secrets
        self._allow_private = allow_private
        self._timeout = timeout
        self._retry_base = retry_base
        self._retry_cap = retry_cap
        self._wake = asyncio.Event()
        self._http = checked_client(timeout, allow_private)

    def wake(self, *_: object) -> None:
        self._wake.set()

    async def close(self) -> None:
        await self._http.aclose()

    async def run(self) -> None:
        while True:
            self._wake.clear()
            try:
                leased = await self._lease()
                if leased:
                    await asyncio.gather(*(self._deliver(*item) for item in leased))
                    continue
            except Exception:  # the store is away for a moment: try again later
                log.exception("status callbacks: reading the outbox failed")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(IDLE_SECONDS):
                    await self._wake.wait()

    async def _lease(self) -> list[tuple[TwilioCallback, str, str | None]]:
        """Due callbacks, each claimed by moving its next attempt past the timeout (a
        claim another process made first is skipped)."""
        now = utcnow()
        lease = now + timedelta(seconds=self._timeout + 5)
        claimed = []
        async with self._sessions.begin() as session:
            rows = (await session.execute(
                select(TwilioCallback, TwilioMessage.callback_url, TwilioMessage.secret)
                .join(TwilioMessage, and_(TwilioMessage.user_id == TwilioCallback.user_id,
                                          TwilioMessage.ext_id == TwilioCallback.ext_id))
                .where(TwilioCallback.status == "pending",
                       TwilioCallback.next_attempt_at <= now)
                .order_by(TwilioCallback.pk).limit(BATCH))).all()
            for callback, url, secret in rows:
                result = await session.execute(
                    update(TwilioCallback)
                    .where(TwilioCallback.pk == callback.pk,
                           TwilioCallback.next_attempt_at == callback.next_attempt_at)
                    .values(next_attempt_at=lease))
                if result.rowcount == 1:
                    claimed.append((callback, url, secret))
        return claimed

    async def _deliver(self, callback: TwilioCallback, url: str,
                       secret: str | None) -> None:
        error = None
        try:
            check_form(url, self._allow_private)
            params = {k: str(v) for k, v in callback.params.items()}
            headers = {"User-Agent": "simgate-twilio-callbacks"}
            token = self._secrets.open(secret) if secret else None
            if token is not None:
                headers["X-Twilio-Signature"] = twilio_signature(token, url, params)
            response = await self._http.post(url, data=params, headers=headers)
            if not 200 <= response.status_code < 300:
                error = f"receiver answered {response.status_code}"
        except ForbiddenUrl as exc:
            error = str(exc)
        except Exception as exc:  # noqa: BLE001 - any failure is a failed attempt
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        attempts = callback.attempts + 1
        values: dict[str, object] = {"attempts": attempts, "last_error": error}
        if error is None:
            values["status"] = "delivered"
        elif attempts >= MAX_ATTEMPTS:
            values["status"] = "failed"
            log.warning("status callback of %s to %s gave up after %d attempts: %s",
                        callback.ext_id, url, attempts, error)
        else:
            delay = retry_delay(attempts, self._retry_base, self._retry_cap)
            values["next_attempt_at"] = utcnow() + timedelta(seconds=delay)
        async with self._sessions.begin() as session:
            await session.execute(update(TwilioCallback)
                                  .where(TwilioCallback.pk == callback.pk).values(**values))
