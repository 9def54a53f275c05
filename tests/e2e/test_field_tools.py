"""`simgate emulator` driven by the field's own tools: Debian's `gammu` and Kannel.

Gammu is the most used AT-modem client, Kannel's `at` driver the gateway field's; if they
work unchanged against the emulated modem, the emulator speaks the standard dialect, not
only simgate's. `.ci/run` installs both (Debian's `gammu` and `kannel`); a missing one
fails the test under CI=true, and elsewhere skips it saying what to install.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from simgate.agent.backends.at import AtBackend
from simgate.agent.backends.base import IncomingSms
from simgate.testing import free_port
from tests.conftest import required_tool

GAMMU_TIMEOUT = 60  # seconds for one gammu command on a loaded machine


@pytest.fixture(scope="session")
def gammu() -> str:
    return required_tool("gammu", "gammu")


class Emulator:
    """A spawned `simgate emulator`: its SIMs as (pty path, phone number)."""

    def __init__(self, sims: int = 2, *faults: str) -> None:
        command = [sys.executable, "-m", "simgate", "emulator", "--sims", str(sims)]
        for fault in faults:
            command += ["--fault", fault]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        self.sims: list[tuple[str, str]] = []
        assert self.process.stdout is not None
        for n in range(1, sims + 1):
            line = self.process.stdout.readline().split()
            assert line[:2] == ["SIM", str(n)] and len(line) == 4, line
            self.sims.append((line[2], line[3]))

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    emulated = Emulator(2)
    yield emulated
    emulated.stop()


def run_gammu(gammu: str, port: str, tmp_path: Path, *args: str) -> str:
    config = tmp_path / f"gammurc-{Path(port).name}"
    config.write_text(f"[gammu]\ndevice = {port}\nconnection = at\n")
    result = subprocess.run([gammu, "-c", str(config), *args], capture_output=True, text=True,
                            timeout=GAMMU_TIMEOUT, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, f"gammu {' '.join(args)}: {result.stdout}{result.stderr}"
    return result.stdout


def messages(listing: str) -> list[dict[str, str]]:
    """`gammu getallsms/geteachsms` output as one dict per message: its fields and text."""
    found = []
    for block in re.split(r"(?m)^Location ", listing)[1:]:
        head, _, body = block.partition("\n\n")
        fields = dict(line.split(" : ", 1) for line in head.splitlines() if " : " in line)
        fields = {k.strip(): v.strip().strip('"') for k, v in fields.items()}
        fields["text"] = body.split("\n\n")[0]
        found.append(fields)
    return found


def test_gammu_identify_names_the_emulated_modem(gammu, emulator, tmp_path):
    out = run_gammu(gammu, emulator.sims[0][0], tmp_path, "identify")
    fields = {k.strip(): v.strip() for k, v in
              (line.split(" : ", 1) for line in out.splitlines() if " : " in line)}
    assert fields["Manufacturer"] == "simgate"
    assert "simgate emulated GSM modem" in fields["Model"]
    assert fields["IMEI"].isdigit() and len(fields["IMEI"]) == 15
    assert fields["SIM IMSI"].startswith("00101")


TEXTS = [  # (text, gammu sendsms options, parts)
    ("Hello from gammu @ 10:00 (GSM)", [], 1),
    ("A long text that gammu splits. " * 12, ["-autolen", "600"], 3),
    ("Длинный текст в UCS-2, ünïcödé. " * 5, ["-unicode", "-autolen", "600"], 3),
]


def test_gammu_sends_from_sim_1_and_reads_the_texts_on_sim_2(gammu, emulator, tmp_path):
    """GSM-7, multipart, and multipart UCS-2; Gammu sleeps about 4 s per command, so the
    three are sent first and read in one listing."""
    (port_1, number_1), (port_2, number_2) = emulator.sims
    for text, options, _ in TEXTS:
        sent = run_gammu(gammu, port_1, tmp_path, "sendsms", "TEXT", number_2, *options,
                         "-text", text)
        assert "OK, message reference=" in sent
    listed = messages(run_gammu(gammu, port_2, tmp_path, "getallsms"))
    assert len(listed) == sum(parts for *_, parts in TEXTS)
    assert all(m["Remote number"] == number_1 for m in listed)
    for text, options, parts in TEXTS:  # the parts in order make up the text
        mine = [m for m in listed if m["text"] and m["text"] in text]
        assert len(mine) == parts and "".join(m["text"] for m in mine) == text
        coding = "Unicode" if "-unicode" in options else "Default GSM alphabet"
        assert all(m["Coding"].startswith(coding) for m in mine)
        if parts > 1:
            assert all(f"part {n} of {parts}" in m["User Data Header"]
                       for n, m in enumerate(mine, 1))


KANNEL_CONF = """\
group = core
admin-port = {admin}
admin-password = test
smsbox-port = {smsbox}
box-allow-ip = "127.0.0.1"
log-file = "{dir}/bearerbox.log"
log-level = 0

