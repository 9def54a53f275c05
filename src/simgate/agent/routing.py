"""The agent's SIM choice: the rules of `domain/routing.py` (the same the server applies for
phones) with what only the agent knows at once, next to its modems: each SIM's state as
just read, its cool-down after failed sends, and the server's counters read before each
batch, kept up to date as the batch is routed.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from simgate.agent.backends.base import SendError
from simgate.agent.client import PendingMessage
from simgate.agent.pacing import Pacer
from simgate.domain.routing import (
    BYPASS_PRIORITY,
    Choice,
    LimitsReached,
    NoSimAvailable,
    Policy,
    SimsPaused,
    SimUsage,
    counted,
    limit_reached,
    route,
    worth_failover,
)
from simgate.domain.sims import SimSlot


class Held(Exception):
    """The message waits (unclaimed, still Pending): its SIMs are at their limits, or
    (`paused`) all in a cool-down, when another device may take it."""

    def __init__(self, why: str, paused: bool = False) -> None:
        super().__init__(why)
        self.paused = paused


@dataclass
class SimRouting:
    """Routing state of one agent; `sims` and `default_slot` are the backend's."""

    policy: Policy
    cursor: int = 0  # round robin: the slot used last plus one, kept with each claim
    # per-SIM usage as the server counts it; contacts: number -> slot (Sticky)
    usage: dict[int, SimUsage] = field(default_factory=dict)
    contacts: dict[str, int] = field(default_factory=dict)
    failures: dict[int, int] = field(default_factory=dict)  # failed in a row (SIM reasons)
    paused: dict[int, tuple[datetime, str]] = field(default_factory=dict)  # until, why
    _rate_pacers: dict[int | None, Pacer] = field(default_factory=dict)

    @property
    def active(self) -> bool:
        """Whether the owner set routing rules or a strategy: only then is usage kept."""
        return bool(self.policy.sims) or self.policy.strategy is not None

    def describe(self) -> str:
        policy = self.policy
        return (f"strategy {policy.strategy or policy.mode.value}, failover "
                + (f"up to {policy.max_attempts} attempts" if policy.failover else "off")
                + (", rules for SIM " + ", ".join(str(n + 1) for n in sorted(policy.sims))
                   if policy.sims else ""))

    def route(self, message: PendingMessage, sims: list[SimSlot],
              default_slot: int | None) -> tuple[int | None, str | None]:
        """The slot for a message, or an error saying why it cannot be sent; Held when
        it must wait."""
        bypass = message.priority >= BYPASS_PRIORITY
        if message.sim_number is not None:
            slot = next((s for s in sims if s.sim_number == message.sim_number), None)
            if slot is None:
                return None, f"Can't send message: SIM {message.sim_number} not found"
            if not slot.usable:
                return None, (f"Can't send message: SIM {message.sim_number} is not ready"
                              f" ({slot.status.value}): {slot.detail}")
            if self.active and not bypass:
                why = limit_reached(self.policy.rule(slot.slot_index),
                                    self.usage.get(slot.slot_index) or SimUsage(),
                                    message.phone_numbers)
                if why:
                    raise Held(f"SIM {slot.sim_number} {why}")
            self.count(slot.slot_index, message.phone_numbers)
            return slot.slot_index, None
        try:
            choice = self.choose(message.phone_numbers, sims, default_slot, bypass=bypass)
        except LimitsReached as exc:
            raise Held(str(exc), isinstance(exc, SimsPaused) and self.policy.failover) from None
        except NoSimAvailable as exc:
            return None, str(exc)
        self.cursor = choice.cursor
        if choice.slot_index is not None:
            self.count(choice.slot_index, message.phone_numbers)
        return choice.slot_index, None

    def choose(self, phones: list[str], sims: list[SimSlot], default_slot: int | None, *,
               bypass: bool, exclude: frozenset[int] = frozenset()) -> Choice:
        sticky = self.contacts.get(phones[0]) if self.active and phones else None
        return route(self.policy, sims, self.usage if self.active else {}, phones,
                     default_slot=default_slot, cursor=self.cursor, sticky=sticky,
                     bypass_limits=bypass, exclude=exclude, paused=self.paused_now())

    def count(self, slot: int, phones: list[str]) -> None:
        """A message routed to `slot`: counted here until the server's count is read
        again (the server counts it when the claim, or the failover, is reported)."""
        if self.active:
            self.usage[slot] = counted(self.usage.get(slot) or SimUsage(), phones)
            self.contacts.update(dict.fromkeys(phones, slot))

    def failover_slot(self, body: dict[str, Any], phone: str, exc: SendError,
                      tried: set[int | None], tries: int, sims: list[SimSlot],
                      default_slot: int | None) -> int | None:
        """The next SIM to try after a failed send, or None: not pinned, failover on,
        attempts left, a SIM/network reason, and another eligible SIM."""
        if not self.may_leave(body, exc, tries):
            return None
        try:
            choice = self.choose([phone], sims, default_slot,
                                 bypass=body.get("priority", 0) >= BYPASS_PRIORITY,
                                 exclude=frozenset(t for t in tried if t is not None))
        except NoSimAvailable:
            return None
        if choice.slot_index is None or choice.slot_index in tried:
            return None
        self.count(choice.slot_index, [phone])
        return choice.slot_index

    def may_leave(self, body: dict[str, Any], exc: SendError, tries: int) -> bool:
        """Whether a message that failed may be tried elsewhere (the next SIM, another of
        the user's devices): failover on, attempts left, a SIM or network reason, the SIM
        not pinned (the server also keeps it when the caller pinned the device)."""
        return (body.get("sim_number") is None and self.policy.failover
                and tries < self.policy.max_attempts
                and worth_failover(exc.code, exc.permanent))

    def sent(self, slot: int | None) -> None:
        """A send went through: the SIM's failures in a row start over."""
        self.failures.pop(slot, None)

    def failed(self, slot: int, exc: SendError) -> tuple[datetime, str] | None:
        """One more failure in a row (a SIM or network reason); at
        routing.cooldown_failures the SIM is paused for routing.cooldown_seconds: returns
        until when, and why."""
        failures = self.failures[slot] = self.failures.get(slot, 0) + 1
        policy = self.policy
        if failures < policy.cooldown_failures or not policy.cooldown_seconds:
            return None
        self.failures[slot] = 0
        until = datetime.now(UTC) + timedelta(seconds=policy.cooldown_seconds)
        self.paused[slot] = (until, f"{failures} failed sends in a row, the last: {exc}")
        return self.paused[slot]

    def paused_now(self) -> dict[int, str]:
        """Slots in a cool-down now, with why (rotation and failover skip them)."""
        now = datetime.now(UTC)
        return {slot: f"paused until {until:%H:%M:%S} UTC ({why})"
                for slot, (until, why) in self.paused.items() if until > now}

    def with_pauses(self, sims: list[SimSlot]) -> list[SimSlot]:
        """The SIMs with their cool-downs, as the server is told them."""
        now = datetime.now(UTC)
        return [replace(s, paused_until=self.paused[s.slot_index][0],
                        pause_reason=self.paused[s.slot_index][1])
                if s.slot_index in self.paused and self.paused[s.slot_index][0] > now else s
                for s in sims]

    def rate(self, slot: int | None) -> Pacer:
        """routing.sims."N".rate_per_minute held at send time too: routing counts when a
        message is routed, and a queue could bunch sends routed a minute apart."""
        rate = None if slot is None else self.policy.rule(slot).rate_per_minute
        pacer = self._rate_pacers.get(slot)
        if pacer is None:
            pacer = self._rate_pacers[slot] = Pacer()
        if pacer.limit != ((60.0, rate) if rate else None):
            pacer.configure({"limit_period": "PerMinute", "limit_value": rate})
        return pacer
