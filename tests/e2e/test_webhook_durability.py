"""Webhooks survive a kill -9 of the server in the middle of a delivery."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx

from simgate.testing import SimgateProcess
from tests.conftest import wait_until
from tests.receiver import Receiver

USER, PASSWORD = "hooks-user", "hooks-secret"
ENV = {"SIMGATE_USERNAME": USER, "SIMGATE_PASSWORD": PASSWORD,
       "SIMGATE_ALLOW_PRIVATE_WEBHOOKS": "true", "SIMGATE_WEBHOOK_TIMEOUT": "2",
       "SIMGATE_WEBHOOK_RETRY_BASE": "0.5"}


async def test_killed_mid_delivery_then_delivered_after_restart(tmp_path):
    receiver = await Receiver(delay=1.0).start()
    server = SimgateProcess(["serve"], tmp_path / "server", env=ENV).start()
    try:
        async with httpx.AsyncClient(base_url=server.url, auth=(USER, PASSWORD)) as http:
            device = (await http.post("/mobile/v1/device", json={
                "name": "phone", "simCards": [{"slotIndex": 0}, {"slotIndex": 1}]})).json()
            hook = (await http.post("/3rdparty/v1/webhooks", json={
                "url": receiver.url, "event": "sms:received"})).json()
            response = await http.post(
                "/mobile/v1/inbox", auth=None,
                headers={"Authorization": f"Bearer {device['token']}"},
                json=[{"id": "sim2:1", "sender": "+12025550101", "simNumber": 2,
                       "message": "survive", "receivedAt": datetime.now(UTC).isoformat()}])
            assert response.status_code == 200
        await wait_until(lambda: receiver.requests_started, timeout=5)
        server.kill()  # mid-request: the receiver is still answering
        receiver.delay = 0
        server = SimgateProcess(["serve"], tmp_path / "server", port=server.port,
                                env=ENV).start()
        await wait_until(lambda: receiver.events(), timeout=20)
        events = receiver.events()
        assert {e["id"] for e in events} and len({e["id"] for e in events}) == 1
        assert events[0]["webhookId"] == hook["id"]
        assert events[0]["payload"]["simNumber"] == 2 and events[0]["payload"]["message"] == "survive"
    finally:
        server.stop()
        await receiver.stop()
