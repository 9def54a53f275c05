"""`simgate doctor --modem PORT` against the emulated modem's ptys, as a user checks a
real modem before starting the agent: the port opens, the modem answers AT, each SIM is
ready on its network with a number and a signal; a PIN-locked one is a failure with what
to do, and the exit code says so."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator

import pytest

from simgate.agent.backends.emulator import EmulatedNetwork


@pytest.fixture
async def network(request) -> AsyncIterator[EmulatedNetwork]:
    async with EmulatedNetwork(2, getattr(request, "param", None)) as emulated:
        yield emulated


async def doctor(tmp_path, *ports: str) -> tuple[int, str]:
    """Run the doctor on the ports while this loop answers on them: exit code, output."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "simgate", "doctor", *(o for p in ports for o in ("--modem", p)),
        "--data-dir", str(tmp_path / "doctor"), stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT, env={**os.environ, "COLUMNS": "250"})
    try:
        output, _ = await asyncio.wait_for(process.communicate(), timeout=120)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    return process.returncode, output.decode()


def row(output: str, check: str) -> str:
    lines = [line for line in output.splitlines() if line.strip("│┃ ").startswith(check)]
    assert len(lines) == 1, output
    return lines[0]


async def test_doctor_passes_a_working_modem_and_shows_each_sims_number_and_signal(
        network, tmp_path):
    code, output = await doctor(tmp_path, *network.ports)
    assert code == 0, output
    for port in network.ports:
        assert "pass" in row(output, f"port {port}"), output
    for sim in network.sims:
        line = row(output, f"SIM {sim.slot + 1} ")
        assert "pass" in line and "ready" in line and sim.number in line, output
        assert "signal" in line, output
    assert "fail" not in output


@pytest.mark.parametrize("network", [{1: {"pin": True}}], indirect=True)
async def test_doctor_fails_a_pin_locked_sim_and_says_what_to_do(network, tmp_path):
    code, output = await doctor(tmp_path, *network.ports)
    assert code == 1, output
    assert "pass" in row(output, "SIM 1 ") and network.sims[0].number in output
    locked = row(output, "SIM 2 ")
    assert "fail" in locked and "PIN" in locked, output
    assert "1 check(s) failed" in output
