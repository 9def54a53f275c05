"""The bus across worker processes: two buses joined over real local sockets."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from simgate.bus.local import LocalBus
from simgate.bus.peers import PeerLink
from simgate.services.accept import AcceptedMessage, AcceptedRecipient
from tests.conftest import wait_until


def accepted(ext_id: str) -> AcceptedMessage:
    now = datetime.now(UTC)
    return AcceptedMessage(
        ext_id=ext_id, user_id=1, device_id="dev-1", state="Pending", text="hello", data=None,
        port=None, is_encrypted=False, with_delivery_report=True, priority=0, sim_number=2,
        valid_until=None, schedule_at=None, states={"Pending": now.isoformat()},
        created_at=now, updated_at=now,
        recipients=[AcceptedRecipient(0, "+19162255887", "Pending")],
    )


async def joined(tmp_path, count: int = 2) -> list[tuple[LocalBus, PeerLink]]:
    pairs = []
    for index in range(count):
        bus = LocalBus()
        link = PeerLink(bus, tmp_path, index, count)
        await link.start()
        pairs.append((bus, link))
    return pairs


async def test_a_push_reaches_the_stream_held_by_a_sibling(tmp_path):
    (first, *_), (second, *_), (third, *_) = pairs = await joined(tmp_path, 3)
    try:
        async with second.subscribe("dev-1") as stream, third.subscribe("dev-2") as other:
            first.notify("dev-1", "MessageEnqueued", {"messages": [accepted("m-1")]})
            event = await asyncio.wait_for(stream.get(), 5)
            assert event["event"] == "MessageEnqueued"
            assert [m.ext_id for m in event["data"]["messages"]] == ["m-1"]
            assert event["data"]["messages"][0].recipients[0].phone_number == "+19162255887"
            await asyncio.sleep(0.2)
            assert other.empty()
    finally:
        for _, link in pairs:
            await link.close()


async def test_signals_reach_every_worker_once(tmp_path):
    pairs = await joined(tmp_path, 3)
    heard: list[tuple[int, tuple]] = []
    for index, (bus, _) in enumerate(pairs):
        bus.on("device-changed", lambda *args, index=index: heard.append((index, args)))
    try:
        pairs[1][0].signal("device-changed", 7, "dev-1")
        await wait_until(lambda: len(heard) >= 3, timeout=5)
        await asyncio.sleep(0.2)  # nothing echoes back
        assert sorted(heard) == [(0, (7, "dev-1")), (1, (7, "dev-1")), (2, (7, "dev-1"))]
    finally:
        for _, link in pairs:
            await link.close()


async def test_a_restarted_sibling_is_reached_again(tmp_path):
    (first, first_link), (second, second_link) = await joined(tmp_path)
    heard: list[str] = []
    second.on("ping", heard.append)
    first.signal("ping", "before")
    await wait_until(lambda: heard == ["before"], timeout=5)
    await second_link.close()  # the sibling goes away...

    again = LocalBus()  # ...and its replacement listens at the same place
    again_link = PeerLink(again, tmp_path, 1, 2)
    await again_link.start()
    heard_again: list[str] = []
    again.on("ping", heard_again.append)
    try:
        # hints sent while the sibling was away may be lost; the link reconnects by itself
        async def reached() -> bool:
            first.signal("ping", "after")
            await asyncio.sleep(0.05)
            return "after" in heard_again

        assert await wait_until(reached, timeout=5)
        assert heard == ["before"]
    finally:
        await first_link.close()
        await again_link.close()
