"""SIM selection for messages sent without an explicit simNumber.

Pure functions: the agent keeps the round-robin cursor and the per-SIM usage counters
and persists them, so the rotation and the limits survive restarts. `choose_sim` is the
original's three modes; `route` adds simgate's strategies, per-SIM limits and failover.
"""

from __future__ import annotations

import enum
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from simgate.domain.sims import SimSlot

# Messages at or above this priority skip pauses and limits (as on sms-gate.app).
BYPASS_PRIORITY = 100


class SimSelectionMode(enum.StrEnum):
    """The `messages.sim_selection_mode` setting, as on the wire."""

    OS_DEFAULT = "OSDefault"
    ROUND_ROBIN = "RoundRobin"
    RANDOM = "Random"


class NoSimAvailable(LookupError):
    """No slot can take the message; the text says why."""


@dataclass(frozen=True)
class Choice:
    """The chosen slot (None: let the phone pick) and the next round-robin cursor."""

    slot_index: int | None
    cursor: int


def choose_sim(
    mode: SimSelectionMode,
    slots: Sequence[SimSlot],
    *,
    default_slot: int | None,
    cursor: int = 0,
    rng: random.Random | None = None,
) -> Choice:
    """Pick the slot for a message without simNumber.

    OSDefault: the backend's default slot (None leaves it to the phone).
    RoundRobin: the usable slots (ready, or of unknown state) in slot order, starting
    after the last one used (`cursor` is the slot index used last plus one), so a slot
    coming back is rejoined fairly. Random: uniform over usable slots.
    """
    if mode is SimSelectionMode.OS_DEFAULT:
        return Choice(default_slot, cursor)
    ready = sorted(s.slot_index for s in slots if s.usable)
    if not ready:
        raise NoSimAvailable("Can't send message: No SIMs found" + _why_not_ready(slots))
    if mode is SimSelectionMode.RANDOM:
        return Choice((rng or random).choice(ready), cursor)
    chosen = next((i for i in ready if i >= cursor), ready[0])
    return Choice(chosen, chosen + 1)


def _why_not_ready(slots: Sequence[SimSlot]) -> str:
    reasons = [f"SIM {s.sim_number}: {s.detail or s.status.value}" for s in slots]
    return (" (" + "; ".join(reasons) + ")") if reasons else ""


# -- routing beyond the original: strategies, per-SIM limits, failover -----------------


class Strategy(enum.StrEnum):
    """`routing.strategy`; None keeps `messages.sim_selection_mode`."""

    LEAST_USED = "LeastUsed"
    WEIGHTED = "Weighted"
    STICKY = "Sticky"
    PREFIX_RULES = "PrefixRules"


class LimitsReached(NoSimAvailable):
    """Every SIM that could send is at one of its limits or in a cool-down: the message
    waits, not fails."""


class SimsPaused(LimitsReached):
    """Every SIM that could send is in a cool-down: another device may send it."""


@dataclass(frozen=True)
class SimRule:
    """`routing.sims."N"`: the limits and preferences of one SIM (None: no limit)."""

    rate_per_minute: int | None = None
    daily_limit: int | None = None
    monthly_limit: int | None = None
    unique_recipients_monthly: int | None = None
    weight: int = 1
    prefixes: tuple[str, ...] = ()
    enabled: bool = True


@dataclass(frozen=True)
class SimUsage:
    """What one SIM sent in the current minute, day and month (messages, not parts)."""

    minute: int = 0
    day: int = 0
    month: int = 0
    recipients_month: int = 0  # distinct recipients this month
    known: frozenset[str] = frozenset()  # of the message's recipients, those already counted


@dataclass(frozen=True)
class Policy:
    """The routing settings as plain values; `sims` is keyed by slot index (0-based)."""

    mode: SimSelectionMode = SimSelectionMode.OS_DEFAULT
    strategy: Strategy | None = None
    sims: Mapping[int, SimRule] = field(default_factory=dict)
    failover: bool = True
    max_attempts: int = 3
    cooldown_failures: int = 3  # failed sends in a row (SIM/network reasons) that pause a SIM
    cooldown_seconds: int = 300  # how long; 0: never paused

    def rule(self, slot_index: int) -> SimRule:
        return self.sims.get(slot_index) or SimRule()


def sim_rules(routing: Mapping[str, Any], device_id: str | None) -> dict[str, dict[str, Any]]:
    """`routing.sims` as it applies to one device: the rules of "N" for every device,
    each key overridden by that device's own group (`routing.sims.<device id>."N"`)."""
    sims = routing.get("sims") or {}
    rules = {k: dict(v or {}) for k, v in sims.items() if k.isdigit()}
    own = sims.get(device_id) if device_id else None
    for number, values in (own or {}).items():
        rules[number] = {**rules.get(number, {}), **{k: v for k, v in (values or {}).items()
                                                     if v is not None}}
    return rules


