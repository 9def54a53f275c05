"""MMS a phone downloads (the app's mms:downloaded, through its stand-in) against a real
`simgate serve`: stored with their parts, delivered once, served to the official client."""

from __future__ import annotations

import asyncio
import base64
import json
import os

import httpx
import pytest
from android_sms_gateway import client, domain, webhooks

from simgate.testing import SimgateProcess
from simgate.testing_android import Phone
from tests.conftest import wait_until
from tests.receiver import Receiver

USER, PASSWORD = "mms-owner", "mms-owner-secret"
SERVER_KEY = "server-key-for-mms-phones"
MESSAGE_CAP = 64 * 1024  # SIMGATE_MMS_MAX_BYTES of this server


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    process = SimgateProcess(["serve"], tmp_path_factory.mktemp("serve"), env={
        "SIMGATE_USERNAME": USER, "SIMGATE_PASSWORD": PASSWORD,
        "SIMGATE_ALLOW_PRIVATE_WEBHOOKS": "true", "SIMGATE_PRIVATE_TOKEN": SERVER_KEY,
        "SIMGATE_MMS_MAX_BYTES": str(MESSAGE_CAP)})
    process.start()
    yield process
    process.stop()


@pytest.fixture
async def user_api(server):
    async with httpx.AsyncClient(base_url=f"{server.url}/3rdparty/v1", auth=(USER, PASSWORD),
                                 timeout=30) as api:
        yield api


@pytest.fixture
async def phone(server, user_api):
    device = Phone(f"{server.url}/mobile/v1")
    await device.register(login=USER, password=PASSWORD)
    await device.sync_settings()  # the signing key: its posts are signed
    await device.sync_webhooks()
    yield device
    await device.close()


async def _deliveries(api: httpx.AsyncClient, event: str) -> list[dict] | None:
    found = [d for d in (await api.get("/webhooks/deliveries")).json() if d["event"] == event]
    return found if found and all(d["status"] == "delivered" for d in found) else None


async def test_a_downloaded_mms_reaches_the_webhook_once_and_the_client_gets_its_bytes(
        server, user_api, phone):
    assert any(h["event"] == "mms:downloaded" and "/mobile/v1/ingest/" in h["url"]
               for h in phone.hooks)
    receiver = await Receiver().start()
    picture = os.urandom(5000)
    try:
        hook = await user_api.post("/webhooks", json={"url": receiver.url,
                                                      "event": "mms:downloaded"})
        assert hook.status_code == 201, hook.text
        message_id = await phone.receive_mms(
            "+19162255887", [("image/png", "cat.png", picture), ("text/x-vcard", None, b"BEGIN")],
            body="look at this", subject="a cat", sim_number=1, mms_id=42)
        # the app fires it again (a retry, an export): the same MMS, stored once
        await phone.fire("mms:downloaded", {**_last_payload(phone), "messageId": message_id})
        assert [r.status_code for r in phone.answers] == [200]

        await wait_until(lambda: _deliveries(user_api, "mms:downloaded"), timeout=30)
        assert len(receiver.received) == 1
        payload = receiver.received[0].json["payload"]
        assert (payload["body"], payload["subject"], payload["sender"]) == (
            "look at this", "a cat", "+19162255887")
        parsed = webhooks.MmsDownloadedPayload.from_dict(payload)  # as the client reads it
        assert parsed.body == "look at this" and len(parsed.attachments) == 2
        parts = {p["partId"]: p for p in payload["attachments"]}
        assert base64.b64decode(parts[100]["data"]) == picture
        assert (parts[100]["contentType"], parts[100]["name"], parts[100]["size"]) == (
            "image/png", "cat.png", 5000)

        def official() -> tuple[list[domain.IncomingMessage], bytes]:
            with client.APIClient(USER, PASSWORD, base_url=f"{server.url}/3rdparty/v1") as api:
                listed = api.list_inbox_messages(inbox_filter=domain.InboxQueryFilter(
                    message_type="MMS_DOWNLOADED", include_attachments=True))
                return listed, api.download_attachment(listed[0].id, 100)

        listed, downloaded = await asyncio.to_thread(official)
        assert downloaded == picture
        assert len(listed) == 1 and listed[0].content_preview == "look at this"
        assert [(a.part_id, a.content_type, a.size) for a in listed[0].attachments] == [
            (100, "image/png", 5000), (101, "text/x-vcard", 5)]
        answer = await user_api.get(f"/inbox/{listed[0].id}/attachments/100")
        assert answer.headers["content-type"] == "image/png"
        assert answer.headers["content-disposition"].startswith("attachment")
        # without includeAttachments the inbox is as before
        plain = (await user_api.get("/inbox", params={"type": "MMS_DOWNLOADED"})).json()
        assert "attachments" not in plain[0]
    finally:
        await receiver.stop()


