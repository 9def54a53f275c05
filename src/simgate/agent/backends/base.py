"""The one small protocol every SIM backend speaks (AT modems, Termux, the emulator).

The agent only ever talks to a `SimBackend`; slot numbers are 0-based here, as in the
hardware (`simNumber` on the wire is slot + 1).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, runtime_checkable

from simgate.domain.sims import SimStatus

SimState = SimStatus  # the backend-side name of the domain type


@dataclass(frozen=True)
class SimInfo:
    """What a backend knows about one SIM slot right now."""

    slot: int
    state: SimState
    phone_number: str | None = None
    operator: str | None = None
    iccid: str | None = None
    signal: int | None = None  # 0..31 as +CSQ reports it, None when unknown
    detail: str = ""  # human text: what is wrong and what to do

    @property
    def ready(self) -> bool:
        return self.state is SimState.READY


@dataclass(frozen=True)
class SendResult:
    """Outcome of one accepted send to one recipient.

    `confirmed` is False when the SMS was only handed to the phone, which says nothing
    about whether it went out (Termux:API): reported Sent, never Delivered.
    """

    parts: int
    references: list[int] = field(default_factory=list)  # TP-MR of each part, if known
    confirmed: bool = True


@dataclass(frozen=True)
class IncomingSms:
    """An SMS received on a SIM, reassembled when it came in parts.

    `slot` is None when the backend cannot tell which SIM received it (Termux:API).
    """

    slot: int | None
    sender: str
    received_at: datetime
    ident: str  # stable identity for de-duplication (never the content)
    text: str | None = None
    data: bytes | None = None  # data SMS payload
    port: int | None = None  # destination port of a data SMS
    recipient: str | None = None  # the SIM's own number, when known
    # Called once the agent has journaled the SMS: only then may the backend let go of
    # it (delete it from the SIM, acknowledge it), so a crash in between loses nothing.
    acknowledge: Callable[[], Awaitable[None]] | None = field(default=None, compare=False,
                                                             repr=False)


@dataclass(frozen=True)
class DeliveryReport:
    """A status report for a sent part, matched by (slot, reference)."""

    slot: int
    reference: int
    delivered: bool
    at: datetime
    status: int = 0  # TP-Status
    recipient: str | None = None
    acknowledge: Callable[[], Awaitable[None]] | None = field(default=None, compare=False,
                                                             repr=False)  # as IncomingSms's


@dataclass(frozen=True)
class SimChanged:
    """The modem said a SIM's state changed (a +CREG registration code, say): the agent
    reads its SIMs at once instead of at the next poll."""

    slot: int | None
    said: str


@dataclass(frozen=True)
class Unreadable:
    """Something a SIM received that reads as no SMS and no status report (a garbled
    PDU). The agent keeps it in its journal, set aside with `reason`, before it
    acknowledges it: it neither stops the reader nor stays to fill the SIM's store."""

    slot: int | None
    reason: str
    raw: str  # what the modem gave, as it gave it
    acknowledge: Callable[[], Awaitable[None]] | None = field(default=None, compare=False,
                                                             repr=False)  # as IncomingSms's


BackendEvent = IncomingSms | DeliveryReport | SimChanged | Unreadable


class SendError(Exception):
    """A send that did not happen, with a readable reason.

    `permanent` is False when retrying later may work (network, timeout).
    """

    def __init__(self, message: str, *, permanent: bool = True, code: int | None = None):
        super().__init__(message)
        self.permanent = permanent
        self.code = code


@runtime_checkable
class SimBackend(Protocol):
    """SIM hardware behind one interface, like an httpx transport."""

    default_slot: int | None  # the OS/modem default SIM, None when the phone decides

    async def start(self) -> None:
        """Open the hardware. Failures are not raised: they show in `sims()` as Error
        slots whose detail says what to check, so an agent runs with a modem unplugged."""
        ...

    async def close(self) -> None:
        """Release the hardware; a running `events()` gets nothing more (the agent cancels
        its iteration before or after, either is safe)."""
        ...

    async def sims(self) -> list[SimInfo]:
        """Every slot's state now, one per slot in slot order; never raises."""
        ...

    async def send(
        self,
        slot: int | None,
        phone_number: str,
        *,
        text: str | None = None,
        data: bytes | None = None,
        port: int | None = None,
        delivery_report: bool = True,
    ) -> SendResult:
        """Send to one recipient through `slot` (None: the backend's default SIM).

        Raises only SendError (whose `permanent` says whether a retry may work); a result
        with `confirmed` False was handed over without word of its fate.
        """
        ...

    def events(self) -> AsyncIterator[BackendEvent]:
        """Incoming SMS and delivery reports, from every slot, as they arrive. The agent
        iterates it once, from one task, for as long as it runs."""
        ...
