"""One emulated GSM modem on a pseudo-terminal, speaking 3GPP TS 27.007 / 27.005.

It answers as real modems do, so that the field's own tools (Gammu, Kannel's `at` driver,
python-gsmmodem) and simgate's driver use it unchanged: echo on at power-on, V.25ter
basic commands, identification, character sets (GSM, UCS2, IRA), PDU and text mode,
message storages with their counts, +CNMI routing of new messages and status reports,
+CME / +CMS ERROR numbered as the specification does. docs/emulator.md lists every
command and answer. The network between modems lives in `emulator.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import re
import tty
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from gsmmodem import pdu as codec

from simgate import __version__
from simgate.sms import pdu

if TYPE_CHECKING:
    from simgate.agent.backends.emulator import EmulatedNetwork

OPERATOR = "simgate Mobile"
OPERATOR_SHORT = "simgate"
PLMN = "00101"  # the test network code of ITU-T E.212
MANUFACTURER = "simgate"
MODEL = "simgate emulated GSM modem"
PIN = "1234"  # what AT+CPIN=<pin> accepts on a PIN-locked emulated SIM
PUK = "12345678"  # what unblocks it after three wrong PINs
PIN_TRIES = 3
CAPACITY = {"SM": 30, "ME": 100}  # messages each storage holds
CHARSETS = ("GSM", "UCS2", "IRA")
STATS = ("REC UNREAD", "REC READ", "STO UNSENT", "STO SENT", "ALL")
# What +CMEE=2 prints instead of the number (TS 27.007 9.2, TS 27.005 3.2.5).
CME_TEXT = {3: "operation not allowed", 4: "operation not supported", 10: "SIM not inserted",
            11: "SIM PIN required", 12: "SIM PUK required", 16: "incorrect password",
            20: "memory full", 21: "invalid index", 30: "no network service",
            50: "incorrect parameters", 100: "unknown"}
CMS_TEXT = {38: "network out of order", 300: "ME failure", 302: "operation not allowed",
            303: "operation not supported", 304: "invalid PDU mode parameter",
            305: "invalid text mode parameter", 310: "SIM not inserted", 311: "SIM PIN required",
            316: "SIM PUK required", 321: "invalid memory index", 322: "memory full",
            330: "SMSC address unknown", 331: "no network service", 500: "unknown error"}
POWER_ON = ("RDY", "+CFUN: 1")  # what the modem says after a reset or a power blip


@dataclass
class Faults:
    """What is wrong with one emulated slot; the send faults may be changed while running."""

    absent: bool = False  # no SIM: +CPIN? -> +CME ERROR: 10
    pin: bool = False  # PIN enabled: +CPIN: SIM PIN until AT+CPIN=1234
    no_network: bool = False  # +CREG: 0,0; sends -> +CMS ERROR: 331
    fail: float = 0.0  # share of sends answered +CMS ERROR: 38
    delay: float = 0.0  # seconds a send takes
    fail_part: int = 0  # part N (1-based) of every multipart message fails: +CMS ERROR: 38
    capacity: int = 0  # messages the SIM storage holds (0: 30); a full store holds new SMS back
    echo: bool = False  # echo stays on whatever ATE0 says, as on some modems
    interleave: bool = False  # URCs come between a command's echo and its answer
    prompt_delay: float = 0.0  # seconds before the '>' of AT+CMGS / AT+CMGW
    report_delay: float = 0.0  # extra seconds before the status report of a send
    lose_network: int = 0  # after this many sends the SIM loses its network (as no_network)

    @classmethod
    def of(cls, value: Faults | Mapping[str, float | bool] | None) -> Faults:
        return value if isinstance(value, Faults) else cls(**(value or {}))

    @property
    def reachable(self) -> bool:
        return not (self.absent or self.pin or self.no_network)


class ModemError(Exception):
    """A final result other than OK: ERROR, +CME ERROR: n or +CMS ERROR: n."""

    def __init__(self, kind: str = "", code: int = 0) -> None:
        super().__init__(f"{kind} {code}")
        self.kind, self.code = kind, code


def cme(code: int) -> ModemError:
    return ModemError("CME", code)


def cms(code: int) -> ModemError:
    return ModemError("CMS", code)


@dataclass
class Stored:
    """One message in a storage: its <stat> (0 unread, 1 read, 2 unsent, 3 sent) and PDU."""

    stat: int
    hex: str


@dataclass
class Input:
    """The text or PDU awaited after '>' (AT+CMGS / AT+CMGW)."""

    command: str  # +CMGS or +CMGW
    length: int = 0  # PDU mode: TPDU octets
    number: str = ""  # text mode: destination
    stat: int = 2  # +CMGW: the <stat> to store with


@dataclass
class Settings:
    """The modem's volatile settings: what a reset or ATZ puts back."""

    echo: bool = True
    cmee: int = 0
    cmgf: int = 0
    cscs: str = "IRA"
    csca: str = pdu.SMSC
    csms: int = 0
    csmp: tuple[int, int, int, int] = (17, 167, 0, 0)
    csdh: int = 0
    cnmi: list[int] = field(default_factory=lambda: [2, 1, 0, 0, 0])
    cpms: list[str] = field(default_factory=lambda: ["SM", "SM", "SM"])
    creg: int = 0
    cops_format: int = 0
    cfun: int = 1


