"""SIM choice on the server, for the devices that do not route themselves.

simgate's agent picks a SIM next to its modems. The Android app takes whatever
GET /mobile/v1/message hands it, and picks a SIM itself when it gets none. So for a phone
the server applies the rules of `domain/routing.py` (the same the agent calls) with the
store's state: the device's SIM table and cool-downs, the per-SIM counters, the rotation
cursor. It decides when it hands messages out, in the transaction that counts them, so
two workers never hand one message to two SIMs; and it decides again when the phone
reports a send failed for a SIM or network reason (failover to the next SIM, then to
another device).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.engine import Connection

from simgate.domain.hours import WorkHours
from simgate.domain.routing import (
    BYPASS_PRIORITY,
    LimitsReached,
    NoSimAvailable,
    Policy,
    SimsPaused,
    SimUsage,
    Strategy,
    app_failure_worth_failover,
    counted,
    eligible,
    limit_reached,
    policy_from_settings,
    route,
)
from simgate.domain.sims import SimSlot, SimStatus
from simgate.services import failover, usage
from simgate.store.models import Device, Message, SimCard, utcnow

log = logging.getLogger(__name__)


@dataclass
class Decision:
    """What to do with one Pending message handed to a phone: hand it out through
    `sim_number` (None: the phone picks), or hold it (`hold`: why it waits), fail it
    (`fail`: why it cannot be sent), or give it to another device (`move_to`)."""

    sim_number: int | None = None
    hold: str | None = None
    fail: str | None = None
    move_to: str | None = None


@dataclass
class _Device:
    """One device's routing state, read once per hand-out or report."""

    user_id: int
    device_id: str
    policy: Policy
    hours: WorkHours
    slots: list[SimSlot]
    paused: dict[int, str]
    cursor: int
    usage: dict[int, SimUsage] = field(default_factory=dict)
    contacts: dict[str, int] = field(default_factory=dict)

    @property
    def rules_apply(self) -> bool:
        return bool(self.policy.sims) or self.policy.strategy is not None


def _load(connection: Connection, user_id: int, device_id: str,
          phones: Sequence[str] = ()) -> _Device:
    values = failover.user_settings(connection, user_id)
    messages = values.get("messages") or {}
    routing = values.get("routing") or {}
    now = utcnow()
    cards = connection.execute(
        select(SimCard.slot_index, SimCard.status, SimCard.detail, SimCard.paused_until,
               SimCard.pause_reason).where(SimCard.device_id == device_id)
        .order_by(SimCard.slot_index)).all()
    slots = [SimSlot(slot, SimStatus(status), detail=detail or "") for slot, status, detail,
             _, _ in cards]
    paused = {slot: f"paused until {until:%H:%M:%S} UTC ({why})"
              for slot, _, _, until, why in cards if until is not None and until > now}
    cursor = connection.execute(
        select(Device.routing_cursor).where(Device.id == device_id)).scalar() or 0
    state = _Device(user_id, device_id, policy_from_settings(messages, routing, device_id),
                    WorkHours.of(messages, routing.get("timezone")), slots, paused, cursor)
    if state.rules_apply:
        found = usage.read_for_routing(connection, user_id, device_id, phones)
        state.usage, state.contacts = found.sims, found.contacts
        if any(r.rate_per_minute is not None for r in state.policy.sims.values()):
            _last_minute(connection, state)
    return state


# A phone sends what it is handed at once: its rate per minute is held over the hand-outs
# of a sliding window a little longer than a minute, so its own latency cannot squeeze
# more than the rate into any 60 s.
RATE_WINDOW = timedelta(seconds=61)


def _last_minute(connection: Connection, state: _Device) -> None:
    """Each SIM's minute count as the hand-outs of the last RATE_WINDOW (not only those
    of this calendar minute)."""
    rows = connection.execute(
        select(Message.sim_used, func.count()).where(
            Message.device_id == state.device_id, Message.sim_used.is_not(None),
            Message.handed_at > utcnow() - RATE_WINDOW).group_by(Message.sim_used))
    for sim, handed in rows:
        base = state.usage.get(sim - 1) or SimUsage()
        state.usage[sim - 1] = replace(base, minute=max(base.minute, handed))


def _tried_here(attempts: Sequence[dict[str, Any]] | None, device_id: str) -> frozenset[int]:
    """The slots of this device a message already failed through."""
    return frozenset(a["sim_number"] - 1 for a in attempts or ()
                     if a.get("device_id") == device_id and a.get("sim_number"))


