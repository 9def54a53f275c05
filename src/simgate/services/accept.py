"""Group commit for accepted messages: many requests, one transaction.

Under load each request waiting for its own commit is the bottleneck; here requests
queue up while a batch commits, and the next batch takes them all at once. A request
still gets its own answer (its message, or the error that concerns it alone), and is
answered only after its message is durably stored.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from simgate.services.errors import Conflict, ServiceError
from simgate.store.db import Sessions
from simgate.store.models import Message, Recipient

MAX_BATCH = 256


@dataclass(slots=True)
class AcceptedRecipient:
    position: int
    phone_number: str
    state: str
    error: str | None = None
    message_pk: int | None = None


@dataclass(slots=True)
class AcceptedMessage:
    """A message as the group commit stores it: the columns of `Message`, as plain data.

    Mapped instances cost more to build than the INSERT that stores them; this carries
    the same attributes to the answer and to the device push.
    """

    ext_id: str
    user_id: int
    device_id: str
    state: str
    text: str | None
    data: str | None
    port: int | None
    is_encrypted: bool
    with_delivery_report: bool
    priority: int
    sim_number: int | None
    valid_until: datetime | None
    schedule_at: datetime | None
    states: dict[str, str]
    created_at: datetime
    updated_at: datetime
    recipients: list[AcceptedRecipient]
    is_hashed: bool = False
    sim_used: int | None = None
    attempts: list[dict[str, Any]] | None = None
    reason: str | None = None  # why it waits, once its device says
    device_pinned: bool = False  # the caller chose the device: no failover to another
    handout_id: str | None = None  # see Message.handout_id
    phone_chooses_sim: bool = False
    handed_at: datetime | None = None


Build = Callable[[AsyncSession, "AcceptJob"], Awaitable[AcceptedMessage]]


@dataclass
class AcceptJob:
    """One send waiting for its batch: what to build, and where its caller waits."""

    user_id: int
    payload: object
    active_within_hours: int
    ext_id: str
    client_id: bool  # chosen by the client, so it may clash; generated ids do not
    future: asyncio.Future[AcceptedMessage]


def _fail(batch: list[AcceptJob], exc: Exception) -> None:
    for request in batch:
        if not request.future.done():
            request.future.set_exception(exc)


def _conflict(ext_id: str) -> Conflict:
    return Conflict(f"message with the same ID already exists: {ext_id!r} is used;"
                    " choose another id")


class AcceptBatcher:
    def __init__(self, sessions: Sessions, build: Build,
                 committed: Callable[[list[AcceptedMessage]], None]) -> None:
        self._sessions = sessions
        self._build = build
        self._committed = committed
        self._queue: asyncio.Queue[AcceptJob] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None

    async def submit(self, user_id: int, payload: object, ext_id: str,
                     active_within_hours: int, client_id: bool = True) -> AcceptedMessage:
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._run())
        future: asyncio.Future[AcceptedMessage] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(AcceptJob(user_id, payload, active_within_hours, ext_id,
                                         client_id, future))
        return await future

    async def close(self) -> None:
        if self._worker:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < MAX_BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                await self._store(batch)
            except IntegrityError:
                for request in batch:  # a race on an id: settle them one by one
                    await self._settle(request)
            except Exception as exc:  # noqa: BLE001 - the store failed: every caller hears it
                _fail(batch, exc)

    async def _settle(self, request: AcceptJob) -> None:
        """Store one request; whatever fails it is its caller's answer (the worker goes
        on: callers after it left without an answer would wait forever)."""
        try:
            await self._store([request])
        except Exception as exc:  # noqa: BLE001
            _fail([request], exc)

    async def _store(self, batch: list[AcceptJob]) -> None:
        """Check and build the batch with reads, then store it in one write transaction.

        An id taken meanwhile by another process fails the write (IntegrityError), and the
        batch is then stored request by request. So refusals (a bad SIM, a full queue) are
        answered only once the write holds: built again alone, a request may fare otherwise.
        """
        stored: list[tuple[AcceptJob, AcceptedMessage]] = []
        refused: list[tuple[AcceptJob, ServiceError]] = []
        async with self._sessions() as session:
            taken = await self._taken_ids(session, batch)
            for request in batch:
                if request.future.done():
                    continue
                key = (request.user_id, request.ext_id)
                if key in taken:
                    request.future.set_exception(_conflict(request.ext_id))
                    continue
                try:
                    message = await self._build(session, request)
                except ServiceError as exc:
                    refused.append((request, exc))
                    continue
                taken.add(key)
                stored.append((request, message))
        messages = [m for _, m in stored]
        if messages:
            try:
                await self._sessions.write(lambda connection: _insert(connection, messages))
            except IntegrityError:
                if len(batch) == 1 and not batch[0].future.done():
                    batch[0].future.set_exception(_conflict(batch[0].ext_id))
                    return
                raise
        for request, message in stored:
            request.future.set_result(message)
        for request, exc in refused:
            request.future.set_exception(exc)
        self._committed(messages)

    @staticmethod
    async def _taken_ids(session: AsyncSession, batch: list[AcceptJob]) -> set[tuple[int, str]]:
        taken: set[tuple[int, str]] = set()
        for user_id in {r.user_id for r in batch if r.client_id}:
            ids = [r.ext_id for r in batch if r.user_id == user_id and r.client_id]
            rows = await session.execute(
                select(Message.ext_id).where(Message.user_id == user_id, Message.ext_id.in_(ids))
            )
            taken.update((user_id, ext_id) for (ext_id,) in rows)
        return taken


_MESSAGE_COLUMNS = [c.key for c in Message.__table__.columns if c.key != "pk"]
_RECIPIENT_COLUMNS = [c.key for c in Recipient.__table__.columns]


def _insert(connection: Connection, messages: list[AcceptedMessage]) -> None:
    """Multi-row INSERTs of Core. The message keys come back by RETURNING, matched to the
    messages by (user, id): asking for them in parameter order instead would make SQLite
    insert row by row, ten times slower."""
    table = Message.__table__
    keys = connection.execute(
        insert(table).returning(table.c.pk, table.c.user_id, table.c.ext_id),
        [{k: getattr(m, k) for k in _MESSAGE_COLUMNS} for m in messages],
    )
    by_key = {(m.user_id, m.ext_id): m for m in messages}
    for pk, user_id, ext_id in keys:
        for recipient in by_key[(user_id, ext_id)].recipients:
            recipient.message_pk = pk
    connection.execute(insert(Recipient.__table__), [
        {k: getattr(r, k) for k in _RECIPIENT_COLUMNS}
        for m in messages for r in m.recipients
    ])
