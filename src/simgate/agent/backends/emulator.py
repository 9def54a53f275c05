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
import re
import tty
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from simgate.agent.backends.at import AtBackend
from simgate.agent.backends.base import BackendEvent, SendResult, SimInfo
from simgate.sms import pdu

OPERATOR = "simgate Mobile"
PIN = "1234"  # what AT+CPIN=<pin> accepts on a PIN-locked emulated SIM
REPORT_DELAY = 0.02  # seconds between a send's +CMGS and its +CDS, as on a network


def default_number(slot: int) -> str:
    """+1202555010N for SIM N: numbers in the fictional 555-01xx range."""
    return f"+1202555010{slot + 1}" if slot < 9 else f"+120255501{slot + 1:02d}"


@dataclass
class Faults:
    """What is wrong with one emulated slot; may be changed while running."""

    absent: bool = False  # no SIM: +CPIN? -> +CME ERROR: 10
    pin: bool = False  # +CPIN: SIM PIN; sends -> +CMS ERROR: 311
    no_network: bool = False  # +CREG: 0,0; sends -> +CMS ERROR: 331
    fail: float = 0.0  # share of sends answered +CMS ERROR: 38
    delay: float = 0.0  # seconds a send takes

    @classmethod
    def of(cls, value: Faults | Mapping[str, float | bool] | None) -> Faults:
        return value if isinstance(value, Faults) else cls(**(value or {}))

    @property
    def reachable(self) -> bool:
        return not (self.absent or self.pin or self.no_network)


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


@dataclass
class EmulatedSim:
    """One slot: its SIM, its pty and its modem's state."""

    slot: int
    number: str
    faults: Faults
    operator: str = OPERATOR
    iccid: str = ""
    signal: int = 21
    master: int = -1
    slave: int = -1
    port: str = ""
    storage: dict[int, str] = field(default_factory=dict)  # index -> SMS-DELIVER hex
    next_index: int = 1
    reference: int = 0
    pdu_length: int | None = None  # set between AT+CMGS=<n> and the PDU
    inbuf: bytearray = field(default_factory=bytearray)
    outbuf: bytearray = field(default_factory=bytearray)
    parts: dict[tuple[str, int], dict[int, tuple[pdu.Decoded, int]]] = field(default_factory=dict)


