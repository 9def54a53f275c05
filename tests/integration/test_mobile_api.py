"""The device API: fetch, claim, report per-recipient states, push."""

from __future__ import annotations

import asyncio
import json

import httpx

from simgate.agent.outbox import BATCH as REPORT_BATCH
from simgate.config import Settings
from simgate.server.app import create_app
from simgate.services.device_limits import MAX_BATCH, ROWS_PER_MINUTE
from simgate.services.gateway import Gateway
from simgate.webhooks.signing import sign
from tests.conftest import register_device

TWO = {"message": "hello", "phoneNumbers": ["+19162255887", "+19162255888"], "simNumber": 2}


def bearer(device):
    """Request options that authenticate as the device instead of the user."""
    return {"headers": {"Authorization": f"Bearer {device['token']}"}, "auth": None}


async def test_fetch_claim_and_report_states(api):
    device = await register_device(api)
    message_id = (await api.post("/3rdparty/v1/messages", json=TWO)).json()["id"]

    pending = (await api.get("/mobile/v1/message", **bearer(device))).json()
    assert [m["id"] for m in pending] == [message_id]
    assert pending[0]["simNumber"] == 2
    assert pending[0]["textMessage"] == {"text": "hello"}
    assert pending[0]["phoneNumbers"] == TWO["phoneNumbers"]

    claim = await api.patch("/mobile/v1/message", **bearer(device), json=[
        {"id": message_id, "state": "Processed", "simNumber": 2, "recipients": [
            {"phoneNumber": p, "state": "Processed"} for p in TWO["phoneNumbers"]]}])
    assert claim.json() == [{"id": message_id, "state": "Processed"}]
    assert (await api.get("/mobile/v1/message", **bearer(device))).json() == []

    await api.patch("/mobile/v1/message", **bearer(device), json=[
        {"id": message_id, "state": "Sent", "recipients": [
            {"phoneNumber": "+19162255887", "state": "Sent"},
            {"phoneNumber": "+19162255888", "state": "Failed",
             "error": "Send result: +CMS ERROR 331 (no network service)"}]}])
    state = (await api.get(f"/3rdparty/v1/messages/{message_id}")).json()
    assert state["state"] == "Sent" and state["simNumber"] == 2
    assert state["recipients"][1] == {"phoneNumber": "+19162255888", "state": "Failed",
                                      "error": "Send result: +CMS ERROR 331 (no network service)"}

    # a late or repeated report never moves a state backwards, Failed stays Failed
    await api.patch("/mobile/v1/message", **bearer(device), json=[
        {"id": message_id, "state": "Delivered", "recipients": [
            {"phoneNumber": "+19162255887", "state": "Delivered"},
            {"phoneNumber": "+19162255888", "state": "Delivered"}]},
        {"id": message_id, "state": "Processed", "recipients": []}])
    state = (await api.get(f"/3rdparty/v1/messages/{message_id}")).json()
    assert [r["state"] for r in state["recipients"]] == ["Delivered", "Failed"]
    assert state["state"] == "Delivered"
    assert state["isHashed"] is False  # hashed at the next round of the hashing worker
    assert set(state["states"]) >= {"Pending", "Processed", "Sent", "Delivered"}


async def test_a_message_being_cancelled_cannot_be_claimed(api):
    device = await register_device(api)
    message_id = (await api.post("/3rdparty/v1/messages", json=TWO)).json()["id"]
    await api.delete(f"/3rdparty/v1/messages/{message_id}")
    claim = await api.patch("/mobile/v1/message", **bearer(device), json=[
        {"id": message_id, "state": "Processed", "recipients": []}])
    assert claim.json() == [{"id": message_id, "state": "Cancelling"}]
    confirm = await api.patch("/mobile/v1/message", **bearer(device), json=[
        {"id": message_id, "state": "Cancelled", "recipients": []}])
    assert confirm.json() == [{"id": message_id, "state": "Cancelled"}]
    again = await api.delete(f"/3rdparty/v1/messages/{message_id}")
    assert again.status_code == 409  # as the original: only a Pending message
    assert again.json()["message"].startswith("message is not pending")


