"""The official Android app (its stand-in, tests/e2e/phone.py) against a real `simgate serve`."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from android_sms_gateway import client, domain

from simgate.testing import SimgateProcess
from tests.conftest import wait_until
from tests.e2e.phone import Listening, Phone, parse_app_date

USER, PASSWORD = "app-owner", "app-owner-secret"
SERVER_KEY = "server-key-for-phones"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    process = SimgateProcess(["serve"], tmp_path_factory.mktemp("serve"), env={
        "SIMGATE_USERNAME": USER, "SIMGATE_PASSWORD": PASSWORD,
        "SIMGATE_PRIVATE_TOKEN": SERVER_KEY, "SIMGATE_ALLOW_PRIVATE_WEBHOOKS": "true"})
    process.start()
    yield process
    process.stop()


@pytest.fixture
async def user_api(server):
    async with httpx.AsyncClient(base_url=f"{server.url}/3rdparty/v1", auth=(USER, PASSWORD),
                                 timeout=30) as api:
        yield api


@pytest.fixture
async def phone(server):
    """The app signed in with the owner's login (the same user as `user_api`)."""
    device = Phone(f"{server.url}/mobile/v1")
    await device.register(login=USER, password=PASSWORD)
    yield device
    await device.close()


async def send(api: httpx.AsyncClient, phone: Phone, **extra) -> str:
    response = await api.post("/messages", json={
        "textMessage": {"text": "to the phone"}, "phoneNumbers": ["+19162255887"],
        "deviceId": phone.device_id, **extra})
    assert response.status_code == 202, response.text
    return response.json()["id"]


async def test_the_app_joins_by_private_token_by_code_and_by_login(server):
    by_token = Phone(f"{server.url}/mobile/v1", private_token=SERVER_KEY)
    joined = await by_token.register()
    # a user of its own, whose login and password the app shows
    assert joined["login"] and joined["password"]
    async with httpx.AsyncClient(base_url=server.url) as http:
        code = (await http.get("/mobile/v1/user/code", auth=(USER, PASSWORD))).json()
    assert parse_app_date(code["validUntil"]) > datetime.now(UTC)

    by_code = Phone(f"{server.url}/mobile/v1")
    joined = await by_code.register(code=code["code"])
    assert joined["login"] == USER and joined["password"] is None

    by_login = Phone(f"{server.url}/mobile/v1")
    joined = await by_login.register(login=USER, password=PASSWORD)
    assert joined["login"] == USER and joined["password"] is None

    for phone in (by_token, by_code, by_login):
        assert await phone.messages() == []
        await phone.update(push_token=None)  # the app's PATCH at each start
        await phone.close()


async def test_dates_read_by_the_apps_rule_are_the_servers_to_the_millisecond(user_api, phone):
    valid_until = datetime(2031, 5, 6, 7, 8, 9, 987654, tzinfo=UTC)
    message_id = await send(user_api, phone, validUntil=valid_until.isoformat())
    created = datetime.fromisoformat(
        (await user_api.get(f"/messages/{message_id}")).json()["createdAt"])

    fetched = next(m for m in await phone.messages() if m["id"] == message_id)

    assert fetched["validUntil"] == valid_until.replace(microsecond=987000)
    assert fetched["createdAt"] == created.replace(microsecond=created.microsecond // 1000 * 1000)


async def test_a_message_of_the_official_client_reaches_the_phone_by_sse(server, phone):
    async with Listening(phone) as stream:
        def send_with_official_client() -> str:
            with client.APIClient(USER, PASSWORD, base_url=f"{server.url}/3rdparty/v1") as api:
                return api.send(domain.Message(
                    phone_numbers=["+19162255887"], device_id=phone.device_id,
                    text_message=domain.TextMessage("pushed to the phone"))).id

        message_id = await asyncio.to_thread(send_with_official_client)
        assert (await stream.next())[0] == "MessageEnqueued"
    assert message_id in [m["id"] for m in await phone.messages()]


async def test_a_scheduled_message_is_pushed_when_due_with_its_schedule(user_api, phone):
    due = datetime.now(UTC) + timedelta(seconds=2)
    async with Listening(phone) as stream:
        message_id = await send(user_api, phone, scheduleAt=due.isoformat())
        assert message_id not in [m["id"] for m in await phone.messages()]
        assert (await stream.next())[0] == "MessageEnqueued"
    assert datetime.now(UTC) >= due.replace(microsecond=due.microsecond // 1000 * 1000)
    fetched = await wait_until(
        lambda: _with_id(phone, message_id), timeout=20)
    assert fetched["scheduleAt"] == due.replace(microsecond=due.microsecond // 1000 * 1000)


async def _with_id(phone: Phone, message_id: str) -> dict | None:
    return next((m for m in await phone.messages() if m["id"] == message_id), None)