class EmulatedNetwork:
    """The SIMs, their ptys (`ports`), and the network between them."""

    def __init__(self, sims: int = 2, faults: FaultSpec | None = None, *,
                 operator: str = OPERATOR, numbers: list[str] | None = None) -> None:
        faults, numbers = faults or {}, list(numbers or [])
        self.sims = [
            EmulatedSim(slot=i, number=numbers[i] if i < len(numbers) else default_number(i),
                        faults=Faults.of(faults.get(i)), operator=operator,
                        iccid=f"8901260{i + 1:012d}")
            for i in range(sims)
        ]
        self.sent: list[SentRecord] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        for sim in self.sims:
            sim.master, sim.slave = os.openpty()
            tty.setraw(sim.slave)
            os.set_blocking(sim.master, False)
            sim.port = os.ttyname(sim.slave)

    @property
    def ports(self) -> list[str]:
        return [sim.port for sim in self.sims]

    def start(self) -> None:
        """Answer on the ptys from the running event loop."""
        self._loop = asyncio.get_running_loop()
        for sim in self.sims:
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

    async def __aenter__(self) -> EmulatedNetwork:
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    async def deliver(self, slot: int, sender: str, text: str | None = None, *,
                      data: bytes | None = None, port: int | None = None) -> None:
        """An SMS from outside the emulated network arrives at SIM `slot` (0-based)."""
        for hex_pdu in pdu.encode_deliver(sender, text=text, data=data, port=port):
            self._store(self.sims[slot], hex_pdu)

    # -- bytes in and out ------------------------------------------------------------

    def _write(self, sim: EmulatedSim, text: str) -> None:
        if sim.master < 0:
            return
        pending = bool(sim.outbuf)
        sim.outbuf += text.encode()
        if not pending:
            self._flush(sim)

    def _flush(self, sim: EmulatedSim) -> None:
        assert self._loop is not None
        try:
            written = os.write(sim.master, sim.outbuf)
        except BlockingIOError:
            written = 0
        except OSError:
            sim.outbuf.clear()
            return
        del sim.outbuf[:written]
        if sim.outbuf:
            self._loop.add_writer(sim.master, self._drain, sim)

    def _drain(self, sim: EmulatedSim) -> None:
        assert self._loop is not None
        self._loop.remove_writer(sim.master)
        self._flush(sim)

    def _readable(self, sim: EmulatedSim) -> None:
        try:
            sim.inbuf += os.read(sim.master, 65536)
        except OSError:  # BlockingIOError, or EIO while no one has the port open
            return
        buffer = sim.inbuf
        while buffer:
            if sim.pdu_length is not None:
                end = re.search(b"[\x1a\x1b]", buffer)
                if end is None:
                    return
                hex_pdu = buffer[:end.start()].decode("ascii", "replace").strip()
                send = buffer[end.start()] == 0x1A  # Ctrl-Z sends, ESC cancels
                del buffer[:end.end()]
                length, sim.pdu_length = sim.pdu_length, None
                if send:
                    self._submit(sim, hex_pdu, length)
                continue
            end = buffer.find(b"\r")
            if end < 0:
                return
            line = buffer[:end].decode("ascii", "replace").strip()
            del buffer[:end + 1]
            if line:
                try:
                    self._command(sim, line)
                except ValueError:
                    self._write(sim, "\r\nERROR\r\n")

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
        name, _, argument = command.partition("=")
        faults = sim.faults
        sms = name in ("AT+CMGS", "AT+CMGR", "AT+CMGL", "AT+CMGD")
        if not command.startswith("AT"):
            self._write(sim, "\r\nERROR\r\n")
        elif name in ("AT", "ATE0", "ATE1", "AT+CMEE", "AT+CMGF", "AT+CNMI", "AT+CPMS",
                      "AT+CSMS", "AT+CNMA"):
            self._ok(sim)
        elif command == "AT+CPIN?":
            if faults.absent:
                self._error(sim, "CME", 10)
            else:
                self._ok(sim, "+CPIN: SIM PIN" if faults.pin else "+CPIN: READY")
        elif faults.absent:
            self._error(sim, "CMS" if sms else "CME", 310 if sms else 10)
        elif command == "AT+CCID":
            self._ok(sim, f"+CCID: {sim.iccid}")
        elif name == "AT+CPIN":
            if argument.strip('"') == PIN or not faults.pin:
                faults.pin = False
                self._ok(sim)
            else:
                self._error(sim, "CME", 16)
        elif faults.pin:
            self._error(sim, "CMS" if sms else "CME", 311 if sms else 11)
        elif command == "AT+CSQ":
            self._ok(sim, f"+CSQ: {99 if faults.no_network else sim.signal},99")
        elif command == "AT+CREG?":
            self._ok(sim, "+CREG: 0,0" if faults.no_network else "+CREG: 0,1")
        elif command == "AT+COPS?":
            self._ok(sim, "+COPS: 0" if faults.no_network else f'+COPS: 0,0,"{sim.operator}",7')
        elif command == "AT+CNUM":
            self._ok(sim, f'+CNUM: "Own number","{sim.number}",145')
        elif name == "AT+CMGS":
            sim.pdu_length = int(argument)
            self._write(sim, "\r\n> ")
        elif name == "AT+CMGR":
            hex_pdu = sim.storage.get(int(argument))
            if hex_pdu is None:
                self._error(sim, "CMS", 321)
            else:
                self._ok(sim, f"+CMGR: 0,,{_tpdu_length(hex_pdu)}", hex_pdu)
        elif name == "AT+CMGL":
            self._ok(sim, *(f"{head}\r\n{body}" for head, body in (
                (f"+CMGL: {index},0,,{_tpdu_length(h)}", h) for index, h in sim.storage.items())))
        elif name == "AT+CMGD":
            sim.storage.pop(int(argument.split(",")[0]), None)
            self._ok(sim)
        else:
            self._write(sim, "\r\nERROR\r\n")

    def _submit(self, sim: EmulatedSim, hex_pdu: str, length: int) -> None:
        if sim.faults.delay:
            self._spawn(self._submit_later(sim, hex_pdu, length))
        else:
            self._accept(sim, hex_pdu, length)

    async def _submit_later(self, sim: EmulatedSim, hex_pdu: str, length: int) -> None:
        await asyncio.sleep(sim.faults.delay)
        self._accept(sim, hex_pdu, length)

    def _accept(self, sim: EmulatedSim, hex_pdu: str, length: int) -> None:
        """The network's answer to one SMS-SUBMIT part."""
        faults = sim.faults
        if faults.absent:
            return self._error(sim, "CMS", 310)
        if faults.pin:
            return self._error(sim, "CMS", 311)
        if faults.no_network:
            return self._error(sim, "CMS", 331)
        if faults.fail and random.random() < faults.fail:
            return self._error(sim, "CMS", 38)
        try:
            decoded = pdu.decode(hex_pdu)
        except Exception:  # a real modem answers a bad PDU this way
            return self._error(sim, "CMS", 304)
        if decoded.kind != "SMS-SUBMIT" or decoded.tpdu_length != length:
            return self._error(sim, "CMS", 304)
        sim.reference = (sim.reference + 1) % 256
        reference, now = sim.reference, datetime.now(UTC)
        self._ok(sim, f"+CMGS: {reference}")
        self._record(sim, decoded, reference, now)
        target = next((s for s in self.sims if s.number == decoded.number), None)
        reachable = target is None or target.faults.reachable
        if target is not None and reachable:
            self._store(target, pdu.submit_to_deliver(hex_pdu, sim.number, now))
        if _wants_report(hex_pdu):
            report, size = pdu.encode_status_report(reference, decoded.number,
                                                    delivered=reachable, submitted=now)
            assert self._loop is not None
            self._loop.call_later(REPORT_DELAY, self._write, sim,
                                  f"\r\n+CDS: {size}\r\n{report}\r\n")

    def _record(self, sim: EmulatedSim, part: pdu.Decoded, reference: int, at: datetime) -> None:
        """Add to `sent` once every part of a message is in."""
        parts = [(part, reference)]
        if part.concat and part.concat[1] > 1:
            key = (part.number, part.concat[0])
            pending = sim.parts.setdefault(key, {})
            pending[part.concat[2]] = (part, reference)
            if len(pending) < part.concat[1]:
                return
            del sim.parts[key]
            parts = [pending[n] for n in sorted(pending)]
        data = b"".join(p.data for p, _ in parts if p.data) if part.data is not None else None
        text = None if data is not None else pdu.join_units("".join(p.text or "" for p, _ in parts))
        self.sent.append(SentRecord(sim.slot, part.number, text, data, part.port, len(parts),
                                    tuple(r for _, r in parts), at))

    def _store(self, sim: EmulatedSim, hex_pdu: str) -> None:
        """Into the SIM's message store, announced with +CMTI; indexes are not reused."""
        while sim.next_index in sim.storage:
            sim.next_index += 1
        index, sim.next_index = sim.next_index, sim.next_index + 1
        sim.storage[index] = hex_pdu
        self._write(sim, f'\r\n+CMTI: "SM",{index}\r\n')


def _tpdu_length(hex_pdu: str) -> int:
    return len(hex_pdu) // 2 - 1 - int(hex_pdu[:2], 16)


def _wants_report(submit_hex: str) -> bool:
    return bool(int(submit_hex[2 + 2 * int(submit_hex[:2], 16):][:2], 16) & 0x20)


class EmulatorBackend:
    """An `EmulatedNetwork` driven through the real AT driver over its ptys."""

    def __init__(self, sims: int = 2, faults: FaultSpec | None = None, *,
                 operator: str = OPERATOR, numbers: list[str] | None = None) -> None:
        self.network = EmulatedNetwork(sims, faults, operator=operator, numbers=numbers)
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