async def test_a_device_that_sent_a_message_being_cancelled_has_the_last_word(api):
    device = await register_device(api)
    message_id = (await api.post("/3rdparty/v1/messages", json=TWO)).json()["id"]
    await api.delete(f"/3rdparty/v1/messages/{message_id}")
    sent = await api.patch("/mobile/v1/message", **bearer(device), json=[
        {"id": message_id, "state": "Sent", "recipients": []}])
    assert sent.json() == [{"id": message_id, "state": "Sent"}]


async def test_a_message_not_yet_due_is_cancelled_at_once(api):
    await register_device(api)
    message_id = (await api.post("/3rdparty/v1/messages", json={
        **TWO, "scheduleAt": "2099-01-01T00:00:00Z"})).json()["id"]
    cancelled = await api.delete(f"/3rdparty/v1/messages/{message_id}")
    assert cancelled.json()["state"] == "Cancelled"


async def test_cannot_cancel_a_claimed_message(api):
    device = await register_device(api)
    message_id = (await api.post("/3rdparty/v1/messages", json=TWO)).json()["id"]
    await api.patch("/mobile/v1/message", **bearer(device),
                    json=[{"id": message_id, "state": "Processed"}])
    response = await api.delete(f"/3rdparty/v1/messages/{message_id}")
    assert response.status_code == 409 and "Processed" in response.json()["message"]


async def test_device_sees_only_its_messages(api):
    first = await register_device(api, name="one")
    second = await register_device(api, name="two")
    await api.post("/3rdparty/v1/messages", json={**TWO, "deviceId": first["id"]})
    assert (await api.get("/mobile/v1/message", **bearer(second))).json() == []
    bad = await api.post("/3rdparty/v1/messages", json={**TWO, "deviceId": "unknown"})
    assert bad.status_code == 400 and "unknown" in bad.json()["message"]


async def test_priority_and_order(api):
    device = await register_device(api)
    ids = []
    for priority in (0, 100, 0):
        body = {"message": "x", "phoneNumbers": ["+19162255887"], "priority": priority}
        ids.append((await api.post("/3rdparty/v1/messages", json=body)).json()["id"])
    lifo = (await api.get("/mobile/v1/message", **bearer(device))).json()
    assert [m["id"] for m in lifo] == [ids[1], ids[2], ids[0]]
    fifo = (await api.get("/mobile/v1/message", **bearer(device),
                          params={"order": "fifo"})).json()
    assert [m["id"] for m in fifo] == [ids[1], ids[0], ids[2]]


async def test_sim_report_updates_devices(api):
    device = await register_device(api)
    response = await api.patch("/mobile/v1/device", **bearer(device), json={
        "simCards": [{"slotIndex": 0, "state": "Ready"},
                     {"slotIndex": 1, "state": "NoNetwork", "detail": "not registered"}]})
    assert response.status_code == 204
    sims = (await api.get("/3rdparty/v1/devices")).json()[0]["simCards"]
    assert sims[1]["state"] == "NoNetwork" and sims[1]["detail"] == "not registered"


async def test_device_token_required(api):
    response = await api.get("/mobile/v1/message", **bearer({"token": "nope"}))
    assert response.status_code == 401 and "register the device again" in response.json()["message"]


async def test_push_reaches_subscribed_device(gateway):
    """The bus delivers "MessageEnqueued" to every open stream of the device only."""
    async with gateway.bus.subscribe("dev-1") as mine, gateway.bus.subscribe("dev-2") as other:
        gateway.bus.notify("dev-1", "MessageEnqueued")
        event = await asyncio.wait_for(mine.get(), 10)
        assert event["event"] == "MessageEnqueued"
        # a push of its own comes after anything meant for dev-1 would have: it is first
        gateway.bus.notify("dev-2", "SettingsUpdated")
        assert await asyncio.wait_for(other.get(), 10) == {"event": "SettingsUpdated", "data": {}}
    gateway.bus.notify("dev-1", "MessageEnqueued")  # nobody listens now: dropped
    async with gateway.bus.subscribe("dev-1") as again:
        gateway.bus.notify("dev-1", "SettingsUpdated")
        assert await asyncio.wait_for(again.get(), 10) == {"event": "SettingsUpdated", "data": {}}


