"""The push relay's contract with the upstream service: batches, retries, rest, rate."""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest

from simgate.services.relay import PushRelay
from tests.conftest import register_device, wait_until
from tests.receiver import Receiver


@pytest.fixture
async def upstream():
    receiver = await Receiver(path="/upstream/v1/push", status=202).start()
    arrivals: list[float] = []
    receiver.on_request = lambda _: arrivals.append(time.monotonic())
    receiver.arrivals = arrivals
    yield receiver
    await receiver.stop()


@contextlib.asynccontextmanager
async def running(relay: PushRelay):
    task = asyncio.create_task(relay.run())
    try:
        yield relay
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await relay.close()


async def phone(api, token: str | None) -> str:
    device = await register_device(api, sims=[])
    if token:
        await api.patch("/mobile/v1/device", auth=None, json={"pushToken": token},
                        headers={"Authorization": f"Bearer {device['token']}"})
    return device["id"]


async def test_a_burst_is_one_request_one_item_per_device_and_event(api, gateway, upstream):
    first, second, silent = (await phone(api, "tok-1"), await phone(api, "tok-2"),
                             await phone(api, None))
    relay = PushRelay(gateway.sessions, f"http://127.0.0.1:{upstream.port}/upstream/v1",
                      debounce=0.2)
    async with running(relay):
        for _ in range(3):
            relay.enqueue(first, "MessageEnqueued", {})
        relay.enqueue(first, "MessageCancelled", {"messageId": "m-1"})
        relay.enqueue(second, "MessageEnqueued", {})
        relay.enqueue(silent, "MessageEnqueued", {})  # no push token: nothing to send
        await wait_until(lambda: upstream.received, timeout=10)
    assert len(upstream.received) == 1
    assert sorted(upstream.received[0].json, key=lambda i: (i["token"], i["event"])) == [
        {"token": "tok-1", "event": "MessageCancelled", "data": {"messageId": "m-1"}},
        {"token": "tok-1", "event": "MessageEnqueued", "data": {}},
        {"token": "tok-2", "event": "MessageEnqueued", "data": {}}]


async def test_a_failing_token_is_tried_three_times_then_rested(api, gateway, upstream):
    failing, other = await phone(api, "tok-bad"), await phone(api, "tok-good")
    upstream.status = 500
    relay = PushRelay(gateway.sessions, f"http://127.0.0.1:{upstream.port}/upstream/v1",
                      debounce=0.05)
    async with running(relay):
        relay.enqueue(failing, "MessageEnqueued", {})
        await wait_until(lambda: upstream.requests_finished >= 3, timeout=10)
        upstream.status = 202
        relay.enqueue(failing, "MessageEnqueued", {})  # rested: left out
        relay.enqueue(other, "MessageEnqueued", {})
        await wait_until(lambda: upstream.received, timeout=10)
    assert upstream.requests_finished == 4
    assert upstream.received[0].json == [{"token": "tok-good", "event": "MessageEnqueued",
                                          "data": {}}]


async def test_no_more_requests_than_the_upstream_allows_in_its_window(api, gateway, upstream):
    device = await phone(api, "tok-1")
    url = f"http://127.0.0.1:{upstream.port}/upstream/v1"
    # two a minute: the second goes at once, long before the minute is over
    relay = PushRelay(gateway.sessions, url, debounce=0.05, per_minute=2, window=60.0)
    async with running(relay):
        for count in (1, 2):
            relay.enqueue(device, "MessageEnqueued", {})
            await wait_until(lambda count=count: len(upstream.received) >= count, timeout=10)
    # two a second: the third waits for the first send to leave its window (a lower
    # bound, which a loaded machine only makes longer)
    relay = PushRelay(gateway.sessions, url, debounce=0.05, per_minute=2, window=1.0)
    async with running(relay):
        first_enqueued = time.monotonic()  # the first send leaves no earlier than this
        for count in (3, 4, 5):
            relay.enqueue(device, "MessageEnqueued", {})
            await wait_until(lambda count=count: len(upstream.received) >= count, timeout=10)
    assert upstream.arrivals[4] - first_enqueued >= 1.0


async def test_an_event_that_cannot_be_encoded_is_left_out_and_the_others_go(api, gateway,
                                                                              upstream):
    first, second = await phone(api, "tok-1"), await phone(api, "tok-2")
    relay = PushRelay(gateway.sessions, f"http://127.0.0.1:{upstream.port}/upstream/v1",
                      debounce=0.05)
    async with running(relay):
        relay.enqueue(first, "MessageCancelled", {"messageId": "half \ud800 pair"})
        relay.enqueue(second, "MessageEnqueued", {})
        await wait_until(lambda: upstream.received, timeout=10)
    assert upstream.received[0].json == [{"token": "tok-2", "event": "MessageEnqueued",
                                          "data": {}}]
