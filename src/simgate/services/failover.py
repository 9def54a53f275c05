"""Failover to another device: where a message goes when no SIM of its device could send
it (each of them failed for a SIM or network reason, or none is ready)."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from sqlalchemy import exists, select
from sqlalchemy.engine import Connection

from simgate.domain.routing import policy_from_settings
from simgate.domain.sims import SimStatus
from simgate.store.models import Device, SimCard, UserSettings, utcnow

_USABLE = [SimStatus.READY.value, SimStatus.UNKNOWN.value]


def user_settings(connection: Connection, user_id: int) -> dict[str, Any]:
    """The settings the user set, read in the caller's transaction."""
    values = connection.execute(
        select(UserSettings.values).where(UserSettings.user_id == user_id)).scalar()
    return values or {}


def attempts_allowed(connection: Connection, user_id: int) -> int:
    """routing.max_attempts of the user, 0 when routing.failover is off."""
    policy = policy_from_settings({}, user_settings(connection, user_id).get("routing") or {})
    return policy.max_attempts if policy.failover else 0


def next_device(connection: Connection, user_id: int, tried: Collection[str]) -> str | None:
    """Another device of the user, not tried yet, with a SIM that can send now (ready or
    of unknown state, not in a cool-down): the one seen last."""
    now = utcnow()
    sendable = exists().where(
        SimCard.device_id == Device.id, SimCard.status.in_(_USABLE),
        (SimCard.paused_until.is_(None)) | (SimCard.paused_until <= now))
    return connection.execute(
        select(Device.id).where(Device.user_id == user_id, Device.deleted_at.is_(None),
                                Device.id.not_in(list(tried)), sendable)
        .order_by(Device.last_seen.desc()).limit(1)).scalar()
