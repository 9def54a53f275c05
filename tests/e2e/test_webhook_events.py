"""Events a real `simgate serve` raises beyond SMS states: app:started when an agent
starts, and the inbox refresh in its three delivery modes (none by default, one event
per message, batches)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
from android_sms_gateway import SmsBatchDataReceivedPayload, SmsBatchReceivedPayload

from simgate.testing import SimgateProcess, start_agent
from tests.conftest import wait_until
from tests.receiver import Receiver

USER, PASSWORD = "events-user", "events-secret"
ENV = {"SIMGATE_USERNAME": USER, "SIMGATE_PASSWORD": PASSWORD,
       "SIMGATE_ALLOW_PRIVATE_WEBHOOKS": "true"}
EVENTS = ("app:started", "sms:received", "sms:batch:received", "sms:batch:data-received")


async def test_agent_start_and_inbox_refresh_raise_their_events(tmp_path):
    receiver = await Receiver().start()
    server = SimgateProcess(["serve"], tmp_path / "server", env=ENV).start()
    agent = None
    try:
        async with httpx.AsyncClient(base_url=server.url, auth=(USER, PASSWORD),
                                     timeout=30) as http:
            for event in EVENTS:
                created = await http.post("/3rdparty/v1/webhooks",
                                          json={"url": receiver.url, "event": event})
                assert created.status_code == 201, created.text

            agent = start_agent(server, tmp_path / "agent", USER, PASSWORD)
            await wait_until(lambda: receiver.events("app:started"), timeout=60)
            started = receiver.events("app:started")[0]
            devices = (await http.get("/3rdparty/v1/devices")).json()
            assert started["deviceId"] == devices[0]["id"]
            cards = started["payload"]["simCards"]
            assert [(c["slotIndex"], c["simNumber"]) for c in cards] == [(0, 1), (1, 2)]
            assert all("phoneNumber" in c and "carrierName" in c for c in cards)

            phone = (await http.post("/mobile/v1/device", json={
                "name": "phone", "simCards": [{"slotIndex": 0}]})).json()
            now = datetime.now(UTC)
            stored = await http.post(
                "/mobile/v1/inbox", auth=None,
                headers={"Authorization": f"Bearer {phone['token']}"},
                json=[{"id": f"sim1:{n}", "sender": "+12025550101", "simNumber": 1,
                       "message": f"text {n}",
                       "receivedAt": (now - timedelta(minutes=5 - n)).isoformat()}
                      for n in range(2)] + [
                      {"id": "sim1:data", "sender": "+12025550101", "simNumber": 1,
                       "dataMessage": {"data": "AQID", "port": 53739},
                       "receivedAt": now.isoformat()}])
            assert stored.status_code == 200, stored.text
            await wait_until(lambda: len(receiver.events("sms:received")) == 2, timeout=30)

            period = {"deviceId": phone["id"],
                      "since": (now - timedelta(hours=1)).isoformat(),
                      "until": (now + timedelta(hours=1)).isoformat()}
            refresh = "/3rdparty/v1/inbox/refresh"
            quiet = await http.post(refresh, json=period)
            assert quiet.status_code == 202 and quiet.json() == {"events": 0}
            batch = await http.post(refresh, json={**period, "webhookDelivery": "Batch"})
            assert batch.status_code == 202 and batch.json() == {"events": 2}
            await wait_until(lambda: receiver.events("sms:batch:received")
                             and receiver.events("sms:batch:data-received"), timeout=30)
            # nothing came of the refresh without webhookDelivery, nor one event per SMS
            assert len(receiver.events("sms:received")) == 2

        texts = receiver.events("sms:batch:received")[0]
        assert texts["deviceId"] == phone["id"]
        parsed = SmsBatchReceivedPayload.from_dict(texts["payload"])
        assert [m.message for m in parsed.messages] == ["text 0", "text 1"]
        assert all(m.sim_number == 1 and m.sender == "+12025550101" for m in parsed.messages)
        data = SmsBatchDataReceivedPayload.from_dict(
            receiver.events("sms:batch:data-received")[0]["payload"])
        assert [m.data for m in data.messages] == ["AQID"]
    finally:
        if agent is not None:
            agent.terminate()
            agent.wait(15)
        server.stop()
        await receiver.stop()
