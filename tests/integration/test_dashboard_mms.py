"""The dashboard's inbox with downloaded MMS: pictures inline, other parts as downloads,
each only to its own user."""

from __future__ import annotations

from datetime import UTC, datetime

from simgate.services.devices import DeviceIdentity
from simgate.services.inbox import Incoming, Part
from tests.conftest import register_device
from tests.integration.test_dashboard import BOB, BOB_PASSWORD, log_in, web  # noqa: F401

PICTURE = b"\x89PNG\r\n\x1a\n picture"


async def _store_mms(gateway, api) -> str:
    device = await register_device(api)
    identity = await gateway.devices.identify(device["token"])
    assert isinstance(identity, DeviceIdentity)
    [message_id] = await gateway.inbox.store(identity, [Incoming(
        ident="mms:7", sender="+12025550123", received_at=datetime.now(UTC),
        text="a picture for you", type="MMS_DOWNLOADED", attachments=(
            Part(100, "image/png", "cat.png", len(PICTURE), PICTURE),
            Part(101, "image/svg+xml", "drawing.svg", 5, b"<svg>"),
        ))])
    return message_id


async def test_the_inbox_shows_pictures_inline_and_other_parts_as_downloads(
        web, gateway, api):  # noqa: F811
    message_id = await _store_mms(gateway, api)
    await log_in(web)
    page = (await web.get("/inbox/rows")).text
    assert "a picture for you" in page
    assert f'<img src="/inbox/{message_id}/parts/100"' in page
    assert f'<a href="/inbox/{message_id}/parts/101" download>drawing.svg</a>' in page
    picture = await web.get(f"/inbox/{message_id}/parts/100")
    assert picture.content == PICTURE and picture.headers["content-type"] == "image/png"
    assert picture.headers["content-disposition"].startswith("inline")
    drawing = await web.get(f"/inbox/{message_id}/parts/101")
    assert drawing.headers["content-disposition"].startswith("attachment")
    assert drawing.headers["x-content-type-options"] == "nosniff"


async def test_another_user_gets_no_part_of_the_inbox(web, gateway, api):  # noqa: F811
    message_id = await _store_mms(gateway, api)
    await gateway.users.add(BOB, BOB_PASSWORD)
    await log_in(web, BOB, BOB_PASSWORD)
    assert message_id not in (await web.get("/inbox/rows")).text
    assert (await web.get(f"/inbox/{message_id}/parts/100")).status_code == 404
