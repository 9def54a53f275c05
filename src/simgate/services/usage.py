"""Per-SIM usage for routing, kept in the store: sends per minute, day and month,
distinct recipients per month, and the SIM of the last exchange with each contact.

Counted in the transaction in which a device claims a message (reports it Processed with
its SIM), so every server worker and every agent reads the same counters, and they
survive restarts. Periods are UTC. Numbers are kept as short hashes, as finished
messages keep them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from simgate.domain.routing import SimRule, SimUsage, limit_reached, policy_from_settings
from simgate.services.ids import sha256_hex
from simgate.store.db import Sessions
from simgate.store.models import Device, SimContact, SimRecipient, utcnow
from simgate.store.models import SimUsage as UsageRow

PHONE_HASH_LENGTH = 16


def phone_key(phone: str) -> str:
    return sha256_hex(phone)[:PHONE_HASH_LENGTH]


def periods(at: datetime) -> tuple[str, str, str]:
    """The minute, day and month `at` counts in."""
    return at.strftime("%Y-%m-%dT%H:%M"), at.strftime("%Y-%m-%d"), at.strftime("%Y-%m")


@dataclass(frozen=True)
class Claim:
    """One message routed to a SIM of a device (recipients empty when encrypted)."""

    user_id: int
    device_id: str
    slot_index: int
    phones: Sequence[str] = ()


@dataclass(frozen=True)
class DeviceUsage:
    """What routing on one device needs: each slot's usage, and each asked number's
    SIM of the last exchange on this device (for Sticky)."""

    sims: dict[int, SimUsage]
    contacts: dict[str, int]


@dataclass(frozen=True)
class _Upserts:
    sends: Any
    recipients: Any
    contacts: Any


_UPSERTS: dict[str, _Upserts] = {}


def _statements(connection: Connection) -> _Upserts:
    """The counting upserts of the connection's dialect, built once: building them cost
    more than running them, on the path of every claim."""
    name = connection.dialect.name
    if name not in _UPSERTS:
        dialect = postgresql if name == "postgresql" else sqlite
        table = UsageRow.__table__
        sends = dialect.insert(table)
        contacts = dialect.insert(SimContact.__table__)
        _UPSERTS[name] = _Upserts(
            sends=sends.on_conflict_do_update(
                index_elements=["device_id", "slot_index", "period"],
                set_={"sends": table.c.sends + sends.excluded.sends}),
            recipients=dialect.insert(SimRecipient.__table__).on_conflict_do_nothing(),
            contacts=contacts.on_conflict_do_update(
                index_elements=["user_id", "phone"],
                set_={"device_id": contacts.excluded.device_id,
                      "slot_index": contacts.excluded.slot_index}))
    return _UPSERTS[name]


def count(connection: Connection, claims: Iterable[Claim], at: datetime | None = None) -> None:
    """Count claims, inside the caller's write transaction; rows in key order, so two
    transactions on PostgreSQL never wait on each other in a circle."""
    claims = list(claims)
    if not claims:
        return
    minute, day, month = periods(at or utcnow())
    sends: Counter[tuple[str, int, str]] = Counter()
    recipients: set[tuple[str, int, str, str]] = set()
    contacts: dict[tuple[int, str], tuple[str, int]] = {}
    for claim in claims:
        for period in (minute, day, month):
            sends[(claim.device_id, claim.slot_index, period)] += 1
        for phone in claim.phones:
            key = phone_key(phone)
            recipients.add((claim.device_id, claim.slot_index, month, key))
            contacts[(claim.user_id, key)] = (claim.device_id, claim.slot_index)
    statements = _statements(connection)
    connection.execute(statements.sends,
                       [{"device_id": d, "slot_index": s, "period": p, "sends": n}
                        for (d, s, p), n in sorted(sends.items())])
    if recipients:
        connection.execute(statements.recipients,
                           [{"device_id": d, "slot_index": s, "month": m, "phone": p}
                            for d, s, m, p in sorted(recipients)])
        _remember(connection, [(u, p, d, s) for (u, p), (d, s) in sorted(contacts.items())])


def exchanged(connection: Connection, user_id: int, device_id: str, slot_index: int,
              phone: str) -> None:
    """An SMS from `phone` arrived on this SIM: Sticky answers through it."""
    _remember(connection, [(user_id, phone_key(phone), device_id, slot_index)])


def _remember(connection: Connection, rows: list[tuple[int, str, str, int]]) -> None:
    connection.execute(
        _statements(connection).contacts,
        [{"user_id": u, "phone": p, "device_id": d, "slot_index": s} for u, p, d, s in rows])


def read_usage(connection: Connection, device_ids: Sequence[str],
               at: datetime | None = None) -> dict[tuple[str, int], SimUsage]:
    """Each SIM's usage now, by (device id, slot index), in the caller's transaction."""
    if not device_ids:
        return {}
    minute, day, month = periods(at or utcnow())
    found: dict[tuple[str, int], dict[str, int]] = {}
    rows = connection.execute(
        select(UsageRow.device_id, UsageRow.slot_index, UsageRow.period, UsageRow.sends)
        .where(UsageRow.device_id.in_(device_ids),
               UsageRow.period.in_([minute, day, month])))
    for device_id, slot, period, sends in rows:
        kind = {minute: "minute", day: "day", month: "month"}[period]
        found.setdefault((device_id, slot), {})[kind] = sends
    rows = connection.execute(
        select(SimRecipient.device_id, SimRecipient.slot_index, func.count())
        .where(SimRecipient.device_id.in_(device_ids), SimRecipient.month == month)
        .group_by(SimRecipient.device_id, SimRecipient.slot_index))
    for device_id, slot, distinct in rows:
        found.setdefault((device_id, slot), {})["recipients_month"] = distinct
    return {key: SimUsage(**values) for key, values in found.items()}


def read_for_routing(connection: Connection, user_id: int, device_id: str,
                     phones: Sequence[str]) -> DeviceUsage:
    """A device's usage, with which of `phones` each SIM already counts this month and
    the SIM of the last exchange with each of them on this device, in the caller's
    transaction (the server's router reads and counts in one)."""
    month = periods(utcnow())[2]
    usage = {slot: u for (_, slot), u in read_usage(connection, [device_id]).items()}
    keys = {phone_key(p): p for p in phones}
    known: dict[int, set[str]] = {}
    contacts: dict[str, int] = {}
    if keys:
        for slot, key in connection.execute(
                select(SimRecipient.slot_index, SimRecipient.phone).where(
                    SimRecipient.device_id == device_id, SimRecipient.month == month,
                    SimRecipient.phone.in_(list(keys)))):
            known.setdefault(slot, set()).add(keys[key])
        for key, slot in connection.execute(
                select(SimContact.phone, SimContact.slot_index).where(
                    SimContact.user_id == user_id, SimContact.device_id == device_id,
                    SimContact.phone.in_(list(keys)))):
            contacts[keys[key]] = slot
    for slot, phones_known in known.items():
        base = usage.get(slot) or SimUsage()
        usage[slot] = SimUsage(base.minute, base.day, base.month, base.recipients_month,
                               frozenset(phones_known))
    return DeviceUsage(usage, contacts)


class UsageStore:
    """Reads of the counters, for routing, health, the CLI and the dashboard."""

    def __init__(self, sessions: Sessions) -> None:
        self._sessions = sessions

    async def of_devices(self, device_ids: Sequence[str],
                         at: datetime | None = None) -> dict[tuple[str, int], SimUsage]:
        """Each SIM's usage now, by (device id, slot index)."""
        if not device_ids:
            return {}
        async with self._sessions() as session:
            return await session.run_sync(
                lambda s: read_usage(s.connection(), device_ids, at))

    async def for_routing(self, user_id: int, device_id: str,
                          phones: Sequence[str]) -> DeviceUsage:
        """`read_for_routing` in a transaction of its own (simgate's agent asks it)."""
        async with self._sessions() as session:
            return await session.run_sync(
                lambda s: read_for_routing(s.connection(), user_id, device_id, phones))

    async def prune(self, at: datetime | None = None) -> None:
        """Drop counters no limit reads any more: other months, and minutes of other days."""
        _, day, month = periods(at or utcnow())
        async with self._sessions.begin() as session:
            await session.execute(delete(UsageRow).where(or_(
                UsageRow.period < month,
                (UsageRow.period < day) & (func.length(UsageRow.period) > len(day)))))
            await session.execute(delete(SimRecipient).where(SimRecipient.month < month))


@dataclass(frozen=True)
class SimReport:
    """One SIM's usage against its limits, as health, the CLI and the dashboard show it."""

    device_id: str
    device_name: str
    slot_index: int
    state: str
    usage: SimUsage
    rule: SimRule
    at_limit: str | None  # why routing skips it now, if a limit does
    paused_until: datetime | None = None
    pause_reason: str | None = None

    def describe(self) -> str:
        """`today 3/3, month 3, 1 recipient(s)`: each count beside its limit, if any."""
        def of(value: int, limit: int | None) -> str:
            return f"{value}/{limit}" if limit is not None else str(value)

        rule, usage = self.rule, self.usage
        return (f"today {of(usage.day, rule.daily_limit)}, "
                f"month {of(usage.month, rule.monthly_limit)}, "
                f"{of(usage.recipients_month, rule.unique_recipients_monthly)} recipient(s) "
                "this month" + ("" if rule.enabled else ", disabled in routing.sims"))


async def sim_reports(sessions: Sessions, store: UsageStore, user_id: int,
                      routing: dict[str, Any]) -> list[SimReport]:
    """Every SIM of the user's devices with its usage and limits (its device's rules)."""
    async with sessions() as session:
        devices = list(await session.scalars(
            select(Device).where(Device.user_id == user_id, Device.deleted_at.is_(None))
            .order_by(Device.created_at)))
    counted = await store.of_devices([d.id for d in devices])
    reports = []
    for device in devices:
        policy = policy_from_settings({}, routing, device.id)
        for sim in device.sims:
            used = counted.get((device.id, sim.slot_index)) or SimUsage()
            rule = policy.rule(sim.slot_index)
            reports.append(SimReport(
                device.id, device.name, sim.slot_index, sim.status, used, rule,
                limit_reached(rule, used, [ANY_NEW_RECIPIENT]),
                *((sim.paused_until, sim.pause_reason)
                  if sim.paused_until and sim.paused_until > utcnow() else ())))
    return reports


# stands for a recipient the SIM has not counted yet: is there room for one more?
ANY_NEW_RECIPIENT = "\0new"
