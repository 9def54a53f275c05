"""Input a fuzzer or an attacker sends: always a 400 {code, message} saying what is wrong,
never a 500, never a long echo of the input."""

from __future__ import annotations

import base64

import httpx

from simgate.config import Settings
from simgate.server.app import create_app
from simgate.services.gateway import Gateway
from tests.conftest import PASSWORD, USER, register_device

TO = ["+19162255887"]


async def post_raw(api, path: str, body: str):
    return await api.post(path, content=body.encode(),
                          headers={"Content-Type": "application/json"})


def refused(response, *fragments: str) -> str:
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["code"] == 400
    for fragment in fragments:
        assert fragment in body["message"], body["message"]
    return body["message"]


NON_FINITE = ["NaN", "Infinity", "-Infinity", "1e400"]
BODIES_WITH_A_NUMBER = [
    ("/3rdparty/v1/messages", '{"message": "hi", "phoneNumbers": ["+19162255887"], "priority": %s}'),
    ("/3rdparty/v1/messages", '{"message": "hi", "phoneNumbers": ["+19162255887"], "ttl": %s}'),
    ("/3rdparty/v1/auth/token", '{"scopes": ["messages:send"], "ttl": %s}'),
    ("/3rdparty/v1/webhooks", '{"url": "https://example.org/h", "event": "sms:received", "id": %s}'),
    ("/mobile/v1/device", '{"name": "phone", "simCards": [{"slotIndex": 0, "signal": %s}]}'),
]


async def test_nan_and_infinity_anywhere_in_a_body_are_a_400(api):
    await register_device(api)
    for path, template in BODIES_WITH_A_NUMBER:
        for constant in NON_FINITE:
            refused(await post_raw(api, path, template % constant), constant.lstrip("-"))


async def test_integers_beyond_64_bits_in_a_body_are_a_400(api):
    await register_device(api)
    for path, template in BODIES_WITH_A_NUMBER:
        for number in ["99999999999999999999999", "-99999999999999999999999", "1" + "0" * 5000]:
            message = refused(await post_raw(api, path, template % number), "64 bits")
            assert len(message) < 200


async def test_absurd_ttl_and_activity_window_are_a_400_naming_the_limit(api):
    await register_device(api)
    response = await api.post("/3rdparty/v1/messages",
                              json={"message": "hi", "phoneNumbers": TO, "ttl": 10**13})
    refused(response, "ttl", "9223372036")
    for hours in ["10000000000000", "99999999999999999999999"]:
        response = await api.post("/3rdparty/v1/messages", params={"deviceActiveWithin": hours},
                                  json={"message": "hi", "phoneNumbers": TO})
        refused(response, "deviceActiveWithin", "2562047")
    # the largest of each still works
    response = await api.post("/3rdparty/v1/messages", params={"deviceActiveWithin": "2562047"},
                              json={"message": "hi", "phoneNumbers": TO, "ttl": 9223372036})
    assert response.status_code == 202, response.text


async def test_list_offsets_beyond_64_bits_are_a_400(api):
    for path in ["/3rdparty/v1/messages", "/3rdparty/v1/inbox"]:
        for offset in ["9223372036854775808", "99999999999999999999999"]:
            refused(await api.get(path, params={"offset": offset}), "offset")
        largest = await api.get(path, params={"offset": "9223372036854775807"})
        assert largest.status_code == 200 and largest.json() == []


async def test_device_fields_the_store_cannot_hold_are_a_400(api):
    response = await api.post("/mobile/v1/device", json={
        "name": "phone", "simCards": [{"slotIndex": 0, "signal": 2**62}]})
    refused(response, "signal")


async def test_webhook_host_with_a_label_over_63_characters_is_a_400(api):
    response = await api.post("/3rdparty/v1/webhooks", json={
        "url": f"https://{'a' * 64}.example.org/hook", "event": "sms:received"})
    refused(response, "63 characters")


STRICT_FIELDS = [
    ("simNumber", "2", "whole number"),
    ("simNumber", True, "whole number"),
    ("simNumber", 2.5, "whole number"),
    ("priority", "1", "whole number"),
    ("ttl", "60", "whole number"),
    ("withDeliveryReport", "yes", "true or false"),
    ("withDeliveryReport", 1, "true or false"),
    ("isEncrypted", "false", "true or false"),
    ("scheduleAt", "2099-01-01T00:00:00", "time zone"),
    ("validUntil", "2099-01-01T00:00:00", "time zone"),
    ("validUntil", 4102444800, "RFC 3339"),
    ("id", 12345, "string"),
    ("phoneNumbers", [19162255887], "string"),
    ("dataMessage", {"data": "AAEC", "port": "53739"}, "whole number"),
]


