"""GSM modems over serial ports, driven with AT commands in PDU mode.

One `AtModem` per serial port and SIM slot; `AtBackend` pools them in slot order.
A reader task splits the modem's output into command responses and unsolicited
result codes (+CMTI, +CMT, +CDS, +CDSI), which may arrive at any time, also between a
command and its answer; commands are serialised with a lock. Echoed commands are dropped,
so a modem that keeps echoing (or echoes again after a reset) is understood. A modem that
restarts (RDY, +CFUN: 1, ^SYSSTART after a power blip) is set up again; a port that
vanishes is reopened in the background until it is back. After a command timed out, the
line is brought back in step (Esc, AT, quiet) before the next one.

New SMS are announced as +CMTI (AT+CNMI=2,1,0,1,0) and read, so the gateway owns the
SIM's message store; messages stored while nobody listened are read at start-up with
AT+CMGL. Nothing is let go before the agent has journaled it: a stored SMS or status
report is deleted (AT+CMGD), and a directly routed +CDS acknowledged (AT+CNMA, under
AT+CSMS=1, phase 2+), only when the event's `acknowledge` is called. A crash in between
leaves it on the SIM, or owed by the network, to be read again after the restart (with
the same ident, so it is journaled once). Modems without AT+CSMS=1 keep phase 2
semantics, in which the modem itself acknowledges a +CDS it passed on.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import re
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from datetime import UTC, datetime
from typing import Any

import serial
import serial_asyncio

from simgate.agent.backends.base import (
    BackendEvent,
    DeliveryReport,
    IncomingSms,
    SendError,
    SendResult,
    SimChanged,
    SimInfo,
    SimState,
    Unreadable,
)
from simgate.sms import pdu

log = logging.getLogger(__name__)

OK = "OK"
PROMPT = ">"  # "> " after AT+CMGS, with no line end
LOST = "\x00lost"  # put on the line queue when the port goes away
RESTARTED = "\x00restarted"  # put on the line queue when the modem says it restarted
# numbered errors; AT+CREG=1: the modem says when its network registration changes
LINK_SETUP = ("ATE0", "AT+CMEE=1", "AT+CREG=1")
RESTART_URCS = ("RDY", "+CFUN: 1", "^SYSSTART", "SMS READY")  # said at power-on
FINAL_ERRORS = ("ERROR", "+CMS ERROR:", "+CME ERROR:", "NO CARRIER", "COMMAND NOT SUPPORT",
                "TOO MANY PARAMETERS")
TWO_LINE_URCS = ("+CMT:", "+CDS:")  # a header line, then the PDU
STORED_URCS = ("+CMTI:", "+CDSI:")  # memory and index of a stored SMS / status report
# Phase 2+ (+CDS acknowledged by the gateway) where the modem has it, else phase 2.
SMS_SERVICES = ("AT+CSMS=1", "AT+CSMS=0")
STORAGE_SETUP = 'AT+CPMS="SM","SM","SM"'
# Status reports routed as +CDS; modems without that store them (+CDSI) or send none.
NOTIFICATIONS = ("AT+CNMI=2,1,0,1,0", "AT+CNMI=2,1,0,2,0", "AT+CNMI=2,1,0,0,0")

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
# Errors after which trying again later may work.
TRANSIENT_CMS = {38, 41, 42, 47, 314, 331, 332, 500}
TRANSIENT_CME = {14, 30, 31, 100}
# What the user can do about a failed send.
CMS_ADVICE = {
    310: "insert a SIM card",
    311: "unlock the SIM (AT+CPIN=<pin>) or disable its PIN in a phone",
    316: "the SIM needs its PUK: unblock it in a phone",
    330: "set the SMS centre number (AT+CSCA) or ask the operator",
    331: "check coverage, the antenna and that the SIM is active",
}
Place = tuple[str, int]  # the memory and index of a stored SMS or status report
Acknowledge = Callable[[], Awaitable[None]]
REGISTRATION = {0: "not registered and not searching", 2: "searching for a network",
                3: "registration denied by the network", 4: "registration state unknown"}


class AtError(Exception):
    """A final error result of a command, with its code when the modem gave one."""

    def __init__(self, line: str) -> None:
        self.line = line
        self.kind, _, rest = line.partition(":")
        self.code: int | None = int(rest) if rest.strip().isdigit() else None
        super().__init__(self.describe())

    def describe(self) -> str:
        if self.code is None:
            return self.line
        meaning = (CMS_ERRORS if self.kind == "+CMS ERROR" else CME_ERRORS).get(self.code)
        return f"{self.kind} {self.code}" + (f" ({meaning})" if meaning else "")

    @property
    def transient(self) -> bool:
        table = TRANSIENT_CMS if self.kind == "+CMS ERROR" else TRANSIENT_CME
        return self.code in table


class ModemUnavailable(Exception):
    """The port is not open (never was, or was lost); the message says what to check."""


class ModemRestarted(ModemUnavailable):
    """The modem restarted while a command waited for its answer: the command is lost."""


class AtModem:
    """One modem (one SIM) on one serial port."""

    def __init__(self, port: str, slot: int, *, events: asyncio.Queue[BackendEvent] | None = None,
                 baudrate: int = 115200, timeout: float = 10.0, send_timeout: float = 60.0,
                 probe_timeout: float = 3.0, reopen_after: float = 30.0) -> None:
        self.port = port
        self.slot = slot
        self.baudrate = baudrate
        self.timeout = timeout
        self.send_timeout = send_timeout
        self.probe_timeout = probe_timeout
        self.reopen_after = reopen_after
        self.events: asyncio.Queue[BackendEvent] = events if events is not None else asyncio.Queue()
        self.error: str | None = None  # why the modem is unusable, when it is
        self.iccid: str | None = None
        self.number: str | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._lines: asyncio.Queue[str] = asyncio.Queue()
        self._lock = asyncio.Lock()  # one command at a time
        self._storage_lock = asyncio.Lock()  # one read-and-delete sequence at a time
        self._open_lock = asyncio.Lock()
        self._opened_at: float | None = None
        self._sms_ready = False
        self._acknowledges = False  # AT+CSMS=1 took: each +CDS/+CMT wants an AT+CNMA
        self._tasks: set[asyncio.Task[None]] = set()
        self._parts: dict[tuple[str, int, int], dict[int, tuple[pdu.Decoded, Place | None]]] = {}
        self._recent: OrderedDict[str, int] = OrderedDict()  # ident -> new messages with it
        self._unconfirmed: dict[int, str] = {}  # storage index -> ident read, not yet deleted
        self._references = itertools.count(1)
        self._echo: str | None = None  # the PDU just written, echoed back by some modems
        self._stale = False  # a command timed out: its late answer may still come
        self._closed = False
        self._restart_task: asyncio.Task[None] | None = None
        self._restart_pending = False  # a restart was announced and is not handled yet

    @property
    def sim(self) -> int:
        return self.slot + 1

    # -- connection ------------------------------------------------------------------

    async def open(self) -> None:
        """Open the port and set the modem up; failures end up in `error`, not raised."""
        async with self._open_lock:
            if self._writer is not None:
                return
            self._opened_at = asyncio.get_running_loop().time()
            try:
                reader, self._writer = await serial_asyncio.open_serial_connection(
                    url=self.port, baudrate=self.baudrate)
            except (OSError, serial.SerialException) as exc:
                self.error = (f"cannot open {self.port} for SIM {self.sim}: {exc}; check that "
                              "the modem is plugged in, the port name, and that this user may "
                              "use it (dialout group)")
                return
            self._lines = asyncio.Queue()
            self._reader_task = asyncio.create_task(self._read_loop(reader))
            try:
                await self._initialise()
            except (TimeoutError, ModemUnavailable):
                self.error = (f"the modem on {self.port} (SIM {self.sim}) does not answer AT "
                              f"commands: check its power, the port name and the baud rate "
                              f"({self.baudrate})")
                await self._disconnect()
                return
            self.error = None

    async def _initialise(self) -> None:
        for attempt in range(2):
            try:
                await self.command("AT", seconds=self.probe_timeout)
                break
            except AtError:
                break
            except TimeoutError:
                if attempt:
                    raise
        for command in LINK_SETUP:
            with contextlib.suppress(AtError):
                await self.command(command)
        self.iccid = await self._read_iccid()
        await self._setup_sms()

    async def _setup_sms(self) -> None:
        """PDU mode, storage and notifications; fails quietly until the SIM is usable."""
        try:
            await self.command("AT+CMGF=0")
            self._acknowledges = False
            for command in SMS_SERVICES:
                with contextlib.suppress(AtError):
                    await self.command(command)
                    self._acknowledges = command.endswith("1")
                    break
            with contextlib.suppress(AtError):
                await self.command(STORAGE_SETUP)
            for command in NOTIFICATIONS:
                try:
                    await self.command(command)
                    break
                except AtError:
                    if command == NOTIFICATIONS[-1]:
                        raise
        except AtError as exc:
            log.debug("SMS setup of %s not done yet: %s", self.port, exc)
            return
        self._sms_ready = True
        with contextlib.suppress(AtError):
            self.number = _phone_number(await self.command("AT+CNUM"))
        with contextlib.suppress(AtError):
            await self._read_all_stored()

    async def ensure_open(self) -> None:
        """Reopen a modem that failed, at most every `reopen_after` seconds."""
        if self._writer is not None:
            return
        now = asyncio.get_running_loop().time()
        if self._opened_at is None or now - self._opened_at >= self.reopen_after:
            await self.open()

    async def close(self) -> None:
        self._closed = True
        for task in list(self._tasks):
            task.cancel()
        await self._disconnect()

    async def _reconnect(self) -> None:
        """The port went away: try it again every `reopen_after` seconds until it is back."""
        await self._disconnect()
        while not self._closed and self._writer is None:
            await asyncio.sleep(self.reopen_after)
            if not self._closed:
                await self.open()
                if self._writer is not None:
                    log.warning("the modem on %s (SIM %d) is back", self.port, self.sim)

    async def _restarted(self) -> None:
        """The modem restarted: echo, errors, PDU mode and notifications set up again."""
        log.warning("the modem on %s (SIM %d) restarted; setting it up again", self.port,
                    self.sim)
        while self._restart_pending and not self._closed:
            self._restart_pending = False  # set again if it restarts during the setup
            self._sms_ready = False
            try:
                for command in LINK_SETUP:
                    with contextlib.suppress(AtError):
                        await self.command(command)
                await self._setup_sms()
            except ModemRestarted:
                continue
            except (TimeoutError, ModemUnavailable) as exc:
                log.warning("setting up %s again failed: %s", self.port, exc)

    async def _disconnect(self) -> None:
        task, self._reader_task = self._reader_task, None
        if task and task is not asyncio.current_task():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        writer, self._writer = self._writer, None
        self._sms_ready = False
        if writer:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    # -- reading ---------------------------------------------------------------------

    async def _read_loop(self, reader: asyncio.StreamReader) -> None:
        buffer = b""
        pending: str | None = None  # header of a two-line URC
        try:
            while chunk := await reader.read(65536):
                buffer += chunk
                *lines, buffer = buffer.split(b"\r\n")
                for raw in lines:
                    line = raw.strip().decode("ascii", "replace")
                    if line:
                        pending = self._read_line(line, pending)
                if buffer.lstrip().startswith(b">"):
                    buffer = b""
                    self._lines.put_nowait(PROMPT)
            reason = "the port was closed"
        except (OSError, serial.SerialException) as exc:
            reason = str(exc)
        self.error = (f"lost the modem on {self.port} (SIM {self.sim}): {reason}; check its "
                      "cable and power")
        log.warning("%s", self.error)
        self._lines.put_nowait(LOST)
        self._reader_task = None
        self._spawn(self._reconnect())

    def _read_line(self, line: str, pending: str | None) -> str | None:
        """`_on_line`, except that a line it cannot make sense of is logged and left:
        nothing the modem says stops the reader."""
        try:
            return self._on_line(line, pending)
        except Exception as exc:  # noqa: BLE001 - one garbled line, the reader goes on
            log.warning("left a line from %s that could not be read: %r (%s)", self.port,
                        line[:120], exc)
            return None

    def _on_line(self, line: str, pending: str | None) -> str | None:
        """Route one line; returns the header of a two-line URC still waiting for its PDU."""
        if pending is not None:
            self._on_pdu(line, None)
        elif line[:2].upper() == "AT" or line == self._echo:
            return None  # echo of a command or of a PDU
        elif line.startswith(TWO_LINE_URCS):
            return line
        elif line.upper().startswith(RESTART_URCS):
            self._lines.put_nowait(RESTARTED)
            self._restart_pending = True
            if self._restart_task is None or self._restart_task.done():
                self._restart_task = asyncio.create_task(self._restarted())
                self._tasks.add(self._restart_task)
                self._restart_task.add_done_callback(self._tasks.discard)
        elif line.startswith("+CREG:") and "," not in line:  # unsolicited: <stat> alone
            self.events.put_nowait(SimChanged(self.slot, line))
        elif line.startswith(STORED_URCS):
            memory, _, index = line.partition(":")[2].rpartition(",")
            if index.strip().isdigit():
                self._spawn(self._read_stored(memory.strip().strip('"'), int(index)))
        else:
            self._lines.put_nowait(line)
        return None

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _read_stored(self, memory: str, index: int) -> None:
        """AT+CMGR of one stored SMS or status report, deleted once acknowledged."""
        memory = memory.upper() or "SM"
        try:
            async with self._storage_lock, self._memory(memory):
                lines = await self.command(f"AT+CMGR={index}")
        except (AtError, TimeoutError, ModemUnavailable) as exc:
            log.warning("reading stored SMS %s/%d on %s failed: %s", memory, index,
                        self.port, exc)
            return
        body = [x for x in lines if not x.startswith("+CMGR:")]
        if body:
            self._on_pdu(body[0], (memory, index))

    async def _read_all_stored(self) -> None:
        """What arrived while nobody listened (or was not acknowledged before a crash):
        AT+CMGL=4 (all), each deleted once acknowledged."""
        async with self._storage_lock:
            lines = await self.command("AT+CMGL=4")
            stored = [(head[6:].split(",")[0].strip(), body)
                      for head, body in itertools.pairwise(lines)
                      if head.startswith("+CMGL:") and not body.startswith("+CMGL:")]
            for index, body in stored:
                if index.isascii() and index.isdigit():
                    self._on_pdu(body, ("SM", int(index)))
                else:
                    log.warning("left a +CMGL entry of %s without an index: %r", self.port,
                                index[:40])

    @contextlib.asynccontextmanager
    async def _memory(self, memory: str) -> AsyncIterator[None]:
        """Read and delete in `memory` (+CDSI may name "SR"), then back to the SIM's."""
        switch = memory != "SM"
        if switch:
            await self.command(f'AT+CPMS="{memory}"')
        try:
            yield
        finally:
            if switch:
                with contextlib.suppress(AtError, TimeoutError, ModemUnavailable):
                    await self.command('AT+CPMS="SM"')

    def _delete(self, places: list[Place]) -> Acknowledge:
        """What lets go of stored messages once the agent has them: AT+CMGD each."""
        async def delete() -> None:
            async with self._storage_lock:
                for memory, index in places:
                    async with self._memory(memory):
                        await self.command(f"AT+CMGD={index}")
                    if memory == "SM":
                        self._unconfirmed.pop(index, None)

        return delete

    async def _acknowledge_direct(self) -> None:
        """AT+CNMA for the oldest +CDS/+CMT the modem passed on (AT+CSMS=1)."""
        try:
            await self.command("AT+CNMA")
        except AtError as exc:  # 340: the modem restarted since, and expects none
            log.debug("AT+CNMA on %s: %s", self.port, exc)

    def _on_pdu(self, hex_pdu: str, place: Place | None) -> None:
        """An SMS or status report, stored at `place` or (None) routed directly; one
        that cannot be read is passed on as Unreadable, to be set aside."""
        direct_ack = self._acknowledge_direct if place is None and self._acknowledges else None
        try:
            self._on_decoded(pdu.decode(hex_pdu), place, direct_ack)
        except Exception as exc:  # noqa: BLE001 - a garbled PDU must not stop the modem
            reason = f"a PDU that reads as no SMS: {type(exc).__name__}: {exc}"
            log.warning("SIM %d on %s received %s (%s)", self.sim, self.port, reason,
                        hex_pdu[:80])
            self.events.put_nowait(Unreadable(
                slot=self.slot, reason=reason, raw=hex_pdu,
                acknowledge=self._delete([place]) if place else direct_ack))

    def _on_decoded(self, decoded: pdu.Decoded, place: Place | None,
                    direct_ack: Acknowledge | None) -> None:
        if decoded.kind == "SMS-STATUS-REPORT":
            self.events.put_nowait(DeliveryReport(
                slot=self.slot, reference=decoded.reference or 0,
                delivered=(decoded.status or 0) < 0x20, status=decoded.status or 0,
                at=datetime.now(UTC), recipient=decoded.number or None,
                acknowledge=self._delete([place]) if place else direct_ack))
        elif decoded.kind != "SMS-DELIVER":
            if place is None:  # passed on as received: it cannot be a draft of the SIM's
                raise ValueError(f"an {decoded.kind} where a received SMS was due")
            return  # stored: a draft or a sent SMS of the SIM's own, left as it is
        elif decoded.concat is None or decoded.concat[1] <= 1:
            self._emit([(decoded, place)], direct_ack)
        else:
            reference, total, number = decoded.concat
            key = (decoded.number, reference, total)
            parts = self._parts.setdefault(key, {})
            parts[number] = (decoded, place)
            if len(parts) == total:
                del self._parts[key]
                self._emit([parts[n] for n in sorted(parts)], direct_ack)
            elif len(self._parts) > 256:  # parts of messages that will never complete
                del self._parts[next(iter(self._parts))]

    def _emit(self, parts: list[tuple[pdu.Decoded, Place | None]],
              direct_ack: Acknowledge | None) -> None:
        first, place = parts[0]
        stamp = (first.time or datetime.now(UTC)).astimezone(UTC)
        ident = self._ident(first, stamp, place[1] if place else None)
        stored = [p for _, p in parts if p is not None]
        acknowledge = self._delete(stored) if stored else direct_ack
        if first.data is not None:
            sms = IncomingSms(slot=self.slot, sender=first.number, received_at=stamp,
                              ident=ident, data=b"".join(d.data or b"" for d, _ in parts),
                              port=first.port, recipient=self.number, acknowledge=acknowledge)
        else:
            text, replaced = pdu.whole_text("".join(d.text or "" for d, _ in parts))
            replaced += sum(d.replaced for d, _ in parts)  # an SMS of one part: decoded whole
            if replaced:
                log.warning("SMS from %s on SIM %d held %d character(s) that no text can "
                            "hold (UTF-16 half pairs): each replaced with U+FFFD",
                            first.number, self.sim, replaced)
            sms = IncomingSms(slot=self.slot, sender=first.number, received_at=stamp,
                              ident=ident, text=text, recipient=self.number,
                              acknowledge=acknowledge)
        self.events.put_nowait(sms)

    def _ident(self, first: pdu.Decoded, stamp: datetime, index: int | None) -> str:
        """Where and when the SMS was stored, never its content.

        The same stored SMS read twice (not deleted in between, or after a restart) keeps
        its ident; a new SMS that happens to get the same place and second gets a suffix.
        """
        concat = first.concat[0] if first.concat else "-"
        base = (f"{self.iccid or self.port}:{stamp:%Y%m%d%H%M%S}:{first.number}:{concat}:"
                f"{'-' if index is None else index}")
        if index is not None and self._unconfirmed.get(index, "").partition("~")[0] == base:
            return self._unconfirmed[index]
        seen = self._recent.pop(base, 0) + 1
        self._recent[base] = seen
        if len(self._recent) > 1024:
            self._recent.popitem(last=False)
        ident = base if seen == 1 else f"{base}~{seen}"
        if index is not None:
            self._unconfirmed[index] = ident
        return ident

    # -- commands --------------------------------------------------------------------

    async def _require(self) -> asyncio.StreamWriter:
        if self._writer is None:
            raise ModemUnavailable(self.error or f"the modem on {self.port} is not open")
        if self._stale:
            await self._resync(self._writer)
        while not self._lines.empty():  # late answers to an earlier, timed-out command
            self._lines.get_nowait()
        return self._writer

    async def _resync(self, writer: asyncio.StreamWriter, quiet: float = 0.3) -> None:
        """Leave a '>' prompt, then AT until an OK is followed by `quiet` seconds of
        silence: the late answer of a timed-out command can no longer pass for the next."""
        writer.write(b"\x1bAT\r")
        deadline = asyncio.get_running_loop().time() + self.timeout
        waiting_for_ok = True
        while asyncio.get_running_loop().time() < deadline:
            try:
                async with asyncio.timeout(quiet if not waiting_for_ok else self.probe_timeout):
                    line = await self._lines.get()
            except TimeoutError:
                if not waiting_for_ok:
                    self._stale = False
                    return
                writer.write(b"AT\r")
                continue
            if line == LOST:
                raise ModemUnavailable(self.error or f"lost the modem on {self.port}")
            waiting_for_ok = line != OK and waiting_for_ok
        raise TimeoutError(f"{self.port} does not settle after a timed-out command")

    async def command(self, command: str, *, seconds: float | None = None) -> list[str]:
        """Run one command: its response lines, or AtError / TimeoutError / ModemUnavailable."""
        async with self._lock:
            (await self._require()).write(command.encode() + b"\r")
            return await self._response(command, seconds or self.timeout)

    async def _response(self, command: str, seconds: float, *, prompt: bool = False) -> list[str]:
        """Lines up to the final result code (or up to the '>' prompt when `prompt`)."""
        lines: list[str] = []
        try:
            async with asyncio.timeout(seconds):
                while True:
                    line = await self._lines.get()
                    if line == PROMPT:
                        if prompt:
                            return lines
                    elif line == OK:
                        if prompt:
                            raise AtError(f"ERROR: {command} gave no '>' prompt")
                        return lines
                    elif line == LOST:
                        raise ModemUnavailable(self.error or f"lost the modem on {self.port}")
                    elif line == RESTARTED:
                        raise ModemRestarted(f"the modem on {self.port} restarted during "
                                             f"{command}")
                    elif line.startswith(FINAL_ERRORS):
                        raise AtError(line)
                    else:
                        lines.append(line)
        except TimeoutError:
            self._stale = True
            raise TimeoutError(f"no answer from {self.port} to {command} within "
                               f"{seconds:g} s") from None

    async def send_pdu(self, part: pdu.Part) -> int:
        """AT+CMGS for one part; returns the message reference the network gave it."""
        command = f"AT+CMGS={part.tpdu_length}"
        async with self._lock:
            writer = await self._require()
            writer.write(command.encode() + b"\r")
            try:
                await self._response(command, self.timeout, prompt=True)
            except TimeoutError:
                writer.write(b"\x1b")  # leave the PDU prompt, should it come late
                raise
            self._echo = part.hex
            writer.write(part.hex.encode() + b"\x1a")
            try:
                lines = await self._response("the PDU", self.send_timeout)
            except ModemRestarted:
                raise TimeoutError(f"the modem on {self.port} restarted while sending") from None
        value = _value(lines, "+CMGS:") or ""
        return int(value) if value.isdigit() else 0

    async def send(self, number: str, *, text: str | None = None, data: bytes | None = None,
                   port: int | None = None, delivery_report: bool = True) -> SendResult:
        """Encode and send every part; SendError with a readable reason otherwise."""
        try:
            parts = pdu.encode_submit(number, text=text, data=data, port=port,
                                      status_report=delivery_report,
                                      reference=next(self._references))
        except ValueError as exc:
            raise SendError(f"Can't send message: {exc}") from None
        await self.ensure_open()
        references: list[int] = []
        try:
            if not self._sms_ready:
                await self._setup_sms()
            for part in parts:
                references.append(await self.send_pdu(part))
        except AtError as exc:
            advice = CMS_ADVICE.get(exc.code or 0) if exc.kind == "+CMS ERROR" else None
            done = f" after {len(references)} of {len(parts)} parts" if references else ""
            raise SendError(f"Send result: {exc.describe()} on SIM {self.sim}{done}"
                            + (f": {advice}" if advice else ""),
                            permanent=not exc.transient, code=exc.code) from None
        except ModemUnavailable as exc:
            raise SendError(f"Can't send message: {exc}", permanent=False) from None
        except TimeoutError as exc:
            raise SendError(f"Send result: timeout on SIM {self.sim} ({exc}); the SMS may or "
                            "may not have been sent") from None
        return SendResult(parts=len(parts), references=references)

    # -- SIM state -------------------------------------------------------------------

    async def info(self) -> SimInfo:
        await self.ensure_open()
        try:
            return await self._query()
        except ModemUnavailable as exc:
            return SimInfo(self.slot, SimState.ERROR, iccid=self.iccid, detail=str(exc))
        except TimeoutError as exc:
            return SimInfo(self.slot, SimState.ERROR, iccid=self.iccid,
                           detail=f"the modem on {self.port} (SIM {self.sim}) stopped "
                                  f"answering ({exc}): check its cable and power")

    async def _query(self) -> SimInfo:
        sim = self.sim
        try:
            pin = _value(await self.command("AT+CPIN?"), "+CPIN:") or ""
        except AtError as exc:
            if exc.code in (10, 310) or "not inserted" in exc.line.lower():
                return SimInfo(self.slot, SimState.ABSENT,
                               detail=f"no SIM in slot {sim}: insert a SIM card")
            return SimInfo(self.slot, SimState.ERROR, iccid=self.iccid,
                           detail=f"SIM {sim} on {self.port}: {exc.describe()}; reseat the SIM "
                                  "card and check it works in a phone")
        if pin != "READY":
            if "PUK" in pin:
                detail = (f"SIM {sim} is blocked and needs its PUK: unblock it in a phone "
                          "(AT+CPIN=<puk>,<new pin>)")
            else:
                detail = (f"SIM {sim} is locked by a PIN ({pin or 'unknown lock'}): unlock it "
                          "(AT+CPIN=<pin>) or disable the PIN in a phone")
            return SimInfo(self.slot, SimState.PIN_REQUIRED, iccid=self.iccid, detail=detail)
        if not self._sms_ready:
            await self._setup_sms()
        signal = operator = None
        registration = 0
        with contextlib.suppress(AtError, ValueError):
            signal = int((_value(await self.command("AT+CSQ"), "+CSQ:") or "99").split(",")[0])
        with contextlib.suppress(AtError):
            registration = _registration(await self.command("AT+CREG?"))
        with contextlib.suppress(AtError):
            quoted = _quoted(_value(await self.command("AT+COPS?"), "+COPS:") or "")
            operator = quoted[0] if quoted else None
        with contextlib.suppress(AtError):
            self.number = _phone_number(await self.command("AT+CNUM")) or self.number
        signal = None if signal in (None, 99) else signal
        if registration not in (1, 5):
            state = REGISTRATION.get(registration, "not registered")
            return SimInfo(self.slot, SimState.NO_NETWORK, self.number, operator, self.iccid,
                           signal, detail=f"SIM {sim} is not registered on a network ({state}): "
                                          "check the antenna, coverage and that the SIM is "
                                          "active")
        return SimInfo(self.slot, SimState.READY, self.number, operator, self.iccid, signal)

    async def _read_iccid(self) -> str | None:
        for command in ("AT+CCID", "AT+ICCID", "AT^ICCID?"):
            with contextlib.suppress(AtError):
                answer = " ".join(await self.command(command))
                found = re.search(r"\b([0-9A-Fa-f]{18,22})\b", answer)
                if found:
                    return found.group(1).rstrip("Ff")
        return None


