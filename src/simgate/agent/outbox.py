"""The agent's outbox: what the journal holds for the server, sent in order, in batches.

A batch the server cannot take now (unreachable, 401, 408, 429, 5xx) waits, whole, and
is sent again. One item the server refuses (a 4xx), or that cannot even be put on the
wire (text no JSON can carry), must neither stop the loop nor hold up the items behind
it: the refused batch is halved until the item is found, and that item alone is set
aside (kept in the journal with the reason, logged once, in the agent's health and in
`simgate doctor`) while the rest go on.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from simgate.agent.client import ServerError
from simgate.agent.journal import Journal
from simgate.domain.text import printable, unsendable

log = logging.getLogger("simgate.agent.outbox")

Sender = Callable[[list[dict[str, Any]]], Awaitable[Any]]
Batch = list[tuple[int, dict[str, Any]]]

# How long the outbox lets reports gather before it sends them: under load one PATCH
# then carries the sends of many milliseconds instead of a few (the server's cost of a
# PATCH is mostly the same for 1 message or 50).
LINGER = 0.05
BATCH = 500
RETRY_SECONDS = 1.0
# answers that say "not now" rather than "not this": the batch is sent again later
_LATER = {401, 408, 429}
REASON_CHARS = 1000
WHAT = {"states": "a state report", "incoming": "an incoming SMS", "logs": "a log entry"}


class _Later(Exception):
    """The server cannot take anything now: the batch waits for the next round."""


class Outbox:
    """Sends each kind of item (`senders`' keys, in that order) when `wake` is set."""

    def __init__(self, journal: Journal, senders: dict[str, Sender], wake: asyncio.Event,
                 *, linger: float = LINGER, batch: int = BATCH) -> None:
        self._journal = journal
        self._senders = senders
        self._wake = wake
        self._linger = linger
        self._batch = batch
        self.set_aside = 0  # items the journal keeps set aside (read at the start)
        self.last_reason: str | None = None

    async def run(self) -> None:
        self.set_aside = await self._journal.set_aside_count()
        while True:
            await self._wake.wait()
            await asyncio.sleep(self._linger)
            self._wake.clear()
            for kind in self._senders:
                await self.flush(kind)

    async def flush(self, kind: str) -> None:
        """Send what waits of `kind`. What comes while a batch is on the wire wakes the
        loop and waits for the next linger (else under load the loop sends a few reports
        a PATCH, back to back); only a full batch is followed at once."""
        full = True
        while full and (batch := await self._journal.unsent(kind, self._batch)):
            full = len(batch) == self._batch
            try:
                await self._deliver(kind, batch)
            except _Later as exc:
                log.warning("sending %s to the server failed, will retry: %s", kind, exc)
                await asyncio.sleep(RETRY_SECONDS)
                self._wake.set()
                return

    async def _deliver(self, kind: str, batch: Batch) -> None:
        """Send `batch`; a refused one is halved until the refused items are alone."""
        sendable: Batch = []
        for seq, body in batch:
            why = unsendable(body)
            if why is None:
                sendable.append((seq, body))
            else:
                await self._put_aside(kind, seq, body, why)
        if not sendable:
            return
        refusal = await self._send(kind, sendable)
        if refusal is None:
            await self._journal.drop(kind, sendable[-1][0])
        elif len(sendable) == 1:
            await self._put_aside(kind, *sendable[0], refusal)
        else:
            middle = len(sendable) // 2
            await self._deliver(kind, sendable[:middle])
            await self._deliver(kind, sendable[middle:])

    async def _send(self, kind: str, batch: Batch) -> str | None:
        """None when the server took the batch, else why it will never take it as it is;
        _Later when it cannot take anything now."""
        try:
            await self._senders[kind]([body for _, body in batch])
        except ServerError as exc:
            if exc.status is None or exc.status in _LATER or exc.status >= 500:
                raise _Later(str(exc)) from None
            return f"the server refused it: {printable(str(exc))}"
        except Exception as exc:  # noqa: BLE001 - whatever one item does, the loop goes on
            return f"it could not be sent: {type(exc).__name__}: {printable(str(exc))}"
        return None

    async def _put_aside(self, kind: str, seq: int, body: dict[str, Any], reason: str) -> None:
        await self.keep(kind, json.dumps(body), reason, seq)

    async def keep(self, kind: str, raw: str, reason: str, seq: int | None = None) -> None:
        """Set an item aside (out of the outbox at `seq`, if it is there); logged once,
        and told to the server's log unless it is a log entry itself."""
        reason = reason if len(reason) <= REASON_CHARS else reason[:REASON_CHARS] + "..."
        await self._journal.set_aside(kind, seq, raw, reason)
        self.set_aside += 1
        self.last_reason = reason
        what = WHAT.get(kind, kind)
        log.error("set aside %s: %s; it is kept in the journal (simgate doctor lists it)",
                  what, reason)
        if kind != "logs":
            await self._journal.queue("logs", [{
                "priority": "ERROR", "module": "outbox",
                "message": f"set aside {what} on the device: {reason}",
                "context": None, "createdAt": datetime.now(UTC).isoformat()}])
            self._wake.set()

    def checks(self) -> dict[str, dict[str, Any]]:
        """The outbox's health check: a warning while items are set aside."""
        if not self.set_aside:
            return {}
        last = f" (the last: {self.last_reason})" if self.last_reason else ""
        return {"outbox:set-aside": {
            "status": "warn",
            "description": f"{self.set_aside} item(s) the server could not take are set "
                           f"aside in the journal{last}; `simgate doctor` lists them",
            "observedValue": self.set_aside, "observedUnit": "items"}}
