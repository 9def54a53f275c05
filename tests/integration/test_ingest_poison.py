"""The app's events at its ingest hook: one the store cannot hold is a 400, which the app
takes as final, never a 500 it would post again and again; the next event goes in."""

from __future__ import annotations

import json

import pytest

from simgate.webhooks.signing import sign
from tests.conftest import register_device


def bearer(device: dict) -> dict:
    return {"auth": None, "headers": {"Authorization": f"Bearer {device['token']}",
                                      "User-Agent": "me.capcom.smsgateway/1.40.0"}}


def received(message_id: str, text: str) -> dict:
    return {"id": f"evt-{message_id}", "event": "sms:received", "payload": {
        "messageId": message_id, "sender": "+79990001234", "message": text,
        "receivedAt": "2026-11-27T13:45:12.345+03:00"}}


@pytest.mark.parametrize(("content", "fragment"), [
    (json.dumps(received("m-nul", "a \u0000 b")).encode(), "NUL"),
    (json.dumps(received("m-nan", "x")).replace('"x"', "NaN").encode(), "NaN"),
    (b'{"id": "evt", "event": ', "not valid JSON"),
    (b"\xff\xfe not text", "not valid JSON"),
])
async def test_an_event_the_store_cannot_hold_is_a_400_and_the_next_one_goes_in(
        api, content, fragment):
    device = await register_device(api)
    hooks = (await api.get("/mobile/v1/webhooks", **bearer(device))).json()
    url = hooks[0]["url"].removeprefix("http://simgate")
    key = (await api.get("/mobile/v1/settings", **bearer(device))).json()["webhooks"][
        "signing_key"]

    def post(body: bytes):
        return api.post(url, auth=None, content=body,
                        headers={"Content-Type": "application/json", **sign(key, body)})

    refused = await post(content)
    assert refused.status_code == 400, refused.text
    assert fragment in refused.json()["message"]
    taken = await post(json.dumps(received("m-ok", "fine")).encode())
    assert taken.status_code == 200, taken.text
    inbox = (await api.get("/3rdparty/v1/inbox")).json()
    assert [m["contentPreview"] for m in inbox] == ["fine"]
