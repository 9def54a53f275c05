"""Figures for /metrics, read from the store: the same from every worker and after restarts."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import async_sessionmaker

from simgate.store.models import Device, Message, SimCard, utcnow


@dataclass(frozen=True)
class SimFigures:
    device_id: str
    sim_number: int
    status: str
    signal: int | None


@dataclass(frozen=True)
class Figures:
    messages: list[tuple[str, int | None, str, int]]  # device, SIM used, state, count
    sims: list[SimFigures]
    last_seen: dict[str, float]  # device -> seconds since it was last heard from


async def figures(sessions: async_sessionmaker) -> Figures:
    """Messages by device, SIM and state; every SIM slot; how long ago each device spoke."""
    now = utcnow()
    async with sessions() as session:
        messages = [(d, s, st, n) for d, s, st, n in await session.execute(
            select(Message.device_id, Message.sim_used, Message.state, func.count())
            .group_by(Message.device_id, Message.sim_used, Message.state))]
        devices = list(await session.execute(
            select(Device.id, Device.last_seen).where(Device.deleted_at.is_(None))))
        sims = [SimFigures(d, slot + 1, status, signal) for d, slot, status, signal in
                await session.execute(
                    select(SimCard.device_id, SimCard.slot_index, SimCard.status,
                           SimCard.signal)
                    .join(Device, Device.id == SimCard.device_id)
                    .where(Device.deleted_at.is_(None)))]
    return Figures(messages=messages, sims=sims,
                   last_seen={d: (now - seen).total_seconds() for d, seen in devices})