async def test_a_full_device_queue_is_a_503_until_the_device_takes_some(tmp_path):
    settings = Settings(data_dir=tmp_path, username="quinn", password="quinn-secret",
                        max_queued_per_device=3)
    gateway = await Gateway.open(settings, background=False)
    app = create_app(settings, gateway)
    app.state.gateway = gateway
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://simgate",
                                     auth=("quinn", "quinn-secret")) as api:
            device = await register_device(api)
            sent = [await api.post("/3rdparty/v1/messages", json=TWO) for _ in range(4)]
            assert [r.status_code for r in sent] == [202, 202, 202, 503]
            assert "seems offline" in sent[3].json()["message"]
            first = sent[0].json()["id"]
            await api.patch("/mobile/v1/message", **bearer(device), json=[
                {"id": first, "state": "Processed", "recipients": [
                    {"phoneNumber": p, "state": "Processed"} for p in TWO["phoneNumbers"]]}])
            again = await api.post("/3rdparty/v1/messages", json=TWO)
            assert again.status_code == 202  # one left the queue: one more may wait
            assert (await api.post("/3rdparty/v1/messages", json=TWO)).status_code == 503
    finally:
        await gateway.close()


async def test_inbox_takes_the_original_servers_batch_format_too(api):
    device = await register_device(api)
    uploaded = await api.post("/mobile/v1/inbox", **bearer(device), json=[
        {"id": "sms-001", "type": "SMS", "sender": "+79990001234", "recipient": "+12025550102",
         "simNumber": 2, "content": "hello", "isEncrypted": False,
         "createdAt": "2026-01-15T10:30:00.123+03:00"},
        {"id": "data-001", "type": "DATA_SMS", "sender": "+79990001234", "simNumber": 1,
         "content": "AQID", "isEncrypted": False, "createdAt": "2026-01-15T10:31:00Z"},
        {"id": "mms-001", "type": "MMS", "sender": "+79990001234", "simNumber": 1,
         "content": "a picture", "createdAt": "2026-01-15T11:00:00Z",
         "attachments": [{"partId": 1, "contentType": "image/jpeg", "data": "AAAA"}]},
    ])
    assert uploaded.status_code == 200, uploaded.text
    inbox = (await api.get("/3rdparty/v1/inbox")).json()
    assert sorted((m["type"], m["simNumber"], m["contentPreview"]) for m in inbox) == [
        ("DATA_SMS", 1, "AQID"), ("MMS", 1, "a picture"), ("SMS", 2, "hello")]
    bad = await api.post("/mobile/v1/inbox", **bearer(device), json=[
        {"id": "x", "type": "SMS", "sender": "+79990001234", "content": "no date"}])
    assert bad.status_code == 400 and "createdAt" in bad.json()["message"]


async def test_the_app_gets_simgates_ingest_hooks_and_the_agent_the_users_hooks(api):
    device = await register_device(api)
    await api.post("/3rdparty/v1/webhooks", json={"url": "https://1.1.1.1/hook",
                                                  "event": "sms:received"})
    app = (await api.get("/mobile/v1/webhooks", headers={
        "Authorization": f"Bearer {device['token']}",
        "User-Agent": "me.capcom.smsgateway/1.40.0"}, auth=None)).json()
    # the state events tell which SIM a phone chose when it was handed none
    assert {h["event"] for h in app} == {"sms:received", "sms:data-received", "mms:received",
                                         "mms:downloaded", "system:ping", "app:started", "sms:sent",
                                         "sms:delivered", "sms:failed"}
    assert all(h["url"].startswith(f"http://simgate/mobile/v1/ingest/{device['id']}/")
               for h in app)
    agent = (await api.get("/mobile/v1/webhooks", headers={
        "Authorization": f"Bearer {device['token']}",
        "User-Agent": "simgate-agent/0.1"}, auth=None)).json()
    assert [h["url"] for h in agent] == ["https://1.1.1.1/hook"]


