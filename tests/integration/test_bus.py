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


async def pushed(bus: LocalBus, device_id: str, stream: asyncio.Queue,
                 ext_id: str = "m-1") -> dict:
    """Push until the stream gets it: until the sibling's news of the stream has arrived."""

    async def arrived() -> dict | None:
        bus.notify(device_id, "MessageEnqueued", {"messages": [accepted(ext_id)]})
        await asyncio.sleep(0.05)
        return None if stream.empty() else stream.get_nowait()

    return await wait_until(arrived, timeout=5)


async def test_a_push_reaches_the_stream_held_by_a_sibling(tmp_path):
    (first, *_), (second, *_), (third, *_) = pairs = await joined(tmp_path, 3)
    try:
        async with second.subscribe("dev-1") as stream, third.subscribe("dev-2") as other:
            event = await pushed(first, "dev-1", stream)
            assert event["event"] == "MessageEnqueued"
            assert [m.ext_id for m in event["data"]["messages"]] == ["m-1"]
            assert event["data"]["messages"][0].recipients[0].phone_number == "+19162255887"
            # dev-2's own push travels the same link after any stray one for dev-1
            marker = await pushed(first, "dev-2", other, ext_id="m-other")
            assert [m.ext_id for m in marker["data"]["messages"]] == ["m-other"]
        # the stream closed: once that news is home, pushes for dev-1 stay home
        async with first.subscribe("dev-1") as home:
            event = await pushed(first, "dev-1", home, ext_id="m-2")
            assert [m.ext_id for m in event["data"]["messages"]] == ["m-2"]
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
        await wait_until(lambda: len(heard) >= 3, timeout=10)
        # then each worker signals once more: on every link that news comes after any echo
        # of the first signal, so once all of it is heard, an echo would have been too
        for index, (bus, _) in enumerate(pairs):
            bus.signal("device-changed", 8, f"marker-{index}")
        await wait_until(lambda: len(heard) >= 12, timeout=10)
        assert sorted(h for h in heard if h[1][0] == 7) == [
            (0, (7, "dev-1")), (1, (7, "dev-1")), (2, (7, "dev-1"))]
        assert len(heard) == 12
    finally:
        for _, link in pairs:
            await link.close()


async def test_a_restarted_sibling_is_reached_and_learns_where_streams_are(tmp_path):
    (first, first_link), (second, second_link) = await joined(tmp_path)
    heard: list[str] = []
    first.on("ping", heard.append)
    async with first.subscribe("dev-1") as stream:
        await pushed(second, "dev-1", stream)
        await second_link.close()  # the sibling goes away...

        again = LocalBus()  # ...and its replacement listens at the same place
        again_link = PeerLink(again, tmp_path, 1, 2)
        await again_link.start()
        try:
            # it was not there when the stream opened: it asks at its start
            event = await pushed(again, "dev-1", stream)
            assert event["event"] == "MessageEnqueued"
            heard_again: list[str] = []
            again.on("ping", heard_again.append)

            # hints sent while a sibling was away may be lost; the link reconnects by itself
            async def reached() -> bool:
                first.signal("ping", "hello again")
                await asyncio.sleep(0.05)
                return "hello again" in heard_again

            assert await wait_until(reached, timeout=5)
        finally:
            await first_link.close()
            await again_link.close()
