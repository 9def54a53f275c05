"""`simgate emulator`: the emulated modem alone, as a user runs it."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys

from simgate.agent.backends.at import AtBackend
from simgate.agent.backends.base import IncomingSms, SimState


def spawn(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "simgate", "emulator", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def sims_of(process: subprocess.Popen[str], count: int) -> list[list[str]]:
    assert process.stdout is not None
    return [process.stdout.readline().split() for _ in range(count)]


async def test_it_prints_one_line_per_sim_delivers_between_them_and_stops_on_ctrl_c():
    process = await asyncio.to_thread(spawn, "--sims", "3", "--fault", "3:pin")
    try:
        lines = await asyncio.to_thread(sims_of, process, 3)
        assert [line[:2] for line in lines] == [["SIM", "1"], ["SIM", "2"], ["SIM", "3"]]
        assert [line[3] for line in lines] == ["+12025550101", "+12025550102", "+12025550103"]
        assert all(line[2].startswith("/dev/pts/") for line in lines)
        backend = AtBackend([line[2] for line in lines])
        await backend.start()
        try:
            states = [s.state for s in await backend.sims()]
            assert states == [SimState.READY, SimState.READY, SimState.PIN_REQUIRED]
            await backend.send(0, "+12025550102", text="between emulated SIMs",
                               delivery_report=False)
            events = backend.events()
            async with asyncio.timeout(15):
                sms = await anext(events)
            assert isinstance(sms, IncomingSms)
            assert (sms.slot, sms.sender, sms.text) == (1, "+12025550101",
                                                        "between emulated SIMs")
        finally:
            await backend.close()
    finally:
        process.send_signal(signal.SIGINT)
        try:
            _, stderr = await asyncio.to_thread(process.communicate, timeout=60)
        except subprocess.TimeoutExpired:  # never left running, whatever failed
            process.kill()
            process.wait()
            raise
    assert process.returncode == 0 and "Traceback" not in stderr


def test_a_bad_fault_is_refused_without_traceback():
    result = subprocess.run([sys.executable, "-m", "simgate", "emulator", "--sims", "2",
                             "--fault", "3:pin"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "expected SIM:KIND with SIM in 1..2" in result.stderr
    assert "Traceback" not in result.stderr
