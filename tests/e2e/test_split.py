"""Split deployment: `simgate serve` on one side, `simgate agent --emulator 2` on the other."""

from __future__ import annotations

from collections import Counter

import httpx
import pytest

from simgate.testing import start_agent
from tests.conftest import wait_until
from tests.e2e.gateway import SIM1, SIM2, final_state, inbox, ready_device, send, start_serve

USER, PASSWORD = "split-user", "split-secret"


@pytest.fixture
def server(tmp_path):
    process = start_serve(tmp_path, USER, PASSWORD)
    yield process
    process.stop()


async def test_agent_killed_and_restarted_loses_and_repeats_nothing(server, tmp_path):
    agent = start_agent(server, tmp_path / "agent", USER, PASSWORD)
    async with httpx.AsyncClient(base_url=f"{server.url}/3rdparty/v1", auth=(USER, PASSWORD),
                                 timeout=10) as api:
        try:
            device = await ready_device(api)
            first = await final_state(api, await send(api, "before", SIM2, sim=2))
            assert first["simNumber"] == 2
            agent.kill()  # kill -9
            agent.wait(5)
            # accepted while the device is away: kept Pending, nothing lost
            ids = [await send(api, f"while away {i}", SIM2, sim=1) for i in range(20)]
            states = {(await api.get(f"/messages/{i}")).json()["state"] for i in ids}
            assert states == {"Pending"}
            agent = start_agent(server, tmp_path / "agent", USER, PASSWORD)  # same journal, same device
            finals = [await final_state(api, i, within=30) for i in ids]
            assert {s["state"] for s in finals} <= {"Sent", "Delivered"}
            assert {s["simNumber"] for s in finals} == {1}
            devices = (await api.get("/devices")).json()
            assert [d["id"] for d in devices] == [device["id"]]  # not registered twice
            expected = {f"while away {i}" for i in range(20)}

            async def arrived():
                received = Counter(m["contentPreview"] for m in await inbox(api)
                                   if m["sender"] == SIM1)
                return received if set(received) >= expected else None

            # all twenty were reported sent and have arrived: the agent has nothing left
            # to send, so what the network got now is final
            received = await wait_until(arrived, timeout=30)
            assert set(received) == expected
            assert set(received.values()) == {1}
        finally:
            agent.kill()
            agent.wait(5)


async def test_a_server_restarted_under_a_connected_agent_loses_nothing(server, tmp_path):
    agent = start_agent(server, tmp_path / "agent", USER, PASSWORD)
    async with httpx.AsyncClient(base_url=f"{server.url}/3rdparty/v1", auth=(USER, PASSWORD),
                                 timeout=30) as api:
        try:
            await ready_device(api)
            first = await final_state(api, await send(api, "before the restart", SIM2, sim=1))
            assert first["state"] in ("Sent", "Delivered")
            server.stop()  # Ctrl-C: the agent is left with a closed event stream
            server.start()  # the same port and store
            # the agent comes back by itself: what is sent now goes out through it
            ids = [await send(api, f"after the restart {i}", SIM2, sim=1) for i in range(5)]
            finals = [await final_state(api, i, within=60) for i in ids]
            assert {s["state"] for s in finals} <= {"Sent", "Delivered"}
            expected = {f"after the restart {i}" for i in range(5)} | {"before the restart"}

            async def arrived():
                received = Counter(m["contentPreview"] for m in await inbox(api)
                                   if m["sender"] == SIM1)
                return received if set(received) >= expected else None

            received = await wait_until(arrived, timeout=60)
            assert set(received) == expected and set(received.values()) == {1}
        finally:
            agent.kill()
            agent.wait(5)
