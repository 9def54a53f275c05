"""FCM through the upstream relay, against a local stand-in of sms-gate.app's endpoint."""

from __future__ import annotations

import httpx

from simgate.testing import SimgateProcess
from simgate.testing_android import Listening, Phone
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


async def test_with_default_settings_a_phone_with_an_fcm_token_is_pushed_within_seconds(
        tmp_path):
    upstream = await Receiver(path="/upstream/v1/push", status=202).start()
    # the product's own default for the relay (the tests' "off" removed); only its URL
    # points at the local stand-in of the upstream
    server = SimgateProcess(["serve"], tmp_path / "default", env={
        "SIMGATE_USERNAME": USER, "SIMGATE_PASSWORD": PASSWORD, "SIMGATE_PUSH_RELAY": None,
        "SIMGATE_PUSH_RELAY_URL": f"http://127.0.0.1:{upstream.port}/upstream/v1"}).start()
    phone = Phone(f"{server.url}/mobile/v1")
    try:
        assert "push relay on" in server.output()
        assert "never text or numbers" in server.output()
        await phone.register(login=USER, password=PASSWORD, push_token="fcm-token-default")
        # on AUTO (the app's default) with a token, it opens no stream: FCM is its push
        assert (await phone.sync_settings()).get("gateway", {}).get(
            "notification_channel") in (None, "AUTO")
        await send_to(server, phone)
        await wait_until(lambda: upstream.received, timeout=20)
        assert upstream.received[0].json == [
            {"token": "fcm-token-default", "event": "MessageEnqueued", "data": {}}]
        assert "wake up" not in upstream.received[0].body.decode()
    finally:
        await phone.close()
        server.stop()
        await upstream.stop()


async def test_with_the_relay_off_a_phone_with_an_fcm_token_is_told_to_keep_a_stream(
        tmp_path):
    upstream = await Receiver(path="/upstream/v1/push", status=202).start()
    server = start(tmp_path, "off", upstream, relay=False)
    phone = Phone(f"{server.url}/mobile/v1")
    without_token = Phone(f"{server.url}/mobile/v1")
    try:
        assert "push relay on" not in server.output()
        await phone.register(login=USER, password=PASSWORD, push_token="fcm-token-off")
        await without_token.register(login=USER, password=PASSWORD)
        settings = await phone.sync_settings()  # the app imports it
        assert settings["gateway"]["notification_channel"] == "SSE_ONLY"
        assert "notification_channel" not in (
            (await without_token.sync_settings()).get("gateway") or {})
        async with httpx.AsyncClient(base_url=server.url, auth=(USER, PASSWORD)) as api:
            checks = (await api.get("/health")).json()["checks"]
            push = checks[f"devices:{phone.device_id}:push"]
            assert push["status"] == "warn" and "restart the app" in push["description"]
            assert f"devices:{without_token.device_id}:push" not in checks
            async with Listening(phone):  # restarted, the app opens its stream
                checks = (await api.get("/health")).json()["checks"]
                assert f"devices:{phone.device_id}:push" not in checks
        assert upstream.received == []
    finally:
        await phone.close()
        await without_token.close()
        server.stop()
        await upstream.stop()
