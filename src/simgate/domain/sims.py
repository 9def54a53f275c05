"""SIM slots of a device and the rules for choosing one by its 1-based simNumber."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

# SIM slots a device may have, so simNumber is 1..MAX_SIM_SLOTS (modem pools have many)
MAX_SIM_SLOTS = 64


class SimStatus(enum.StrEnum):
    """Readiness of a SIM slot as the agent reports it."""

    READY = "Ready"
    ABSENT = "Absent"
    PIN_REQUIRED = "PinRequired"
    NO_NETWORK = "NoNetwork"
    ERROR = "Error"
    UNKNOWN = "Unknown"  # the backend cannot tell (Termux:API on a multi-SIM phone)


# What to do about a SIM slot that is not ready (shown by health checks and the doctor).
ADVICE = {
    SimStatus.ABSENT: "insert a SIM card in this slot (or ignore if it is meant to be empty)",
    SimStatus.PIN_REQUIRED: "unlock the SIM with its PIN (AT+CPIN=<pin>) or disable the PIN "
                            "in a phone",
    SimStatus.NO_NETWORK: "check coverage and the antenna, and that the SIM is active with "
                          "its operator",
    SimStatus.ERROR: "check the modem's cable, power and port name (is another program using "
                     "it?), then restart the agent",
    SimStatus.UNKNOWN: "the phone does not report this slot's state; sends through it are "
                       "tried, and fail on the phone if the slot is empty",
}


@dataclass(frozen=True)
class SimSlot:
    """One SIM slot of a device; `sim_number` is slot_index + 1."""

    slot_index: int
    status: SimStatus = SimStatus.READY
    phone_number: str | None = None
    carrier_name: str | None = None
    iccid: str | None = None
    signal: int | None = None
    detail: str = ""
    # routing skips the SIM until then (UTC): its sends kept failing; and why
    paused_until: datetime | None = None
    pause_reason: str | None = None

    @property
    def sim_number(self) -> int:
        return self.slot_index + 1

    @property
    def ready(self) -> bool:
        return self.status is SimStatus.READY

    @property
    def usable(self) -> bool:
        """Worth sending through: ready, or of unknown state (the phone will try)."""
        return self.status in (SimStatus.READY, SimStatus.UNKNOWN)


def sim_change(before: SimSlot | None, after: SimSlot | None) -> str | None:
    """What changed in a slot between two reports, as the `sim:changed` event names it:
    inserted, removed, replaced (another card), pin-required, network-lost, error, ready
    (back from any of those), unknown; None when nothing that matters to routing did."""
    was = before.status if before else SimStatus.ABSENT
    now = after.status if after else SimStatus.ABSENT
    if was is SimStatus.ABSENT and now is not SimStatus.ABSENT:
        return "inserted"
    if now is SimStatus.ABSENT:
        return None if was is SimStatus.ABSENT else "removed"
    if before and after and before.iccid and after.iccid and before.iccid != after.iccid:
        return "replaced"
    if was is now:
        return None
    return {SimStatus.PIN_REQUIRED: "pin-required", SimStatus.NO_NETWORK: "network-lost",
            SimStatus.ERROR: "error", SimStatus.READY: "ready",
            SimStatus.UNKNOWN: "unknown"}[now]


class InvalidSimNumber(ValueError):
    """A simNumber the device cannot honour; the message names the valid ones."""


def describe_valid(slots: list[SimSlot]) -> str:
    usable = [s.sim_number for s in slots if s.status is not SimStatus.ABSENT]
    if not usable:
        return "the device reports no SIM card"
    return "valid simNumber values: " + ", ".join(str(n) for n in usable)


def check_sim_number(sim_number: int, slots: list[SimSlot], device: str) -> SimSlot | None:
    """The slot for an explicit `sim_number`, or InvalidSimNumber saying what is valid.

    A slot that exists but is not ready (PIN, no network) is accepted: the send then fails
    with the reason, as the SIM may recover before the message is sent. A device that has
    not told its slots (the original Android app does not) is taken at its word, as the
    original server does: None, and the device fails a slot it does not have.
    """
    if not slots:  # the slots are not known: only the range is
        if not 1 <= sim_number <= MAX_SIM_SLOTS:
            raise InvalidSimNumber(
                f"simNumber {sim_number} is out of range: device {device} has not said how"
                f" many SIM slots it has; valid simNumber values: 1 to {MAX_SIM_SLOTS}")
        return None
    by_number = {s.sim_number: s for s in slots}
    slot = by_number.get(sim_number)
    if slot is None:
        raise InvalidSimNumber(
            f"simNumber {sim_number} is out of range: device {device} has "
            f"{len(slots)} SIM slot(s); {describe_valid(slots)}"
        )
    if slot.status is SimStatus.ABSENT:
        raise InvalidSimNumber(
            f"simNumber {sim_number}: SIM slot {sim_number} of device {device} is empty; "
            f"{describe_valid(slots)}"
        )
    return slot


def unmasked(reported: str | None, known: str | None) -> str | None:
    """The Android app masks a SIM's number, carrier and ICCID to their last four
    characters in PATCH /device (`GatewayService.redact`: "********0111", or "****" for
    four or fewer) but sends them whole in `app:started`. A masked value that fits the
    whole one known is that value; anything else is taken as reported."""
    if not reported or not known or reported[0] != "*":
        return reported
    if reported == "****" and len(known) <= 4:
        return known
    stars, tail = reported[:-4], reported[-4:]
    if set(stars) == {"*"} and len(reported) == len(known) and known.endswith(tail):
        return known
    return reported
