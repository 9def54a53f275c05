"""A virtual multi-SIM modem: one emulated GSM modem per SIM slot, each on a pseudo-terminal.

It is what `simgate run` and `simgate emulator` use, and it exercises the real AT driver
end to end: the driver opens the pty like any serial port. Each modem speaks the AT
command set of real ones (`emulated_modem.py`, docs/emulator.md); this module is the
network between them: an SMS sent to the number of an emulated SIM is delivered to that
SIM, and a requested status report comes back. Faults can be set per slot: an empty slot,
a PIN-locked SIM, no network, failing or slow sends, a small or full message store, echo
that stays on, interleaved unsolicited codes, a late '>' prompt; a modem can be reset or
unplugged and plugged back.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from simgate.agent.backends.at import AtBackend
from simgate.agent.backends.base import BackendEvent, SendResult, SimInfo
from simgate.agent.backends.emulated_memory import NetworkMemory
from simgate.agent.backends.emulated_modem import OPERATOR, EmulatedModem, Faults
from simgate.sms import pdu

REPORT_DELAY = 0.02  # seconds between a send's +CMGS and its status report, as on a network
EmulatedSim = EmulatedModem  # one slot: its SIM, its modem, its pty


def default_number(slot: int) -> str:
    """+1202555010N for SIM N: numbers in the fictional 555-01xx range."""
    return f"+1202555010{slot + 1}" if slot < 9 else f"+120255501{slot + 1:02d}"


FaultSpec = Mapping[int, "Faults | Mapping[str, float | bool]"]  # 0-based slot -> faults


@dataclass(frozen=True)
class SentRecord:
    """One message the network saw an emulated SIM submit (parts reassembled)."""

    slot: int
    destination: str
    text: str | None
    data: bytes | None
    port: int | None
    parts: int
    references: tuple[int, ...]
    at: datetime

    @property
    def reference(self) -> int:
        return self.references[-1]


class EmulatedNetwork:
    """The SIMs, their ptys (`ports`), and the network between them."""

    def __init__(self, sims: int = 2, faults: FaultSpec | None = None, *,
                 operator: str = OPERATOR, numbers: list[str] | None = None,
                 state_path: Path | None = None) -> None:
        faults, numbers = faults or {}, list(numbers or [])
        self.memory = NetworkMemory(state_path)
        self.sims = [
            EmulatedModem(self, i, numbers[i] if i < len(numbers) else default_number(i),
                          Faults.of(faults.get(i)), operator=operator)
            for i in range(sims)
        ]
        self.sent: list[SentRecord] = []
        self._parts: dict[tuple[int, str, int], dict[int, tuple[pdu.Decoded, int]]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        for sim in self.sims:
            sim.open_pty()

    @property
    def ports(self) -> list[str]:
        return [sim.port for sim in self.sims]

    def start(self) -> None:
        """Answer on the ptys from the running event loop."""
        self._loop = asyncio.get_running_loop()
        for sim in self.sims:
            sim.start(self._loop)

    def close(self) -> None:
        for sim in self.sims:
            sim.close()
        self.memory.close()

    async def __aenter__(self) -> EmulatedNetwork:
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    async def deliver(self, slot: int, sender: str, text: str | None = None, *,
                      data: bytes | None = None, port: int | None = None) -> None:
        """An SMS from outside the emulated network arrives at SIM `slot` (0-based)."""
        for hex_pdu in pdu.encode_deliver(sender, text=text, data=data, port=port):
            self.sims[slot].receive(hex_pdu)

    def submit(self, sim: EmulatedModem, hex_pdu: str, reference: int,
               number: str | None = None) -> None:
        """One SMS-SUBMIT part the network accepted from `sim`: delivered, reported."""
        decoded = pdu.decode(hex_pdu)
        destination = number or decoded.number
        now = datetime.now(UTC)
        self._record(sim, decoded, destination, reference, now)
        target = next((s for s in self.sims if s.number == destination), None)
        reachable = target is None or target.reachable
        if target is not None and reachable:
            target.receive(pdu.submit_to_deliver(hex_pdu, sim.number, now))
        if _wants_report(hex_pdu) and self._loop is not None:
            report, size = pdu.encode_status_report(reference, destination,
                                                    delivered=reachable, submitted=now)
            owed_id = self.memory.owe(sim.slot, report, size)  # before the send's answer
            self._loop.call_later(REPORT_DELAY + sim.faults.report_delay, sim.status_report,
                                  report, size, owed_id)

    def _record(self, sim: EmulatedModem, part: pdu.Decoded, destination: str, reference: int,
                at: datetime) -> None:
        """Add to `sent` once every part of a message is in."""
        parts = [(part, reference)]
        if part.concat and part.concat[1] > 1:
            key = (sim.slot, destination, part.concat[0])
            pending = self._parts.setdefault(key, {})
            pending[part.concat[2]] = (part, reference)
            if len(pending) < part.concat[1]:
                return
            del self._parts[key]
            parts = [pending[n] for n in sorted(pending)]
        data = b"".join(p.data for p, _ in parts if p.data) if part.data is not None else None
        text = None if data is not None else pdu.join_units("".join(p.text or "" for p, _ in parts))
        self.sent.append(SentRecord(sim.slot, destination, text, data, part.port, len(parts),
                                    tuple(r for _, r in parts), at))


def _wants_report(submit_hex: str) -> bool:
    return bool(int(submit_hex[2 + 2 * int(submit_hex[:2], 16):][:2], 16) & 0x20)


class EmulatorBackend:
    """An `EmulatedNetwork` driven through the real AT driver over its ptys."""

    def __init__(self, sims: int = 2, faults: FaultSpec | None = None, *,
                 operator: str = OPERATOR, numbers: list[str] | None = None,
                 state_path: Path | None = None) -> None:
        self.network = EmulatedNetwork(sims, faults, operator=operator, numbers=numbers,
                                       state_path=state_path)
        self.at = AtBackend(self.network.ports)
        self.default_slot: int | None = 0

    async def start(self) -> None:
        self.network.start()
        await self.at.start()

    async def close(self) -> None:
        await self.at.close()
        self.network.close()

    async def sims(self) -> list[SimInfo]:
        return await self.at.sims()

    async def send(self, slot: int | None, phone_number: str, *, text: str | None = None,
                   data: bytes | None = None, port: int | None = None,
                   delivery_report: bool = True) -> SendResult:
        return await self.at.send(self.default_slot if slot is None else slot, phone_number,
                                  text=text, data=data, port=port,
                                  delivery_report=delivery_report)

    def events(self) -> AsyncIterator[BackendEvent]:
        return self.at.events()


__all__ = ["EmulatedNetwork", "EmulatedSim", "EmulatorBackend", "Faults", "SentRecord"]
