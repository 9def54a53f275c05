"""The Twilio-compatible Messages API of a real `simgate run`, driven by Twilio's own
Python SDK with its base URL pointed at it. The SDK is synchronous: its calls run in a
thread, so the test's webhook receiver (in this loop) answers meanwhile."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl

import httpx
import pytest
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.request_validator import RequestValidator
from twilio.rest import Client

from simgate.testing import SimgateProcess
from tests.conftest import wait_until
from tests.e2e.gateway import (
    OUTSIDE,
    PASSWORD,
    SIM1,
    SIM2,
    USER,
    client,
    inbox,
    ready_device,
    start_run,
)
from tests.receiver import Receiver


@pytest.fixture
async def run(tmp_path):
    # callbacks retried within the test's patience
    process = start_run(tmp_path, env={"SIMGATE_WEBHOOK_RETRY_BASE": "0.2"})
    yield process
    process.stop()


def twilio_client(process: SimgateProcess, password: str = PASSWORD) -> Client:
    sdk = Client(USER, password)
    sdk.api.base_url = process.url
    return sdk


async def test_the_twilio_sdk_sends_through_the_sim_of_its_from_and_hears_signed_callbacks(run):
    receiver = Receiver()

    def fail_the_first(_request) -> None:
        receiver.status = 500 if receiver.requests_started < 2 else 200

    receiver.on_request = fail_the_first
    await receiver.start()
    sdk = twilio_client(run)
    async with client(run) as api:
        await ready_device(api)
        created = await asyncio.to_thread(
            sdk.messages.create, to=SIM1, from_=SIM2, body="Hello over Twilio's API",
            status_callback=receiver.url)
        assert created.sid.startswith("SM") and len(created.sid) == 34
        assert created.status in ("queued", "sending", "sent", "delivered")
        assert created.to == SIM1 and created.body == "Hello over Twilio's API"
        assert created.account_sid == USER and created.num_segments == "1"

        async def went_out():
            fetched = await asyncio.to_thread(sdk.messages(created.sid).fetch)
            return fetched if fetched.status in ("sent", "delivered") else None

        fetched = await wait_until(went_out, timeout=30)
        assert fetched.from_ == SIM2 and fetched.date_sent is not None
        state = (await api.get(f"/messages/{created.sid[2:]}")).json()
        assert state["simNumber"] == 2
        arrived = await wait_until(lambda: _from(api, SIM2), timeout=30)
        assert arrived[0]["recipient"] == SIM1

        listed = await asyncio.to_thread(sdk.messages.list, limit=20)
        assert created.sid in [m.sid for m in listed]

        # the first callback was answered 500: it came again, and then it counts
        callbacks = await wait_until(lambda: _callbacks(receiver, "sent"), timeout=30)
        assert receiver.requests_started >= 2
        params, signature = callbacks[0]
        assert params["MessageSid"] == created.sid and params["MessageStatus"] == "sent"
        assert params["To"] == SIM1 and params["From"] == SIM2
        assert params["AccountSid"] == USER
        assert RequestValidator(PASSWORD).validate(receiver.url, params, signature)
        assert not RequestValidator("another-token").validate(receiver.url, params, signature)
    await receiver.stop()


async def test_an_api_token_sends_and_cancels_a_scheduled_message_through_the_sdk(run):
    async with client(run) as api:
        await ready_device(api)
        issued = (await api.post("/auth/token", json={
            "scopes": ["messages:send", "messages:read", "messages:cancel"]})).json()
        # AccountSid: the token's id, AuthToken: the token
        sdk = Client(issued["id"], issued["access_token"])
        sdk.api.base_url = run.url
        sdk.account_sid = issued["id"]
        later = datetime.now(UTC) + timedelta(hours=2)
        scheduled = await asyncio.to_thread(
            sdk.messages.create, to=OUTSIDE, body="later", send_at=later,
            schedule_type="fixed")
        assert scheduled.status == "scheduled"
        canceled = await asyncio.to_thread(sdk.messages(scheduled.sid).update,
                                           status="canceled")
        assert canceled.status == "canceled"
        assert (await api.get(f"/messages/{scheduled.sid[2:]}")).json()["state"] == "Cancelled"
        with pytest.raises(TwilioException) as listing:  # a scope the token was not given
            await asyncio.to_thread(sdk.messages.list)
        assert "HTTP 403" in str(listing.value) and '"code":20003' in str(listing.value)
        assert "messages:list" in str(listing.value)


async def _from(api, sender):
    return [m for m in await inbox(api) if m["sender"] == sender]


def _callbacks(receiver: Receiver, status: str) -> list[tuple[dict[str, str], str]]:
    found = []
    for request in receiver.received:
        params = dict(parse_qsl(request.body.decode()))
        if params.get("MessageStatus") == status:
            found.append((params, request.headers.get("x-twilio-signature", "")))
    return found


async def _refusal(call, *args, **kwargs) -> TwilioRestException:
    with pytest.raises(TwilioRestException) as raised:
        await asyncio.to_thread(call, *args, **kwargs)
    return raised.value


async def test_bad_input_gets_twilios_error_format(run):
    sdk = twilio_client(run)
    async with client(run) as api:
        await ready_device(api)
    bad_to = await _refusal(sdk.messages.create, to="not-a-number", body="hi")
    assert (bad_to.status, bad_to.code) == (400, 21211)
    assert "not-a-number" in bad_to.msg
    empty = await _refusal(sdk.messages.create, to=OUTSIDE, body="")
    assert (empty.status, empty.code) == (400, 21602)
    not_ours = await _refusal(sdk.messages.create, to=OUTSIDE, from_="+12025550199", body="x")
    assert (not_ours.status, not_ours.code) == (400, 21606)
    assert SIM1 in not_ours.msg and SIM2 in not_ours.msg  # it says which numbers are yours
    unknown = await _refusal(sdk.messages("SM" + "0" * 32).fetch)
    assert (unknown.status, unknown.code) == (404, 20404)
    wrong = await _refusal(twilio_client(run, "wrong-token").messages.create,
                           to=OUTSIDE, body="x")
    assert (wrong.status, wrong.code) == (401, 20003)

    url = f"{run.url}/2010-04-01/Accounts/{USER}/Messages.json"
    async with httpx.AsyncClient(auth=(USER, PASSWORD), timeout=10) as http:
        extra = await http.post(url, data={"To": OUTSIDE, "Body": "x", "MediaUrl": "http://x"})
        assert extra.status_code == 400
        body = extra.json()
        assert body["code"] == 20001 and "MediaUrl" in body["message"]
        assert body["status"] == 400 and body["more_info"].endswith("/20001")
        other_account = await http.post(url.replace(USER, "someone-else"),
                                        data={"To": OUTSIDE, "Body": "x"})
        assert other_account.status_code == 401 and other_account.json()["code"] == 20003
    async with client(run) as api:  # none of the refused requests was stored
        assert (await api.get("/messages")).json() == []


async def test_a_status_callback_not_yet_answered_survives_kill_9(tmp_path):
    receiver = await Receiver(status=503).start()  # the receiver is down for now
    # a callback leased when the process died is tried again past its timeout
    env = {"SIMGATE_WEBHOOK_RETRY_BASE": "0.2", "SIMGATE_WEBHOOK_TIMEOUT": "3"}
    first = start_run(tmp_path, env=env)
    try:
        async with client(first) as api:
            await ready_device(api)
            created = await asyncio.to_thread(
                twilio_client(first).messages.create, to=OUTSIDE, from_=SIM1, body="durable",
                status_callback=receiver.url)

            async def sent():
                state = (await api.get(f"/messages/{created.sid[2:]}")).json()
                return state["state"] in ("Sent", "Delivered") and receiver.requests_started

            await wait_until(sent, timeout=30)
    finally:
        first.kill()
    receiver.status = 200
    second = start_run(tmp_path, env=env)  # the same data directory, a new process
    try:
        callbacks = await wait_until(lambda: _callbacks(receiver, "sent"), timeout=60)
        params, signature = callbacks[0]
        assert params["MessageSid"] == created.sid and params["From"] == SIM1
        assert RequestValidator(PASSWORD).validate(receiver.url, params, signature)
    finally:
        second.stop()
        await receiver.stop()