async def test_the_apps_mms_ping_and_start_at_the_ingest_hook_reach_the_users_webhooks(api):
    device = await register_device(api)
    for event in ("mms:received", "system:ping", "app:started"):
        await api.post("/3rdparty/v1/webhooks", json={"url": "https://1.1.1.1/hook",
                                                      "event": event})
    hooks = (await api.get("/mobile/v1/webhooks", **bearer(device))).json()
    url = {h["event"]: h["url"].removeprefix("http://simgate") for h in hooks}
    # the app signs what it fires with the key of its settings (every user has one)
    key = (await api.get("/mobile/v1/settings", **bearer(device))).json()["webhooks"][
        "signing_key"]

    def post_signed(path: str, body: dict):
        content = json.dumps(body).encode()
        return api.post(path, auth=None, content=content,
                        headers={"Content-Type": "application/json", **sign(key, content)})

    mms = {"messageId": "mms-7f3a", "sender": "+79990001234", "recipient": "+12025550101",
           "simNumber": 1, "transactionId": "T-1", "subject": "a picture", "size": 2048,
           "contentClass": "IMAGE_BASIC", "receivedAt": "2026-11-27T13:45:12.345+03:00"}
    for event, payload in (("mms:received", mms), ("mms:received", mms),
                           ("system:ping", {"health": {"status": "pass"}}),
                           ("app:started", {"simCards": [{"slotIndex": 0}]})):
        posted = await post_signed(url[event], {  # the app gives every post an id of its own
            "id": f"evt-{event}", "webhookId": "simgate", "event": event,
            "deviceId": device["id"], "payload": payload})
        assert posted.status_code == 200, posted.text
    inbox = (await api.get("/3rdparty/v1/inbox")).json()
    assert [(m["type"], m["contentPreview"]) for m in inbox] == [("MMS", "a picture")]
    raised = (await api.get("/3rdparty/v1/webhooks/deliveries")).json()
    assert sorted(d["event"] for d in raised) == ["app:started", "mms:received", "system:ping"]
    bad = await post_signed(url["mms:received"], {
        "id": "evt", "event": "mms:received", "payload": {"sender": "+7999"}})
    assert bad.status_code == 400 and "messageId" in bad.json()["message"]


async def test_patch_device_with_another_devices_id_is_forbidden(api):
    device = await register_device(api)
    other = await register_device(api, name="other")
    refused = await api.patch("/mobile/v1/device", **bearer(device), json={
        "id": other["id"], "pushToken": "stolen"})
    assert refused.status_code == 403 and "another device" in refused.json()["message"]
    own = await api.patch("/mobile/v1/device", **bearer(device), json={
        "id": device["id"], "pushToken": "mine"})
    assert own.status_code == 204


async def _ingest_hooks(api, device) -> tuple[dict[str, str], str]:
    """The app's ingest URLs by event, and the signing key of its settings."""
    hooks = (await api.get("/mobile/v1/webhooks", **bearer(device))).json()
    key = (await api.get("/mobile/v1/settings", **bearer(device))).json()["webhooks"][
        "signing_key"]
    return {h["event"]: h["url"].removeprefix("http://simgate") for h in hooks}, key


async def test_ingest_refuses_unsigned_posts_whatever_the_settings_say(api):
    """A replace without the key (the official client's), an empty or a null key: the
    user keeps a key, the phone's posts stay signed, an unsigned one is a 401."""
    device = await register_device(api)
    url, key = await _ingest_hooks(api, device)
    ping = json.dumps({"id": "unsigned", "event": "system:ping", "payload": {}}).encode()
    for change in [("PUT", {}), ("PUT", {"webhooks": {"retry_count": 3}}),
                   ("PATCH", {"webhooks": {"signing_key": ""}}),
                   ("PATCH", {"webhooks": {"signing_key": None}}),
                   ("PATCH", {"webhooks": None}),
                   ("PUT", {"webhooks": {"signing_key": ""}})]:
        method, body = change
        changed = await api.request(method, "/3rdparty/v1/settings", json=body)
        assert changed.status_code == 200, (change, changed.text)
        assert changed.json()["webhooks"]["signing_key_set"] is True, change
        assert (await _ingest_hooks(api, device))[1] == key, change
        unsigned = await api.post(url["system:ping"], auth=None, content=ping,
                                  headers={"Content-Type": "application/json"})
        assert unsigned.status_code == 401, (change, unsigned.text)
        assert "X-Signature" in unsigned.json()["message"]
    # a new key replaces the old one, and signs from then on
    assert (await api.patch("/3rdparty/v1/settings", json={
        "webhooks": {"signing_key": "a-new-key"}})).status_code == 200
    signed = await api.post(url["system:ping"], auth=None, content=ping, headers={
        "Content-Type": "application/json", **sign("a-new-key", ping)})
    assert signed.status_code == 200, signed.text


