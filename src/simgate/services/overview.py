"""What the dashboard's overview shows: devices online, messages today by state, sends per
SIM by hour and by day, failures by reason, the delivery rate and the queues.

Every read is bounded: by the user and `created_at` (the (user_id, created_at) index) over
at most 30 days, or by the user's devices and state (the (device_id, state) index) for the
queues. Buckets are UTC hours and days, computed by the database.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, literal_column, select
from sqlalchemy.ext.asyncio import AsyncSession

from simgate.domain.states import ProcessState
from simgate.services.health import STALE_AFTER
from simgate.store.db import Sessions
from simgate.store.models import Device, Message, Recipient, utcnow

HOURS = 24
DAYS = 30
TOP_REASONS = 6
QUEUED = (ProcessState.PENDING.value, ProcessState.PROCESSED.value)
FINISHED = (ProcessState.SENT.value, ProcessState.DELIVERED.value, ProcessState.FAILED.value)


@dataclass(frozen=True)
class Series:
    """Sends through one SIM, one count a bucket, oldest first."""

    label: str  # "SIM 1", or "SIM 1 on <device>" when the user has several devices
    counts: list[int]

    @property
    def total(self) -> int:
        return sum(self.counts)


@dataclass(frozen=True)
class Overview:
    devices_online: int
    devices_offline: int
    today: dict[str, int]  # messages created today (UTC) by state, every state present
    hours: list[str]  # "13" .. the hour labels of `hourly`, oldest first
    hourly: list[Series]
    days: list[str]  # "11-09" .. the day labels of `daily`
    daily: list[Series]
    failures: list[tuple[str, int]]  # reason, recipients failed for it (30 days), most first
    finished: dict[str, int] = field(default_factory=dict)  # Sent/Delivered/Failed, 24 h
    queued: list[tuple[str, int]] = field(default_factory=list)  # device name, waiting
    queue_limit: int = 0  # messages a device may hold waiting (0: no limit)

    @property
    def delivery_rate(self) -> float | None:
        """Share of the last day's finished messages that were not Failed."""
        done = sum(self.finished.values())
        if not done:
            return None
        return 1 - self.finished.get(ProcessState.FAILED.value, 0) / done


def _bucket(session: AsyncSession, column: Any, hourly: bool) -> Any:
    """The UTC hour ("2026-12-08 13") or day ("2026-12-08") of a timestamp, in SQL."""
    # literal formats, not parameters: PostgreSQL matches the GROUP BY by its text
    if session.bind.dialect.name == "postgresql":
        return func.to_char(func.timezone(literal_column("'UTC'"), column), literal_column(
            "'YYYY-MM-DD HH24'" if hourly else "'YYYY-MM-DD'"))
    return func.strftime(literal_column("'%Y-%m-%d %H'" if hourly else "'%Y-%m-%d'"), column)


async def _sends(session: AsyncSession, user_id: int, since: datetime, hourly: bool,
                 names: dict[str, str]) -> dict[tuple[str, int], dict[str, int]]:
    bucket = _bucket(session, Message.created_at, hourly)
    rows = await session.execute(
        select(Message.device_id, Message.sim_used, bucket, func.count())
        .where(Message.user_id == user_id, Message.created_at >= since,
               Message.sim_used.is_not(None))
        .group_by(Message.device_id, Message.sim_used, bucket))
    found: dict[tuple[str, int], dict[str, int]] = {}
    for device_id, sim, at, count in rows:
        if device_id in names:
            found.setdefault((device_id, sim), {})[at] = count
    return found


def _series(found: dict[tuple[str, int], dict[str, int]], keys: list[str],
            names: dict[str, str]) -> list[Series]:
    several = len({device for device, _ in found}) > 1 or len(names) > 1
    return [Series(f"SIM {sim}" + (f" on {names[device]}" if several else ""),
                   [counts.get(key, 0) for key in keys])
            for (device, sim), counts in sorted(found.items(),
                                                key=lambda i: (names[i[0][0]], i[0][1]))]


async def overview(sessions: Sessions, user_id: int, queue_limit: int = 0,
                   now: datetime | None = None) -> Overview:
    """The overview of a user's gateway at `now`."""
    now = now or utcnow()
    hour = now.replace(minute=0, second=0, microsecond=0)
    midnight = hour.replace(hour=0)
    hour_starts = [hour - timedelta(hours=n) for n in range(HOURS - 1, -1, -1)]
    day_starts = [midnight - timedelta(days=n) for n in range(DAYS - 1, -1, -1)]
    async with sessions() as session:
        devices = list(await session.scalars(
            select(Device).where(Device.user_id == user_id, Device.deleted_at.is_(None))
            .order_by(Device.created_at)))
        names = {d.id: d.name for d in devices}
        today = dict.fromkeys((s.value for s in ProcessState), 0)
        for state, count in await session.execute(
                select(Message.state, func.count())
                .where(Message.user_id == user_id, Message.created_at >= midnight)
                .group_by(Message.state)):
            today[state] = count
        hourly = await _sends(session, user_id, hour_starts[0], True, names)
        daily = await _sends(session, user_id, day_starts[0], False, names)
        failures = list(await session.execute(
            select(Recipient.error, func.count())
            .join(Message, Message.pk == Recipient.message_pk)
            .where(Message.user_id == user_id, Message.created_at >= day_starts[0],
                   Recipient.state == ProcessState.FAILED.value)
            .group_by(Recipient.error)
            .order_by(func.count().desc()).limit(TOP_REASONS)))
        finished = dict(list(await session.execute(
            select(Message.state, func.count())
            .where(Message.user_id == user_id, Message.created_at >= now - timedelta(days=1),
                   Message.state.in_(FINISHED))
            .group_by(Message.state))))
        waiting = dict(list(await session.execute(
            select(Message.device_id, func.count())
            .where(Message.device_id.in_(list(names)), Message.state.in_(QUEUED))
            .group_by(Message.device_id)))) if names else {}
    online = sum(1 for d in devices if now - d.last_seen <= STALE_AFTER)
    return Overview(
        devices_online=online, devices_offline=len(devices) - online, today=today,
        hours=[f"{h:%H}" for h in hour_starts],
        hourly=_series(hourly, [f"{h:%Y-%m-%d %H}" for h in hour_starts], names),
        days=[f"{d:%m-%d}" for d in day_starts],
        daily=_series(daily, [f"{d:%Y-%m-%d}" for d in day_starts], names),
        failures=[(reason or "no reason given", count) for reason, count in failures],
        finished=finished,
        queued=[(d.name, waiting.get(d.id, 0)) for d in devices],
        queue_limit=queue_limit)
