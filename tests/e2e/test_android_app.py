"""The official Android app (its stand-in, simgate.testing_android) against a real `simgate serve`."""

from __future__ import annotations

import asyncio
import json
import ssl
import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone

import certifi
import httpx
import pytest
from android_sms_gateway import client, domain

from simgate.testing import SimgateProcess, start_agent
from simgate.testing_android import Listening, Phone, Sim, parse_app_date
from tests.conftest import wait_until
from tests.receiver import Receiver

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


async def send(api: httpx.AsyncClient, phone: Phone | str, **extra) -> str:
    device_id = phone if isinstance(phone, str) else phone.device_id
    response = await api.post("/messages", json={
        "textMessage": {"text": "to the phone"}, "phoneNumbers": ["+19162255887"],
        "deviceId": device_id, **extra})
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


async def test_the_sims_whole_numbers_from_app_started_stay_when_patch_device_masks_them(
        user_api, phone):
    await phone.sync_settings()
    await phone.sync_webhooks()
    masked = (await user_api.get("/devices")).json()
    mine = next(d for d in masked if d["id"] == phone.device_id)
    assert mine["simCards"][0]["phoneNumber"] == "********0111"  # as POST /device had it

    assert [r.status_code for r in await phone.started()] == [200]
    await phone.update(sims=True)  # masked again, as at every start

    cards = next(d for d in (await user_api.get("/devices")).json()
                 if d["id"] == phone.device_id)["simCards"]
    assert [(c["simNumber"], c["phoneNumber"], c["carrierName"]) for c in cards] == [
        (1, "+12025550111", "simgate Mobile"), (2, "+12025550112", "simgate Mobile")]
    assert cards[0]["iccid"] == "***************9012"  # shown to the last 4, as the original


async def test_a_card_in_no_slot_is_left_out_with_a_warning_not_the_registration(server):
    phone = Phone(f"{server.url}/mobile/v1",
                  sims=[Sim(-1, "+12025550119"), Sim(0, "+12025550111")])
    try:
        await phone.register(login=USER, password=PASSWORD)
        assert "simCards[0].slotIndex -1 is no SIM slot" in phone.registered.headers["Warning"]
        async with httpx.AsyncClient(base_url=f"{server.url}/3rdparty/v1",
                                     auth=(USER, PASSWORD)) as api:
            device = (await api.get("/devices")).json()
        cards = next(d for d in device if d["id"] == phone.device_id)["simCards"]
        assert [c["slotIndex"] for c in cards] == [0]
        again = await phone.update(sims=True)
        assert "slotIndex -1" in again.headers["Warning"]
    finally:
        await phone.close()