class EmulatedModem:
    """One SIM slot: its SIM card, its modem and the pseudo-terminal the modem is on."""

    def __init__(self, network: EmulatedNetwork, slot: int, number: str, faults: Faults, *,
                 operator: str = OPERATOR) -> None:
        self.network = network
        self.slot = slot
        self.number = number
        self.faults = faults
        self.operator = operator
        self.iccid = f"8901260{slot + 1:012d}"
        self.imsi = f"{PLMN}{slot + 1:010d}"
        self.imei = _luhn(f"35209900{slot + 1:06d}")
        self.signal = 21
        self.storage: dict[str, dict[int, Stored]] = {"SM": {}, "ME": {}}
        for memory, index, stat, hex_pdu in network.memory.stored(slot):
            self.storage[memory][index] = Stored(stat, hex_pdu)
        # status reports routed as +CDS under AT+CSMS=1, oldest first, until +CNMA
        self.unacked: list[tuple[int, str, int]] = []
        # reports the network still owes this SIM (from before a restart, or not taken
        # before a reset), sent again once +CNMI routes status reports
        self.owed: list[tuple[int, str, int]] = network.memory.owed(slot)
        self.held: list[str] = []  # SMS-DELIVER the network holds while the store is full
        self.pin_enabled = faults.pin
        self.pin_tries = PIN_TRIES
        self.locked = "SIM PIN" if faults.pin else ""
        self.reference = 0
        self.sent = 0  # SMS submitted since start (for the lose_network fault)
        self.master = self.slave = -1
        self.port = ""
        self.s = Settings()
        self._input: Input | None = None
        self._busy = False  # a command is being answered later (a send's delay, a late '>')
        self._inbuf = bytearray()
        self._outbuf = bytearray()
        self._urcs: list[str] = []  # held while the link is reserved or +CNMI mode is 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    # -- the pseudo-terminal ---------------------------------------------------------

    def open_pty(self) -> str:
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        os.set_blocking(self.master, False)
        self.port = os.ttyname(self.slave)
        return self.port

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        loop.add_reader(self.master, self._readable)

    def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self.master >= 0 and self._loop:
            self._loop.remove_reader(self.master)
            self._loop.remove_writer(self.master)
        for fd in (self.master, self.slave):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.master = self.slave = -1
        self._outbuf.clear()

    def replug(self) -> str:
        """A new pty (new path), as a USB modem that vanished comes back; powered on anew."""
        self.close()
        self.open_pty()
        self._power_on()
        if self._loop:
            self.start(self._loop)
        return self.port

    def reset(self) -> None:
        """A power blip: settings back to power-on, a command in progress lost, RDY said."""
        self._power_on()
        self._write("".join(f"\r\n{line}\r\n" for line in POWER_ON)
                    + ("" if self.faults.absent else f"\r\n+CPIN: {self.locked or 'READY'}\r\n")
                    + "\r\nSMS Ready\r\n")

    def _power_on(self) -> None:
        self.s = Settings()
        self.owed += self.unacked  # never acknowledged: the network tries again
        self.unacked = []
        self._input, self._busy = None, False
        self._inbuf.clear()
        self._urcs.clear()
        for task in list(self._tasks):
            task.cancel()
        self.locked = "SIM PIN" if self.pin_enabled else ""

    def _write(self, text: str) -> None:
        if self.master < 0:
            return
        pending = bool(self._outbuf)
        self._outbuf += text.encode("latin-1", "replace")
        if not pending:
            self._flush()

    def _flush(self) -> None:
        assert self._loop is not None
        try:
            written = os.write(self.master, self._outbuf)
        except BlockingIOError:
            written = 0
        except OSError:
            self._outbuf.clear()
            return
        del self._outbuf[:written]
        if self._outbuf:
            self._loop.add_writer(self.master, self._drain)

    def _drain(self) -> None:
        assert self._loop is not None
        self._loop.remove_writer(self.master)
        self._flush()

    def _readable(self) -> None:
        try:
            self._inbuf += os.read(self.master, 65536)
        except OSError:  # BlockingIOError, or EIO while no one has the port open
            return
        self._consume()

    def _consume(self) -> None:
        buffer = self._inbuf
        while buffer and not self._busy:
            if self._input is not None:
                end = re.search(b"[\x1a\x1b]", buffer)
                if end is None:
                    return
                body = buffer[:end.start()].decode("latin-1")
                cancel = buffer[end.start()] == 0x1B  # Ctrl-Z sends, ESC cancels
                del buffer[:end.end()]
                if self._echoing:
                    self._write(body)
                pending, self._input = self._input, None
                if cancel:
                    self._final([])
                else:
                    self._run(lambda p=pending, b=body: self._input_done(p, b))
                continue
            end = buffer.find(b"\r")
            if end < 0:
                if len(buffer) > 4096:
                    buffer.clear()
                return
            raw = buffer[:end].decode("latin-1")
            del buffer[:end + 1]
            line = raw.strip("\n\x1a\x1b ")
            if self._echoing:
                self._write(raw.lstrip("\n") + "\r")
            if self.faults.interleave:
                self._release_urcs(interleaved=True)
            if line[:2].upper() == "AT":
                self._command_line(line)
            elif line:
                self._write("\r\nERROR\r\n")

    @property
    def _echoing(self) -> bool:
        return self.s.echo or self.faults.echo

    def _spawn(self, coro: object) -> None:
        task = asyncio.ensure_future(coro)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _run(self, answer: Callable[[], list[str]]) -> None:
        """Answer now, or after the send delay; input waits meanwhile, as on a modem."""
        if self.faults.delay:
            self._busy = True
            self._spawn(self._later(self.faults.delay, answer))
        else:
            self._answer(answer)

    async def _later(self, seconds: float, answer: Callable[[], list[str]]) -> None:
        await asyncio.sleep(seconds)
        self._busy = False
        self._answer(answer)
        self._consume()

    def _answer(self, answer: Callable[[], list[str]]) -> None:
        try:
            lines = answer()
        except ModemError as exc:
            self._fail(exc)
        else:
            self._final(lines)

    # -- results and unsolicited codes ----------------------------------------------

    def _info(self, lines: list[str]) -> str:
        return "\r\n" + "\r\n".join(lines) + "\r\n" if lines else ""

    def _final(self, lines: list[str], prefix: str = "") -> None:
        self._write(prefix + self._info(lines) + "\r\nOK\r\n")
        self._release_urcs()

    def _fail(self, exc: ModemError, prefix: str = "") -> None:
        if not exc.kind or (exc.kind == "CME" and self.s.cmee == 0):
            self._write(prefix + "\r\nERROR\r\n")
        else:
            text = (CME_TEXT if exc.kind == "CME" else CMS_TEXT).get(exc.code, "unknown")
            value = text if self.s.cmee == 2 else str(exc.code)
            self._write(prefix + f"\r\n+{exc.kind} ERROR: {value}\r\n")
        self._release_urcs()

    def urc(self, text: str) -> None:
        """An SMS-related unsolicited result code, sent as +CNMI <mode> says: held while a
        command is in progress (mode 2, 3) or until mode is not 0; dropped then in mode 1."""
        mode = self.s.cnmi[0]
        reserved = self._input is not None or self._busy
        if mode == 1 and reserved:
            return
        if mode == 0 or reserved or self.faults.interleave:
            self._urcs.append(text)
            if self.faults.interleave and self._loop:
                self._loop.call_later(0.5, self._release_later)
            return
        self._write(f"\r\n{text}\r\n")

    def _release_urcs(self, interleaved: bool = False) -> None:
        """Held URCs go out once the link is free; with the `interleave` fault, right after
        the next command's echo, before its answer (or 0.5 s later when no command comes)."""
        if not self._urcs or self.s.cnmi[0] == 0 or self._input is not None or self._busy:
            return
        if self.faults.interleave and not interleaved:
            return
        urcs, self._urcs = self._urcs, []
        self._write("".join(f"\r\n{text}\r\n" for text in urcs))

    def _release_later(self) -> None:
        self._release_urcs(interleaved=True)
        if self._urcs and self._loop and self.master >= 0:
            self._loop.call_later(0.5, self._release_later)

    # -- the network's side ----------------------------------------------------------

    @property
    def reachable(self) -> bool:
        return self.faults.reachable and not self.locked and self.s.cfun == 1

    def receive(self, hex_pdu: str) -> None:
        """An SMS-DELIVER from the network, routed as +CNMI <mt> says."""
        if self.held or not self._route_deliver(hex_pdu):
            self.held.append(hex_pdu)

    def _route_deliver(self, hex_pdu: str) -> bool:
        mt = self.s.cnmi[1]
        if mt == 2:
            self.urc(self._cmt(hex_pdu))
            return True
        index = self._store(self.s.cpms[2], Stored(0, hex_pdu))
        if index is None:
            return False
        if mt in (1, 3):
            self.urc(f'+CMTI: "{self.s.cpms[2]}",{index}')
        return True

    def status_report(self, hex_pdu: str, length: int, owed_id: int) -> None:
        """A status report from the network, routed as +CNMI <ds> says. The network
        keeps it until the modem has taken it: stored, or acknowledged with +CNMA under
        AT+CSMS=1; with no routing set yet it waits for one."""
        ds = self.s.cnmi[3]
        if ds == 1:
            self.urc(self._cds(hex_pdu, length))
            if self.s.csms == 1:
                self.unacked.append((owed_id, hex_pdu, length))
                return
        elif ds == 2:
            index = self._store(self.s.cpms[2], Stored(0, hex_pdu))
            if index is None:
                return  # the store is full: kept owed
            self.urc(f'+CDSI: "{self.s.cpms[2]}",{index}')
        else:
            self.owed.append((owed_id, hex_pdu, length))
            return
        self.network.memory.settle(owed_id)

    def _send_owed(self) -> None:
        owed, self.owed = self.owed, []
        for owed_id, hex_pdu, length in owed:
            self.status_report(hex_pdu, length, owed_id)

    def _capacity(self, memory: str) -> int:
        if memory == "SM" and self.faults.capacity:
            return self.faults.capacity
        return CAPACITY[memory]

    def _store(self, memory: str, message: Stored) -> int | None:
        """The lowest free index of `memory`, or None when it is full."""
        store = self.storage[memory]
        for index in range(1, self._capacity(memory) + 1):
            if index not in store:
                self._keep(memory, index, message)
                return index
        return None

    def _keep(self, memory: str, index: int, message: Stored) -> None:
        """Put a message in a store; SIM storage outlives the process (emulated_memory)."""
        self.storage[memory][index] = message
        self.network.memory.store(self.slot, memory, index, message.stat, message.hex)

    def _read(self, memory: str, index: int, stored: Stored) -> None:
        if stored.stat == 0:
            stored.stat = 1
            self._keep(memory, index, stored)

    def _room_made(self) -> None:
        """The network hands over what it held back once the store has room (SMMA)."""
        while self.held and self._route_deliver(self.held[0]):
            self.held.pop(0)

    # -- command lines ---------------------------------------------------------------

    def _command_line(self, line: str) -> None:
        """Each command of the line in turn, each with its own information block."""
        answered = ""
        try:
            for name, rest in _split(line[2:]):
                result = self._command(name, rest)
                if result is None:  # waiting for the '>' input
                    return
                answered += self._info(result)
        except ModemError as exc:
            return self._fail(exc, answered)
        except (ValueError, IndexError):
            return self._fail(ModemError(), answered)
        self._final([], answered)

    def _command(self, name: str, rest: str) -> list[str] | None:
        if not name.startswith("+"):
            return self._basic(name, rest)
        identity = self._identity(name)
        if identity is not None:
            return [] if rest == "=?" else [identity]
        handler = getattr(self, "_at_" + name[1:].lower(), None)
        if handler is None:
            raise ModemError()
        if rest == "=?":
            form, args = "test", []
        elif rest == "?":
            form, args = "read", []
        elif rest.startswith("="):
            form, args = "set", _args(rest[1:])
        elif rest == "":
            form, args = "run", []
        else:
            raise ModemError()
        result: list[str] | None = handler(form, args)
        return result

    def _basic(self, name: str, value: str) -> list[str]:
        if name == "E":
            self.s.echo = value != "0"
        elif name in ("Z", "&F"):  # the stored profile is the factory one
            self.s = Settings()
        elif name == "I":
            return [MANUFACTURER, MODEL, f"Revision: {__version__}"]
        elif name not in ("V", "Q", "X", "&C", "&D", "&K", "&W", "S", "L", "M"):
            raise ModemError()
        return []

    def _sim_ready(self, sms: bool = False) -> None:
        """+CME / +CMS ERROR when the SIM is missing or locked."""
        if self.faults.absent:
            raise cms(310) if sms else cme(10)
        if self.locked:
            puk = self.locked == "SIM PUK"
            raise (cms(316 if puk else 311)) if sms else cme(12 if puk else 11)

    def _text(self, value: str) -> str:
        """A string in the TE character set (+CSCS), as the modem writes it."""
        if self.s.cscs == "UCS2":
            return value.encode("utf-16-be").hex().upper()
        if self.s.cscs == "GSM":
            try:
                return codec.encodeGsm7(value).decode("latin-1")
            except ValueError:
                return "".join(c if c.isascii() else "?" for c in value)
        return "".join(c if c.isascii() else "?" for c in value)

    def _untext(self, value: str) -> str:
        """A string from the TE in its character set."""
        if self.s.cscs == "UCS2" and re.fullmatch(r"(?:[0-9A-Fa-f]{4})+", value):
            return bytes.fromhex(value).decode("utf-16-be", "replace")
        if self.s.cscs == "GSM":
            return str(codec.decodeGsm7(value.encode("latin-1")))
        return value

    def _string(self, arg: str) -> str:
        return self._untext(arg.strip().strip('"'))

    # -- identification and settings (TS 27.007 / V.25ter) ---------------------------

    def _identity(self, name: str) -> str | None:
        """+CGMI, +CGMM, +CGMR, +CGSN and their V.25ter twins +GMI, +GMM, +GMR, +GSN."""
        revision = f"simgate {__version__}"
        return {"+CGMI": MANUFACTURER, "+GMI": MANUFACTURER, "+CGMM": MODEL, "+GMM": MODEL,
                "+CGMR": revision, "+GMR": revision, "+CGSN": self.imei,
                "+GSN": self.imei}.get(name)

    def _at_cimi(self, form: str, args: list[str]) -> list[str]:
        if form == "test":
            return []
        self._sim_ready()
        return [self.imsi]

    def _at_ccid(self, form: str, args: list[str]) -> list[str]:
        if self.faults.absent:
            raise cme(10)
        return [] if form == "test" else [f"+CCID: {self.iccid}"]

    _at_iccid = _at_ccid

    def _at_cmee(self, form: str, args: list[str]) -> list[str]:
        return self._setting(form, args, "cmee", "+CMEE", "(0-2)", range(3))

    def _setting(self, form: str, args: list[str], name: str, prefix: str, test: str,
                 allowed: range) -> list[str]:
        if form == "test":
            return [f"{prefix}: {test}"]
        if form == "read":
            return [f"{prefix}: {getattr(self.s, name)}"]
        value = int(args[0]) if args and args[0] else 0
        if value not in allowed:
            raise cme(50) if prefix != "+CMGF" else cms(302)
        setattr(self.s, name, value)
        return []

    def _at_cscs(self, form: str, args: list[str]) -> list[str]:
        if form == "test":
            return ["+CSCS: (" + ",".join(f'"{c}"' for c in CHARSETS) + ")"]
        if form == "read":
            return [f'+CSCS: "{self.s.cscs}"']
        charset = args[0].strip('"').upper() if args else ""
        if charset not in CHARSETS:
            raise cme(4)
        self.s.cscs = charset
        return []

    def _at_cfun(self, form: str, args: list[str]) -> list[str]:
        if form == "test":
            return ["+CFUN: (0,1,4),(0,1)"]
        if form == "read":
            return [f"+CFUN: {self.s.cfun}"]
        level = int(args[0]) if args else 1
        if level not in (0, 1, 4):
            raise cme(50)
        if len(args) > 1 and args[1] == "1" and self._loop:  # OK, then power-on codes
            self._loop.call_soon(self.reset)
            return []
        self.s.cfun = level
        return []

    def _at_cpin(self, form: str, args: list[str]) -> list[str]:
        if form == "test":
            return []
        if self.faults.absent:
            raise cme(10)
        if form == "read":
            return [f"+CPIN: {self.locked or 'READY'}"]
        if not args:
            raise cme(50)
        code = self._string(args[0])
        if self.locked == "SIM PUK":
            if code != PUK or len(args) < 2:
                raise cme(16)
            self.locked, self.pin_tries = "", PIN_TRIES
            return []
        if not self.locked:
            raise cme(3)
        if code != PIN:
            self.pin_tries -= 1
            if self.pin_tries <= 0:
                self.locked = "SIM PUK"
            raise cme(16)
        self.locked, self.pin_tries = "", PIN_TRIES
        return []

    def _at_clck(self, form: str, args: list[str]) -> list[str]:
        if form == "test":
            return ['+CLCK: ("SC")']
        if form != "set" or len(args) < 2:
            raise cme(50)
        if self._string(args[0]).upper() != "SC":
            raise cme(4)
        self._sim_ready()
        mode = int(args[1])
        if mode == 2:
            return [f"+CLCK: {int(self.pin_enabled)}"]
        if len(args) < 3 or self._string(args[2]) != PIN:
            raise cme(16)
        self.pin_enabled = mode == 1
        return []

    def _at_csq(self, form: str, args: list[str]) -> list[str]:
        if form == "test":
            return ["+CSQ: (0-31,99),(0-7,99)"]
        return [f"+CSQ: {self.signal if self._registered else 99},99"]

    @property
    def _registered(self) -> bool:
        return not (self.faults.absent or self.locked or self.faults.no_network
                    or self.s.cfun != 1)

    def _at_creg(self, form: str, args: list[str]) -> list[str]:
        if form == "test":
            return ["+CREG: (0-2)"]
        if form == "set":
            return self._setting(form, args, "creg", "+CREG", "", range(3))
        stat = 1 if self._registered else 0
        location = ',"0001","0001"' if self.s.creg == 2 and stat else ""
        return [f"+CREG: {self.s.creg},{stat}{location}"]

    _at_cgreg = _at_creg

    def _at_cops(self, form: str, args: list[str]) -> list[str]:
        names = [self._text(self.operator), self._text(OPERATOR_SHORT), PLMN]
        if form == "test":
            return [f'+COPS: (2,"{names[0]}","{names[1]}","{PLMN}"),,(0-4),(0-2)']
        if form == "set":
            if len(args) > 1 and args[1]:
                self.s.cops_format = int(args[1])
            return []
        if not self._registered:
            return ["+COPS: 0"]
        return [f'+COPS: 0,{self.s.cops_format},"{names[self.s.cops_format]}",0']

    def _at_cnum(self, form: str, args: list[str]) -> list[str]:
        if form == "test":
            return []
        self._sim_ready()
        return [f'+CNUM: "{self._text("Own number")}","{self._text(self.number)}",145']

    def _at_ifc(self, form: str, args: list[str]) -> list[str]:
        """Flow control: a pseudo-terminal needs none; the setting is kept and shown."""
        return ["+IFC: (0-2),(0-2)"] if form == "test" else ["+IFC: 0,0"] if form == "read" else []

    def _at_cbc(self, form: str, args: list[str]) -> list[str]:
        return [] if form == "test" else ["+CBC: 0,100"]

    # -- SMS settings (TS 27.005) ----------------------------------------------------

    def _at_csms(self, form: str, args: list[str]) -> list[str]:
        if form == "test":
            return ["+CSMS: (0,1)"]
        if form == "read":
            return [f"+CSMS: {self.s.csms},1,1,1"]
        service = int(args[0])
        if service not in (0, 1):
            raise cms(303)
        self.s.csms = service
        return ["+CSMS: 1,1,1"]

    def _at_cmgf(self, form: str, args: list[str]) -> list[str]:
        return self._setting(form, args, "cmgf", "+CMGF", "(0,1)", range(2))

    def _at_csdh(self, form: str, args: list[str]) -> list[str]:
        return self._setting(form, args, "csdh", "+CSDH", "(0,1)", range(2))

    def _at_csca(self, form: str, args: list[str]) -> list[str]:
        if form == "test":
            return []
        self._sim_ready()
        if form == "read":
            kind = 145 if self.s.csca.startswith("+") else 129
            return [f'+CSCA: "{self._text(self.s.csca)}",{kind}']
        self.s.csca = self._string(args[0])
        return []

    def _at_csmp(self, form: str, args: list[str]) -> list[str]:
        if form == "test":
            return []
        if form == "read":
            return ["+CSMP: " + ",".join(map(str, self.s.csmp))]
        values = list(self.s.csmp)
        for i, arg in enumerate(args[:4]):
            if arg:
                values[i] = int(arg)
        self.s.csmp = (values[0], values[1], values[2], values[3])
        return []

    def _at_cpms(self, form: str, args: list[str]) -> list[str]:
        if form == "test":
            memories = "(" + ",".join(f'"{m}"' for m in CAPACITY) + ")"
            return [f"+CPMS: {memories},{memories},{memories}"]
        self._sim_ready(sms=True)
        if form == "read":
            return ["+CPMS: " + ",".join(f'"{m}",{self._counts(m)}' for m in self.s.cpms)]
        chosen = [self._string(a).upper() for a in args[:3]]
        if not chosen or any(m not in CAPACITY for m in chosen):
            raise cms(302)
        self.s.cpms[:len(chosen)] = chosen
        return ["+CPMS: " + ",".join(self._counts(m) for m in self.s.cpms)]

    def _counts(self, memory: str) -> str:
        return f"{len(self.storage[memory])},{self._capacity(memory)}"

    def _at_cnmi(self, form: str, args: list[str]) -> list[str]:
        if form == "test":
            return ["+CNMI: (0-3),(0-3),(0,2),(0-2),(0,1)"]
        if form == "read":
            return ["+CNMI: " + ",".join(map(str, self.s.cnmi))]
        limits = (3, 3, 3, 2, 1)
        values = list(self.s.cnmi)
        for i, arg in enumerate(args[:5]):
            if arg:
                value = int(arg)
                if not 0 <= value <= limits[i]:
                    raise cms(303)
                values[i] = value
        self.s.cnmi = values
        self._release_urcs()
        if values[3]:
            self._send_owed()
        return []

    def _at_cnma(self, form: str, args: list[str]) -> list[str]:
        if form == "test":
            return []
        if self.s.csms == 0 or not self.unacked:
            raise cms(340)
        self.network.memory.settle(self.unacked.pop(0)[0])
        return []

    # -- messages --------------------------------------------------------------------

    def _at_cmgs(self, form: str, args: list[str]) -> list[str] | None:
        return self._prompt(form, args, "+CMGS")

    def _at_cmgw(self, form: str, args: list[str]) -> list[str] | None:
        return self._prompt(form, args, "+CMGW")

    def _prompt(self, form: str, args: list[str], command: str) -> list[str] | None:
        if form == "test":
            return []
        if command == "+CMGS" or form == "set":
            self._sim_ready(sms=True)
        if self.s.cmgf == 0:
            if form != "set" or not args[0].isdigit():
                raise cms(304)
            stat = int(args[1]) if len(args) > 1 and args[1] else 2
            pending = Input(command, length=int(args[0]), stat=stat)
        else:
            number = self._string(args[0]) if args else ""
            if command == "+CMGS" and not number:
                raise cms(305)
            stat = STATS.index(self._string(args[2])) if len(args) > 2 and args[2] else 2
            pending = Input(command, number=number, stat=stat)
        self._input = pending
        if self.faults.prompt_delay:
            self._busy = True
            self._spawn(self._late_prompt(self.faults.prompt_delay))
        else:
            self._write("\r\n> ")
        return None

    async def _late_prompt(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        self._busy = False
        self._write("\r\n> ")
        self._consume()

    def _input_done(self, pending: Input, body: str) -> list[str]:
        if self.s.cmgf == 0:
            hex_pdu = body.strip()
            try:
                decoded = pdu.decode(hex_pdu)
            except Exception:
                raise cms(304) from None
            if decoded.tpdu_length != pending.length or decoded.kind != "SMS-SUBMIT":
                raise cms(304)
        else:
            text = self._untext(body.replace("\r\n", "\n").replace("\r", "\n"))
            parts = pdu.encode_submit(pending.number or "", text=text, reference=0,
                                      status_report=bool(self.s.csmp[0] & 0x20))
            if len(parts) > 1:
                raise cms(305)
            hex_pdu = parts[0].hex
        if pending.command == "+CMGW":
            index = self._store(self.s.cpms[1], Stored(pending.stat, hex_pdu))
            if index is None:
                raise cms(322)
            return [f"+CMGW: {index}"]
        return [f"+CMGS: {self._submit(hex_pdu)}"]

    def _submit(self, hex_pdu: str, number: str | None = None) -> int:
        """Hand one SMS-SUBMIT to the network: its TP-MR, or +CMS ERROR."""
        self._sim_ready(sms=True)
        if self.faults.no_network or self.s.cfun != 1:
            raise cms(331)
        if self.faults.fail and random.random() < self.faults.fail:
            raise cms(38)
        decoded = pdu.decode(hex_pdu)
        if self.faults.fail_part and decoded.concat and decoded.concat[2] == self.faults.fail_part:
            raise cms(38)
        self.reference = (self.reference + 1) % 256
        self.network.submit(self, hex_pdu, self.reference, number)
        self.sent += 1
        if (self.faults.lose_network and self.sent >= self.faults.lose_network
                and not self.faults.no_network):
            self.faults.no_network = True  # the next send, and +CREG?, find no network
            if self.s.creg:
                self.urc("+CREG: 0")  # after this command's answer
        return self.reference

    def _at_cmss(self, form: str, args: list[str]) -> list[str]:
        if form == "test":
            return []
        index = int(args[0])
        stored = self.storage[self.s.cpms[1]].get(index)
        if stored is None or stored.stat not in (2, 3):
            raise cms(321)
        number = self._string(args[1]) if len(args) > 1 and args[1] else None
        reference = self._submit(stored.hex, number)
        stored.stat = 3
        self._keep(self.s.cpms[1], index, stored)
        return [f"+CMSS: {reference}"]

    def _stat_filter(self, args: list[str]) -> int:
        if not args or not args[0]:
            return 0 if self.s.cmgf == 0 else STATS.index("REC UNREAD")
        if self.s.cmgf == 0:
            if not args[0].isdigit() or int(args[0]) > 4:
                raise cms(304)
            return int(args[0])
        name = self._string(args[0]).upper()
        if name not in STATS:
            raise cms(305)
        return STATS.index(name)

    def _at_cmgl(self, form: str, args: list[str]) -> list[str]:
        if form == "test":
            return ["+CMGL: (0-4)" if self.s.cmgf == 0
                    else "+CMGL: (" + ",".join(f'"{s}"' for s in STATS) + ")"]
        self._sim_ready(sms=True)
        wanted = self._stat_filter(args)
        lines: list[str] = []
        for index, stored in sorted(self.storage[self.s.cpms[0]].items()):
            if wanted in (4, stored.stat):
                lines += self._listing(index, stored, "+CMGL")
                self._read(self.s.cpms[0], index, stored)
        return lines

    def _at_cmgr(self, form: str, args: list[str]) -> list[str]:
        if form == "test":
            return []
        self._sim_ready(sms=True)
        index = int(args[0])
        memory = self.s.cpms[0]
        if not 1 <= index <= self._capacity(memory):
            raise cms(321)
        stored = self.storage[memory].get(index)
        if stored is None:
            return []  # an empty index: OK and nothing, as most modems answer
        lines = self._listing(index, stored, "+CMGR")
        self._read(memory, index, stored)
        return lines

    def _at_cmgd(self, form: str, args: list[str]) -> list[str]:
        if form == "test":
            return ["+CMGD: (" + ",".join(map(str, sorted(self.storage[self.s.cpms[0]])))
                    + "),(0-4)"]
        self._sim_ready(sms=True)
        memory = self.s.cpms[0]
        store = self.storage[memory]
        index = int(args[0]) if args and args[0] else 0
        flag = int(args[1]) if len(args) > 1 and args[1] else 0
        if flag == 0:
            if not 1 <= index <= self._capacity(memory):
                raise cms(321)
            gone = [index] if store.pop(index, None) else []
        else:
            doomed = {1: (1,), 2: (1, 3), 3: (1, 2, 3), 4: (0, 1, 2, 3)}.get(flag)
            if doomed is None:
                raise cms(302)
            gone = [k for k, v in store.items() if v.stat in doomed]
            for key in gone:
                del store[key]
        self.network.memory.unstore(self.slot, memory, gone)
        self._room_made()
        return []

    # -- how a message is shown ------------------------------------------------------

    def _listing(self, index: int, stored: Stored, prefix: str) -> list[str]:
        head = f"{prefix}: {index}," if prefix == "+CMGL" else f"{prefix}: "
        if self.s.cmgf == 0:
            return [f"{head}{stored.stat},,{_tpdu_length(stored.hex)}", stored.hex]
        decoded = pdu.decode(stored.hex)
        stat = f'"{STATS[stored.stat]}"'
        if decoded.kind == "SMS-STATUS-REPORT":
            return [f"{head}{stat},{self._report_fields(decoded, stored.hex)}"]
        number = f'"{self._text(decoded.number)}"'
        if decoded.kind == "SMS-DELIVER":
            return [f'{head}{stat},{number},,"{_scts(decoded.time)}"', self._body(decoded)]
        return [f"{head}{stat},{number},", self._body(decoded)]

    def _body(self, decoded: pdu.Decoded) -> str:
        if decoded.data is not None:
            return decoded.data.hex().upper()
        return self._text(pdu.join_units(decoded.text or ""))

    def _report_fields(self, decoded: pdu.Decoded, hex_pdu: str) -> str:
        done = _report_done(hex_pdu)
        return (f'6,{decoded.reference or 0},"{self._text(decoded.number)}",145,'
                f'"{_scts(decoded.time)}","{_scts(done)}",{decoded.status or 0}')

    def _cmt(self, hex_pdu: str) -> str:
        if self.s.cmgf == 0:
            return f"+CMT: ,{_tpdu_length(hex_pdu)}\r\n{hex_pdu}"
        decoded = pdu.decode(hex_pdu)
        return (f'+CMT: "{self._text(decoded.number)}",,"{_scts(decoded.time)}"\r\n'
                f"{self._body(decoded)}")

    def _cds(self, hex_pdu: str, length: int) -> str:
        if self.s.cmgf == 0:
            return f"+CDS: {length}\r\n{hex_pdu}"
        return "+CDS: " + self._report_fields(pdu.decode(hex_pdu), hex_pdu)


def _split(body: str) -> list[tuple[str, str]]:
    """An AT command line (after "AT") into (name, rest): "E0" -> ("E", "0"),
    '+CMGF=0;+CSCS="GSM"' -> [("+CMGF", "=0"), ("+CSCS", '="GSM"')]."""
    commands: list[tuple[str, str]] = []
    i = 0
    while i < len(body):
        c = body[i]
        if c in "; ":
            i += 1
        elif c in "+^$%*":
            j = i + 1
            while j < len(body) and (body[j].isalnum() or body[j] == "_"):
                j += 1
            k, quoted = j, False
            while k < len(body) and (quoted or body[k] != ";"):
                quoted ^= body[k] == '"'
                k += 1
            commands.append(("+" + body[i + 1:j].upper() if c == "+" else body[i:j].upper(),
                             body[j:k].strip()))
            i = k + 1
        elif c.upper() == "S" and i + 1 < len(body) and body[i + 1].isdigit():
            found = re.match(r"S\d+(=\d*|\?)?", body[i:], re.IGNORECASE)
            assert found is not None
            commands.append(("S", found.group(0)[1:]))
            i += found.end()
        else:
            name = body[i:i + 2].upper() if c == "&" else c.upper()
            j = i + len(name)
            k = j
            while k < len(body) and body[k].isdigit():
                k += 1
            commands.append((name, body[j:k]))
            i = k
    return commands


def _args(text: str) -> list[str]:
    """Comma-separated values; quotes kept, commas inside quotes not split."""
    values, current, quoted = [], "", False
    for c in text:
        if c == "," and not quoted:
            values.append(current.strip())
            current = ""
            continue
        quoted ^= c == '"'
        current += c
    return [*values, current.strip()] if text else []


def _tpdu_length(hex_pdu: str) -> int:
    return len(hex_pdu) // 2 - 1 - int(hex_pdu[:2], 16)


def _scts(at: datetime | None) -> str:
    """yy/MM/dd,hh:mm:ss±zz (zz in quarters of an hour), as text mode shows times."""
    at = at or datetime.now(UTC)
    offset = at.utcoffset()
    quarters = int(offset.total_seconds() // 900) if offset else 0
    return f"{at:%y/%m/%d,%H:%M:%S}{'+' if quarters >= 0 else '-'}{abs(quarters):02d}"


def _report_done(hex_pdu: str) -> datetime | None:
    """TP-DT of a status report (the codec gives only TP-SCTS)."""
    raw = bytes.fromhex(hex_pdu)
    position = 1 + raw[0] + 2
    position += 2 + (raw[position] + 1) // 2 + 7
    with contextlib.suppress(Exception):
        return codec._decodeTimestamp(raw[position:position + 7])  # type: ignore[no-any-return]
    return None


def _luhn(digits: str) -> str:
    """`digits` with its Luhn check digit, as an IMEI carries."""
    total = 0
    for i, d in enumerate(reversed(digits)):
        n = int(d) * (2 if i % 2 == 0 else 1)
        total += n - 9 if n > 9 else n
    return digits + str(-total % 10)
