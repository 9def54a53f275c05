"""Webhooks: registration rules, the signed outbox, retries, redrive, inbox events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from simgate.config import Settings
from simgate.services.errors import BadRequest
from simgate.services.gateway import Gateway
from tests.conftest import PASSWORD, USER, register_device, wait_until
from tests.receiver import Receiver

KEY = "shared-secret"


@pytest.fixture
async def gateway(tmp_path):
    """Local receivers allowed and quick retries, as `simgate run` would have them."""
    settings = Settings(data_dir=tmp_path, username=USER, password=PASSWORD,
                        allow_private_webhooks=True, webhook_retry_base=0.2,
                        webhook_timeout=2.0)
    gw = await Gateway.open(settings)
    yield gw
    await gw.close()


@pytest.fixture
async def receiver():
    r = await Receiver().start()
    yield r
    await r.stop()


def bearer(device):
    return {"headers": {"Authorization": f"Bearer {device['token']}"}, "auth": None}


async def incoming(api, device, ident, text="hi there", sim_number=2):
    return await api.post("/mobile/v1/inbox", **bearer(device), json=[{
        "id": ident, "sender": "+12025550101", "recipient": "+12025550102",
        "simNumber": sim_number, "message": text,
        "receivedAt": datetime.now(UTC).isoformat()}])


async def test_webhook_crud_and_validation(api):
    public = await api.post("/3rdparty/v1/webhooks",
                            json={"url": "https://93.184.215.14/hook", "event": "sms:received"})
    assert public.status_code == 201, public.text  # a public address needs no setting
    local = await api.post("/3rdparty/v1/webhooks",
                           json={"url": "http://127.0.0.1:9/hook", "event": "sms:sent"})
    assert local.status_code == 201, local.text
    hook = local.json()
    assert hook["event"] == "sms:sent" and hook["id"]
    listed = (await api.get("/3rdparty/v1/webhooks")).json()
    assert hook in listed
    for body, fragment in [
        ({"url": "http://127.0.0.1/x", "event": "sms:nope"}, "unknown webhook event"),
        ({"url": "ftp://127.0.0.1/x", "event": "sms:sent"}, "http(s)"),
        ({"url": "not a url", "event": "sms:sent"}, "http(s)"),
    ]:
        response = await api.post("/3rdparty/v1/webhooks", json=body)
        assert response.status_code == 400 and fragment in response.json()["message"]
    assert (await api.delete(f"/3rdparty/v1/webhooks/{hook['id']}")).status_code == 204
    assert hook not in (await api.get("/3rdparty/v1/webhooks")).json()
    # deleting again is done already (204), as the original: cleanup scripts run twice
    assert (await api.delete(f"/3rdparty/v1/webhooks/{hook['id']}")).status_code == 204


async def test_private_receivers_need_the_setting(tmp_path):
    settings = Settings(data_dir=tmp_path, username=USER, password=PASSWORD)
    gw = await Gateway.open(settings, background=False)
    try:
        user_id = await gw.users.authenticate(USER, PASSWORD)
        with pytest.raises(BadRequest, match="private or loopback"):
            await gw.webhooks.create(user_id, "http://127.0.0.1:8080/hook", "sms:received", None)
        with pytest.raises(BadRequest, match="private or loopback"):
            await gw.webhooks.create(user_id, "https://10.1.2.3/hook", "sms:received", None)
    finally:
        await gw.close()


async def test_received_sms_is_signed_and_carries_sim_number(api, receiver):
    device = await register_device(api)
    await api.patch("/3rdparty/v1/settings", json={"webhooks": {"signing_key": KEY}})
    hook = (await api.post("/3rdparty/v1/webhooks",
                           json={"url": receiver.url, "event": "sms:received"})).json()
    response = await incoming(api, device, "modem:1")
    assert response.status_code == 200
    await wait_until(lambda: receiver.received)
    delivery = receiver.received[0]
    body = delivery.json
    assert body["event"] == "sms:received" and body["webhookId"] == hook["id"]
    assert body["deviceId"] == device["id"]
    payload = body["payload"]
    assert payload["simNumber"] == 2 and payload["message"] == "hi there"
    assert payload["phoneNumber"] == payload["sender"] == "+12025550101"
    assert payload["recipient"] == "+12025550102"
    assert payload["messageId"] == response.json()[0]["messageId"]
    assert delivery.signed_with(KEY) and not delivery.signed_with("other-key")


async def test_incoming_dedup_by_identity_never_by_content(api, receiver):
    device = await register_device(api)
    await api.post("/3rdparty/v1/webhooks", json={"url": receiver.url, "event": "sms:received"})
    await incoming(api, device, "modem:1", text="same")
    await incoming(api, device, "modem:1", text="same")  # agent retry: same identity
    await incoming(api, device, "modem:2", text="same")  # a second, identical SMS
    # events are written with the messages: once the posts are answered, the outbox is
    # complete, so two rows there means no third delivery can come later
    outbox = (await api.get("/3rdparty/v1/webhooks/deliveries")).json()
    assert len(outbox) == 2
    await wait_until(lambda: len(receiver.received) >= 2)
    assert sorted(e["id"] for e in receiver.events()) == sorted(d["id"] for d in outbox)
    inbox = (await api.get("/3rdparty/v1/inbox")).json()
    assert len(inbox) == 2 and {m["contentPreview"] for m in inbox} == {"same"}
    assert all(m["simNumber"] == 2 and m["type"] == "SMS" for m in inbox)


async def test_outgoing_events_per_recipient_with_sim(api, receiver):
    device = await register_device(api)
    for event in ("sms:sent", "sms:delivered", "sms:failed"):
        await api.post("/3rdparty/v1/webhooks", json={"url": receiver.url, "event": event})
    message = (await api.post("/3rdparty/v1/messages", json={
        "message": "x" * 200, "phoneNumbers": ["+19162255887", "+19162255888"]})).json()
    await api.patch("/mobile/v1/message", **bearer(device), json=[{
        "id": message["id"], "state": "Sent", "simNumber": 1, "recipients": [
            {"phoneNumber": "+19162255887", "state": "Sent"},
            {"phoneNumber": "+19162255888", "state": "Failed", "error": "no network"}]}])
    await api.patch("/mobile/v1/message", **bearer(device), json=[{
        "id": message["id"], "state": "Delivered", "recipients": [
            {"phoneNumber": "+19162255887", "state": "Delivered"}]}])
    await wait_until(lambda: len(receiver.received) >= 3)
    sent = receiver.events("sms:sent")
    assert [e["payload"]["phoneNumber"] for e in sent] == ["+19162255887"]
    assert sent[0]["payload"]["simNumber"] == 1 and sent[0]["payload"]["messageId"] == message["id"]
    assert sent[0]["payload"]["sender"] == "+12025550101"  # the number of SIM 1
    assert sent[0]["payload"]["partsCount"] == 2  # 200 GSM characters: two parts
    failed = receiver.events("sms:failed")[0]["payload"]
    assert failed["phoneNumber"] == "+19162255888" and failed["reason"] == "no network"
    delivered = receiver.events("sms:delivered")[0]["payload"]
    assert delivered["phoneNumber"] == "+19162255887" and "deliveredAt" in delivered
    assert failed["sender"] == delivered["sender"] == "+12025550101"


async def test_retries_until_receiver_is_back_with_stable_ids(api, receiver, gateway):
    device = await register_device(api)
    await api.post("/3rdparty/v1/webhooks", json={"url": receiver.url, "event": "sms:received"})
    receiver.status = 503
    for i in range(3):
        await incoming(api, device, f"modem:{i}")

    async def all_attempted():
        rows = (await api.get("/3rdparty/v1/webhooks/deliveries")).json()
        return rows if len(rows) == 3 and all(d["attempts"] >= 1 for d in rows) else None

    attempts = await wait_until(all_attempted, timeout=15)
    assert all(d["status"] == "pending" for d in attempts)
    assert "503" in attempts[0]["lastError"]
    receiver.status = 200
    # backoff doubles from 0.2 s: on a loaded machine the check above may see the 6th
    # attempt, and the next one is then up to 15 s away
    await wait_until(lambda: len(receiver.received) >= 3, timeout=40)
    ids = sorted(e["id"] for e in receiver.events())
    assert ids == sorted(d["id"] for d in attempts)  # same event ids across retries

    async def all_delivered():  # outcomes are written just after the receiver answered
        rows = (await api.get("/3rdparty/v1/webhooks/deliveries",
                              params={"state": "delivered"})).json()
        return len(rows) == 3

    await wait_until(all_delivered, timeout=10)


async def test_out_of_retries_then_redrive(api, receiver):
    device = await register_device(api)
    await api.patch("/3rdparty/v1/settings", json={"webhooks": {"retry_count": 1}})
    hook = (await api.post("/3rdparty/v1/webhooks",
                           json={"url": receiver.url, "event": "sms:received"})).json()
    receiver.status = 500
    await incoming(api, device, "modem:9")

    async def gave_up():
        return (await api.get("/3rdparty/v1/webhooks/deliveries",
                              params={"state": "failed"})).json()

    failed = await wait_until(gave_up, timeout=10)
    assert failed[0]["attempts"] == 2
    receiver.status = 200
    redriven = await api.post(f"/3rdparty/v1/webhooks/{hook['id']}/redrive")
    assert redriven.json() == {"redriven": 1}
    await wait_until(lambda: receiver.received, timeout=10)
    assert receiver.events()[0]["id"] == failed[0]["id"]


async def test_slow_receiver_does_not_delay_others(api):
    slow = await Receiver(hang=True).start()
    fast = await Receiver().start()
    try:
        device = await register_device(api)
        slow_hook = (await api.post("/3rdparty/v1/webhooks", json={
            "url": slow.url, "event": "sms:received"})).json()
        await api.post("/3rdparty/v1/webhooks", json={"url": fast.url, "event": "sms:received"})
        await incoming(api, device, "modem:1")
        await wait_until(lambda: slow.requests_started, timeout=10)
        # the slow receiver holds its first request open until released: the fast one is
        # served meanwhile, while that attempt is still under way (not after it timed out)
        await wait_until(lambda: fast.received, timeout=10)

        async def slow_delivery():
            rows = (await api.get("/3rdparty/v1/webhooks/deliveries")).json()
            return next(r for r in rows if r["webhookId"] == slow_hook["id"])

        assert not slow.received and (await slow_delivery())["lastError"] is None
        slow.release()
        await wait_until(lambda: slow.received, timeout=10)
        delivered = await wait_until(
            lambda: _delivered(slow_delivery()), timeout=10)
        assert delivered["attempts"] == 1
    finally:
        slow.release()
        await slow.stop()
        await fast.stop()


async def _delivered(row):
    row = await row
    return row if row["status"] == "delivered" else None


async def test_inbox_export_raises_events_again(api, receiver):
    device = await register_device(api)
    await incoming(api, device, "modem:1")
    await api.post("/3rdparty/v1/webhooks", json={"url": receiver.url, "event": "sms:received"})
    now = datetime.now(UTC)
    period = {"deviceId": device["id"], "since": (now - timedelta(hours=1)).isoformat(),
              "until": (now + timedelta(hours=1)).isoformat()}
    # as the original: without webhookDelivery (or the older triggerWebhooks) none
    quiet = await api.post("/3rdparty/v1/inbox/refresh", json=period)
    assert quiet.status_code == 202 and quiet.json() == {"events": 0}
    response = await api.post("/3rdparty/v1/inbox/refresh",
                              json={**period, "triggerWebhooks": True})
    assert response.status_code == 202 and response.json() == {"events": 1}
    await wait_until(lambda: receiver.received)
    assert receiver.events()[0]["payload"]["simNumber"] == 2


async def test_ping_raises_system_ping(api, receiver):
    device = await register_device(api)
    await api.post("/3rdparty/v1/webhooks", json={"url": receiver.url, "event": "system:ping"})
    await api.patch("/3rdparty/v1/settings", json={"ping": {"interval_seconds": 60}})
    response = await api.post("/mobile/v1/ping", **bearer(device),
                              json={"health": {"status": "pass", "checks": {}}})
    assert response.status_code == 204
    await wait_until(lambda: receiver.received)
    assert receiver.events()[0]["payload"] == {"health": {"status": "pass", "checks": {}}}


async def test_inbox_refresh_filters_types_and_may_raise_nothing(api, receiver):
    device = await register_device(api)
    for n in range(3):
        await incoming(api, device, f"modem:{n}")
    await api.post("/3rdparty/v1/webhooks", json={"url": receiver.url, "event": "sms:received"})
    now = datetime.now(UTC)
    period = {"since": (now - timedelta(hours=1)).isoformat(),
              "until": (now + timedelta(hours=1)).isoformat()}
    listed = await api.get("/3rdparty/v1/inbox", params={"limit": 2})
    assert len(listed.json()) == 2 and listed.headers["X-Total-Count"] == "3"
    refresh = "/3rdparty/v1/inbox/refresh"
    period["webhookDelivery"] = "Individual"
    only_data = await api.post(refresh, json={**period, "messageTypes": ["DATA_SMS"]})
    assert only_data.json() == {"events": 0}
    only_sms = await api.post(refresh, json={**period, "messageTypes": ["SMS"]})
    assert only_sms.json() == {"events": 3}
    disabled = await api.post(refresh, json={**period, "webhookDelivery": "Disabled"})
    assert disabled.json() == {"events": 0}
    bad = await api.post(refresh, json={**period, "messageTypes": ["FAX"]})
    assert bad.status_code == 400 and "messageTypes" in bad.json()["message"]


async def device_of_oscar(api):
    response = await api.post("/mobile/v1/device", auth=("oscar", "oscar-secret"),
                              json={"name": "oscar's phone", "simCards": [{"slotIndex": 0}]})
    assert response.status_code == 201, response.text
    return response.json()


async def test_webhook_ids_are_per_user_so_another_users_id_is_free(api, gateway, receiver):
    """As the original (ids unique per user): another user's id answers as one that
    does not exist, and each user's webhook keeps its own URL and events."""
    mine = {"id": "shared-name", "url": "http://127.0.0.1:9/mine", "event": "sms:sent"}
    assert (await api.post("/3rdparty/v1/webhooks", json=mine)).status_code == 201
    await gateway.users.add("oscar", "oscar-secret")
    oscar = {"auth": ("oscar", "oscar-secret")}
    theirs = {"id": "shared-name", "url": receiver.url, "event": "sms:received"}
    unused = {"id": "never-used", "url": receiver.url, "event": "sms:received"}
    answers = [await api.post("/3rdparty/v1/webhooks", json=body, **oscar)
               for body in (theirs, unused)]
    assert [a.status_code for a in answers] == [201, 201]
    assert answers[0].json() == theirs
    assert (await api.get("/3rdparty/v1/webhooks")).json() == [mine]
    assert sorted(h["id"] for h in (await api.get("/3rdparty/v1/webhooks", **oscar)).json()) \
        == ["never-used", "shared-name"]
    # oscar's events go to oscar's webhook, named by its id
    device = await device_of_oscar(api)
    await incoming(api, device, "modem:1")
    await wait_until(lambda: len(receiver.received) >= 2)
    assert sorted(e["webhookId"] for e in receiver.events()) == ["never-used", "shared-name"]
    # deleting "shared-name" as oscar leaves mine alone
    assert (await api.delete("/3rdparty/v1/webhooks/shared-name", **oscar)).status_code == 204
    assert (await api.get("/3rdparty/v1/webhooks")).json() == [mine]


