"""Two users, each with SMS received on their own phone: neither ever sees the other's,
in the inbox list, its filters and total, the export and refresh, the webhooks, or the
dashboard. Each side's own messages are there too, so an empty answer proves nothing."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator

import httpx
import pytest

from simgate.config import Settings
from simgate.server.app import create_app
from simgate.services.gateway import Gateway
from tests.conftest import PASSWORD, USER, register_device, wait_until
from tests.integration.test_dashboard import log_in
from tests.receiver import Receiver

BOB, BOB_PASSWORD = "bob", "bob-secret-1"
PERIOD = {"since": "2026-01-15T00:00:00Z", "until": "2026-01-16T00:00:00Z"}


def received(owner: str) -> list[dict]:
    """What `owner`'s phone received: the same ids on both phones (each numbers its own)."""
    return [
        {"id": "sms-1", "type": "SMS", "sender": "+79990001234", "recipient": "+12025550101",
         "simNumber": 1, "content": f"{owner}-code-1111", "isEncrypted": False,
         "createdAt": "2026-01-15T10:30:00Z"},
        {"id": "sms-2", "type": "SMS", "sender": "+79990001234", "recipient": "+12025550102",
         "simNumber": 2, "content": f"{owner}-code-2222", "isEncrypted": False,
         "createdAt": "2026-01-15T10:31:00Z"},
        {"id": "data-1", "type": "DATA_SMS", "sender": "+79990001234", "simNumber": 1,
         "content": base64.b64encode(f"{owner}-data".encode()).decode(), "isEncrypted": False,
         "createdAt": "2026-01-15T10:32:00Z"},
    ]


def texts(owner: str) -> set[str]:
    return {m["content"] for m in received(owner) if m["type"] == "SMS"}


class Side:
    """One user: their API client, phone, webhook receiver and dashboard session."""

    def __init__(self, name: str, api: httpx.AsyncClient, web: httpx.AsyncClient,
                 receiver: Receiver) -> None:
        self.name, self.api, self.web, self.receiver = name, api, web, receiver
        self.device: dict = {}

    async def inbox(self, **params: str) -> tuple[set[str], int]:
        response = await self.api.get("/3rdparty/v1/inbox", params=params)
        assert response.status_code == 200, response.text
        return ({m["contentPreview"] for m in response.json() if m["type"] == "SMS"},
                int(response.headers["x-total-count"]))


@pytest.fixture
async def gateway(tmp_path) -> AsyncIterator[Gateway]:
    gw = await Gateway.open(Settings(data_dir=tmp_path, username=USER, password=PASSWORD,
                                     allow_private_webhooks=True, webhook_retry_base=0.2))
    yield gw
    await gw.close()


@pytest.fixture
async def sides(gateway) -> AsyncIterator[tuple[Side, Side]]:
    await gateway.users.add(BOB, BOB_PASSWORD)
    app = create_app(gateway.settings, gateway)
    app.state.gateway = gateway
    made: list[Side] = []
    try:
        for name, password in ((USER, PASSWORD), (BOB, BOB_PASSWORD)):
            transport = httpx.ASGITransport(app=app)
            side = Side(name, httpx.AsyncClient(transport=transport, base_url="http://simgate",
                                                auth=(name, password)),
                        httpx.AsyncClient(transport=transport, base_url="http://simgate"),
                        await Receiver().start())
            made.append(side)
            await log_in(side.web, name, password)
            for event in ("sms:received", "sms:data-received", "sms:batch:received"):
                hook = await side.api.post("/3rdparty/v1/webhooks", json={
                    "url": side.receiver.url, "event": event})
                assert hook.status_code == 201, hook.text
            side.device = await register_device(side.api, name=f"{name}-phone")
            upload = await side.api.post("/mobile/v1/inbox", json=received(name), auth=None,
                                         headers={"Authorization":
                                                  f"Bearer {side.device['token']}"})
            assert upload.status_code == 200, upload.text
        yield made[0], made[1]
    finally:
        for side in made:
            await side.api.aclose()
            await side.web.aclose()
            await side.receiver.stop()


async def test_list_filters_and_totals_show_only_the_users_own(sides):
    for me, other in (sides, sides[::-1]):
        assert await me.inbox() == (texts(me.name), 3)
        assert await me.inbox(type="SMS") == (texts(me.name), 2)
        assert await me.inbox(**{"from": PERIOD["since"], "to": PERIOD["until"]}) == (
            texts(me.name), 3)
        assert await me.inbox(deviceId=me.device["id"]) == (texts(me.name), 3)
        # naming the other's phone finds nothing of it
        assert await me.inbox(deviceId=other.device["id"]) == (set(), 0)
        assert await me.inbox(deviceId=other.device["id"], type="SMS") == (set(), 0)


async def test_export_refresh_and_webhooks_carry_only_the_users_own(sides):
    for me, other in (sides, sides[::-1]):
        export = await me.api.post("/3rdparty/v1/messages/inbox/export", json=PERIOD)
        assert export.json() == {"events": 2}, export.text
        refresh = await me.api.post("/3rdparty/v1/inbox/refresh",
                                    json={**PERIOD, "webhookDelivery": "Individual"})
        assert refresh.json() == {"events": 3}, refresh.text
        batch = await me.api.post("/3rdparty/v1/inbox/refresh",
                                  json={**PERIOD, "webhookDelivery": "Batch"})
        assert batch.status_code == 202 and batch.json()["events"] >= 1, batch.text
        for path in ("/3rdparty/v1/messages/inbox/export", "/3rdparty/v1/inbox/refresh"):
            theirs = await me.api.post(path, json={**PERIOD, "deviceId": other.device["id"],
                                                   "webhookDelivery": "Individual"})
            assert theirs.json() == {"events": 0}, (path, theirs.text)

    async def all_delivered(side: Side):
        for state in ("pending", "failed"):
            response = await side.api.get("/3rdparty/v1/webhooks/deliveries",
                                          params={"state": state})
            if response.json():
                return None
        return True

    for side in sides:
        await wait_until(lambda side=side: all_delivered(side), timeout=30)
    for me, other in (sides, sides[::-1]):
        arrived = " ".join(r.body.decode() for r in me.receiver.received)
        # at upload, the export (2), the refresh (3), the batch: each own SMS several times
        for text in texts(me.name):
            assert arrived.count(text) >= 4, (me.name, text)
        for text in texts(other.name):
            assert text not in arrived, (me.name, text)
        assert other.device["id"] not in arrived


async def test_the_dashboard_inbox_shows_only_the_users_own(sides):
    for me, other in (sides, sides[::-1]):
        for page in ("/inbox", "/inbox/rows"):
            text = (await me.web.get(page)).text
            assert all(t in text for t in texts(me.name)), (me.name, page)
            assert not any(t in text for t in texts(other.name)), (me.name, page)
