"""FCM through the upstream relay, against a local stand-in of sms-gate.app's endpoint."""

from __future__ import annotations

import httpx

from simgate.testing import SimgateProcess
from simgate.testing_android import Phone
from tests.conftest import wait_until
from tests.receiver import Receiver

USER, PASSWORD = "relay-owner", "relay-owner-secret"


def start(tmp_path, name: str, upstream: Receiver, relay: bool) -> SimgateProcess:
    return SimgateProcess(["serve"], tmp_path / name, env={
        "SIMGATE_USERNAME": USER, "SIMGATE_PASSWORD": PASSWORD,
        "SIMGATE_PUSH_RELAY": "true" if relay else "false",
        "SIMGATE_PUSH_RELAY_URL": f"http://127.0.0.1:{upstream.port}/upstream/v1",
        "SIMGATE_PUSH_RELAY_DEBOUNCE": "0.5"}).start()


async def send_to(server: SimgateProcess, phone: Phone) -> None:
    async with httpx.AsyncClient(base_url=f"{server.url}/3rdparty/v1",
                                 auth=(USER, PASSWORD)) as api:
        sent = await api.post("/messages", json={
            "textMessage": {"text": "wake up"}, "phoneNumbers": ["+19162255887"],
            "deviceId": phone.device_id})
        assert sent.status_code == 202, sent.text


async def test_with_the_relay_on_a_new_message_is_one_post_with_the_push_token(tmp_path):
    upstream = await Receiver(path="/upstream/v1/push", status=202).start()
    without = start(tmp_path, "off", upstream, relay=False)
    with_relay = start(tmp_path, "on", upstream, relay=True)
    phones = []
    try:
        for server, token in ((without, "fcm-token-off"), (with_relay, "fcm-token-on")):
            phone = Phone(f"{server.url}/mobile/v1")
            phones.append(phone)
            await phone.register(login=USER, password=PASSWORD, push_token=token)
        # the server without the relay gets its message first: were it to post, it would
        # be there before the one with the relay
        await send_to(without, phones[0])
        await send_to(with_relay, phones[1])
        await wait_until(lambda: upstream.received, timeout=30)
        assert [r.json for r in upstream.received] == [
            [{"token": "fcm-token-on", "event": "MessageEnqueued", "data": {}}]]
        assert upstream.received[0].headers["content-type"] == "application/json"
    finally:
        for phone in phones:
            await phone.close()
        without.stop()
        with_relay.stop()
        await upstream.stop()