async def test_send_takes_each_field_only_as_the_original_does(api):
    """As Go's encoding/json reads the original's DTO: no "2" for 2, no "yes" for true, and
    times with their zone."""
    await register_device(api)
    for field, value, fragment in STRICT_FIELDS:
        body = {"message": "hi", "phoneNumbers": TO, field: value}
        if field == "dataMessage":
            del body["message"]
        response = await api.post("/3rdparty/v1/messages", json=body)
        refused(response, field, fragment)
    assert (await api.get("/3rdparty/v1/messages")).json() == []


async def test_send_takes_null_and_zoned_times_as_the_original_does(api):
    await register_device(api)
    response = await api.post("/3rdparty/v1/messages", json={
        "message": "hi", "phoneNumbers": TO, "isEncrypted": None, "priority": None,
        "withDeliveryReport": None, "simNumber": None, "ttl": None,
        "scheduleAt": "2099-01-01T08:30:00+03:00"})
    assert response.status_code == 202, response.text
    response = await api.post("/3rdparty/v1/messages", json={
        "textMessage": {"text": "hi"}, "phoneNumbers": TO, "validUntil": "2099-01-01T00:00:00Z",
        "withDeliveryReport": False, "priority": 100, "simNumber": 1})
    assert response.status_code == 202, response.text


NUL_BODIES = [
    ("/3rdparty/v1/messages", {"message": "h\x00i", "phoneNumbers": TO}, "message"),
    ("/3rdparty/v1/messages", {"textMessage": {"text": "\x00"}, "phoneNumbers": TO},
     "textMessage.text"),
    ("/3rdparty/v1/messages?skipPhoneValidation=true", {"message": "hi", "phoneNumbers":
                                                        ["+1916\x00"]}, "phoneNumbers[0]"),
    ("/mobile/v1/device", {"name": "pho\x00ne"}, "name"),
    ("/3rdparty/v1/webhooks", {"url": "https://example.org/\x00", "event": "sms:received"},
     "url"),
]


async def test_nul_characters_are_a_400_naming_the_field(api):
    await register_device(api)
    for path, body, field in NUL_BODIES:
        refused(await api.post(path, json=body), f"{field}: the NUL character")


async def test_error_answers_quote_input_briefly(api):
    await register_device(api)
    response = await api.post("/3rdparty/v1/messages",
                              json={"message": "x" * 100_000, "phoneNumbers": TO})
    refused(response, "message", "65535")
    assert len(response.content) < 1000
    response = await api.post("/3rdparty/v1/messages", json={
        "message": "y" * 60_000, "textMessage": {"text": "z" * 60_000}, "phoneNumbers": TO})
    refused(response, "exactly one")
    assert len(response.content) < 1000
    response = await api.post("/3rdparty/v1/messages", json={
        "message": "hi", "phoneNumbers": ["+1" + "9" * 500] * 100})
    assert response.status_code == 400 and len(response.content) < 5000


async def test_texts_over_255_parts_and_long_data_sms_are_refused_naming_the_limit(api):
    await register_device(api)
    for text in ["a" * (153 * 255 + 1), "ж" * (67 * 255 + 1), "😀" * 8600]:
        response = await api.post("/3rdparty/v1/messages",
                                  json={"message": text, "phoneNumbers": TO})
        refused(response, "SMS parts", "at most 255")
    response = await api.post("/3rdparty/v1/messages", json={
        "dataMessage": {"data": base64.b64encode(bytes(134)).decode(), "port": 53739},
        "phoneNumbers": TO})
    refused(response, "134 bytes", "at most 133")
    assert (await api.get("/3rdparty/v1/messages")).json() == []
    for body in [{"message": "a" * (153 * 255)}, {"message": "ж" * (67 * 255)},
                 {"dataMessage": {"data": base64.b64encode(bytes(133)).decode(), "port": 1}},
                 {"message": "x" * 60_000, "isEncrypted": True}]:  # ciphertext: not counted
        response = await api.post("/3rdparty/v1/messages", json={**body, "phoneNumbers": TO})
        assert response.status_code == 202, response.text


