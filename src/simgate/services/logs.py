"""Structured logs of the server and the devices, per user, pruned by age."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session

from simgate.domain import settings as rules
from simgate.domain.states import ProcessState
from simgate.store.models import LogEntry, Message, Recipient, UserSettings, utcnow


class Priority(enum.StrEnum):
    DEBUG = "DEBUG"
    INFO = "INFO"
    WARN = "WARN"
    ERROR = "ERROR"


@dataclass(frozen=True)
class Entry:
    priority: Priority
    module: str
    message: str
    context: dict[str, Any] | None = None
    created_at: datetime | None = None


class Logs:
    def __init__(self, sessions: async_sessionmaker) -> None:
        self._sessions = sessions

    @staticmethod
    def add(session: AsyncSession | Session, user_id: int, device_id: str | None,
            entry: Entry) -> None:
        session.add(LogEntry(
            user_id=user_id, device_id=device_id, priority=entry.priority.value,
            module=entry.module, message=entry.message, context=entry.context,
            created_at=entry.created_at or utcnow(),
        ))

    async def write(self, user_id: int, device_id: str | None, entries: list[Entry]) -> None:
        async with self._sessions.begin() as session:
            for entry in entries:
                self.add(session, user_id, device_id, entry)

    async def list(self, user_id: int, since: datetime | None, until: datetime | None,
                   limit: int = 1000) -> list[LogEntry]:
        conditions = [LogEntry.user_id == user_id]
        if since:
            conditions.append(LogEntry.created_at >= since)
        if until:
            conditions.append(LogEntry.created_at <= until)
        async with self._sessions() as session:
            return list(await session.scalars(
                select(LogEntry).where(*conditions).order_by(LogEntry.id.desc()).limit(limit)
            ))

    async def prune(self) -> int:
        """Drop entries older than each user's logs.lifetime_days."""
        removed = 0
        default = rules.LogsSettings().lifetime_days
        async with self._sessions.begin() as session:
            custom = {
                row.user_id: (row.values.get("logs") or {}).get("lifetime_days", default)
                for row in await session.scalars(select(UserSettings))
            }
            result = await session.execute(delete(LogEntry).where(
                LogEntry.user_id.not_in(list(custom)) if custom else True,
                LogEntry.created_at < utcnow() - timedelta(days=default)))
            removed += result.rowcount or 0
            for user_id, days in custom.items():
                result = await session.execute(delete(LogEntry).where(
                    LogEntry.user_id == user_id,
                    LogEntry.created_at < utcnow() - timedelta(days=days)))
                removed += result.rowcount or 0
        return removed

    def on_message_change(self, session: Session, message: Message,
                                changed: list[tuple[Recipient, ProcessState]]) -> None:
        """Messages listener: every failed recipient is an ERROR entry with its reason."""
        for recipient, state in changed:
            if state is ProcessState.FAILED:
                self.add(session, message.user_id, message.device_id, Entry(
                    Priority.ERROR, "messages",
                    f"message {message.ext_id} to {recipient.phone_number} failed: "
                    f"{recipient.error}",
                    {"messageId": message.ext_id, "simNumber": message.sim_used,
                     "error": recipient.error},
                ))

    @staticmethod
    async def hash_numbers(session: AsyncSession, messages: list[Message],
                           hashed: dict[int, dict[str, str]]) -> None:
        """The entries of messages being hashed, with each message's numbers (`hashed`, by
        the message's pk: each clear number and its hash) replaced as in its recipients:
        an entry outlives the message's readable time by weeks. In the caller's
        transaction."""
        numbers = {(m.user_id, m.ext_id): hashed[m.pk] for m in messages if hashed.get(m.pk)}
        if not numbers:
            return
        entries = await session.scalars(select(LogEntry).where(
            LogEntry.module == "messages",
            LogEntry.user_id.in_({m.user_id for m in messages}),
            LogEntry.created_at >= min(m.created_at for m in messages)))
        for entry in entries:
            found = numbers.get((entry.user_id, (entry.context or {}).get("messageId")))
            if not found:
                continue
            text = entry.message
            for clear, digest in found.items():
                text = text.replace(clear, digest)
            entry.message = text
