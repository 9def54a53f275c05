"""Database engine and session factory; applies migrations at start."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import ConnectionPoolEntry

MIGRATIONS = Path(__file__).with_name("migrations")


def _sqlite_pragmas(dbapi_connection: object, _record: ConnectionPoolEntry) -> None:
    """WAL for concurrent readers, NORMAL sync (durable at checkpoints and in WAL)."""
    cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def _ensure_sqlite_dir(url: str) -> None:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)


def create_engine(url: str) -> AsyncEngine:
    if url.startswith("sqlite"):
        # WAL: readers run beside the one writer; writers queue on busy_timeout.
        engine = create_async_engine(url, pool_size=4, max_overflow=0)
        sync_engine: Engine = engine.sync_engine
        event.listen(sync_engine, "connect", _sqlite_pragmas)
        return engine
    return create_async_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True)


class _SerialWrites(async_sessionmaker):
    """SQLite has one writer: queue write transactions here instead of in its busy handler.

    SQLite's busy handler sleeps in growing steps when a second writer waits, which leaves
    the process idle under load; an asyncio lock hands the write lock over at once.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._write_lock = asyncio.Lock()

    @asynccontextmanager
    async def begin(self) -> AsyncIterator[AsyncSession]:  # type: ignore[override]
        async with self._write_lock, super().begin() as session:
            yield session


def session_factory(engine: AsyncEngine) -> async_sessionmaker:
    if engine.dialect.name == "sqlite":
        return _SerialWrites(engine, expire_on_commit=False)
    return async_sessionmaker(engine, expire_on_commit=False)


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def _upgrade(url: str) -> None:
    _ensure_sqlite_dir(url)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    command.upgrade(alembic_config(url), "head")


async def migrate(url: str) -> None:
    """Bring the schema to the newest revision (Alembic runs its own event loop)."""
    await asyncio.to_thread(_upgrade, url)
