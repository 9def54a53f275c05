"""The emulated modem's AT dialect, byte for byte over its pseudo-terminal, as
docs/emulator.md describes it (3GPP TS 27.007 / 27.005)."""

from __future__ import annotations

import asyncio
import os
import re
import tty

import pytest

from simgate.agent.backends.emulator import EmulatedNetwork
from simgate.sms import pdu

FINAL = re.compile(rb"\r\n(OK|ERROR|\+CM[ES] ERROR: [^\r]*)\r\n$|\r\n> $")


class Terminal:
    """A program on the other end of one SIM's pty, writing commands and reading answers."""

    def __init__(self, port: str) -> None:
        self.fd = os.open(port, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        tty.setraw(self.fd)
        self.buffer = b""

    async def read_until(self, pattern: re.Pattern[bytes], within: float = 10.0) -> str:
        async with asyncio.timeout(within):
            while not pattern.search(self.buffer):
                try:
                    self.buffer += os.read(self.fd, 4096)
                except BlockingIOError:
                    await asyncio.sleep(0.01)
        found = pattern.search(self.buffer)
        assert found is not None
        text, self.buffer = self.buffer[:found.end()], self.buffer[found.end():]
        return text.decode("latin-1")

    async def at(self, command: str, *, end: bytes = b"\r") -> str:
        """The raw answer (echo included) up to the final result code or the '>' prompt."""
        os.write(self.fd, command.encode("latin-1") + end)
        return await self.read_until(FINAL)

    def close(self) -> None:
        os.close(self.fd)


@pytest.fixture
async def network(request):
    async with EmulatedNetwork(2, getattr(request, "param", None)) as emulated:
        yield emulated


@pytest.fixture
async def terminals(network):
    opened = [Terminal(port) for port in network.ports]
    yield opened
    for terminal in opened:
        terminal.close()


async def test_echo_is_on_at_power_on_and_ate0_turns_it_off(terminals):
    one, _ = terminals
    assert await one.at("AT") == "AT\r\r\nOK\r\n"
    assert await one.at("ATE0") == "ATE0\r\r\nOK\r\n"
    assert await one.at("AT") == "\r\nOK\r\n"
    assert await one.at("AT+CGMI;+CGMM") == "\r\nsimgate\r\n\r\nsimgate emulated GSM modem\r\n\r\nOK\r\n"
    assert await one.at("AT+NOPE") == "\r\nERROR\r\n"


async def test_errors_are_numbered_as_the_spec_and_verbose_with_cmee_2(terminals):
    one, _ = terminals
    await one.at("ATE0")
    assert await one.at('AT+CPIN="1234"') == "\r\nERROR\r\n"  # +CMEE=0: plain ERROR
    assert await one.at("AT+CMEE=1") == "\r\nOK\r\n"
    assert await one.at('AT+CPIN="1234"') == "\r\n+CME ERROR: 3\r\n"  # not locked
    assert await one.at("AT+CMGR=99") == "\r\n+CMS ERROR: 321\r\n"
    await one.at("AT+CMEE=2")
    assert await one.at("AT+CMGR=99") == "\r\n+CMS ERROR: invalid memory index\r\n"
    assert await one.at('AT+CSCS="KOI8"') == "\r\n+CME ERROR: operation not supported\r\n"


@pytest.mark.parametrize("network", [{0: {"pin": True}}], indirect=True)
async def test_pin_puk_and_clck(terminals):
    one, _ = terminals
    await one.at("ATE0;+CMEE=1")
    assert "+CPIN: SIM PIN" in await one.at("AT+CPIN?")
    assert await one.at("AT+CIMI") == "\r\n+CME ERROR: 11\r\n"
    assert await one.at("AT+CMGL=4") == "\r\n+CMS ERROR: 311\r\n"
    for _ in range(3):
        assert await one.at('AT+CPIN="0000"') == "\r\n+CME ERROR: 16\r\n"
    assert "+CPIN: SIM PUK" in await one.at("AT+CPIN?")
    assert await one.at('AT+CPIN="12345678","4321"') == "\r\nOK\r\n"
    assert "+CPIN: READY" in await one.at("AT+CPIN?")
    assert "+CLCK: 1" in await one.at('AT+CLCK="SC",2')
    assert await one.at('AT+CLCK="SC",0,"0000"') == "\r\n+CME ERROR: 16\r\n"
    assert await one.at('AT+CLCK="SC",0,"1234"') == "\r\nOK\r\n"
    assert "+CLCK: 0" in await one.at('AT+CLCK="SC",2')


def ucs2(text: str) -> str:
    return text.encode("utf-16-be").hex().upper()


async def test_text_mode_in_ucs2_writes_sends_from_storage_and_lists(terminals):
    one, two = terminals
    await one.at("ATE0;+CMEE=1;+CMGF=1")
    await two.at('ATE0;+CMGF=1;+CSCS="UCS2"')
    assert await one.at('AT+CMGW="+12025550102"') == "\r\n> "
    answer = await one.at("Héllo from text mode", end=b"\x1a")  # é passes as Latin-1
    assert answer == "\r\n+CMGW: 1\r\n\r\nOK\r\n"
    assert '+CPMS: "SM",1,30,"SM",1,30,"SM",1,30' in await one.at("AT+CPMS?")
    assert "+CMSS: 1" in await one.at("AT+CMSS=1")
    assert '+CMGL: 1,"STO SENT","+12025550102",' in await one.at('AT+CMGL="ALL"')
    notice = await two.read_until(re.compile(rb'\+CMTI: "SM",\d+\r\n'))
    stored = re.search(r'"SM",(\d+)', notice).group(1)
    listing = await two.at(f'AT+CMGL="{ucs2("ALL")}"')
    assert f'+CMGL: {stored},"REC UNREAD","{ucs2("+12025550101")}",,"' in listing
    assert ucs2("Héllo from text mode") in listing
    read = await two.at(f"AT+CMGR={stored}")
    assert read.startswith(f'\r\n+CMGR: "REC READ","{ucs2("+12025550101")}",,"')
    assert await two.at(f"AT+CMGD={stored}") == "\r\nOK\r\n"
    assert '"SM",0,30' in await two.at("AT+CPMS?")


async def test_pdu_mode_routes_as_cnmi_says(terminals, network):
    one, two = terminals
    await one.at("ATE0;+CMEE=1")
    await two.at("ATE0;+CNMI=2,2,0,0,0")  # mt=2: +CMT directly, nothing stored
    await network.deliver(1, "+19162255887", "direct")
    urc = await two.read_until(re.compile(rb"\+CMT: ,(\d+)\r\n[0-9A-F]+\r\n"))
    assert urc.startswith("\r\n+CMT: ,")
    assert '"SM",0,30' in await two.at("AT+CPMS?")
    await two.at("AT+CNMI=2,1,0,2,0")  # store, +CMTI; reports stored with +CDSI
    await one.at("AT+CNMI=2,1,0,2,0")
    assert await one.at("AT+CMGF=1;+CSMP=49,167,0,0") == "\r\nOK\r\n"  # 49: status report
    assert await one.at('AT+CMGS="+12025550102"') == "\r\n> "
    assert "+CMGS: 1" in await one.at("report this", end=b"\x1a")
    await two.read_until(re.compile(rb'\+CMTI: "SM",1\r\n'))
    await one.read_until(re.compile(rb'\+CDSI: "SM",1\r\n'))
    report = await one.at("AT+CMGR=1")
    assert re.search(r'\+CMGR: "REC UNREAD",6,1,"\+12025550102",145,"[^"]+","[^"]+",0', report)


@pytest.mark.parametrize("network", [{1: {"capacity": 1}}], indirect=True)
async def test_a_full_store_is_counted_and_refuses_writes(terminals, network):
    _, two = terminals
    await two.at("ATE0;+CMEE=1")
    await network.deliver(1, "+19162255887", "first")
    await network.deliver(1, "+19162255887", "second")  # held by the network
    assert '"SM",1,1' in await two.at("AT+CPMS?")
    (part,) = pdu.encode_submit("+19162255887", text="a draft")
    assert await two.at(f"AT+CMGW={part.tpdu_length}") == "\r\n> "
    assert await two.at(part.hex, end=b"\x1a") == "\r\n+CMS ERROR: 322\r\n"
    answer = await two.at("AT+CMGD=1")  # room made: the held one comes in
    assert '+CMTI: "SM",1' in answer and answer.endswith("\r\nOK\r\n")
