"""Message processing states and the rules for moving between them."""

from __future__ import annotations

import enum


class ProcessState(enum.StrEnum):
    """States of a message and of each of its recipients, as on the wire."""

    PENDING = "Pending"
    PROCESSED = "Processed"
    SENT = "Sent"
    DELIVERED = "Delivered"
    FAILED = "Failed"
    CANCELLING = "Cancelling"
    CANCELLED = "Cancelled"

    @property
    def final(self) -> bool:
        return self in FINAL_STATES


FINAL_STATES = frozenset({ProcessState.DELIVERED, ProcessState.FAILED, ProcessState.CANCELLED})

# Progress order; a state never goes back to a lower rank.
_RANK = {
    ProcessState.PENDING: 0,
    ProcessState.CANCELLING: 1,
    ProcessState.PROCESSED: 2,
    ProcessState.SENT: 3,
    ProcessState.DELIVERED: 4,
    ProcessState.CANCELLED: 5,
    ProcessState.FAILED: 5,
}


def advance(current: ProcessState, proposed: ProcessState) -> ProcessState:
    """The state after `proposed` is reported while in `current`.

    Failed and Cancelled are final and never overwritten; Delivered only gives way to
    Failed; otherwise a state only moves forward, so late or repeated reports are harmless.
    Cancelling (asked to cancel, the device may hold it) waits for the device: Cancelled
    if it did not send, Sent/Delivered/Failed if it did; a claim (Processed) does not end
    it, so a device that claims it learns it is being cancelled and must not send.
    """
    if current in (ProcessState.FAILED, ProcessState.CANCELLED):
        return current
    if current is ProcessState.CANCELLING and proposed in (ProcessState.PENDING,
                                                           ProcessState.PROCESSED):
        return current
    if current is ProcessState.DELIVERED:
        return proposed if proposed is ProcessState.FAILED else current
    return proposed if _RANK[proposed] >= _RANK[current] else current


def aggregate(recipient_states: list[ProcessState]) -> ProcessState:
    """The message state derived from its recipients' states.

    The least advanced recipient decides, except that a message whose every recipient
    failed is Failed, and one with some failed and the rest done takes the others' state.
    """
    if not recipient_states:
        return ProcessState.PENDING
    alive = [s for s in recipient_states if s is not ProcessState.FAILED]
    if not alive:
        return ProcessState.FAILED
    return min(alive, key=_RANK.__getitem__)
