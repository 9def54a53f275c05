"""The agent's outbox against the real device API: one bad item is set aside, kept with
its reason, and never stops or holds up the items behind it."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import httpx
import pytest

from simgate.agent.client import DeviceClient
from simgate.agent.doctor import journal_findings
from simgate.agent.journal import Journal, read_set_aside
from simgate.agent.outbox import Outbox
from simgate.server.app import create_app
from tests.conftest import register_device


def sms(ident: str, text: str, sender: str = "+12025550199") -> dict:
    return {"id": ident, "sender": sender, "recipient": "+12025550102", "simNumber": 2,
            "receivedAt": datetime.now(UTC).isoformat(), "message": text}


@pytest.fixture
async def device_client(gateway, api):
    device = await register_device(api)
    app = create_app(gateway.settings, gateway)
    app.state.gateway = gateway
    client = DeviceClient("http://simgate", device["token"],
                          transport=httpx.ASGITransport(app=app))
    yield client
    await client.close()


@pytest.fixture
async def journal(tmp_path):
    journal = Journal(tmp_path / "journal.db")
    yield journal
    await journal.close()


def outbox_of(journal: Journal, client: DeviceClient) -> Outbox:
    return Outbox(journal, {"incoming": client.forward_incoming, "logs": client.send_logs},
                  asyncio.Event())


async def inbox_texts(api) -> list[str]:
    return sorted(m["contentPreview"] for m in
                  (await api.get("/3rdparty/v1/inbox", params={"limit": 100})).json())


async def test_an_sms_no_json_can_carry_is_set_aside_and_the_ones_behind_it_arrive(
        api, journal, device_client, tmp_path):
    outbox = outbox_of(journal, device_client)
    await journal.queue("incoming", [sms("a", "before"), sms("b", "half \ud800 pair"),
                                     sms("c", "after")])
    await outbox.flush("incoming")
    assert await inbox_texts(api) == ["after", "before"]
    assert await journal.unsent("incoming") == []
    count, kept = read_set_aside(tmp_path / "journal.db")
    assert count == 1 and kept[0].kind == "incoming"
    assert json.loads(kept[0].body)["message"] == "half \ud800 pair"  # kept as it came
    assert "no JSON can carry" in kept[0].reason and "\\ud800" in kept[0].reason
    check = outbox.checks()["outbox:set-aside"]
    assert check["status"] == "warn" and check["observedValue"] == 1
    # the server's log hears of it too (the owner sees it without the device at hand)
    await outbox.flush("logs")
    logs = (await api.get("/3rdparty/v1/logs")).json()
    assert any("set aside an incoming SMS" in entry["message"] for entry in logs), logs


async def test_an_item_the_server_refuses_is_set_aside_alone(api, journal, device_client,
                                                             tmp_path):
    outbox = outbox_of(journal, device_client)
    good = [sms(f"g{i}", f"good {i}") for i in range(6)]
    refused = sms("r", "refused", sender="+1" * 40)  # longer than any number
    await journal.queue("incoming", good[:4] + [refused] + good[4:])
    await outbox.flush("incoming")
    assert await inbox_texts(api) == sorted(f"good {i}" for i in range(6))
    count, kept = read_set_aside(tmp_path / "journal.db")
    assert count == 1 and json.loads(kept[0].body)["id"] == "r"
    assert "the server refused it" in kept[0].reason and "400" in kept[0].reason
    assert await journal.unsent("incoming") == []


async def test_a_batch_the_server_cannot_take_now_waits_whole(journal, tmp_path):
    def unreachable(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    def overloaded(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503, json={"message": "busy"})

    await journal.queue("incoming", [sms("a", "one"), sms("b", "two")])
    for handler in (unreachable, overloaded):
        client = DeviceClient("http://simgate", "token",
                              transport=httpx.MockTransport(handler))
        outbox = outbox_of(journal, client)
        await outbox.flush("incoming")
        await client.close()
        assert [body["id"] for _, body in await journal.unsent("incoming")] == ["a", "b"]
    assert read_set_aside(tmp_path / "journal.db")[0] == 0
    assert outbox.checks() == {}


async def test_a_journal_row_that_cannot_be_read_is_set_aside(api, journal, device_client,
                                                              tmp_path):
    await journal.queue("incoming", [sms("a", "first")])
    await journal._run(lambda: journal._file._db.execute(
        "INSERT INTO outbox (kind, body) VALUES ('incoming', '{not json')"))
    await journal.queue("incoming", [sms("c", "last")])
    await outbox_of(journal, device_client).flush("incoming")
    assert await inbox_texts(api) == ["first", "last"]
    count, kept = read_set_aside(tmp_path / "journal.db")
    assert count == 1 and kept[0].body == "{not json"
    assert kept[0].reason.startswith("unreadable in the journal")


async def test_doctor_lists_what_the_journal_set_aside(journal, tmp_path):
    path = tmp_path / "journal.db"
    assert [f.status for f in journal_findings(path)] == ["pass"]
    await journal.set_aside("incoming", None, '{"pdu": "07FF"}', "a PDU that reads as no SMS")
    [finding] = journal_findings(path)
    assert finding.status == "warn"
    assert "1 item(s)" in finding.detail and "a PDU that reads as no SMS" in finding.detail
    assert str(path) in finding.fix
    assert journal_findings(tmp_path / "no-journal.db") == []
