"""What the agent does with the messages settings and a message's own limits, seen from
outside: `simgate serve` and `simgate agent --emulator 2` as a user runs them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest

from simgate.testing import start_agent
from tests.conftest import wait_until
from tests.e2e.gateway import FINAL, SIM2, final_state, ready_device, start_serve

USER, PASSWORD = "pacing-user", "pacing-secret"


@pytest.fixture
def server(tmp_path):
    process = start_serve(tmp_path, USER, PASSWORD)
    yield process
    process.stop()


async def test_priority_skips_the_send_limit_and_an_expired_ttl_fails(server, tmp_path):
    """With one message a minute per SIM, two priority-100 messages both go while an
    ordinary one waits; a message whose ttl ran out while the device was away fails."""
    agent = start_agent(server, tmp_path / "agent", USER, PASSWORD)
    async with httpx.AsyncClient(base_url=f"{server.url}/3rdparty/v1", auth=(USER, PASSWORD),
                                 timeout=30) as api:
        try:
            await ready_device(api)
            # and the agent has stored its token, or back it would register a new device
            log = tmp_path / "agent" / "agent.log"
            await wait_until(lambda: "registered as device" in log.read_text(), timeout=30)
            agent.kill()  # away: what follows is fetched together when it is back
            agent.wait(10)
            await api.patch("/settings", json={"messages": {"limit_period": "PerMinute",
                                                            "limit_value": 1}})

            async def send(text: str, **extra) -> dict:
                response = await api.post("/messages", json={
                    "textMessage": {"text": text}, "phoneNumbers": [SIM2], "simNumber": 1,
                    **extra})
                assert response.status_code == 202, response.text
                return response.json()

            expiring = await send("too late", ttl=5)
            accepted_at = datetime.fromisoformat(expiring["states"]["Pending"])
            # until its five seconds are over (valid until acceptance + ttl)
            await wait_until(lambda: datetime.now(UTC) > accepted_at + timedelta(seconds=6),
                             timeout=30)
            ordinary = await send("ordinary")
            urgent = [await send(f"urgent {i}", priority=100) for i in range(2)]

            agent = start_agent(server, tmp_path / "agent", USER, PASSWORD)
            for message in urgent:  # the second one too, past the limit of one a minute
                assert (await final_state(api, message["id"], within=60))["state"] in (
                    "Sent", "Delivered")
            held = (await api.get(f"/messages/{ordinary['id']}")).json()
            assert held["state"] not in FINAL, held  # the limit holds the ordinary one
            failed = await final_state(api, expiring["id"], within=60)
            assert failed["state"] == "Failed"
            assert "TTL expired" in failed["recipients"][0]["error"]
        finally:
            agent.kill()
            agent.wait(10)
