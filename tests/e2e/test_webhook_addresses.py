"""Under a real `simgate serve` (no private receivers): a name is registered without
asking DNS, and refused at delivery when it resolves to a loopback address."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx

from simgate.testing import SimgateProcess
from tests.conftest import wait_until
from tests.receiver import Receiver

USER, PASSWORD = "hooks-user", "hooks-secret"
ENV = {"SIMGATE_USERNAME": USER, "SIMGATE_PASSWORD": PASSWORD}


async def test_a_name_resolving_to_loopback_is_refused_at_delivery_not_registration(tmp_path):
    receiver = await Receiver().start()
    server = SimgateProcess(["serve"], tmp_path / "server", env=ENV).start()
    try:
        async with httpx.AsyncClient(base_url=server.url, auth=(USER, PASSWORD),
                                     timeout=30) as http:
            device = (await http.post("/mobile/v1/device", json={
                "name": "phone", "simCards": [{"slotIndex": 0}]})).json()
            literal = await http.post("/3rdparty/v1/webhooks", json={
                "url": f"https://[::ffff:127.0.0.1]:{receiver.port}/hook",
                "event": "sms:received"})
            assert literal.status_code == 400, literal.text
            assert "private or loopback" in literal.json()["message"]
            named = await http.post("/3rdparty/v1/webhooks", json={
                "url": f"https://localhost:{receiver.port}/hook", "event": "sms:received"})
            assert named.status_code == 201, named.text
            response = await http.post(
                "/mobile/v1/inbox", auth=None,
                headers={"Authorization": f"Bearer {device['token']}"},
                json=[{"id": "sim1:1", "sender": "+12025550101", "simNumber": 1,
                       "message": "hello", "receivedAt": datetime.now(UTC).isoformat()}])
            assert response.status_code == 200, response.text

            async def attempted():
                rows = (await http.get("/3rdparty/v1/webhooks/deliveries")).json()
                return rows if rows and rows[0]["attempts"] >= 1 else None

            attempt = (await wait_until(attempted, timeout=30))[0]
        assert attempt["status"] == "pending"
        assert "localhost resolves to" in attempt["lastError"]
        assert "a private or loopback address" in attempt["lastError"]
        assert receiver.requests_started == 0
    finally:
        server.stop()
        await receiver.stop()
