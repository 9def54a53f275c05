"""Per-user device settings: stored, validated, pushed to the user's devices."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import async_sessionmaker

from simgate.domain import settings as rules
from simgate.services.errors import BadRequest
from simgate.services.logs import Entry, Logs, Priority
from simgate.store.models import Device, UserSettings


class SettingsService:
    def __init__(self, sessions: async_sessionmaker,
                 push: Callable[[str, str], None], fcm_reaches_phones: bool = True) -> None:
        self._sessions = sessions
        self._push = push
        # False when no FCM push is sent (the relay off): a phone with an FCM token must
        # then keep an event stream open, or it polls every 15 minutes
        self.fcm_reaches_phones = fcm_reaches_phones

    async def for_device(self, user_id: int, push_token: str | None) -> dict[str, Any]:
        """The settings a device applies: its user's, secrets included, and, when no FCM
        push would reach a phone with an FCM token, `gateway.notification_channel:
        SSE_ONLY` (on AUTO the app waits for FCM and opens no event stream)."""
        values = await self.get(user_id)
        if push_token and not self.fcm_reaches_phones:
            values = {**values, "gateway": {**(values.get("gateway") or {}),
                                            "notification_channel": "SSE_ONLY"}}
        return values

    async def get(self, user_id: int) -> dict[str, Any]:
        """The keys the user set, secrets included (for the server and the devices)."""
        async with self._sessions() as session:
            row = await session.get(UserSettings, user_id)
        return rules.loaded(row.values) if row else {}

    async def effective(self, user_id: int) -> dict[str, Any]:
        """Every key, defaults filled in."""
        return rules.with_defaults(await self.get(user_id))

    async def webhooks_of(self, user_id: int) -> dict[str, Any]:
        """The user's `webhooks` group, defaults filled in and a signing key made if
        none is set (what delivery needs: every delivery is signed)."""
        group = (await self.effective(user_id))["webhooks"]
        if not group["signing_key"]:
            group["signing_key"] = await self.ensure_signing_key(user_id)
        return group

    async def ensure_signing_key(self, user_id: int) -> str:
        """The user's webhook signing key, made now if none is set, as the original's
        docs say ("randomly generated at first request"). Devices are told, so an
        Android app signs what it sends with the same key."""
        try:
            async with self._sessions.begin() as session:
                row = await session.get(UserSettings, user_id, with_for_update=True)
                values = dict(row.values) if row else {}
                webhooks = dict(values.get("webhooks") or {})
                if webhooks.get("signing_key"):
                    return webhooks["signing_key"]
                webhooks["signing_key"] = key = secrets.token_hex(32)
                values["webhooks"] = webhooks
                if row is None:
                    session.add(UserSettings(user_id=user_id, values=values))
                else:
                    row.values = values
                devices = list(await session.scalars(select(Device.id).where(
                    Device.user_id == user_id, Device.deleted_at.is_(None))))
        except IntegrityError:  # another process made the row first: read its key
            return await self.ensure_signing_key(user_id)
        for device_id in devices:
            self._push(device_id, "SettingsUpdated")
        return key

    async def replace(self, user_id: int, values: dict[str, Any]) -> dict[str, Any]:
        return await self._store(user_id, lambda _: rules.validate(values))

    async def patch(self, user_id: int, values: dict[str, Any]) -> dict[str, Any]:
        return await self._store(user_id, lambda stored: rules.merge(stored, values))

    async def _store(self, user_id: int,
                     change: Callable[[dict[str, Any]], dict[str, Any]]) -> dict[str, Any]:
        async with self._sessions.begin() as session:
            row = await session.get(UserSettings, user_id)
            try:
                stored = rules.validate(rules.loaded(row.values) if row else {})
                values = _keep_signing_key(stored, change(stored))
            except rules.InvalidSettings as exc:
                raise BadRequest(f"invalid settings: {exc}") from None
            if row is None:
                session.add(UserSettings(user_id=user_id, values=values))
            else:
                row.values = values
            Logs.add(session, user_id, None, Entry(
                Priority.INFO, "settings", "settings changed",
                {"settings": rules.public_view(values)}))
            devices = list(await session.scalars(
                select(Device.id).where(Device.user_id == user_id, Device.deleted_at.is_(None))
            ))
        for device_id in devices:
            self._push(device_id, "SettingsUpdated")
        return values


def _keep_signing_key(stored: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """New settings with a webhook signing key, always: the one they set, else the one
    stored, else a new one. A replace that leaves it out (as the official client's does),
    or sets it empty or null, never leaves webhooks and the phone's posts unsigned."""
    if (values.get("webhooks") or {}).get("signing_key"):
        return values
    key = (stored.get("webhooks") or {}).get("signing_key") or secrets.token_hex(32)
    return {**values, "webhooks": {**(values.get("webhooks") or {}), "signing_key": key}}