async def test_a_replayed_ingest_post_is_answered_but_acted_on_once(api):
    """The same signed post again (within the signature's window) fires no webhook again;
    a new post, with a new id, does."""
    device = await register_device(api)
    for event in ("system:ping", "app:started"):
        await api.post("/3rdparty/v1/webhooks", json={"url": "https://1.1.1.1/hook",
                                                      "event": event})
    url, key = await _ingest_hooks(api, device)
    posts = []
    for event, event_id in [("system:ping", "ping-1"), ("app:started", "start-1"),
                            ("system:ping", "ping-2")]:
        content = json.dumps({"id": event_id, "event": event, "deviceId": device["id"],
                              "payload": {}}).encode()
        posts.append((url[event], content, sign(key, content)))
    for path, content, headers in posts + posts[:2] + posts[:1]:
        answer = await api.post(path, auth=None, content=content,
                                headers={"Content-Type": "application/json", **headers})
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"id": json.loads(content)["id"]}
    raised = (await api.get("/3rdparty/v1/webhooks/deliveries")).json()
    assert sorted(d["event"] for d in raised) == ["app:started", "system:ping", "system:ping"]


def _sms(n: int) -> dict:
    return {"id": f"sms-{n}", "type": "SMS", "sender": "+79990001234", "simNumber": 1,
            "content": f"hello {n}", "isEncrypted": False, "createdAt": "2026-01-15T10:30:00Z"}


def _log(n: int) -> dict:
    return {"priority": "INFO", "module": "sim", "message": f"entry {n}"}


async def test_a_device_posts_bounded_batches_at_a_bounded_rate(api, gateway):
    """One tenant's device flooding /inbox or /logs gets 413 past a batch, 429 with
    Retry-After past a minute's rows; nothing refused is stored, and another tenant's
    device posts on as before."""
    device = await register_device(api)
    await gateway.users.add("bob", "bob-secret-1")
    bobs = await register_device(api, auth=("bob", "bob-secret-1"))
    for path, row in (("/mobile/v1/inbox", _sms), ("/mobile/v1/logs", _log)):
        too_big = await api.post(path, **bearer(device),
                                 json=[row(n) for n in range(MAX_BATCH + 1)])
        assert too_big.status_code == 413, too_big.text[:200]
        assert f"at most {MAX_BATCH}" in too_big.json()["message"]
        sent = 0
        while sent + MAX_BATCH <= ROWS_PER_MINUTE:
            batch = await api.post(path, **bearer(device),
                                   json=[row(n) for n in range(sent, sent + MAX_BATCH)])
            assert batch.status_code < 300, batch.text[:200]
            sent += MAX_BATCH
        throttled = await api.post(path, **bearer(device), json=[row(sent)])
        assert throttled.status_code == 429, throttled.text[:200]
        assert 0 < int(throttled.headers["Retry-After"]) <= 60
        assert "a minute" in throttled.json()["message"]
        other = await api.post(path, **bearer(bobs), json=[row(0)])
        assert other.status_code < 300, other.text
    inbox = await api.get("/3rdparty/v1/inbox", params={"limit": 1})
    assert inbox.headers["X-Total-Count"] == str(ROWS_PER_MINUTE)
    logs = [e for e in (await api.get("/3rdparty/v1/logs")).json()
            if e["message"].startswith("entry ")]
    assert len(logs) == ROWS_PER_MINUTE


def test_simgates_agent_sends_batches_the_server_takes():
    """The agent's outbox posts up to REPORT_BATCH rows at once: never a 413."""
    assert REPORT_BATCH <= MAX_BATCH
