"""SIM selection for messages sent without an explicit simNumber.

Pure functions: the agent keeps the round-robin cursor and persists it, so the
rotation survives restarts.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Sequence
from dataclasses import dataclass

from simgate.domain.sims import SimSlot


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