group = smsc
smsc = at
smsc-id = emulated
modemtype = auto
device = {device}
my-number = "{number}"

group = modems
id = generic
name = "Generic Modem"

group = smsbox
bearerbox-host = 127.0.0.1
bearerbox-port = {smsbox}
sendsms-port = {sendsms}
log-file = "{dir}/smsbox.log"

group = sendsms-user
username = test
password = test

group = sms-service
keyword = default
text = "no service here"
"""


def test_kannel_at_driver_sends_and_receives_through_the_emulator(tmp_path):
    """Kannel's `at` SMSC driver (bearerbox + smsbox, Debian `kannel`), configured as for a
    real modem, sends through SIM 1 and simgate's driver reads the SMS on SIM 2; then an
    SMS from SIM 2 reaches Kannel (as +CMT, which its driver asks for) and Kannel's
    sms-service answers it, back to SIM 2."""
    bearerbox = required_tool("bearerbox", "kannel")
    smsbox = required_tool("smsbox", "kannel")
    emulated = Emulator(2)
    (device, number_1), (port_2, number_2) = emulated.sims
    ports = {"admin": free_port(), "smsbox": free_port(), "sendsms": free_port()}
    conf = tmp_path / "kannel.conf"
    conf.write_text(KANNEL_CONF.format(dir=tmp_path, device=device, number=number_1, **ports))
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    boxes = [subprocess.Popen([bearerbox, str(conf)], **quiet)]
    try:
        status = f"http://127.0.0.1:{ports['admin']}/status.txt?password=test"
        wait_for(lambda: "emulated" in _get(status) and "online" in _get(status), 60,
                 lambda: f"Kannel's at driver never came online:\n{_log(tmp_path)}")
        boxes.append(subprocess.Popen([smsbox, str(conf)], **quiet))
        sendsms = f"http://127.0.0.1:{ports['sendsms']}/cgi-bin/sendsms"
        wait_for(lambda: _get(sendsms) != "", 30, lambda: "smsbox does not answer")
        text = "Hello through Kannel's at driver"
        answer = httpx.get(sendsms, params={"username": "test", "password": "test",
                                            "from": number_1, "to": number_2, "text": text},
                           timeout=30)
        assert answer.status_code == 202 and "Accepted" in answer.text, answer.text
        first, answer = asyncio.run(_sim_2_side(port_2, number_1))
        assert (first.sender, first.text, first.slot) == (number_1, text, 0)
        assert (answer.sender, answer.text) == (number_1, "no service here")
    finally:
        for box in reversed(boxes):
            box.terminate()
            try:
                box.wait(30)
            except subprocess.TimeoutExpired:
                box.kill()
                box.wait()
        emulated.stop()


def _get(url: str) -> str:
    try:
        return httpx.get(url, timeout=5).text
    except httpx.HTTPError:
        return ""


def _log(directory: Path) -> str:
    log = directory / "bearerbox.log"
    return "\n".join(log.read_text(errors="replace").splitlines()[-40:]) if log.exists() else ""


def wait_for(predicate, seconds: float, why) -> None:
    """Poll `predicate` (a blocking check) until true; fail with why() after `seconds`."""
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(why())
        time.sleep(0.2)


async def _sim_2_side(port: str, number_1: str) -> tuple[IncomingSms, IncomingSms]:
    """With simgate's AT driver on SIM 2: the SMS waiting there, then Kannel's answer to
    an SMS sent to SIM 1."""
    backend = AtBackend([port])
    await backend.start()
    try:
        events = backend.events()
        async with asyncio.timeout(60):
            first = await anext(events)
            await backend.send(0, number_1, text="hello Kannel", delivery_report=False)
            answer = await anext(events)
        assert isinstance(first, IncomingSms) and isinstance(answer, IncomingSms)
        return first, answer
    finally:
        await backend.close()
