"""The HTTP API, route by route, including bad input."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from urllib.parse import quote

import pytest
from sqlalchemy import update

from simgate.store.models import Device
from tests.conftest import PASSWORD, USER, register_device

SEED = {"message": "Hello from SIM2, Dr. Turk!", "phoneNumbers": ["+19162255887"],
        "simNumber": 2}


async def send(api, body=None, **params):
    return await api.post("/3rdparty/v1/message", json=body or SEED, params=params)


async def test_seed_request_is_accepted_as_pending(api):
    device = await register_device(api)
    response = await send(api)
    assert response.status_code == 202
    body = response.json()
    assert body["state"] == "Pending"
    assert body["deviceId"] == device["id"]
    assert body["recipients"] == [{"phoneNumber": "+19162255887", "state": "Pending"}]
    assert body["isHashed"] is False and body["isEncrypted"] is False
    assert "Pending" in body["states"] and body["createdAt"]
    assert response.headers["location"] == f"/3rdparty/v1/messages/{body['id']}"
    followed = await api.get(response.headers["location"])
    assert followed.status_code == 200 and followed.json()["id"] == body["id"]


async def test_all_prefixes_and_text_forms(api):
    device = await register_device(api)
    for path, body in [
        ("/3rdparty/v1/messages", {"textMessage": {"text": "hi"}, "phoneNumbers": ["+19162255887"]}),
        ("/api/3rdparty/v1/messages", {"message": "hi", "phoneNumbers": ["+19162255887"]}),
        ("/api/3rdparty/v1/message", {"dataMessage": {"data": "AAEC", "port": 53739},
                                      "phoneNumbers": ["+19162255887"]}),
    ]:
        response = await api.post(path, json=body)
        assert response.status_code == 202, (path, response.text)
        stored = (await api.get(f"/3rdparty/v1/messages/{response.json()['id']}")).json()
        assert stored["recipients"] == [{"phoneNumber": "+19162255887", "state": "Pending"}]
    # the device is handed each message in the form it was sent in
    queued = (await api.get("/mobile/v1/message", headers={
        "Authorization": f"Bearer {device['token']}"}, auth=None)).json()
    forms = sorted((m.get("textMessage") or {}).get("text") or str(m.get("dataMessage"))
                   for m in queued)
    assert forms == ["hi", "hi", str({"data": "AAEC", "port": 53739})]


@pytest.mark.parametrize(
    ("sims", "sim_number", "expected"),
    [
        (None, 3, "simNumber 3 is out of range: device .* has 2 SIM slot\\(s\\); valid simNumber values: 1, 2"),
        ([{"slotIndex": 0}, {"slotIndex": 1, "state": "Absent"}], 2, "SIM slot 2 .* is empty; valid simNumber values: 1"),
        (None, 0, "simNumber 0 is out of range: .* valid simNumber values: 1, 2"),
        (None, 65, "simNumber 65 is out of range: .* valid simNumber values: 1, 2"),
        ([], 65, "simNumber 65 is out of range: .* has not said how many SIM slots it has;"
                 " valid simNumber values: 1 to 64"),
    ],
)
async def test_bad_sim_number_is_a_clear_400(api, sims, sim_number, expected):
    await register_device(api, sims)
    response = await send(api, {**SEED, "simNumber": sim_number})
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == 400
    assert re.search(expected, body["message"]), body["message"]
    assert (await api.get("/3rdparty/v1/messages")).json() == []  # nothing stored


async def test_a_misspelt_content_key_is_named(api):
    await register_device(api)
    response = await send(api, {"textMesage": {"text": "hi"}, "phoneNumbers": ["+19162255887"]})
    assert response.status_code == 400
    assert "(got none; unknown key(s) textMesage: misspelt?)" in response.json()["message"]
    ignored = await send(api, {**SEED, "colour": "blue"})  # with content: ignored, as before
    assert ignored.status_code == 202, ignored.text


async def test_phone_numbers_are_normalised_or_rejected(api):
    await register_device(api)
    ok = await send(api, {"message": "x", "phoneNumbers": ["+1 (916) 225-5887"]})
    assert ok.json()["recipients"][0]["phoneNumber"] == "+19162255887"
    bad = await send(api, {"message": "x", "phoneNumbers": ["+19162255887", "12345"]})
    assert bad.status_code == 400 and "'12345'" in bad.json()["message"]
    skipped = await send(api, {"message": "x", "phoneNumbers": ["12345"]}, skipPhoneValidation="true")
    assert skipped.status_code == 202
    assert skipped.json()["recipients"][0]["phoneNumber"] == "12345"


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"deviceActiveWithin": "-1"}, "deviceActiveWithin: Input should be greater than or equal to 0"),
        ({"deviceActiveWithin": "soon"}, "deviceActiveWithin: Input should be a valid integer"),
        ({"skipPhoneValidation": "maybe"}, "skipPhoneValidation: Input should be a valid boolean"),
    ],
)
async def test_bad_query_options_are_a_clear_400(api, params, fragment):
    await register_device(api)
    response = await send(api, **params)
    assert response.status_code == 400
    assert fragment in response.json()["message"]
    assert (await api.get("/3rdparty/v1/messages")).json() == []  # nothing stored


async def test_device_active_within_skips_devices_not_seen_lately(api, gateway):
    device = await register_device(api)
    async with gateway.sessions.begin() as session:
        await session.execute(update(Device).where(Device.id == device["id"])
                              .values(last_seen=datetime(2020, 1, 1, tzinfo=UTC)))
    response = await send(api, deviceActiveWithin="1")
    assert response.status_code == 400
    assert "no device seen in the last 1 h" in response.json()["message"]
    assert (await send(api)).status_code == 202  # without the option, any device


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"phoneNumbers": ["+19162255887"]}, "exactly one of message, textMessage or dataMessage"),
        ({"message": "a", "textMessage": {"text": "b"}, "phoneNumbers": ["+19162255887"]}, "exactly one"),
        ({"message": "a", "phoneNumbers": []}, "phoneNumbers"),
        ({"message": "a", "phoneNumbers": ["+19162255887"] * 101}, "phoneNumbers"),
        ({"message": "a", "phoneNumbers": "+19162255887"}, "phoneNumbers"),
        ({"message": "a", "phoneNumbers": ["+19162255887"], "priority": 500}, "priority"),
        ({"message": "a", "phoneNumbers": ["+19162255887"], "ttl": 5, "validUntil": "2030-01-01T00:00:00Z"}, "ttl or validUntil"),
        ({"dataMessage": {"data": "not base64!", "port": 1}, "phoneNumbers": ["+19162255887"]}, "base64"),
        ({"dataMessage": {"data": "AAEC", "port": 70000}, "phoneNumbers": ["+19162255887"]}, "port"),
        ({"message": "a", "phoneNumbers": ["+19162255887", "+19162255887"]}, "phone numbers must be unique"),
        ({"message": "a", "phoneNumbers": ["+19162255887"], "validUntil": "2030-01-01T08:00:00Z",
          "scheduleAt": "2030-01-01T03:30:00-05:00"}, "scheduleAt must be less than or equal to validUntil"),
        ({"message": "a", "phoneNumbers": ["+19162255887"], "ttl": 60,
          "scheduleAt": "2030-01-01T00:00:00Z"}, "scheduleAt must be less than or equal to validUntil"),
    ],
)
async def test_bad_bodies_are_400_with_a_message(api, body, fragment):
    await register_device(api)
    response = await send(api, body)
    assert response.status_code == 400, response.text
    assert fragment in response.json()["message"]


SEND_PATHS = ["/3rdparty/v1/messages", "/3rdparty/v1/message", "/api/3rdparty/v1/messages",
              "/api/3rdparty/v1/message"]


async def test_a_send_not_declared_json_is_a_415_and_sends_nothing(api):
    """What a cross-site form or a no-cors fetch can post, with a browser's remembered Basic
    credentials: plain text, a form, multipart, no type at all."""
    await register_device(api)
    body = json.dumps(SEED).encode()
    for path in SEND_PATHS:
        for declared in ["text/plain", "application/x-www-form-urlencoded",
                         "multipart/form-data; boundary=x", "text/json", "application/jsonx",
                         None]:
            headers = {"Content-Type": declared} if declared else {}  # raw bytes: no type
            response = await api.post(path, content=body, headers=headers)
            assert response.status_code == 415, (path, declared, response.text)
            assert "Content-Type: application/json" in response.json()["message"]
    assert (await api.get("/3rdparty/v1/messages")).json() == []
    for declared in ["application/json", "application/json; charset=utf-8", "Application/JSON"]:
        response = await api.post(SEND_PATHS[0], content=body,
                                  headers={"Content-Type": declared})
        assert response.status_code == 202, (declared, response.text)


async def test_malformed_json_and_huge_bodies(api):
    await register_device(api)
    response = await api.post("/3rdparty/v1/messages", content=b'{"message": "x",',
                              headers={"Content-Type": "application/json"})
    assert response.status_code == 400 and "not valid JSON" in response.json()["message"]
    huge = {"message": "x" * 2_000_000, "phoneNumbers": ["+19162255887"]}
    response = await send(api, huge)
    assert response.status_code == 413 and "too large" in response.json()["message"]
    assert (await api.get("/3rdparty/v1/messages")).json() == []


async def test_authentication(api):
    await register_device(api)
    for auth in [None, (USER, "wrong-password"), ("nobody", PASSWORD)]:
        response = await api.post("/3rdparty/v1/messages", json=SEED, auth=auth or ("", ""),
                                   headers={} if auth else {"Authorization": ""})
        assert response.status_code == 401
        assert response.headers["www-authenticate"].startswith("Basic")
        assert response.json()["code"] == 401


async def test_client_id_is_idempotent_key(api):
    await register_device(api)
    first = await send(api, {**SEED, "id": "order-42"})
    assert first.status_code == 202 and first.json()["id"] == "order-42"
    again = await send(api, {**SEED, "id": "order-42"})
    assert again.status_code == 409 and "order-42" in again.json()["message"]


async def test_users_see_only_their_own(api, gateway):
    await register_device(api)
    message_id = (await send(api)).json()["id"]
    await gateway.users.add("bob", "bob-secret")
    as_bob = {"auth": ("bob", "bob-secret")}
    assert (await api.get(f"/3rdparty/v1/messages/{message_id}", **as_bob)).status_code == 404
    assert (await api.get("/3rdparty/v1/messages", **as_bob)).json() == []
    assert (await api.get("/3rdparty/v1/devices", **as_bob)).json() == []
    no_device = await api.post("/3rdparty/v1/messages", json=SEED, **as_bob)
    assert no_device.status_code == 400 and "no device" in no_device.json()["message"]


async def test_list_filters_sort_and_pages(api):
    device = await register_device(api)
    ids = [(await send(api, {**SEED, "id": f"m{i}"})).json()["id"] for i in range(5)]
    listed = (await api.get("/3rdparty/v1/messages")).json()
    assert [m["id"] for m in listed] == ids[::-1]
    oldest_first = (await api.get("/3rdparty/v1/messages", params={"sort": "created_at", "limit": 2,
                                                                    "offset": 1})).json()
    assert [m["id"] for m in oldest_first] == ids[1:3]
    await api.delete("/3rdparty/v1/messages/m0")
    cancelled = (await api.get("/3rdparty/v1/messages", params={"state": "Cancelling"})).json()
    assert [m["id"] for m in cancelled] == ["m0"]
    other = (await api.get("/3rdparty/v1/messages", params={"deviceId": "nope"})).json()
    assert other == []
    mine = (await api.get("/3rdparty/v1/messages", params={"deviceId": device["id"]})).json()
    assert len(mine) == 5
    one = await api.get("/3rdparty/v1/messages", params={"limit": 0})  # brought to 1
    assert one.status_code == 200 and len(one.json()) == 1
    bad = await api.get("/3rdparty/v1/messages", params={"limit": "ten"})
    assert bad.status_code == 400 and "limit" in bad.json()["message"]


async def test_list_by_sim_keeps_the_sim_that_sent_or_the_one_asked(api):
    """simNumber filters by the SIM that sent a message; one not sent yet counts for the
    SIM it asks for. Out of range is a 400 that names the parameter."""
    device = await register_device(api)
    for i, sim in enumerate((2, 1, None)):
        body = {"message": f"m{i}", "phoneNumbers": ["+19162255887"], "id": f"m{i}"}
        assert (await send(api, body if sim is None else {**body, "simNumber": sim})
                ).status_code == 202
    # the device sends m2 (no SIM asked) through SIM 2
    reported = await api.patch("/mobile/v1/message", auth=None,
                               headers={"Authorization": f"Bearer {device['token']}"},
                               json=[{"id": "m2", "state": "Sent", "simNumber": 2}])
    assert reported.status_code == 200, reported.text

    async def listed(sim: int) -> list[str]:
        response = await api.get("/3rdparty/v1/messages", params={"simNumber": sim})
        assert response.status_code == 200, response.text
        assert response.headers["X-Total-Count"] == str(len(response.json()))
        return sorted(m["id"] for m in response.json())

    assert await listed(2) == ["m0", "m2"]
    assert await listed(1) == ["m1"]
    assert await listed(3) == []
    bad = await api.get("/3rdparty/v1/messages", params={"simNumber": 0})
    assert bad.status_code == 400 and "simNumber" in bad.json()["message"], bad.text


async def test_cancel_ends_when_the_device_confirms(api):
    device = await register_device(api)
    message_id = (await send(api)).json()["id"]
    cancelled = await api.delete(f"/3rdparty/v1/messages/{message_id}")
    assert cancelled.status_code == 200  # with the state after, as the original
    assert cancelled.json()["state"] == "Cancelling" and cancelled.json()["id"] == message_id
    # the device may hold it: it sees it being cancelled and confirms it did not send it
    held = (await api.get("/mobile/v1/message", auth=None,
                          headers={"Authorization": f"Bearer {device['token']}"})).json()
    assert [(m["id"], m["state"]) for m in held] == [(message_id, "Cancelling")]
    await api.patch("/mobile/v1/message", auth=None,
                    headers={"Authorization": f"Bearer {device['token']}"},
                    json=[{"id": message_id, "state": "Cancelled"}])
    state = (await api.get(f"/3rdparty/v1/messages/{message_id}")).json()
    assert state["state"] == "Cancelled" and state["isHashed"] is False  # until the round
    assert state["recipients"][0]["phoneNumber"] == "+19162255887"
    assert (await api.delete("/3rdparty/v1/messages/missing")).status_code == 404


async def test_devices_list_and_remove(api):
    device = await register_device(api, [{"slotIndex": 0, "iccid": "8901260123456789012"},
                                         {"slotIndex": 1, "state": "PinRequired"}])
    devices = (await api.get("/3rdparty/v1/devices")).json()
    assert [d["id"] for d in devices] == [device["id"]]
    sims = devices[0]["simCards"]
    assert [(s["slotIndex"], s["simNumber"], s["state"]) for s in sims] == [
        (0, 1, "Ready"), (1, 2, "PinRequired")]
    assert sims[0]["iccid"].endswith("9012") and "0123" not in sims[0]["iccid"]
    assert (await api.delete(f"/3rdparty/v1/devices/{device['id']}")).status_code == 204
    assert (await api.get("/3rdparty/v1/devices")).json() == []
    # the removed device's token no longer works
    gone = await api.get("/mobile/v1/message", auth=None,
                         headers={"Authorization": f"Bearer {device['token']}"})
    assert gone.status_code == 401


async def test_health_endpoints(api):
    for path in ["/health", "/health/live", "/health/ready", "/health/startup",
                 "/3rdparty/v1/health"]:
        response = await api.get(path, auth=None)
        assert response.status_code == 200
        body = response.json()
        assert body["status"] == "pass" and body["checks"]


async def test_openapi_docs(api):
    assert (await api.get("/docs", auth=None)).status_code == 200
    spec = (await api.get("/openapi.json", auth=None)).json()
    messages = spec["paths"]["/3rdparty/v1/messages"]
    assert {"get", "post"} <= set(messages)
    send = messages["post"]
    assert send["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/SendRequest")
    assert {p["name"] for p in send["parameters"]} == {"skipPhoneValidation",
                                                       "deviceActiveWithin"}
    send_schema = spec["components"]["schemas"]["SendRequest"]
    assert {"phoneNumbers", "simNumber", "textMessage"} <= set(send_schema["properties"])
    refs = set(re.findall(r'"#/components/schemas/([^"]+)"', json.dumps(spec)))
    assert refs <= set(spec["components"]["schemas"]), "every $ref resolves"
    # bad input is documented as it answers: 400 with {code, message}, never 422
    responses = [op["responses"] for ops in spec["paths"].values() for op in ops.values()]
    assert not [r for r in responses if "422" in r]
    assert "400" in spec["paths"]["/3rdparty/v1/messages"]["get"]["responses"]


async def test_health_reports_each_sim_with_advice(api):
    device = await register_device(api, [{"slotIndex": 0, "carrierName": "simgate Mobile"},
                                         {"slotIndex": 1, "state": "PinRequired"}])
    response = await api.get("/health")  # the detail needs credentials
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "warn"
    sim1 = body["checks"][f"devices:{device['id']}:sim:1"]
    sim2 = body["checks"][f"devices:{device['id']}:sim:2"]
    assert sim1["status"] == "pass" and "simgate Mobile" in sim1["description"]
    assert sim2["status"] == "warn" and "PIN" in sim2["description"]
    assert body["checks"][f"devices:{device['id']}:messages:failed"]["observedValue"] == 0


async def test_health_fails_when_a_device_has_no_ready_sim(api):
    device = await register_device(api, [{"slotIndex": 0, "state": "NoNetwork"}])
    response = await api.get("/health")
    assert response.status_code == 503
    assert response.json()["checks"][f"devices:{device['id']}:sims"]["status"] == "fail"
    assert (await api.get("/health/ready", auth=None)).status_code == 200


async def test_health_warns_but_does_not_fail_for_slots_of_unknown_state(api):
    # a dual-SIM phone under Termux:API: it cannot tell each slot's state, sends are tried
    device = await register_device(api, [{"slotIndex": 0, "state": "Unknown"},
                                         {"slotIndex": 1, "state": "Unknown"}])
    response = await api.get("/health")
    assert response.status_code == 200 and response.json()["status"] == "warn"
    checks = response.json()["checks"]
    assert checks[f"devices:{device['id']}:sim:1"]["status"] == "warn"
    assert f"devices:{device['id']}:sims" not in checks


async def test_lists_tell_the_total_count(api):
    await register_device(api)
    ids = [(await send(api)).json()["id"] for _ in range(3)]
    page = await api.get("/3rdparty/v1/messages", params={"limit": 2})
    assert page.headers["X-Total-Count"] == "3"
    assert [m["id"] for m in page.json()] == ids[::-1][:2]
    none = await api.get("/3rdparty/v1/messages", params={"state": "Failed"})
    assert none.headers["X-Total-Count"] == "0" and none.json() == []


async def test_singular_legacy_paths_still_work(api):
    device = await register_device(api)
    message_id = (await send(api)).json()["id"]
    assert [m["id"] for m in (await api.get("/3rdparty/v1/message")).json()] == [message_id]
    cancelled = await api.delete(f"/3rdparty/v1/message/{message_id}")
    assert cancelled.status_code == 200 and cancelled.json()["state"] == "Cancelling"
    assert [d["id"] for d in (await api.get("/3rdparty/v1/device")).json()] == [device["id"]]
    assert (await api.delete(f"/3rdparty/v1/device/{device['id']}")).status_code == 204
    assert (await api.get("/3rdparty/v1/devices")).json() == []


async def test_sim_number_for_a_device_that_told_no_slots_is_taken_at_its_word(api):
    """The original Android app registers without SIM slots: the seed's simNumber 2 must
    still be accepted (the device fails it if it has no such SIM)."""
    app = await api.post("/mobile/v1/device", json={"name": "android app"})
    assert app.status_code == 201
    response = await send(api)
    assert response.status_code == 202, response.text
    assert response.json()["deviceId"] == app.json()["id"]


async def test_client_ids_may_hold_any_text_but_a_slash(api):
    await register_device(api)
    for ident in ("order #42 (retry)", "café:1", "заказ-1"):
        sent = await send(api, {**SEED, "id": ident})
        assert sent.status_code == 202, sent.text
        assert sent.headers["location"].endswith(quote(ident, safe=""))
        fetched = await api.get(f"/3rdparty/v1/messages/{quote(ident)}")
        assert fetched.status_code == 200 and fetched.json()["id"] == ident
    for bad in ("a/b", "line\nbreak", ".", ".."):
        refused = await send(api, {**SEED, "id": bad})
        assert refused.status_code == 400 and "id" in refused.json()["message"]
