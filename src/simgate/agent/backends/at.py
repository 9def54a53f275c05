"""GSM modems over serial ports, driven with AT commands in PDU mode.

One `AtModem` per serial port and SIM slot; `AtBackend` pools them in slot order.
A reader task splits the modem's output into command responses and unsolicited
result codes (+CMTI, +CMT, +CDS, +CDSI); commands are serialised with a lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import serial
import serial_asyncio

from simgate.agent.backends.base import (
    BackendEvent,
    DeliveryReport,
    IncomingSms,
    SendError,
    SendResult,
    SimInfo,
    SimState,
)
from simgate.sms import pdu

log = logging.getLogger("simgate.agent.at")
_BOOT = secrets.token_hex(4)  # tells this process's reads from an earlier one's

FINAL_OK = "OK"
FINAL_ERRORS = ("ERROR", "+CMS ERROR:", "+CME ERROR:", "NO CARRIER")
URC_PREFIXES = ("+CMTI:", "+CMT:", "+CDS:", "+CDSI:", "RING", "+CREG:", "^", "+CUSD:")
TWO_LINE_URCS = ("+CMT:", "+CDS:")

# Common +CMS ERROR codes (3GPP TS 27.005) and +CME ERROR codes (TS 27.007).
CMS_ERRORS = {
    1: "unassigned number", 8: "operator determined barring", 10: "call barred",
    21: "short message transfer rejected", 27: "destination out of service",
    28: "unidentified subscriber", 29: "facility rejected", 30: "unknown subscriber",
    38: "network out of order", 41: "temporary failure", 42: "congestion",
    47: "resources unavailable", 50: "requested facility not subscribed",
    69: "requested facility not implemented", 96: "invalid mandatory information",
    300: "ME failure", 301: "SMS service of ME reserved", 302: "operation not allowed",
    303: "operation not supported", 304: "invalid PDU mode parameter",
    305: "invalid text mode parameter", 310: "SIM not inserted", 311: "SIM PIN required",
    312: "PH-SIM PIN required", 313: "SIM failure", 314: "SIM busy", 315: "SIM wrong",
    316: "SIM PUK required", 320: "memory failure", 321: "invalid memory index",
    322: "memory full", 330: "SMSC address unknown", 331: "no network service",
    332: "network timeout", 340: "no +CNMA acknowledgement expected", 500: "unknown error",
}
CME_ERRORS = {
    3: "operation not allowed", 4: "operation not supported", 10: "SIM not inserted",
    11: "SIM PIN required", 12: "SIM PUK required", 13: "SIM failure", 14: "SIM busy",
    15: "SIM wrong", 16: "incorrect password", 30: "no network service",
    31: "network timeout", 100: "unknown error",
}
# Errors where trying again later may work.
TRANSIENT = {38, 41, 42, 47, 314, 331, 332, 14, 30, 31}


class AtError(Exception):
    """A final error result of a command, with its code when the modem gave one."""

    def __init__(self, line: str) -> None:
        self.line = line
        self.code: int | None = None
        self.kind = line.split(":")[0]
        if ":" in line:
            with contextlib.suppress(ValueError):
                self.code = int(line.split(":", 1)[1].strip())
        super().__init__(self.describe())

    def describe(self) -> str:
        table = CMS_ERRORS if self.kind == "+CMS ERROR" else CME_ERRORS
        meaning = table.get(self.code or -1)
        if self.code is None:
            return self.line
        return f"{self.kind} {self.code}" + (f" ({meaning})" if meaning else "")


class AtModem:
    """One modem (one SIM) on one serial port."""

    def __init__(self, port: str, slot: int, *, baudrate: int = 115200,
                 timeout: float = 10.0, send_timeout: float = 60.0) -> None:
        self.port = port
        self.slot = slot
        self.baudrate = baudrate
        self.timeout = timeout
        self.send_timeout = send_timeout
        self.events: asyncio.Queue[BackendEvent] = asyncio.Queue()
        self.error: str | None = None  # why the modem is unusable, when it is
        self.iccid: str | None = None
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._lock = asyncio.Lock()
        self._lines: asyncio.Queue[str] = asyncio.Queue()
        self._prompt = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._urc_tasks: set[asyncio.Task[None]] = set()
        self._parts: dict[tuple[str, int, int], dict[int, pdu.Decoded]] = {}
        self._references = itertools.count(1)
        self._sequence = itertools.count(1)

    # -- connection ------------------------------------------------------------------

    async def open(self) -> None:
        try:
            self._reader, self._writer = await serial_asyncio.open_serial_connection(
                url=self.port, baudrate=self.baudrate
            )
        except (OSError, serial.SerialException) as exc:
            self.error = (f"cannot open {self.port}: {exc}; check the modem is plugged in "
                          "and this user may use the port (dialout group)")
            return
        self._task = asyncio.create_task(self._read_loop())
        try:
            for command in ("ATE0", "AT+CMEE=1", "AT+CMGF=0", 'AT+CPMS="SM","SM","SM"',
                            "AT+CNMI=2,1,0,1,0"):
                with contextlib.suppress(AtError):
                    await self.command(command)
            with contextlib.suppress(AtError):
                self.iccid = _value(await self.command("AT+CCID"), "+CCID:")
        except TimeoutError:
            self.error = f"modem on {self.port} does not answer AT: check power and baud rate"

    async def close(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for task in list(self._urc_tasks):
            task.cancel()
        if self._writer:
            self._writer.close()
            with contextlib.suppress(Exception):
                await self._writer.wait_closed()

    # -- reading ---------------------------------------------------------------------

    async def _read_loop(self) -> None:
        assert self._reader is not None
        buffer = b""
        pending_urc: str | None = None
        while True:
            chunk = await self._reader.read(4096)
            if not chunk:
                self.error = f"modem on {self.port} closed the connection"
                return
            buffer += chunk
            if buffer.endswith(b"> ") or buffer == b">":
                self._prompt.set()
                buffer = b""
                continue
            *lines, buffer = buffer.split(b"\r\n")
            for raw in lines:
                line = raw.decode("ascii", "replace").strip()
                if not line:
                    continue
                if pending_urc is not None:
                    self._urc(pending_urc, line)
                    pending_urc = None
                elif line.startswith(TWO_LINE_URCS):
                    pending_urc = line
                elif line.startswith(("+CMTI:", "+CDSI:")) or (
                    line.startswith(URC_PREFIXES) and not self._lock.locked()
                ):
                    self._urc(line, None)
                else:
                    self._lines.put_nowait(line)

    def _spawn(self, coro: object) -> None:
        task = asyncio.create_task(coro)  # type: ignore[arg-type]
        self._urc_tasks.add(task)
        task.add_done_callback(self._urc_tasks.discard)

    def _urc(self, line: str, second: str | None) -> None:
        if line.startswith("+CMTI:") or line.startswith("+CDSI:"):
            index = int(line.rsplit(",", 1)[1])
            self._spawn(self._read_stored(index))
        elif line.startswith(TWO_LINE_URCS) and second:
            self._on_pdu(second, index=None)

    async def _read_stored(self, index: int) -> None:
        try:
            lines = await self.command(f"AT+CMGR={index}")
            hex_pdu = next((x for x in lines if not x.startswith("+CMGR:")), None)
            if hex_pdu:
                self._on_pdu(hex_pdu, index)
            await self.command(f"AT+CMGD={index}")
        except (AtError, TimeoutError) as exc:
            log.warning("reading stored SMS %d on %s failed: %s", index, self.port, exc)

    def _on_pdu(self, hex_pdu: str, index: int | None) -> None:
        try:
            decoded = pdu.decode(hex_pdu)
        except Exception as exc:  # noqa: BLE001 - a garbled PDU must not stop the modem
            log.warning("undecodable PDU on %s: %s", self.port, exc)
            return
        now = datetime.now(UTC)
        if decoded.kind == "SMS-STATUS-REPORT":
            self.events.put_nowait(DeliveryReport(
                slot=self.slot, reference=decoded.reference or 0,
                delivered=(decoded.status or 0) < 0x20, status=decoded.status or 0,
                at=now, recipient=decoded.number))
            return
        if decoded.kind != "SMS-DELIVER":
            return
        stamp = (decoded.time or now).astimezone(UTC)
        # Identity, never content: where and when it was stored, plus this reader's own
        # sequence, so two identical texts in the same second stay two messages.
        ident = (f"{self.iccid or self.port}:{stamp:%Y%m%d%H%M%S}:{decoded.number}:{index}:"
                 f"{_BOOT}:{next(self._sequence)}")
        if decoded.concat is None:
            self._emit(decoded, [decoded], stamp, ident)
            return
        reference, total, number = decoded.concat
        key = (decoded.number, reference, total)
        parts = self._parts.setdefault(key, {})
        parts[number] = decoded
        if len(parts) == total:
            del self._parts[key]
            ordered = [parts[i] for i in sorted(parts)]
            self._emit(decoded, ordered, stamp, f"{ident}:c{reference}")

    def _emit(self, first: pdu.Decoded, parts: list[pdu.Decoded], stamp: datetime,
              ident: str) -> None:
        if first.data is not None:
            sms = IncomingSms(slot=self.slot, sender=first.number, received_at=stamp,
                              ident=ident, data=b"".join(p.data or b"" for p in parts),
                              port=first.port)
        else:
            text = pdu.join_units("".join(p.text or "" for p in parts))
            sms = IncomingSms(slot=self.slot, sender=first.number, received_at=stamp,
                              ident=ident, text=text)
        self.events.put_nowait(sms)

    # -- commands --------------------------------------------------------------------

    async def command(self, command: str) -> list[str]:
        """Run one command; its response lines, or AtError / TimeoutError."""
        if self._writer is None:
            raise AtError(f"ERROR: {self.error or 'modem not open'}")
        async with self._lock:
            while not self._lines.empty():
                self._lines.get_nowait()
            self._writer.write(command.encode() + b"\r")
            return await self._collect(self.timeout)

    async def _collect(self, seconds: float) -> list[str]:
        lines: list[str] = []
        async with asyncio.timeout(seconds):
            while True:
                line = await self._lines.get()
                if line == FINAL_OK:
                    return lines
                if line.startswith(FINAL_ERRORS):
                    raise AtError(line)
                lines.append(line)

    async def send_pdu(self, part: pdu.Part) -> int:
        """AT+CMGS for one part; returns the message reference the network gave it."""
        if self._writer is None:
            raise AtError(f"ERROR: {self.error or 'modem not open'}")
        async with self._lock:
            self._prompt.clear()
            while not self._lines.empty():
                self._lines.get_nowait()
            self._writer.write(f"AT+CMGS={part.tpdu_length}\r".encode())
            prompt = asyncio.ensure_future(self._prompt.wait())
            early = asyncio.ensure_future(self._lines.get())
            done, _ = await asyncio.wait({prompt, early}, timeout=self.timeout,
                                         return_when=asyncio.FIRST_COMPLETED)
            if early in done:  # an error instead of the prompt
                prompt.cancel()
                line = early.result()
                raise AtError(line if line.startswith(FINAL_ERRORS) else f"ERROR: {line}")
            early.cancel()
            if prompt not in done:
                prompt.cancel()
                raise TimeoutError(f"no '>' prompt from {self.port}")
            self._writer.write(part.hex.encode() + b"\x1a")
            lines = await self._collect(self.send_timeout)
        return int(_value(lines, "+CMGS:") or 0)

    # -- SIM state -------------------------------------------------------------------

    async def info(self) -> SimInfo:
        sim = self.slot + 1
        if self.error:
            return SimInfo(self.slot, SimState.ERROR, detail=self.error)
        try:
            pin = _value(await self.command("AT+CPIN?"), "+CPIN:") or ""
        except AtError as exc:
            if exc.code in (10, 310) or "not inserted" in str(exc).lower():
                return SimInfo(self.slot, SimState.ABSENT,
                               detail=f"no SIM in slot {sim}: insert a SIM card")
            return SimInfo(self.slot, SimState.ERROR, detail=f"SIM {sim}: {exc}")
        except TimeoutError:
            return SimInfo(self.slot, SimState.ERROR,
                           detail=f"modem on {self.port} stopped answering")
        if pin != "READY":
            return SimInfo(self.slot, SimState.PIN_REQUIRED, iccid=self.iccid,
                           detail=f"SIM {sim} is locked ({pin}): unlock it with its PIN "
                                  "(AT+CPIN=<pin>) or disable the PIN in a phone")
        signal = operator = number = None
        registered = False
        with contextlib.suppress(AtError, TimeoutError, ValueError):
            signal = int((_value(await self.command("AT+CSQ"), "+CSQ:") or "99").split(",")[0])
        with contextlib.suppress(AtError, TimeoutError, ValueError):
            stat = int((_value(await self.command("AT+CREG?"), "+CREG:") or "0,0").split(",")[1])
            registered = stat in (1, 5)
        with contextlib.suppress(AtError, TimeoutError, IndexError):
            fields = (_value(await self.command("AT+COPS?"), "+COPS:") or "").split(",")
            operator = fields[2].strip('"') if len(fields) > 2 else None
        with contextlib.suppress(AtError, TimeoutError, IndexError):
            fields = (_value(await self.command("AT+CNUM"), "+CNUM:") or "").split(",")
            number = fields[1].strip('"') if len(fields) > 1 and fields[1] else None
        signal = None if signal == 99 else signal
        if not registered:
            return SimInfo(self.slot, SimState.NO_NETWORK, number, operator, self.iccid, signal,
                           detail=f"SIM {sim} is not registered on a network: check coverage, "
                                  "the antenna and that the SIM is active")
        return SimInfo(self.slot, SimState.READY, number, operator, self.iccid, signal)

    def next_reference(self) -> int:
        return next(self._references) % 256


def _value(lines: list[str], prefix: str) -> str | None:
    for line in lines:
        if line.startswith(prefix):
            return line[len(prefix):].strip()
    return None


class AtBackend:
    """A pool of AT modems, one SIM slot each, in the order of `ports`."""

    default_slot: int | None = 0

    def __init__(self, ports: list[str], **modem_options: float) -> None:
        self.modems = [AtModem(port, slot, **modem_options) for slot, port in enumerate(ports)]
        self._events: asyncio.Queue[BackendEvent] = asyncio.Queue()
        self._pumps: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        await asyncio.gather(*(m.open() for m in self.modems))
        for modem in self.modems:
            self._pumps.append(asyncio.create_task(self._pump(modem)))

    async def _pump(self, modem: AtModem) -> None:
        while True:
            self._events.put_nowait(await modem.events.get())

    async def close(self) -> None:
        for pump in self._pumps:
            pump.cancel()
        await asyncio.gather(*(m.close() for m in self.modems), return_exceptions=True)

    async def sims(self) -> list[SimInfo]:
        return list(await asyncio.gather(*(m.info() for m in self.modems)))

    async def send(self, slot: int | None, phone_number: str, *, text: str | None = None,
                   data: bytes | None = None, port: int | None = None,
                   delivery_report: bool = True) -> SendResult:
        index = self.default_slot if slot is None else slot
        if index is None or not 0 <= index < len(self.modems):
            raise SendError(f"Can't send message: SIM {(index or 0) + 1} not found")
        modem = self.modems[index]
        try:
            parts = pdu.encode_submit(phone_number, text=text, data=data, port=port,
                                      status_report=delivery_report,
                                      reference=modem.next_reference())
        except ValueError as exc:
            raise SendError(f"Can't send message: {exc}") from None
        references = []
        try:
            for part in parts:
                references.append(await modem.send_pdu(part))
        except AtError as exc:
            raise SendError(f"Send result: {exc.describe()} on SIM {index + 1}",
                            permanent=exc.code not in TRANSIENT, code=exc.code) from None
        except TimeoutError as exc:
            raise SendError(f"Send result: timeout on SIM {index + 1} ({exc or 'no answer'});"
                            " the SMS may or may not have been sent", permanent=True) from None
        return SendResult(parts=len(parts), references=references)

    async def events(self) -> AsyncIterator[BackendEvent]:
        while True:
            yield await self._events.get()
