"""A virtual multi-SIM modem: one pseudo-terminal per SIM slot speaking the AT dialect.

It is what `simgate run` uses, and it exercises the real AT driver end to end: the
driver opens the pty like any serial port. The emulated network delivers an SMS sent
to the number of an emulated SIM to that SIM (+CMTI, then AT+CMGR), and answers a
requested status report with +CDS. Faults can be set per slot: an empty slot, a
PIN-locked SIM, no network, a send failure rate and a send delay.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import tty
from dataclasses import dataclass, field
from datetime import UTC, datetime

from simgate.agent.backends.at import AtBackend
from simgate.agent.backends.base import BackendEvent, SendResult, SimInfo
from simgate.sms import pdu

OPERATOR = "simgate Mobile"


def default_number(slot: int) -> str:
    """+1202555010N for SIM N: valid numbers in the fictional 555-01xx range."""
    return f"+1202555010{slot + 1}" if slot < 9 else f"+120255501{slot + 1:02d}"


@dataclass
class Faults:
    absent: bool = False
    pin: bool = False
    no_network: bool = False
    fail: float = 0.0  # share of sends answered +CMS ERROR: 38
    delay: float = 0.0  # seconds a send takes

    @classmethod
    def of(cls, values: dict[str, float | bool] | None) -> Faults:
        return cls(**(values or {}))


@dataclass(frozen=True)
class SentRecord:
    """What the network saw one emulated SIM submit."""

    slot: int
    destination: str
    text: str | None
    data: bytes | None
    reference: int
    at: datetime


@dataclass
class EmulatedSim:
    slot: int
    number: str
    faults: Faults
    operator: str = OPERATOR
    iccid: str = ""
    signal: int = 21
    master: int = -1
    slave: int = -1
    port: str = ""
    storage: dict[int, str] = field(default_factory=dict)
    buffer: bytearray = field(default_factory=bytearray)
    pending_pdu_length: int | None = None
    reference: int = 0
    outgoing: bytearray = field(default_factory=bytearray)


class EmulatedNetwork:
    """The SIMs, their ptys, and the network between them."""

    def __init__(self, sims: int = 2, faults: dict[int, dict[str, float | bool]] | None = None,
                 operator: str = OPERATOR) -> None:
        self.sims = [
            EmulatedSim(slot=i, number=default_number(i), faults=Faults.of((faults or {}).get(i)),
                        operator=operator, iccid=f"89012600000000000{i + 1:02d}")
            for i in range(sims)
        ]
        self.sent: list[SentRecord] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def ports(self) -> list[str]:
        return [sim.port for sim in self.sims]

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        for sim in self.sims:
            sim.master, sim.slave = os.openpty()
            tty.setraw(sim.slave)
            os.set_blocking(sim.master, False)
            sim.port = os.ttyname(sim.slave)
            self._loop.add_reader(sim.master, self._readable, sim)

    def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for sim in self.sims:
            if sim.master >= 0 and self._loop:
                self._loop.remove_reader(sim.master)
                self._loop.remove_writer(sim.master)
            for fd in (sim.master, sim.slave):
                if fd >= 0:
                    with contextlib.suppress(OSError):
                        os.close(fd)
            sim.master = sim.slave = -1

    # -- bytes in and out ------------------------------------------------------------

    def _write(self, sim: EmulatedSim, text: str) -> None:
        sim.outgoing += text.encode()
        self._flush(sim)

    def _flush(self, sim: EmulatedSim) -> None:
        assert self._loop is not None
        try:
            written = os.write(sim.master, sim.outgoing)
        except BlockingIOError:
            written = 0
        except OSError:
            sim.outgoing.clear()
            return
        del sim.outgoing[:written]
        if sim.outgoing:
            self._loop.add_writer(sim.master, self._drain, sim)

    def _drain(self, sim: EmulatedSim) -> None:
        assert self._loop is not None
        self._loop.remove_writer(sim.master)
        self._flush(sim)

    def _readable(self, sim: EmulatedSim) -> None:
        try:
            chunk = os.read(sim.master, 65536)
        except (BlockingIOError, OSError):
            return
        sim.buffer += chunk
        while True:
            if sim.pending_pdu_length is not None:
                end = sim.buffer.find(b"\x1a")
                if end < 0:
                    return
                hex_pdu = sim.buffer[:end].decode("ascii", "replace").strip()
                del sim.buffer[:end + 1]
                sim.pending_pdu_length = None
                self._spawn(self._submit(sim, hex_pdu))
                continue
            end = sim.buffer.find(b"\r")
            if end < 0:
                return
            line = sim.buffer[:end].decode("ascii", "replace").strip()
            del sim.buffer[:end + 1]
            if line:
                self._command(sim, line)

    def _spawn(self, coro: object) -> None:
        task = asyncio.ensure_future(coro)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- the AT dialect --------------------------------------------------------------

    def _ok(self, sim: EmulatedSim, *lines: str) -> None:
        self._write(sim, "".join(f"\r\n{line}\r\n" for line in lines) + "\r\nOK\r\n")

    def _error(self, sim: EmulatedSim, kind: str, code: int) -> None:
        self._write(sim, f"\r\n+{kind} ERROR: {code}\r\n")

    def _command(self, sim: EmulatedSim, line: str) -> None:
        command = line.upper()
        faults = sim.faults
        if not command.startswith("AT"):
            self._write(sim, "\r\nERROR\r\n")
        elif command in ("AT", "ATE0", "AT+CMEE=1", "AT+CMGF=0") or command.startswith(
            ("AT+CNMI=", "AT+CPMS=", "AT+CSMS=", "AT+CNMA")
        ):
            self._ok(sim)
        elif command == "AT+CPIN?":
            if faults.absent:
                self._error(sim, "CME", 10)
            else:
                self._ok(sim, "+CPIN: SIM PIN" if faults.pin else "+CPIN: READY")
        elif faults.absent:
            sms = command.startswith("AT+CMGS")
            self._error(sim, "CMS" if sms else "CME", 310 if sms else 10)
        elif command == "AT+CCID":
            self._ok(sim, f"+CCID: {sim.iccid}")
        elif faults.pin:
            sms = command.startswith("AT+CMGS")
            self._error(sim, "CMS" if sms else "CME", 311 if sms else 11)
        elif command == "AT+CSQ":
            self._ok(sim, f"+CSQ: {0 if faults.no_network else sim.signal},99")
        elif command == "AT+CREG?":
            self._ok(sim, "+CREG: 0,0" if faults.no_network else "+CREG: 0,1")
        elif command == "AT+COPS?":
            self._ok(sim, "+COPS: 0" if faults.no_network else f'+COPS: 0,0,"{sim.operator}",7')
        elif command == "AT+CNUM":
            self._ok(sim, f'+CNUM: "Own number","{sim.number}",145')
        elif command.startswith("AT+CMGS="):
            sim.pending_pdu_length = int(command.split("=", 1)[1])
            self._write(sim, "\r\n> ")
        elif command.startswith("AT+CMGR="):
            index = int(command.split("=", 1)[1])
            if index in sim.storage:
                hex_pdu = sim.storage[index]
                self._ok(sim, f"+CMGR: 0,,{len(hex_pdu) // 2 - 1 - int(hex_pdu[:2], 16)}",
                         hex_pdu)
            else:
                self._error(sim, "CMS", 321)
        elif command.startswith("AT+CMGD="):
            sim.storage.pop(int(command.split("=", 1)[1].split(",")[0]), None)
            self._ok(sim)
        else:
            self._write(sim, "\r\nERROR\r\n")

    async def _submit(self, sim: EmulatedSim, hex_pdu: str) -> None:
        faults = sim.faults
        if faults.delay:
            await asyncio.sleep(faults.delay)
        if faults.pin:
            return self._error(sim, "CMS", 311)
        if faults.no_network:
            return self._error(sim, "CMS", 331)
        if faults.fail and random.random() < faults.fail:
            return self._error(sim, "CMS", 38)
        try:
            decoded = pdu.decode(hex_pdu)
        except Exception:  # noqa: BLE001 - a real modem answers a bad PDU this way
            return self._error(sim, "CMS", 304)
        sim.reference = (sim.reference + 1) % 256
        reference = sim.reference
        now = datetime.now(UTC)
        self.sent.append(SentRecord(sim.slot, decoded.number, decoded.text, decoded.data,
                                    reference, now))
        self._ok(sim, f"+CMGS: {reference}")
        target = next((s for s in self.sims if s.number == decoded.number), None)
        if target is not None and not (target.faults.absent or target.faults.pin
                                       or target.faults.no_network):
            self._store(target, pdu.submit_to_deliver(hex_pdu, sim.number, now))
        if bytes.fromhex(hex_pdu[2 + 2 * int(hex_pdu[:2], 16):][:2])[0] & 0x20:
            delivered = target is None or not target.faults.absent
            report, length = pdu.encode_status_report(reference, decoded.number,
                                                      delivered=delivered, submitted=now)
            self._write(sim, f"\r\n+CDS: {length}\r\n{report}\r\n")

    def _store(self, sim: EmulatedSim, hex_pdu: str) -> None:
        index = max(sim.storage, default=0) + 1
        sim.storage[index] = hex_pdu
        self._write(sim, f'\r\n+CMTI: "SM",{index}\r\n')

    async def deliver(self, slot: int, sender: str, text: str) -> None:
        """An SMS from outside the emulated network arrives at SIM `slot` (0-based)."""
        for hex_pdu in pdu.encode_deliver(sender, text=text):
            self._store(self.sims[slot], hex_pdu)


class EmulatorBackend:
    """The emulated network driven through the real AT driver over its ptys."""

    def __init__(self, sims: int = 2, faults: dict[int, dict[str, float | bool]] | None = None,
                 operator: str = OPERATOR) -> None:
        self.network = EmulatedNetwork(sims, faults, operator)
        self._at: AtBackend | None = None
        self.default_slot: int | None = 0

    async def start(self) -> None:
        self.network.start()
        self._at = AtBackend(self.network.ports)
        await self._at.start()

    async def close(self) -> None:
        if self._at:
            await self._at.close()
        self.network.close()

    async def sims(self) -> list[SimInfo]:
        assert self._at is not None
        return await self._at.sims()

    async def send(self, slot: int | None, phone_number: str, *, text: str | None = None,
                   data: bytes | None = None, port: int | None = None,
                   delivery_report: bool = True) -> SendResult:
        assert self._at is not None
        return await self._at.send(slot, phone_number, text=text, data=data, port=port,
                                   delivery_report=delivery_report)

    async def events(self):  # type: ignore[no-untyped-def]  # same as AtBackend.events
        assert self._at is not None
        async for event in self._at.events():
            yield event


__all__ = ["BackendEvent", "EmulatedNetwork", "EmulatorBackend", "SentRecord"]
