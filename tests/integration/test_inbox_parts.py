"""The size caps of downloaded MMS parts: per message and per user."""

from __future__ import annotations

from datetime import UTC, datetime

from simgate.services.inbox import Caps, Incoming, Part
from tests.conftest import register_device


async def test_parts_past_the_users_cap_keep_only_their_metadata(gateway, api):
    gateway.inbox.caps = Caps(per_message=1000, per_user=1500)
    device = await gateway.devices.identify((await register_device(api))["token"])
    stored = []
    for n in range(2):
        [message_id] = await gateway.inbox.store(device, [Incoming(
            ident=f"mms:{n}", sender="+12025550123", received_at=datetime.now(UTC),
            type="MMS_DOWNLOADED", attachments=(Part(1, "image/png", None, 1000, b"x" * 1000),))])
        stored.append(message_id)
    first, second = [await gateway.inbox.part(device.user_id, m, 1) for m in stored]
    assert first.content == b"x" * 1000
    assert second.content is None and second.size == 1000  # 2000 bytes would pass 1500
    listed = (await api.get("/3rdparty/v1/inbox",
                            params={"includeAttachments": "true"})).json()
    assert {m["id"]: m["attachments"][0]["size"] for m in listed} == {
        stored[0]: 1000, stored[1]: 1000}
    logs = (await api.get("/3rdparty/v1/logs")).json()
    assert any(stored[1] in entry["message"] for entry in logs)
