"""Webhook retry spacing and send pacing, read off the rules themselves (no clock waits)."""

from __future__ import annotations

import asyncio
import math
import time

import pytest

from simgate.agent.pacing import BYPASS_PRIORITY, Pacer
from simgate.webhooks.dispatcher import retry_delay

BASE, CAP = 10.0, 6 * 3600.0


@pytest.mark.parametrize("attempts", [1, 2, 5, 11, 12, 14, 100])
def test_retry_delay_doubles_up_to_the_cap_within_its_jitter(attempts):
    nominal = min(BASE * 2 ** (attempts - 1), CAP)
    delays = [retry_delay(attempts, BASE, CAP) for _ in range(500)]
    assert all(0.8 * nominal <= d <= 1.2 * nominal for d in delays)
    # spread, not one value: receivers that failed together are tried apart
    assert max(delays) - min(delays) > 0.2 * nominal


def test_retry_delay_reaches_the_cap_and_stays_there():
    assert retry_delay(11, BASE, CAP) < 0.8 * CAP  # 10 s * 2**10 is still below 6 h
    for attempts in (13, 14, 50, 10_000):  # 10 s * 2**12 is past it
        assert 0.8 * CAP <= retry_delay(attempts, BASE, CAP) <= 1.2 * CAP


async def test_send_interval_spaces_sends_between_its_bounds():
    waits = set()
    for _ in range(200):
        pacer = Pacer()
        pacer.configure({"send_interval_min": 2, "send_interval_max": 5})
        before = time.monotonic()
        await pacer.wait(priority=0)  # a first send goes at once, stamped in [before, after]
        after = time.monotonic()
        pause = pacer.delay(after)  # the next one waits its drawn pause, less what passed
        assert 2 - (after - before) <= pause <= 5
        waits.add(math.ceil(pause))
    assert waits == {2, 3, 4, 5}  # drawn at each send, over the whole range


async def test_only_a_minimum_interval_is_that_many_seconds():
    pacer = Pacer()
    pacer.configure({"send_interval_min": 3})
    before = time.monotonic()
    await pacer.wait(priority=0)  # stamped between before and after
    after = time.monotonic()
    assert 3 - (after - before) <= pacer.delay(after) <= 3


async def test_high_priority_skips_the_interval():
    pacer = Pacer()
    pacer.configure({"send_interval_min": 60, "send_interval_max": 60})
    await pacer.wait(priority=0)
    assert pacer.delay(time.monotonic()) > 50
    await asyncio.wait_for(pacer.wait(priority=BYPASS_PRIORITY), timeout=5)


async def test_a_wait_cancelled_as_new_settings_wake_it_ends():
    """Cancelled in the very loop iteration that new settings wake it, a waiting send
    ends (on Python 3.11, asyncio.wait_for would drop that cancel and wait again)."""
    pacer = Pacer()
    pacer.configure({"limit_period": "PerMinute", "limit_value": 1})
    await pacer.wait(priority=0)  # the minute's one send: the next one waits
    waiting = asyncio.create_task(pacer.wait(priority=0))
    for _ in range(3):
        await asyncio.sleep(0)  # until it waits for the settings to change
    pacer.configure({"limit_period": "PerMinute", "limit_value": 1})  # the limit holds
    waiting.cancel()
    done, _ = await asyncio.wait({waiting}, timeout=5)
    assert done and waiting.cancelled()