async def test_nul_in_a_url_is_a_400_on_every_store(store_url, tmp_path):
    """PostgreSQL cannot hold NUL in text: a lookup by such an id was a 500 there."""
    settings = Settings(data_dir=tmp_path, database_url=store_url, username=USER,
                        password=PASSWORD)
    gateway = await Gateway.open(settings)
    try:
        app = create_app(settings, gateway)
        app.state.gateway = gateway
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://simgate", auth=(USER, PASSWORD)) as api:
            for method, url in [("GET", "/3rdparty/v1/messages?deviceId=%00"),
                                ("GET", "/3rdparty/v1/messages/a%00b"),
                                ("GET", "/3rdparty/v1/inbox?deviceId=%00"),
                                ("GET", "/3rdparty/v1/webhooks?deviceId=%00"),
                                ("DELETE", "/3rdparty/v1/devices/%00")]:
                refused(await api.request(method, url), "NUL")
    finally:
        await gateway.close()


SURROGATE_BODIES = [  # (method, path, body with a lone surrogate, field named, as a device)
    ("POST", "/mobile/v1/device", '{"name": "%s"}', "name", False),
    ("POST", "/api/mobile/v1/device", '{"name": "%s"}', "name", False),
    ("PATCH", "/mobile/v1/device", '{"name": "%s"}', "name", True),
    ("POST", "/mobile/v1/inbox", '[{"message": "%s"}]', "[0].message", True),
    ("POST", "/mobile/v1/logs", '[{"message": "%s"}]', "[0].message", True),
    ("POST", "/3rdparty/v1/webhooks", '{"url": "https://example.org/%s", "event":'
     ' "sms:received"}', "url", False),
    ("POST", "/3rdparty/v1/messages", '{"message": "hi %s", "phoneNumbers": ["+19162255887"]}',
     "message", False),
    ("POST", "/api/3rdparty/v1/message", '{"textMessage": {"text": "%s"}, "phoneNumbers":'
     ' ["+19162255887"]}', "textMessage.text", False),
]
LONE_HALVES = ["\\ud800", "\\uDBFF", "\\udc00", "x\\udc00\\ud83d", "\\ud83d\\ud83d\\ude00"]


async def test_a_lone_surrogate_anywhere_in_a_body_is_a_400_naming_the_field(api):
    """Half a UTF-16 pair is no character: UTF-8 cannot carry it, to the store or back in
    the answer that quotes it."""
    device = await register_device(api)
    bearer = {"Authorization": f"Bearer {device['token']}"}
    for method, path, template, field, as_device in SURROGATE_BODIES:
        for half in LONE_HALVES:
            response = await api.request(
                method, path, content=(template % half).encode(),
                headers={"Content-Type": "application/json", **(bearer if as_device else {})})
            refused(response, f"{field}: \\u", "surrogate pair")
        # spelled as raw (invalid) UTF-8 bytes too, as a lenient decoder would take them
        raw = (template % "").encode().replace(b'""', b'"\xed\xa0\x80"', 1).replace(
            b'/"', b'/\xed\xa0\x80"').replace(b'hi ', b'hi \xed\xa0\x80')
        response = await api.request(
            method, path, content=raw,
            headers={"Content-Type": "application/json", **(bearer if as_device else {})})
        assert response.status_code == 400, (path, response.text)
    anonymous = await api.post("/mobile/v1/device", content=b'{"name": "\\ud800"}', auth=None,
                               headers={"Content-Type": "application/json"})
    refused(anonymous, "name: \\ud800")
    # a whole pair, escaped or not, and text near the surrogates (Hangul) are characters
    for text in ["\\ud83d\\ude00", "😀", "한국어 힣"]:
        response = await post_raw(api, "/3rdparty/v1/messages",
                                  f'{{"message": "{text}", "phoneNumbers": ["+19162255887"]}}')
        assert response.status_code == 202, response.text
    response = await post_raw(api, "/mobile/v1/device", '{"name": "힣 \\ud83d\\ude00"}')
    assert response.status_code == 201, response.text


async def test_numbers_sent_as_given_may_not_hold_control_characters(api):
    """skipPhoneValidation sends a number as given: never a line break or an escape, which
    would end up in a modem's AT command line, a log line or a CSV."""
    await register_device(api)
    for number in ["+1916\r\nAT+CMGD=1,4", "+1916\n", "\t+19162255887", "+1916\x1b[2J",
                   "+1916\x85", "+1916\u2028"]:
        for encrypted in (False, True):
            response = await api.post("/3rdparty/v1/messages",
                                      params={"skipPhoneValidation": "true"},
                                      json={"message": "hi", "phoneNumbers": ["+19162255887", number],
                                            "isEncrypted": encrypted})
            refused(response, "phoneNumbers[1]: control characters")
    assert (await api.get("/3rdparty/v1/messages")).json() == []
    response = await api.post("/3rdparty/v1/messages", params={"skipPhoneValidation": "true"},
                              json={"message": "hi", "phoneNumbers": ["12345", "*100#"]})
    assert response.status_code == 202, response.text