def _last_payload(phone: Phone) -> dict:
    """What the stand-in last fired as mms:downloaded, read back from its request."""
    return json.loads(phone.answers[-1].request.content)["payload"]


async def test_parts_over_the_cap_keep_their_metadata_and_the_logs_say_so(user_api, phone):
    big = os.urandom(MESSAGE_CAP + 1)
    await phone.receive_mms("+19162255887", [("video/mp4", "clip.mp4", big),
                                             ("image/jpeg", "small.jpg", b"\xff\xd8small")])
    assert [r.status_code for r in phone.answers] == [200]
    inbox = (await user_api.get("/inbox", params={"type": "MMS_DOWNLOADED",
                                                  "includeAttachments": "true"})).json()
    mine = inbox[0]
    assert [(a["partId"], a["size"]) for a in mine["attachments"]] == [
        (100, MESSAGE_CAP + 1), (101, 7)]
    refused = await user_api.get(f"/inbox/{mine['id']}/attachments/100")
    assert refused.status_code == 404 and "not kept" in refused.json()["message"]
    kept = await user_api.get(f"/inbox/{mine['id']}/attachments/101")
    assert kept.status_code == 200 and kept.content == b"\xff\xd8small"
    logs = (await user_api.get("/logs")).json()
    assert any("SIMGATE_MMS_MAX_BYTES" in entry["message"] for entry in logs)


async def test_a_part_of_another_users_message_is_not_found(server, user_api, phone):
    await phone.receive_mms("+19162255887", [("image/gif", "a.gif", b"GIF89a")])
    inbox = (await user_api.get("/inbox", params={"type": "MMS_DOWNLOADED"})).json()
    path = f"/inbox/{inbox[0]['id']}/attachments/100"
    assert (await user_api.get(path)).content == b"GIF89a"
    stranger = Phone(f"{server.url}/mobile/v1", private_token=SERVER_KEY)
    try:
        account = await stranger.register()  # a user of its own
        async with httpx.AsyncClient(base_url=f"{server.url}/3rdparty/v1", timeout=30,
                                     auth=(account["login"], account["password"])) as other:
            answer = await other.get(path)
        assert answer.status_code == 404, answer.text
    finally:
        await stranger.close()


async def test_an_mms_larger_than_the_body_limit_still_comes_in_at_the_ingest_hook(tmp_path):
    """A phone's ingest post carries its parts in base64: over SIMGATE_MAX_BODY_BYTES
    there, within SIMGATE_MMS_MAX_BYTES; every other route keeps the body limit."""
    process = SimgateProcess(["serve"], tmp_path, env={
        "SIMGATE_USERNAME": USER, "SIMGATE_PASSWORD": PASSWORD}).start()
    phone = Phone(f"{process.url}/mobile/v1")
    try:
        await phone.register(login=USER, password=PASSWORD)
        await phone.sync_settings()
        await phone.sync_webhooks()
        video = os.urandom(1_500_000)  # 2 MB in base64, over the 1 MiB body limit
        await phone.receive_mms("+19162255887", [("video/mp4", "clip.mp4", video)])
        assert [r.status_code for r in phone.answers] == [200]
        async with httpx.AsyncClient(base_url=f"{process.url}/3rdparty/v1", timeout=30,
                                     auth=(USER, PASSWORD)) as api:
            inbox = (await api.get("/inbox", params={"type": "MMS_DOWNLOADED"})).json()
            assert (await api.get(f"/inbox/{inbox[0]['id']}/attachments/100")).content == video
        # the same size declared elsewhere is refused before its body is sent
        reader, writer = await asyncio.open_connection("127.0.0.1", process.port)
        writer.write(b"POST /3rdparty/v1/webhooks HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Type: application/json\r\nContent-Length: 2000000\r\n\r\n")
        await writer.drain()
        answer = await reader.readline()
        writer.close()
        assert answer.startswith(b"HTTP/1.1 413"), answer
    finally:
        await phone.close()
        process.stop()