async def test_a_webhook_may_not_name_another_users_device(api, gateway):
    await gateway.users.add("oscar", "oscar-secret")
    theirs = await device_of_oscar(api)
    mine = await register_device(api)
    answers = {}
    for name, device_id in (("other user's", theirs["id"]), ("unknown", "no-such-device")):
        response = await api.post("/3rdparty/v1/webhooks", json={
            "url": "http://127.0.0.1:9/hook", "event": "sms:sent", "deviceId": device_id})
        assert response.status_code == 400, (name, response.text)
        answers[name] = response.json()["message"].replace(device_id, "ID")
    assert answers["other user's"] == answers["unknown"]  # nothing tells them apart
    assert "unknown device" in answers["unknown"]
    own = await api.post("/3rdparty/v1/webhooks", json={
        "url": "http://127.0.0.1:9/hook", "event": "sms:sent", "deviceId": mine["id"]})
    assert own.status_code == 201 and own.json()["deviceId"] == mine["id"]


async def test_redrive_of_another_users_webhook_answers_as_nonexistent(api, gateway):
    await gateway.users.add("oscar", "oscar-secret")
    oscar = {"auth": ("oscar", "oscar-secret")}
    hook = (await api.post("/3rdparty/v1/webhooks", json={
        "url": "http://127.0.0.1:9/hook", "event": "sms:sent"})).json()
    theirs = await api.post(f"/3rdparty/v1/webhooks/{hook['id']}/redrive", **oscar)
    nobodys = await api.post("/3rdparty/v1/webhooks/no-such-hook/redrive", **oscar)
    assert theirs.status_code == nobodys.status_code == 404
    assert theirs.json()["message"].replace(hook["id"], "ID") == \
        nobodys.json()["message"].replace("no-such-hook", "ID")
    assert "webhook" in theirs.json()["message"]
    filtered = await api.get("/3rdparty/v1/webhooks/deliveries",
                             params={"webhookId": hook["id"]}, **oscar)
    assert filtered.status_code == 200 and filtered.json() == []
    own = await api.post(f"/3rdparty/v1/webhooks/{hook['id']}/redrive")
    assert own.status_code == 200 and own.json() == {"redriven": 0}


