"""The gateway's background loops end when cancelled, even in the very loop iteration
that wakes them: a loop that outlived its cancel would hang the gateway's close (on
Python 3.11, asyncio.wait_for drops a cancel that comes as its event is set)."""

from __future__ import annotations

import asyncio

from simgate.services.schedule import DueTimer
from tests.conftest import wait_until


async def test_the_due_timer_ends_when_cancelled_as_it_is_woken(gateway):
    due = DueTimer(gateway.sessions, notify=lambda device_id: None)
    running = asyncio.create_task(due.run())
    # until it has looked at the schedule and waits for a change (the event's waiters)
    await wait_until(lambda: due._changed._waiters)
    due.wake()
    running.cancel()
    done, _ = await asyncio.wait({running}, timeout=5)
    assert done and running.cancelled()


async def test_the_webhook_dispatcher_ends_when_cancelled_as_it_is_woken(gateway):
    """The gateway's own dispatcher, as its close cancels it."""
    dispatcher = gateway.dispatcher
    running = next(t for t in gateway._background
                   if t.get_coro().__qualname__ == "Dispatcher.run")
    await wait_until(lambda: dispatcher._wake._waiters)
    dispatcher.wake()
    running.cancel()
    done, _ = await asyncio.wait({running}, timeout=5)
    assert done and running.cancelled()