class PhoneRouter:
    """Routing for phones: hand-outs and failovers, over the store."""

    def hand_out(self, connection: Connection, user_id: int, device_id: str,
                 messages: Sequence[Any]) -> tuple[str | None, dict[str, Decision]]:
        """Why nothing is handed out now (outside the work hours; None: it is), and a
        Decision per message (by id) not yet handed out; what is handed out is counted
        on its SIM, and the rotation cursor kept, in the caller's transaction."""
        phones = sorted({r.phone_number for m in messages if not m.is_encrypted
                         for r in m.recipients})
        state = _load(connection, user_id, device_id, phones)
        wait = state.hours.wait(utcnow())
        if wait:
            opens = utcnow() + timedelta(seconds=wait)
            return (f"outside work hours ({state.hours.describe()}): handed out from "
                    f"{opens:%H:%M} UTC"), {}
        decisions: dict[str, Decision] = {}
        claims: list[usage.Claim] = []
        cursor = state.cursor
        for message in messages:
            decision = self._decide(connection, state, message)
            decisions[message.ext_id] = decision
            if decision.sim_number is not None:
                recipients = [] if message.is_encrypted else [
                    r.phone_number for r in message.recipients]
                slot = decision.sim_number - 1
                claims.append(usage.Claim(user_id, device_id, slot, recipients))
                state.usage[slot] = counted(state.usage.get(slot) or SimUsage(), recipients)
                state.contacts.update(dict.fromkeys(recipients, slot))
        usage.count(connection, claims)
        if state.cursor != cursor:
            connection.execute(update(Device).where(Device.id == device_id)
                               .values(routing_cursor=state.cursor))
        return None, decisions

    def _decide(self, connection: Connection, state: _Device, message: Any) -> Decision:
        phones = [] if message.is_encrypted else [r.phone_number for r in message.recipients]
        bypass = message.priority >= BYPASS_PRIORITY
        if message.sim_number is not None:  # pinned: that SIM or none
            slot = message.sim_number - 1
            why = None if bypass else limit_reached(state.policy.rule(slot),
                                                    state.usage.get(slot) or SimUsage(), phones)
            if why:
                return Decision(hold=f"SIM {message.sim_number} {why}")
            return Decision(sim_number=message.sim_number)
        if not state.slots:  # the phone told no SIMs: it picks one itself
            return Decision()
        sticky = (state.contacts.get(phones[0]) if phones
                  and state.policy.strategy is Strategy.STICKY else None)
        try:
            choice = route(state.policy, state.slots,
                           state.usage if state.rules_apply else {}, phones,
                           default_slot=None, cursor=state.cursor, sticky=sticky,
                           bypass_limits=bypass,
                           exclude=_tried_here(message.attempts, state.device_id),
                           paused=state.paused)
        except LimitsReached as exc:
            if isinstance(exc, SimsPaused) and state.policy.failover and not message.device_pinned:
                target = self._other_device(connection, state, message)
                if target is not None:
                    return Decision(move_to=target)
            return Decision(hold=str(exc))
        except NoSimAvailable as exc:
            return Decision(fail=str(exc))
        state.cursor = choice.cursor
        if choice.slot_index is None:
            return Decision()
        return Decision(sim_number=choice.slot_index + 1)

    @staticmethod
    def _other_device(connection: Connection, state: _Device, message: Any) -> str | None:
        attempts = message.attempts or []
        if len(attempts) >= (state.policy.max_attempts if state.policy.failover else 0):
            return None
        tried = {state.device_id, *(a["device_id"] for a in attempts if a.get("device_id"))}
        return failover.next_device(connection, state.user_id, tried)

    # -- after a report --------------------------------------------------------------

    def sent(self, connection: Connection, device_id: str, sim_number: int | None) -> None:
        """A send went through that SIM: its failures in a row start over."""
        if sim_number is not None:
            connection.execute(update(SimCard).where(
                SimCard.device_id == device_id, SimCard.slot_index == sim_number - 1,
                SimCard.failures > 0).values(failures=0))

    def failed(self, connection: Connection, user_id: int, device_id: str, message: Any,
               errors: Sequence[str | None], at: datetime) -> tuple[dict[str, Any], str | None,
                                                                    str | None]:
        """A phone reported every recipient of `message` Failed. Returns the attempt to
        record, where the message goes next (this device again, through another SIM;
        another device; None: it stays Failed), and a log line when the SIM was paused."""
        error = next((e for e in errors if e), "Failed")
        attempt = {"sim_number": message.sim_used, "device_id": device_id, "error": error,
                   "at": at.isoformat()}
        worth = bool(errors) and all(app_failure_worth_failover(e) for e in errors)
        state = _load(connection, user_id, device_id)
        paused = None
        if worth and message.sim_used is not None:
            paused = self._count_failure(connection, state, message.sim_used - 1, error)
        attempts = [*(message.attempts or []), attempt]
        policy = state.policy
        if (not worth or message.sim_number is not None or not policy.failover
                or len(attempts) >= policy.max_attempts):
            return attempt, None, paused
        if message.sim_used is not None:  # the phone may try its next SIM
            try:
                eligible(policy, state.slots, {}, [], bypass_limits=True,
                         exclude=_tried_here(attempts, device_id), paused=state.paused)
                return attempt, device_id, paused
            except NoSimAvailable:
                pass
        if message.device_pinned:
            return attempt, None, paused
        tried = {device_id, *(a["device_id"] for a in attempts if a.get("device_id"))}
        return attempt, failover.next_device(connection, user_id, tried), paused

    @staticmethod
    def _count_failure(connection: Connection, state: _Device, slot: int,
                       error: str) -> str | None:
        """One more failure in a row on the SIM; at routing.cooldown_failures it is paused
        for routing.cooldown_seconds (rotation and failover skip it). Returns the log line
        of a pause."""
        failures = (connection.execute(
            select(SimCard.failures).where(SimCard.device_id == state.device_id,
                                           SimCard.slot_index == slot)).scalar() or 0) + 1
        policy = state.policy
        values: dict[str, Any] = {"failures": failures}
        line = None
        if failures >= policy.cooldown_failures and policy.cooldown_seconds:
            until = utcnow() + timedelta(seconds=policy.cooldown_seconds)
            why = f"{failures} failed sends in a row, the last: {error}"
            values = {"failures": 0, "paused_until": until, "pause_reason": why}
            state.paused[slot] = why
            line = f"SIM {slot + 1} paused for {policy.cooldown_seconds} s: {why}"
        connection.execute(update(SimCard).where(SimCard.device_id == state.device_id,
                                                 SimCard.slot_index == slot).values(**values))
        return line