def policy_from_settings(messages: Mapping[str, Any], routing: Mapping[str, Any],
                         device_id: str | None = None) -> Policy:
    """The Policy of the `messages` and `routing` settings groups (as validated), for one
    device (its own `routing.sims` group over the one for all)."""
    sims = {}
    for number, values in sim_rules(routing, device_id).items():
        values = {k: v for k, v in (values or {}).items() if v is not None}
        if "prefixes" in values:
            values["prefixes"] = tuple(values["prefixes"])
        sims[int(number) - 1] = SimRule(**values)
    strategy = routing.get("strategy")
    return Policy(
        mode=SimSelectionMode(messages.get("sim_selection_mode") or SimSelectionMode.OS_DEFAULT),
        strategy=Strategy(strategy) if strategy else None,
        sims=sims,
        failover=routing.get("failover", True) is not False,
        max_attempts=int(routing.get("max_attempts") or 3),
        cooldown_failures=int(routing.get("cooldown_failures") or 3),
        cooldown_seconds=int(routing.get("cooldown_seconds", 300)),
    )


def counted(usage: SimUsage, phones: Sequence[str]) -> SimUsage:
    """`usage` after one more message to `phones`."""
    new = set(phones) - usage.known
    return SimUsage(usage.minute + 1, usage.day + 1, usage.month + 1,
                    usage.recipients_month + len(new), usage.known | new)


def limit_reached(rule: SimRule, usage: SimUsage, phones: Sequence[str]) -> str | None:
    """Why the SIM may not take this message now (None: it may)."""
    if rule.rate_per_minute is not None and usage.minute >= rule.rate_per_minute:
        return f"reached its rate of {rule.rate_per_minute} per minute"
    if rule.daily_limit is not None and usage.day >= rule.daily_limit:
        return f"reached its daily limit of {rule.daily_limit}"
    if rule.monthly_limit is not None and usage.month >= rule.monthly_limit:
        return f"reached its monthly limit of {rule.monthly_limit}"
    if rule.unique_recipients_monthly is not None:
        new = len(set(phones) - usage.known)
        if new and usage.recipients_month + new > rule.unique_recipients_monthly:
            return (f"reached its limit of {rule.unique_recipients_monthly} distinct "
                    "recipients this month")
    return None


def eligible(policy: Policy, slots: Sequence[SimSlot], usage: Mapping[int, SimUsage],
             phones: Sequence[str], *, bypass_limits: bool = False,
             exclude: frozenset[int] = frozenset(),
             paused: Mapping[int, str] | None = None) -> list[int]:
    """Slot indexes that may take the message, in slot order; NoSimAvailable (or
    LimitsReached, when only limits stand in the way) saying why none may. `paused`:
    slots in a cool-down after failed sends, with why."""
    ready, reasons, limited, cooling = [], [], False, False
    for slot in sorted(slots, key=lambda s: s.slot_index):
        rule = policy.rule(slot.slot_index)
        why = None
        if slot.slot_index in exclude:
            why = "already tried"
        elif not slot.usable:
            why = slot.detail or slot.status.value
        elif not rule.enabled:
            why = "disabled in routing.sims"
        elif paused and slot.slot_index in paused:
            why, cooling = paused[slot.slot_index], True
        elif not bypass_limits:
            why = limit_reached(rule, usage.get(slot.slot_index) or SimUsage(), phones)
            limited = limited or why is not None
        if why is None:
            ready.append(slot.slot_index)
        else:
            reasons.append(f"SIM {slot.sim_number}: {why}")
    if not ready:
        detail = (" (" + "; ".join(reasons) + ")") if reasons else ""
        if limited or cooling:  # both pass: the message waits for them
            raise (LimitsReached if limited else SimsPaused)("every SIM that can send is "
                                + ("at a limit" if not cooling else "paused" if not limited
                                   else "at a limit or paused") + detail)
        raise NoSimAvailable("Can't send message: No SIMs found" + detail)
    return ready