async def test_deliveries_are_signed_with_a_generated_key_never_shown(api, receiver):
    """As the original's docs say: a key is made when none is set, so every delivery is
    signed; GET /settings says that it exists, never what it is."""
    unset = (await api.get("/3rdparty/v1/settings")).json()["webhooks"]
    assert unset["signing_key_set"] is False and "signing_key" not in unset
    device = await register_device(api)  # its first settings carry the key
    hook = await api.post("/3rdparty/v1/webhooks",
                          json={"url": receiver.url, "event": "sms:received"})
    assert hook.status_code == 201
    shown = await api.get("/3rdparty/v1/settings")
    assert shown.json()["webhooks"]["signing_key_set"] is True
    assert "signing_key" not in shown.json()["webhooks"]
    key = (await api.get("/mobile/v1/settings", **bearer(device))).json()["webhooks"][
        "signing_key"]
    assert len(key) >= 32 and key not in shown.text
    await incoming(api, device, "modem:1")
    await wait_until(lambda: receiver.received)
    delivery = receiver.received[0]
    assert delivery.signed_with(key)
    # what GET showed can be sent back as it is
    assert (await api.patch("/3rdparty/v1/settings", json=shown.json())).status_code == 200
    again = (await api.get("/mobile/v1/settings", **bearer(device))).json()
    assert again["webhooks"]["signing_key"] == key