async def test_dates_read_by_the_apps_rule_are_the_servers_to_the_millisecond(user_api, phone):
    valid_until = datetime(2031, 5, 6, 7, 8, 9, 987654, tzinfo=UTC)
    message_id = await send(user_api, phone, validUntil=valid_until.isoformat())
    created = datetime.fromisoformat(
        (await user_api.get(f"/messages/{message_id}")).json()["createdAt"])

    fetched = next(m for m in await phone.messages() if m["id"] == message_id)

    assert fetched["validUntil"] == valid_until.replace(microsecond=987000)
    assert fetched["createdAt"] == created.replace(microsecond=created.microsecond // 1000 * 1000)


async def test_a_valid_until_written_at_minus_five_hours_reaches_the_phone_as_that_instant(
        user_api, phone):
    valid_until = "2030-01-01T08:30:00-05:00"
    message_id = await send(user_api, phone, validUntil=valid_until)

    fetched = next(m for m in await phone.messages() if m["id"] == message_id)

    # 13:30Z, not 08:30Z: five hours early, the app would fail it "TTL expired"
    assert fetched["validUntil"] == datetime(2030, 1, 1, 13, 30, tzinfo=UTC)


async def test_an_sms_received_at_plus_seven_keeps_its_instant_in_the_inbox_and_its_queries(
        server, user_api):
    phone = Phone(f"{server.url}/mobile/v1", zone=timezone(timedelta(hours=7)))
    try:
        await phone.register(login=USER, password=PASSWORD)
        await phone.sync_settings()  # its signing key
        await phone.sync_webhooks()
        at = datetime(2026, 11, 27, 23, 38, 12, 345000, tzinfo=UTC)  # 06:38+07:00 the next day
        await phone.receive_sms("+19162255887", "late at night", at=at)
        assert [r.status_code for r in phone.answers] == [200]

        def inbox(**window: datetime):
            return user_api.get("/inbox", params={"deviceId": phone.device_id, **{
                k: v.isoformat() for k, v in window.items()}})

        found = (await inbox()).json()
        assert [datetime.fromisoformat(m["createdAt"]) for m in found] == [at]
        # a window around the UTC instant finds it; one around the shifted time does not
        around = {"from": at - timedelta(minutes=1), "to": at + timedelta(minutes=1)}
        assert len((await inbox(**around)).json()) == 1
        shifted = at + timedelta(hours=7)
        assert (await inbox(**{"from": shifted - timedelta(minutes=1),
                               "to": shifted + timedelta(minutes=1)})).json() == []
    finally:
        await phone.close()


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


async def state_of(api: httpx.AsyncClient, message_id: str) -> str:
    return (await api.get(f"/messages/{message_id}")).json()["state"]


async def test_cancel_of_a_fetched_message_ends_cancelled_only_when_the_phone_confirms(
        user_api, phone):
    async with Listening(phone) as stream:
        message_id = await send(user_api, phone)
        assert (await stream.next())[0] == "MessageEnqueued"
        assert message_id in [m["id"] for m in await phone.messages()]  # the phone holds it

        cancel = await user_api.delete(f"/messages/{message_id}")
        assert cancel.status_code == 200 and cancel.json()["state"] == "Cancelling"
        event, data = await stream.next()
        assert (event, json.loads(data)) == ("MessageCancelled", {"messageId": message_id})
    assert await state_of(user_api, message_id) == "Cancelling"
    # the app also finds it in GET /message as Cancelling, cancels it locally, reports
    held = await _with_id(phone, message_id)
    assert held is not None and held["state"] == "Cancelling"
    await phone.report(message_id, held["phoneNumbers"], "Cancelled")
    assert await state_of(user_api, message_id) == "Cancelled"


async def test_a_phone_that_already_sent_a_message_being_cancelled_ends_it_sent(
        user_api, phone):
    message_id = await send(user_api, phone)
    fetched = await _with_id(phone, message_id)
    assert fetched is not None
    assert (await user_api.delete(f"/messages/{message_id}")).json()["state"] == "Cancelling"
    # its reports were on their way: the SMS went out
    await phone.report(message_id, fetched["phoneNumbers"], "Processed")
    assert await state_of(user_api, message_id) == "Cancelling"
    await phone.report(message_id, fetched["phoneNumbers"], "Sent")
    assert await state_of(user_api, message_id) == "Sent"


async def test_the_phone_hears_when_the_users_webhooks_change(user_api, phone):
    async with Listening(phone) as stream:
        created = await user_api.post("/webhooks", json={
            "url": "http://127.0.0.1:9/in", "event": "sms:received"})
        assert created.status_code == 201, created.text
        assert (await stream.next())[0] == "WebhooksUpdated"
        await user_api.delete(f"/webhooks/{created.json()['id']}")
        assert (await stream.next())[0] == "WebhooksUpdated"


async def test_a_cancel_made_while_the_simgate_agent_was_away_ends_when_it_comes_back(
        server, user_api, tmp_path):
    agent = start_agent(server, tmp_path / "agent", USER, PASSWORD)
    log = tmp_path / "agent" / "agent.log"
    try:
        # logged once its token is kept: a restart then comes back as the same device
        await wait_until(lambda: "registered as device" in log.read_text(), timeout=60)
        device = await wait_until(lambda: _agent_device(user_api), timeout=60)
    finally:
        agent.terminate()
        agent.wait(15)
    message_id = await send(user_api, device["id"])
    assert (await user_api.delete(f"/messages/{message_id}")).json()["state"] == "Cancelling"
    agent = start_agent(server, tmp_path / "agent", USER, PASSWORD)
    try:
        await wait_until(lambda: _is(user_api, message_id, "Cancelled"), timeout=60)
    finally:
        agent.terminate()
        agent.wait(15)


async def _agent_device(api: httpx.AsyncClient) -> dict | None:
    devices = (await api.get("/devices")).json()
    return next((d for d in devices if d["name"].startswith("simgate agent")), None)


async def _is(api: httpx.AsyncClient, message_id: str, state: str) -> bool:
    return await state_of(api, message_id) == state


async def test_an_inbox_refresh_asks_the_phone_to_upload_the_period(user_api, phone):
    since = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    async with Listening(phone) as stream:
        refresh = await user_api.post("/inbox/refresh", json={
            "deviceId": phone.device_id, "since": since.isoformat(),
            "until": (since + timedelta(days=1)).isoformat(), "messageTypes": ["SMS"],
            "webhookDelivery": "Individual"})
        assert refresh.status_code == 202, refresh.text
        event, data = await stream.next()
    request = json.loads(data)
    assert event == "MessagesExportRequested"
    assert parse_app_date(request["since"]) == since.replace(microsecond=678000)
    assert request["messageTypes"] == "SMS" and request["triggerWebhooks"] is True


async def test_an_sms_the_phone_receives_lands_in_the_inbox_once_and_reaches_a_webhook_once(
        user_api, phone):
    receiver = await Receiver().start()
    key = "signing-key-of-the-owner"
    try:
        assert (await user_api.patch("/settings", json={
            "webhooks": {"signing_key": key}})).status_code == 200
        hook = await user_api.post("/webhooks", json={"url": receiver.url,
                                                      "event": "sms:received"})
        assert hook.status_code == 201, hook.text
        await phone.sync_settings()
        hooks = await phone.sync_webhooks()
        # the phone fires at simgate, never at the user's receiver
        assert {h["event"] for h in hooks} >= {"sms:received", "system:ping", "app:started"}
        assert all("/mobile/v1/ingest/" in h["url"] for h in hooks)

        message_id = await phone.receive_sms("+19162255887", "hello from outside", sim_number=2)
        # the app sends it again (a retry, an export): same messageId
        await phone.receive_sms("+19162255887", "hello from outside", sim_number=2,
                                message_id=message_id)
        assert [r.status_code for r in phone.answers] == [200]

        inbox = (await user_api.get("/inbox", params={"deviceId": phone.device_id})).json()
        assert [(m["sender"], m["simNumber"], m["contentPreview"]) for m in inbox] == [
            ("+19162255887", 2, "hello from outside")]
        await wait_until(lambda: receiver.received, timeout=30)
        delivered = receiver.received[0]
        assert delivered.signed_with(key)  # by the app's algorithm, checked with hmac
        event = delivered.json
        assert event["event"] == "sms:received" and event["deviceId"] == phone.device_id
        assert event["payload"]["simNumber"] == 2
        assert event["payload"]["message"] == "hello from outside"
        deliveries = await wait_until(lambda: _delivered(user_api), timeout=30)
        assert len(deliveries) == 1 and len(receiver.received) == 1
        await user_api.delete(f"/webhooks/{hook.json()['id']}")
    finally:
        await receiver.stop()


async def _delivered(api: httpx.AsyncClient) -> list[dict] | None:
    found = (await api.get("/webhooks/deliveries")).json()
    mine = [d for d in found if d["event"] == "sms:received"]
    return mine if mine and all(d["status"] == "delivered" for d in mine) else None


async def test_an_unsigned_or_unknown_ingest_post_is_refused(user_api, phone):
    assert (await user_api.patch("/settings", json={
        "webhooks": {"signing_key": "a-key"}})).status_code == 200
    hooks = await phone.sync_webhooks()
    url = hooks[0]["url"]
    unsigned = await phone.http.post(url, json={"id": "x", "event": "sms:received",
                                                "payload": {}})
    assert unsigned.status_code == 401 and "X-Signature" in unsigned.json()["message"]
    wrong = await phone.http.post(url.rsplit("/", 1)[0] + "/0000", json={})
    assert wrong.status_code == 404


async def test_the_app_works_over_https_with_a_certificate_from_tls_init(tmp_path, monkeypatch):
    made = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "simgate", "tls", "init", "--dir",
                         str(tmp_path / "tls")], capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    assert "Install a certificate -> CA certificate" in made.stdout
    ca = tmp_path / "tls" / "ca.crt"
    server = SimgateProcess(["serve", "--tls-cert", str(tmp_path / "tls" / "server.crt"),
                             "--tls-key", str(tmp_path / "tls" / "server.key")],
                            tmp_path / "serve", env={"SIMGATE_USERNAME": USER,
                                                     "SIMGATE_PASSWORD": PASSWORD,
                                                     "SIMGATE_SSE_KEEPALIVE_SECONDS": "0.3"})
    server.url = server.url.replace("http://", "https://")
    monkeypatch.setenv("SSL_CERT_FILE", str(ca))  # as a phone that installed the CA
    await asyncio.to_thread(server.start)
    trusted = ssl.create_default_context(cafile=str(ca))
    phone = Phone(f"{server.url}/mobile/v1", verify=trusted)
    try:
        await phone.register(login=USER, password=PASSWORD)
        async with httpx.AsyncClient(base_url=f"{server.url}/3rdparty/v1", verify=trusted,
                                     auth=(USER, PASSWORD)) as api:
            async with Listening(phone) as stream:
                # an idle stream gets its keep-alives through TLS, and stays usable
                await wait_until(lambda: phone.comments >= 4, timeout=30)
                message_id = await send(api, phone)
                assert (await stream.next())[0] == "MessageEnqueued"
            assert message_id in [m["id"] for m in await phone.messages()]
        # a phone that did not install the CA refuses the server
        untrusting = httpx.AsyncClient(verify=ssl.create_default_context(cafile=certifi.where()))
        with pytest.raises(httpx.ConnectError):
            await untrusting.get(f"{server.url}/health/live")
        await untrusting.aclose()
    finally:
        await phone.close()
        server.stop()
