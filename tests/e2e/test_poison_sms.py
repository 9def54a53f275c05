"""A crafted SMS sent over the air never stops the gateway: `simgate emulator`, `serve` and
`agent --modem` on the emulator's SIM 2, and an attacker typing AT commands on SIM 1."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import serial

from simgate.sms import pdu
from tests.conftest import wait_until
from tests.crafted import POISON_TEXT, POISON_UD, ucs2_submit
from tests.e2e.gateway import inbox, ready_device, start_serve

USER, PASSWORD = "poison-user", "poison-secret"


class Terminal:
    """SIM 1's pty as a person at a terminal program uses it."""

    def __init__(self, port: str) -> None:
        self._serial = serial.Serial(port, 115200, timeout=0.1)

    def close(self) -> None:
        self._serial.close()

    def _until(self, *endings: str, within: float = 15.0) -> str:
        seen = ""
        deadline = time.monotonic() + within
        while not any(e in seen for e in endings):
            if time.monotonic() > deadline:
                raise AssertionError(f"the modem said {seen!r}, not one of {endings}")
            seen += self._serial.read(256).decode("ascii", "replace")
        return seen

    def command(self, line: str) -> str:
        self._serial.write(line.encode() + b"\r")
        return self._until("\r\nOK\r\n", "ERROR")

    def send_pdu(self, hex_pdu: str, tpdu_length: int) -> str:
        self._serial.write(f"AT+CMGS={tpdu_length}\r".encode())
        self._until(">")
        self._serial.write(hex_pdu.encode() + b"\x1a")
        return self._until("\r\nOK\r\n", "ERROR")


def emulator() -> tuple[subprocess.Popen[str], list[list[str]]]:
    process = subprocess.Popen([sys.executable, "-m", "simgate", "emulator", "--sims", "2"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stdout is not None
    return process, [process.stdout.readline().split() for _ in range(2)]


def modem_agent(server: str, port: str, data_dir: Path) -> subprocess.Popen[bytes]:
    """`simgate agent --modem PORT`, its log in the data directory."""
    data_dir.mkdir()
    return subprocess.Popen(
        [sys.executable, "-m", "simgate", "agent", "--server", server, "--modem", port,
         "--username", USER, "--password", PASSWORD, "--data-dir", str(data_dir)],
        stdout=subprocess.DEVNULL, stderr=(data_dir / "agent.log").open("ab"))


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def test_a_lone_half_pair_sent_over_the_air_arrives_as_u_fffd_and_the_agent_goes_on(
        tmp_path):
    network, sims = await asyncio.to_thread(emulator)
    (_, _, port1, number1), (_, _, port2, number2) = sims
    server = start_serve(tmp_path, USER, PASSWORD)
    agent_log = tmp_path / "agent" / "agent.log"
    agent = modem_agent(server.url, port2, tmp_path / "agent")
    terminal = None
    try:
        async with httpx.AsyncClient(base_url=f"{server.url}/3rdparty/v1",
                                     auth=(USER, PASSWORD), timeout=10) as api:
            await ready_device(api)
            terminal = await asyncio.to_thread(Terminal, port1)
            assert "OK" in await asyncio.to_thread(terminal.command, "AT+CMGF=0")
            crafted = ucs2_submit(number2, POISON_UD)
            assert "+CMGS:" in await asyncio.to_thread(terminal.send_pdu, *crafted)
            after = pdu.encode_submit(number2, text="sent after the poison",
                                      status_report=False)[0]
            assert "+CMGS:" in await asyncio.to_thread(terminal.send_pdu, after.hex,
                                                       after.tpdu_length)

            async def both_arrived():
                texts = {m["contentPreview"] for m in await inbox(api)
                         if m["sender"] == number1}
                return texts if len(texts) >= 2 else None

            texts = await wait_until(both_arrived, timeout=60)
            assert texts == {POISON_TEXT, "sent after the poison"}
            assert agent.poll() is None, agent_log.read_text()
    finally:
        if terminal is not None:
            terminal.close()
        stop(agent)
        server.stop()
        stop(network)
    log = agent_log.read_text(errors="replace")
    assert "Traceback" not in log, log
    assert "replaced with U+FFFD" in log, log