def route(policy: Policy, slots: Sequence[SimSlot], usage: Mapping[int, SimUsage],
          phones: Sequence[str], *, default_slot: int | None, cursor: int = 0,
          sticky: int | None = None, bypass_limits: bool = False,
          exclude: frozenset[int] = frozenset(), paused: Mapping[int, str] | None = None,
          rng: random.Random | None = None) -> Choice:
    """Pick the slot for a message without simNumber, under the routing settings.

    With no strategy, no per-SIM rules and nothing excluded or paused this is
    `choose_sim`: the three original modes keep their meaning. Otherwise only eligible SIMs
    are considered (usable, not paused, enabled, under their limits unless
    `bypass_limits`, not in `exclude`), then:
    LeastUsed takes the fewest sends today; Weighted the SIM furthest behind its share of
    today's sends (deterministic, so the split follows the weights closely); Sticky the
    `sticky` slot (the last exchange with the recipient) if eligible; PrefixRules the
    SIMs whose prefixes match the first recipient. What a strategy leaves open falls back
    to the selection mode among the eligible SIMs.
    """
    if policy.strategy is None and not policy.sims and not exclude and not paused:
        return choose_sim(policy.mode, slots, default_slot=default_slot, cursor=cursor, rng=rng)
    ready = eligible(policy, slots, usage, phones, bypass_limits=bypass_limits, exclude=exclude,
                     paused=paused)

    def used(i: int) -> SimUsage:
        return usage.get(i) or SimUsage()

    if policy.strategy is Strategy.LEAST_USED:
        return Choice(min(ready, key=lambda i: (used(i).day, used(i).month, i)), cursor)
    if policy.strategy is Strategy.WEIGHTED:
        weighted = [i for i in ready if policy.rule(i).weight > 0] or ready
        return Choice(min(weighted, key=lambda i: (
            (used(i).day + 1) / max(policy.rule(i).weight, 1), i)), cursor)
    if policy.strategy is Strategy.STICKY and sticky in ready:
        return Choice(sticky, cursor)
    if policy.strategy is Strategy.PREFIX_RULES and phones:
        matching = _by_prefix(policy, ready, phones[0])
        ready = matching or ready
    if policy.mode is SimSelectionMode.OS_DEFAULT:
        return Choice(default_slot if default_slot in ready else ready[0], cursor)
    if policy.mode is SimSelectionMode.RANDOM:
        return Choice((rng or random).choice(ready), cursor)
    chosen = next((i for i in ready if i >= cursor), ready[0])
    return Choice(chosen, chosen + 1)


def _by_prefix(policy: Policy, ready: list[int], phone: str) -> list[int]:
    """The ready SIMs with the longest prefix matching the phone number."""
    number = phone.lstrip("+")
    best, found = 0, []
    for i in ready:
        length = max((len(p.lstrip("+")) for p in policy.rule(i).prefixes
                      if number.startswith(p.lstrip("+"))), default=0)
        if length > best:
            best, found = length, [i]
        elif length == best and length:
            found.append(i)
    return found


# +CMS ERROR codes that say the recipient is wrong, not the SIM or the network: another
# SIM would fail the same way (3GPP TS 24.011 / 27.005).
BAD_NUMBER_CODES = frozenset({1, 21, 28, 30, 96})


def worth_failover(code: int | None, permanent: bool) -> bool:
    """Whether a failed send may be tried through another SIM: a SIM or network reason
    (a numbered modem error other than a bad number, or a transient failure). An error
    without a code (bad encoding, a timeout after which the SMS may have gone) is not."""
    if not permanent:
        return code not in BAD_NUMBER_CODES
    return code is not None and code not in BAD_NUMBER_CODES


# The Android app's failure texts ("Send result: RESULT_ERROR_NO_SERVICE (...)", from
# SmsManager's result codes) that name the SIM, the radio or the network: another SIM or
# phone may well send. The others (a full queue, FDN, a short code refused, a bad PDU or
# number, an encoding error, TTL expired) would fail the same way anywhere.
APP_SIM_FAILURES = frozenset({
    "RESULT_ERROR_GENERIC_FAILURE", "RESULT_ERROR_RADIO_OFF", "RESULT_ERROR_NO_SERVICE",
    "RESULT_RADIO_NOT_AVAILABLE", "RESULT_NETWORK_REJECT", "RESULT_NETWORK_ERROR",
    "RESULT_MODEM_ERROR", "RESULT_INVALID_SMSC_ADDRESS", "RESULT_SMS_SEND_RETRY_FAILED",
    "RESULT_RIL_RADIO_NOT_AVAILABLE", "RESULT_RIL_SMS_SEND_FAIL_RETRY",
    "RESULT_RIL_NETWORK_REJECT", "RESULT_RIL_MODEM_ERR", "RESULT_RIL_NETWORK_ERR",
    "RESULT_RIL_NETWORK_NOT_READY", "RESULT_RIL_INVALID_MODEM_STATE", "RESULT_RIL_SIM_ABSENT",
    "RESULT_RIL_ACCESS_BARRED", "RESULT_RIL_INVALID_SMSC_ADDRESS", "RESULT_RIL_GENERIC_ERROR",
    "RESULT_RIL_BLOCKED_DUE_TO_CALL",
})
_APP_RESULT = re.compile(r"\b(RESULT_[A-Z_]+)\b")


def app_failure_worth_failover(error: str | None) -> bool:
    """Whether a send the Android app reports failed may go through another SIM: its
    text names a SIM, radio or network result."""
    found = _APP_RESULT.search(error or "")
    return found is not None and found.group(1) in APP_SIM_FAILURES