async def test_a_cancelled_message_raises_sms_cancelled_per_recipient(api, receiver):
    device = await register_device(api)
    await api.post("/3rdparty/v1/webhooks", json={"url": receiver.url, "event": "sms:cancelled"})
    # still waiting for its scheduleAt, it was never handed out: Cancelled at once
    message = (await api.post("/3rdparty/v1/messages", json={
        "message": "never mind", "phoneNumbers": ["+19162255887", "+19162255888"],
        "scheduleAt": (datetime.now(UTC) + timedelta(days=1)).isoformat()})).json()
    cancelled = await api.delete(f"/3rdparty/v1/messages/{message['id']}")
    assert cancelled.status_code == 200 and cancelled.json()["state"] == "Cancelled"
    await wait_until(lambda: len(receiver.events("sms:cancelled")) >= 2)
    events = receiver.events("sms:cancelled")
    assert sorted(e["payload"]["phoneNumber"] for e in events) == ["+19162255887",
                                                                  "+19162255888"]
    for event in events:
        assert event["deviceId"] == device["id"]
        assert event["payload"]["messageId"] == message["id"]
        assert "cancelledAt" in event["payload"]
    outbox = (await api.get("/3rdparty/v1/webhooks/deliveries")).json()
    assert len(outbox) == 2  # once per recipient, nothing more


