"""A send a crash cut off is never sent again.

The agent writes AT+CMGS and its PDU; the network takes the SMS; the agent dies before it
reads the modem's answer. Its journal holds that recipient as `sending`: after the
restart nothing tells whether the SMS went, so the gateway reports it Failed
("interrupted") rather than risk a duplicate, the worst bug a gateway can have.

The emulated network runs in the test, so it is the witness of what was sent, and the
agent is killed at the one moment that matters: inside the network's acceptance of the
SMS, before the modem's `+CMGS` answer is written back on the pty.
"""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from simgate.agent.backends.emulator import EmulatedNetwork
from simgate.testing import SimgateProcess
from tests.conftest import wait_until
from tests.e2e.gateway import (
    final_state,
    inbox,
    ready_device,
    send,
    start_modem_agent,
    start_serve,
)

USER, PASSWORD = "crash-user", "crash-secret"
TEXT = "cut off between AT+CMGS and its answer"


class Agent:
    """`simgate agent --modem ...` on the network's ptys, started and killed at will."""

    def __init__(self, server: SimgateProcess, ports: list[str], data_dir: Path) -> None:
        self.server, self.ports, self.data_dir = server, ports, data_dir
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = start_modem_agent(self.server, self.ports, self.data_dir, USER,
                                         PASSWORD)

    def kill(self) -> None:
        """kill -9, and wait until it is gone: it reads nothing more from the modem."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


class CrashingNetwork(EmulatedNetwork):
    """The network that, as it accepts the first SMS a SIM submits, kills the agent: the
    SMS is on its way, the modem's answer never reaches the agent."""

    agent: Agent | None = None

    def submit(self, sim, hex_pdu, reference, number=None) -> None:  # type: ignore[override]
        super().submit(sim, hex_pdu, reference, number)
        if self.agent is not None:
            self.agent.kill()
            self.agent = None


@pytest.fixture
async def network() -> AsyncIterator[CrashingNetwork]:
    async with CrashingNetwork(2) as emulated:
        yield emulated


@pytest.fixture
def server(tmp_path) -> Iterator[SimgateProcess]:
    process = start_serve(tmp_path, USER, PASSWORD)
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
def agent(server, network, tmp_path) -> Iterator[Agent]:
    process = Agent(server, network.ports, tmp_path / "agent")
    try:
        yield process
    finally:
        process.kill()


async def test_a_send_cut_off_by_a_crash_ends_failed_interrupted_and_reaches_the_network_once(
        network, server, agent):
    sim2 = network.sims[1].number
    network.agent = agent  # the first SMS the network takes kills it
    agent.start()
    async with httpx.AsyncClient(base_url=f"{server.url}/3rdparty/v1", auth=(USER, PASSWORD),
                                 timeout=10) as api:
        await ready_device(api)
        message = await send(api, TEXT, sim2, sim=1)
        await wait_until(lambda: network.agent is None, timeout=60)  # killed mid-send
        assert [r.text for r in network.sent] == [TEXT]

        agent.start()  # the restart finds the recipient `sending` in its journal
        state = await final_state(api, message, within=60)
        assert [r.text for r in network.sent] == [TEXT], "sent again after the restart"
        assert state["state"] == "Failed", state
        assert "interrupted" in state["recipients"][0]["error"], state

        async def arrived():
            texts = [m["contentPreview"] for m in await inbox(api)]
            return texts if TEXT in texts else None

        # the one SMS the network took reached SIM 2, once
        assert await wait_until(arrived, timeout=60) == [TEXT]
