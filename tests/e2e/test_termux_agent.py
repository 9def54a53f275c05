"""`simgate agent --termux` on a fake dual-SIM phone (tests/termux_phone.py) against
`simgate serve`: what the server learns is what Termux:API can tell, nothing made up."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime

import httpx
import pytest

from tests.conftest import wait_until
from tests.e2e.gateway import final_state, inbox, send, start_serve
from tests.termux_phone import FakePhone

USER, PASSWORD = "termux-user", "termux-secret"


def start_termux_agent(server, data, bin_dir) -> subprocess.Popen[bytes]:
    """`simgate agent --termux` with the fake phone's commands first on its PATH."""
    return subprocess.Popen(
        [sys.executable, "-m", "simgate", "agent", "--server", server.url, "--termux",
         "--username", USER, "--password", PASSWORD, "--data-dir", str(data)],
        stdout=subprocess.DEVNULL, stderr=(data / "agent.log").open("ab"),
        env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"})


@pytest.fixture
def server(tmp_path):
    process = start_serve(tmp_path, USER, PASSWORD)
    yield process
    process.stop()


async def test_a_termux_agent_reports_handed_over_unknown_slots_and_no_sim_for_incoming(
        server, tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    phone = FakePhone(bin_dir)
    data = tmp_path / "agent"
    data.mkdir()
    agent = start_termux_agent(server, data, bin_dir)
    try:
        async with httpx.AsyncClient(base_url=f"{server.url}/3rdparty/v1",
                                     auth=(USER, PASSWORD), timeout=10) as api:
            async def device():
                devices = (await api.get("/devices")).json()
                return devices[0] if devices and devices[0]["simCards"] else None

            sims = (await wait_until(device, timeout=30))["simCards"]
            assert [(s["simNumber"], s["state"]) for s in sims] == [(1, "Unknown"),
                                                                     (2, "Unknown")]
            message = await final_state(api, await send(api, "via SIM 2", "+19162255887",
                                                        sim=2), within=30)
            assert message["state"] == "Sent"  # handed to the phone; never Delivered
            assert phone.sent[-1]["slot"] == 1 and phone.sent[-1]["text"] == "via SIM 2"
            async def told():  # the agent reports the state before it writes its log
                logs = (await api.get("/logs")).json()
                return any("handed to the phone" in entry["message"] for entry in logs)

            assert await wait_until(told, timeout=30)

            phone.receive(41, "+12025550199", "to some SIM", datetime.now(UTC))

            async def arrived():
                return [m for m in await inbox(api) if m["sender"] == "+12025550199"]

            (received,) = await wait_until(arrived, timeout=30)  # polled every 5 s
            assert received.get("simNumber") is None
    finally:
        agent.terminate()
        agent.wait(15)