async def test_a_data_sms_raises_sms_data_received_with_data_and_port(api, receiver):
    device = await register_device(api)
    for event in ("sms:data-received", "sms:received"):
        await api.post("/3rdparty/v1/webhooks", json={"url": receiver.url, "event": event})
    response = await api.post("/mobile/v1/inbox", **bearer(device), json=[{
        "id": "modem:data-1", "sender": "+12025550101", "recipient": "+12025550102",
        "simNumber": 2, "dataMessage": {"data": "AAEC", "port": 53739},
        "receivedAt": datetime.now(UTC).isoformat()}])
    assert response.status_code == 200, response.text
    await wait_until(lambda: receiver.events("sms:data-received"))
    (event,) = receiver.events("sms:data-received")
    payload = event["payload"]
    assert (payload["data"], payload["port"], payload["simNumber"]) == ("AAEC", 53739, 2)
    assert payload["sender"] == "+12025550101" and payload["recipient"] == "+12025550102"
    # a data SMS is not a text SMS: the outbox holds one event, of the data kind
    outbox = (await api.get("/3rdparty/v1/webhooks/deliveries")).json()
    assert [d["event"] for d in outbox] == ["sms:data-received"]


async def test_the_last_retry_still_delivers_and_is_the_last(api, receiver):
    """A receiver down through every attempt but the last one allowed still gets the
    event, once, with the same id (test_out_of_retries_then_redrive: one down through all
    of them gets no further try)."""
    device = await register_device(api)
    await api.patch("/3rdparty/v1/settings", json={"webhooks": {"retry_count": 2}})
    await api.post("/3rdparty/v1/webhooks", json={"url": receiver.url, "event": "sms:received"})
    receiver.status = 503

    def comes_back_for_the_last(_request) -> None:
        if receiver.requests_started == 3:  # the first attempt and two retries
            receiver.status = 200

    receiver.on_request = comes_back_for_the_last
    await incoming(api, device, "modem:last")

    async def delivered():
        return (await api.get("/3rdparty/v1/webhooks/deliveries",
                              params={"state": "delivered"})).json()

    (row,) = await wait_until(delivered, timeout=30)
    assert row["attempts"] == 3 and receiver.requests_started == 3
    assert [e["id"] for e in receiver.events()] == [row["id"]]


async def test_the_older_inbox_export_raises_received_sms_only(api, receiver):
    """As the original's /messages/inbox/export: sms:received of the period, one each."""
    device = await register_device(api)
    await incoming(api, device, "modem:1")
    data = await api.post("/mobile/v1/inbox", **bearer(device), json=[{
        "id": "modem:2", "sender": "+12025550101", "dataMessage": {"data": "AQID", "port": 9},
        "receivedAt": datetime.now(UTC).isoformat()}])
    assert data.status_code == 200, data.text
    for event in ("sms:received", "sms:data-received"):
        await api.post("/3rdparty/v1/webhooks", json={"url": receiver.url, "event": event})
    now = datetime.now(UTC)
    response = await api.post("/3rdparty/v1/messages/inbox/export", json={
        "since": (now - timedelta(hours=1)).isoformat(),
        "until": (now + timedelta(hours=1)).isoformat()})
    assert response.status_code == 202 and response.json() == {"events": 1}
    assert response.headers["Deprecation"] == "true"
    await wait_until(lambda: receiver.received)
    assert [e["event"] for e in receiver.events()] == ["sms:received"]
