"""Devices (agents, phones) of a user and the SIM slots they report."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session

from simgate.domain.sims import SimSlot, SimStatus, sim_change, unmasked
from simgate.services.errors import BadRequest, NotFound
from simgate.services.ids import new_id, new_token, sha256_hex
from simgate.services.logs import Entry, Logs, Priority
from simgate.store.models import Device, SimCard, utcnow

# lastSeen is written at most this often per device, to keep polling cheap.
_TOUCH_EVERY = timedelta(seconds=5)
TARGET_TTL = 2.0
IDENTITY_TTL = 10.0


@dataclass(frozen=True)
class DeviceIdentity:
    """Who a device token belongs to."""

    device_id: str
    user_id: int


@dataclass(frozen=True)
class Target:
    """Where a new message goes: a device and its SIM slots at the time."""

    device_id: str
    slots: list[SimSlot]


@dataclass(frozen=True)
class Registration:
    device: Device
    token: str


def slots_of(device: Device) -> list[SimSlot]:
    return [
        SimSlot(
            slot_index=s.slot_index,
            status=SimStatus(s.status),
            phone_number=s.phone_number,
            carrier_name=s.carrier_name,
            iccid=s.iccid,
            signal=s.signal,
            detail=s.detail,
        )
        for s in device.sims
    ]


@dataclass(frozen=True)
class SimChange:
    """A slot as now reported, what changed (`sim_change`), and its state before."""

    slot: SimSlot
    change: str
    before: SimStatus | None


class Devices:
    """Devices and what is cached about them.

    Recently chosen targets and token owners are remembered, so a burst of messages or
    an agent's frequent calls do not load the device each time. A change calls
    `changed(user_id, device_id)`, which must reach `forget` in every process that
    caches (the bus does that); other changes show within the TTLs. A removal also calls
    `removed(device_id)`, which must end the device's open event streams wherever they are.
    """

    def __init__(self, sessions: async_sessionmaker,
                 changed: Callable[[int, str], None] | None = None,
                 removed: Callable[[str], None] | None = None) -> None:
        self._sessions = sessions
        self._changed = changed or self.forget
        self._removed = removed or (lambda _device_id: None)
        self._last_touch: dict[str, datetime] = {}
        # told of SIM changes inside the transaction that stores them, then after it
        self.sim_listeners: list[Callable[[Session, DeviceIdentity, list[SimChange]],
                                          None]] = []
        self.sims_committed: list[Callable[[], None]] = []
        self._targets: dict[tuple[int, str | None, int], tuple[float, Target]] = {}
        self._identities: dict[str, tuple[float, DeviceIdentity]] = {}

    async def register(self, user_id: int, name: str, push_token: str | None,
                       sims: list[SimSlot] | None) -> Registration:
        token = new_token()
        device = Device(
            id=new_id(),
            user_id=user_id,
            name=name,
            token_hash=sha256_hex(token),
            push_token=push_token,
        )
        async with self._sessions.begin() as session:
            session.add(device)
            await session.flush()
            if sims is not None:
                await self._replace_sims(session, device, sims)
            Logs.add(session, user_id, device.id, Entry(
                Priority.INFO, "devices", f"device {name!r} registered",
                {"sims": [s.sim_number for s in sims or []]}))
        self._changed(user_id, device.id)
        return Registration(device=device, token=token)

    async def update(self, identity: DeviceIdentity, *, push_token: str | None = None,
                     sims: list[SimSlot] | None = None, name: str | None = None,
                     own_pauses: bool = True) -> Device:
        """Change what the device reports; a SIM change (inserted, removed, PIN, network)
        is told to `sim_listeners` in the same transaction (the sim:changed event)."""
        changes: list[SimChange] = []
        async with self._sessions.begin() as session:
            device = await self._get(session, identity.user_id, identity.device_id)
            if push_token is not None:
                device.push_token = push_token
            if name:
                device.name = name
            device.last_seen = utcnow()
            if sims is not None:
                changes = await self._replace_sims(session, device, sims, own_pauses)
            device.updated_at = utcnow()
            if changes:
                await session.run_sync(lambda s: [listener(s, identity, changes)
                                                  for listener in self.sim_listeners])
        self._changed(identity.user_id, identity.device_id)
        if changes:
            for callback in self.sims_committed:
                callback()
        return device

    @staticmethod
    def check_slots(sims: list[SimSlot]) -> None:
        indexes = [s.slot_index for s in sims]
        if len(set(indexes)) != len(indexes) or any(i < 0 or i > 63 for i in indexes):
            raise BadRequest("simCards: slotIndex values must be distinct and in 0..63")

    async def _replace_sims(self, session: AsyncSession, device: Device,
                            sims: list[SimSlot], own_pauses: bool = True) -> list[SimChange]:
        """Store the reported slots; returns what changed in them that routing heeds.
        `own_pauses`: the device reports its SIMs' cool-downs (simgate's agent); else
        they are the server's and stay as they are."""
        self.check_slots(sims)
        await session.refresh(device, ["sims"])
        current = {s.slot_index: s for s in device.sims}
        changes = []
        for slot in sims:
            card = current.pop(slot.slot_index, None)
            before = None
            if card is not None:  # what the app masks, as known whole from app:started
                slot = replace(slot, phone_number=unmasked(slot.phone_number, card.phone_number),
                               carrier_name=unmasked(slot.carrier_name, card.carrier_name),
                               iccid=unmasked(slot.iccid, card.iccid))
            if card is None:
                card = SimCard(device_id=device.id, slot_index=slot.slot_index)
                device.sims.append(card)
            else:
                before = SimSlot(card.slot_index, SimStatus(card.status), iccid=card.iccid)
            kind = sim_change(before, slot)
            if kind is not None:
                changes.append(SimChange(slot, kind, before.status if before else None))
            if own_pauses:
                card.paused_until, card.pause_reason = slot.paused_until, slot.pause_reason
            card.status = slot.status.value
            card.phone_number = slot.phone_number
            card.carrier_name = slot.carrier_name
            card.iccid = slot.iccid
            card.signal = slot.signal
            card.detail = slot.detail
        for card in current.values():
            if card.status != SimStatus.ABSENT.value:
                changes.append(SimChange(SimSlot(card.slot_index, SimStatus.ABSENT),
                                         "removed", SimStatus(card.status)))
            device.sims.remove(card)
        return changes

    async def describe_sims(self, identity: DeviceIdentity, sims: list[SimSlot]) -> None:
        """The whole number, carrier and ICCID of each SIM, as the Android app tells them
        at its start (`app:started`); its PATCH /device masks them. A card the table does
        not hold yet is added as ready (the app lists active cards only)."""
        async with self._sessions.begin() as session:
            device = await self._get(session, identity.user_id, identity.device_id)
            await session.refresh(device, ["sims"])
            current = {s.slot_index: s for s in device.sims}
            for slot in sims:
                card = current.get(slot.slot_index)
                if card is None:
                    card = SimCard(device_id=device.id, slot_index=slot.slot_index,
                                   status=SimStatus.READY.value)
                    device.sims.append(card)
                card.phone_number = slot.phone_number or card.phone_number
                card.carrier_name = slot.carrier_name or card.carrier_name
                card.iccid = slot.iccid or card.iccid
        self._changed(identity.user_id, identity.device_id)

    async def identify(self, token: str) -> DeviceIdentity | None:
        """The device behind a token (remembered for a few seconds: agents call often)."""
        token_hash = sha256_hex(token)
        cached = self._identities.get(token_hash)
        if cached and cached[0] > time.monotonic():
            return cached[1]
        async with self._sessions() as session:
            row = (
                await session.execute(
                    select(Device.id, Device.user_id).where(
                        Device.token_hash == token_hash, Device.deleted_at.is_(None)
                    )
                )
            ).first()
        if row is None:
            return None
        identity = DeviceIdentity(device_id=row.id, user_id=row.user_id)
        self._identities[token_hash] = (time.monotonic() + IDENTITY_TTL, identity)
        return identity

    async def touch(self, device_id: str) -> None:
        """Record that the device was seen (throttled)."""
        now = utcnow()
        last = self._last_touch.get(device_id)
        if last and now - last < _TOUCH_EVERY:
            return
        self._last_touch[device_id] = now
        async with self._sessions.begin() as session:
            await session.execute(
                update(Device).where(Device.id == device_id).values(last_seen=now)
            )

    async def list(self, user_id: int) -> list[Device]:
        async with self._sessions() as session:
            result = await session.scalars(
                select(Device)
                .where(Device.user_id == user_id, Device.deleted_at.is_(None))
                .order_by(Device.created_at)
            )
            return list(result)

    async def identity_of(self, device_id: str) -> DeviceIdentity | None:
        """The owner of a device that is not removed, by its id alone."""
        async with self._sessions() as session:
            user_id = await session.scalar(select(Device.user_id).where(
                Device.id == device_id, Device.deleted_at.is_(None)))
        return None if user_id is None else DeviceIdentity(device_id, user_id)

    async def get(self, user_id: int, device_id: str) -> Device:
        async with self._sessions() as session:
            return await self._get(session, user_id, device_id)

    async def remove(self, user_id: int, device_id: str) -> None:
        """Soft-delete: the token stops working, the message history stays."""
        async with self._sessions.begin() as session:
            device = await self._get(session, user_id, device_id)
            device.deleted_at = utcnow()
            device.token_hash = sha256_hex(new_token())
        self._changed(user_id, device_id)
        self._removed(device_id)

    async def target(self, session: AsyncSession, user_id: int, device_id: str | None,
                     active_within_hours: int = 0) -> Target:
        """`pick`, remembered for TARGET_TTL seconds."""
        key = (user_id, device_id, active_within_hours)
        now = time.monotonic()
        cached = self._targets.get(key)
        if cached and cached[0] > now:
            return cached[1]
        device = await self.pick(session, user_id, device_id, active_within_hours)
        found = Target(device.id, slots_of(device))
        self._targets[key] = (now + TARGET_TTL, found)
        return found

    def forget(self, user_id: int, device_id: str) -> None:
        """Drop what is cached about a user's targets and a device's tokens."""
        for key in [k for k in self._targets if k[0] == user_id]:
            del self._targets[key]
        for key in [k for k, (_, i) in self._identities.items() if i.device_id == device_id]:
            del self._identities[key]

    async def pick(self, session: AsyncSession, user_id: int, device_id: str | None,
                   active_within_hours: int = 0) -> Device:
        """The device a new message goes to: the given one, else the one seen last."""
        if device_id:
            device = await session.get(Device, device_id)
            if device is None or device.user_id != user_id or device.deleted_at is not None:
                raise BadRequest(
                    f"device {device_id!r} not found: list your devices with GET /devices"
                )
            return device
        query = select(Device).where(Device.user_id == user_id, Device.deleted_at.is_(None))
        if active_within_hours > 0:
            query = query.where(
                Device.last_seen >= utcnow() - timedelta(hours=active_within_hours)
            )
        device = await session.scalar(query.order_by(Device.last_seen.desc()).limit(1))
        if device is None:
            hint = (
                f" seen in the last {active_within_hours} h" if active_within_hours > 0 else ""
            )
            raise BadRequest(
                f"no device{hint}: start an agent (simgate agent) or connect a phone"
                " to this server first"
            )
        return device

    @staticmethod
    async def _get(session: AsyncSession, user_id: int, device_id: str) -> Device:
        device = await session.get(Device, device_id)
        if device is None or device.user_id != user_id or device.deleted_at is not None:
            raise NotFound(f"device {device_id!r} not found")
        return device