def _value(lines: list[str], prefix: str) -> str | None:
    for line in lines:
        if line.startswith(prefix):
            return line[len(prefix):].strip()
    return None


def _quoted(text: str) -> list[str]:
    return re.findall(r'"([^"]*)"', text)


def _phone_number(lines: list[str]) -> str | None:
    """The own number from +CNUM: the first quoted field that is a phone number."""
    for line in lines:
        if line.startswith("+CNUM:"):
            for field in _quoted(line):
                if re.fullmatch(r"\+?\d{3,}", field):
                    return field
    return None


def _registration(lines: list[str]) -> int:
    """<stat> of +CREG: <n>,<stat>[,...]; an unsolicited "+CREG: <stat>" line is skipped."""
    for line in lines:
        fields = line.partition(":")[2].split(",")
        if line.startswith("+CREG:") and len(fields) >= 2 and fields[1].strip().isdigit():
            return int(fields[1])
    return 0


class AtBackend:
    """A pool of AT modems, one SIM slot each, in the order of `ports`."""

    def __init__(self, ports: list[str], **modem_options: Any) -> None:
        self.default_slot: int | None = 0
        self._events: asyncio.Queue[BackendEvent] = asyncio.Queue()
        self.modems = [AtModem(port, slot, events=self._events, **modem_options)
                       for slot, port in enumerate(ports)]

    async def start(self) -> None:
        await asyncio.gather(*(m.open() for m in self.modems))

    async def close(self) -> None:
        await asyncio.gather(*(m.close() for m in self.modems), return_exceptions=True)

    async def sims(self) -> list[SimInfo]:
        return list(await asyncio.gather(*(m.info() for m in self.modems)))

    async def send(self, slot: int | None, phone_number: str, *, text: str | None = None,
                   data: bytes | None = None, port: int | None = None,
                   delivery_report: bool = True) -> SendResult:
        index = self.default_slot if slot is None else slot
        if index is None or not 0 <= index < len(self.modems):
            raise SendError(f"Can't send message: SIM {(index or 0) + 1} not found; this "
                            f"device has {len(self.modems)} SIM slot(s)")
        return await self.modems[index].send(phone_number, text=text, data=data, port=port,
                                             delivery_report=delivery_report)

    async def events(self) -> AsyncIterator[BackendEvent]:
        while True:
            yield await self._events.get()
