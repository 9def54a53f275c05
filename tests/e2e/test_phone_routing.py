"""simgate's multi-SIM routing for Android phones: the server picks the SIM of each message
it hands the official app (its stand-in, simgate.testing_android) and keeps the limits,
failover, cool-downs, counters and work hours, against a real `serve` and
`serve --workers 2`, on the store of the run (SQLite, or PostgreSQL with --db postgresql)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest

from simgate.testing import SimgateProcess
from simgate.testing_android import Phone
from tests.conftest import wait_until
from tests.receiver import Receiver

USER, PASSWORD = "phone-owner", "phone-owner-secret"
TO = "+19162255887"


@pytest.fixture(params=[1, 2], ids=["serve", "workers-2"])
def server(request, tmp_path):
    command = ["serve"] + (["--workers", str(request.param)] if request.param > 1 else [])
    process = SimgateProcess(command, tmp_path / "serve", env={
        "SIMGATE_USERNAME": USER, "SIMGATE_PASSWORD": PASSWORD,
        "SIMGATE_ALLOW_PRIVATE_WEBHOOKS": "true"})
    process.start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
async def api(server):
    async with httpx.AsyncClient(base_url=f"{server.url}/3rdparty/v1", auth=(USER, PASSWORD),
                                 timeout=30) as client:
        yield client


@pytest.fixture
async def phone(server, api):
    device = Phone(f"{server.url}/mobile/v1")
    await device.register(login=USER, password=PASSWORD)
    await device.sync_webhooks()
    await device.sync_settings()
    try:
        yield device
    finally:
        await device.close()


@pytest.fixture
async def receiver(api):
    hook = await Receiver().start()
    for event in ("sms:sent", "sms:failed"):
        answer = await api.post("/webhooks", json={"url": hook.url, "event": event})
        assert answer.status_code == 201, answer.text
    try:
        yield hook
    finally:
        await hook.stop()


async def settings(api: httpx.AsyncClient, values: dict) -> None:
    answer = await api.patch("/settings", json=values)
    assert answer.status_code == 200, answer.text


async def send(api: httpx.AsyncClient, **extra) -> str:
    answer = await api.post("/messages", json={
        "textMessage": {"text": "routed by the server"}, "phoneNumbers": [TO], **extra})
    assert answer.status_code == 202, answer.text
    return answer.json()["id"]


async def message(api: httpx.AsyncClient, message_id: str) -> dict:
    answer = await api.get(f"/messages/{message_id}")
    assert answer.status_code == 200, answer.text
    return answer.json()


async def usage(api: httpx.AsyncClient, phone: Phone) -> dict[int, dict]:
    rows = (await api.get("/routing/usage")).json()
    return {r["simNumber"]: r for r in rows if r["deviceId"] == phone.device_id}


async def test_round_robin_with_a_daily_limit_hands_each_message_its_sim(api, phone, receiver):
    await settings(api, {"messages": {"sim_selection_mode": "RoundRobin"},
                         "routing": {"sims": {"1": {"daily_limit": 2}}}})
    ids = [await send(api) for _ in range(5)]
    handed = await phone.messages("fifo")
    assert [m["id"] for m in handed] == ids
    # every message comes with its SIM, in turn, until SIM 1 is at its limit: none over
    assert [m["simNumber"] for m in handed] == [1, 2, 1, 2, 2]
    # handed again (a poll, a push), each keeps its SIM and is not counted twice
    assert [(m["id"], m["simNumber"]) for m in await phone.messages("fifo")] == [
        (m["id"], m["simNumber"]) for m in handed]
    sent = await phone.process("fifo")
    assert {(s.id, s.sim_number) for s in sent} == {(m["id"], m["simNumber"]) for m in handed}
    counts = await usage(api, phone)
    assert (counts[1]["sentToday"], counts[2]["sentToday"]) == (2, 3)
    assert counts[1]["atLimit"] == "reached its daily limit of 2"
    for message_id in ids:
        assert (await message(api, message_id))["state"] == "Sent"

    async def webhooks():
        return len(receiver.events("sms:sent")) >= 5 and receiver.events("sms:sent")

    events = await wait_until(webhooks, timeout=30)
    by_id = {e["payload"]["messageId"]: e["payload"]["simNumber"] for e in events}
    assert by_id == {m["id"]: m["simNumber"] for m in handed}
    assert len(events) == 5  # one per message: the phone's own sms:sent is not passed on

    # pinned to SIM 1, now at its limit: it waits, with the limit as its reason
    pinned = await send(api, simNumber=1)
    assert all(m["id"] != pinned for m in await phone.messages())
    state = await message(api, pinned)
    assert state["state"] == "Pending"
    assert state["reason"] == "SIM 1 reached its daily limit of 2"


async def test_a_sim_without_service_fails_over_to_the_next_and_pauses_after_three(
        api, phone, receiver):
    await settings(api, {"messages": {"sim_selection_mode": "RoundRobin"},
                         "routing": {"cooldown_failures": 3, "max_attempts": 2}})
    phone.failing[1] = "RESULT_ERROR_NO_SERVICE"
    first = await send(api)
    [sent] = await phone.process()
    assert (sent.id, sent.sim_number, sent.state) == (first, 1, "Failed")
    # the same message comes back to the phone for SIM 2, under an id it does not hold
    [again] = await phone.messages()
    assert again["id"] != first and again["simNumber"] == 2
    [resent] = await phone.process()
    assert (resent.sim_number, resent.state) == (2, "Sent")
    state = await message(api, first)
    assert state["state"] == "Sent"
    attempts = [(a["simNumber"], a.get("error")) for a in state["attempts"]]
    assert attempts[0] == (1, "Send result: RESULT_ERROR_NO_SERVICE (Failed because service"
                              " is currently unavailable)")
    assert attempts[1:] == [(2, None)]
    events = await wait_until(lambda: receiver.events("sms:sent"), timeout=30)
    assert [(e["payload"]["messageId"], e["payload"]["simNumber"]) for e in events] == [
        (first, 2)]
    assert receiver.events("sms:failed") == []  # the failed try is an attempt, not an end

    # two more failures in a row on SIM 1 pause it: routing then leaves it out
    for _ in range(2):
        await send(api, simNumber=None)
        while await phone.process():
            pass
    counts = await usage(api, phone)
    assert counts[1]["pausedUntil"] is not None
    assert "3 failed sends in a row" in counts[1]["pauseReason"]
    checks = (await api.get(f"{phone.api_url.removesuffix('/mobile/v1')}/health")).json()[
        "checks"]
    sim1 = checks[f"devices:{phone.device_id}:sim:1"]
    assert sim1["status"] == "warn" and "paused by routing" in sim1["description"]
    later = await send(api)
    [handed] = await phone.messages()
    assert handed["id"] == later and handed["simNumber"] == 2


async def test_a_phone_that_chose_its_sim_gives_it_to_the_one_user_event(api, phone, receiver):
    # no SIM selection on the server (OSDefault, no rules): the phone picks by its own
    # setting, and its own sms:sent says which SIM sent
    phone.local_mode = "RoundRobin"
    message_id = await send(api)
    [handed] = await phone.messages()
    assert handed.get("simNumber") is None
    [sent] = await phone.process()
    assert sent.sim_number is not None

    async def delivered():
        return receiver.events("sms:sent")

    [event] = await wait_until(delivered, timeout=25)
    assert event["payload"]["messageId"] == message_id
    assert event["payload"]["simNumber"] == sent.sim_number
    assert (await message(api, message_id))["simNumber"] == sent.sim_number
    counts = await usage(api, phone)
    assert counts[sent.sim_number]["sentToday"] == 1
    assert len(receiver.events("sms:sent")) == 1


async def test_outside_work_hours_nothing_is_handed_out(api, phone):
    now = datetime.now(UTC)
    start, end = now + timedelta(hours=2), now + timedelta(hours=3)
    await settings(api, {"messages": {"work_hours_enabled": True,
                                      "work_hours_start": f"{start:%H:%M}",
                                      "work_hours_end": f"{end:%H:%M}"},
                         "routing": {"timezone": "UTC"}})
    message_id = await send(api)
    assert await phone.messages() == []
    state = await message(api, message_id)
    assert state["state"] == "Pending"
    assert state["reason"].startswith("outside work hours")
    await settings(api, {"messages": {"work_hours_enabled": False}})
    [handed] = await phone.messages()
    assert handed["id"] == message_id


async def test_a_rate_per_minute_holds_what_the_phone_may_not_send_yet(api, phone):
    await settings(api, {"messages": {"sim_selection_mode": "RoundRobin"},
                         "routing": {"sims": {"1": {"rate_per_minute": 2},
                                              "2": {"rate_per_minute": 1}}}})
    ids = [await send(api) for _ in range(4)]
    handed = await phone.messages("fifo")
    assert sorted(m["simNumber"] for m in handed) == [1, 1, 2]
    [waiting] = [i for i in ids if i not in {m["id"] for m in handed}]
    state = await message(api, waiting)
    assert state["state"] == "Pending" and "at a limit" in state["reason"]
    assert "SIM 1: reached its rate of 2 per minute" in state["reason"]
