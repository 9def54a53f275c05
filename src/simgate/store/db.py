"""Database engine and session factory; applies migrations at start."""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine as sa_create_engine
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import ConnectionPoolEntry, PoolProxiedConnection

from simgate.files import private_file

MIGRATIONS = Path(__file__).with_name("migrations")
T = TypeVar("T")
LOCK_RETRY = 0.001


def _sqlite_pragmas(dbapi_connection: object, _record: ConnectionPoolEntry) -> None:
    """WAL for concurrent readers, NORMAL sync (durable at checkpoints and in WAL)."""
    cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def _ensure_sqlite_file(url: str) -> None:
    """The database file made (0600, in a 0700 directory) before SQLite makes it 0644."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            private_file(Path(path))


def create_engine(url: str) -> AsyncEngine:
    if url.startswith("sqlite"):
        # WAL: readers run beside the one writer; writers queue on busy_timeout.
        engine = create_async_engine(url, pool_size=4, max_overflow=0)
        sync_engine: Engine = engine.sync_engine
        event.listen(sync_engine, "connect", _sqlite_pragmas)
        return engine
    return create_async_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True)


class Sessions(async_sessionmaker):
    """Sessions, and `write` for hot write paths written once as plain (sync) Core code."""

    async def write(self, work: Callable[[Connection], T]) -> T:
        """Run `work` in one write transaction, through the async driver."""
        async with self.kw["bind"].begin() as connection:
            return await connection.run_sync(work)

    @property
    def reads_in_place(self) -> bool:
        """Whether `read_rows` answers at once, without waiting for I/O."""
        return False

    async def read_rows(self, sql: str) -> list[tuple[Any, ...]]:
        """The rows of a short, constant query (asked on every request: kept cheap)."""
        async with self.kw["bind"].connect() as connection:
            return [tuple(row) for row in await connection.exec_driver_sql(sql)]

    def close(self) -> None:
        """Release what the factory holds beside the engine's pool."""


class _SerialWrites(Sessions):
    """SQLite has one writer: queue write transactions here instead of in its busy handler.

    SQLite's busy handler sleeps in growing steps when a second writer waits, which leaves
    the process idle under load. Within a process an asyncio lock hands the write lock over
    at once; between processes (server workers, the CLI) a lock file, tried every
    millisecond, does the same.
    """

    def __init__(self, *args: Any, database_file: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._write_lock = asyncio.Lock()
        self._lock_path = f"{database_file}.lock" if database_file else None
        self._lock_fd: int | None = None
        self._inline: Engine | None = None
        self._reader: PoolProxiedConnection | None = None

    @asynccontextmanager
    async def _serial(self) -> AsyncIterator[None]:
        async with self._write_lock:
            await self._lock_file()
            try:
                yield
            finally:
                if self._lock_fd is not None:
                    fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    @asynccontextmanager
    async def begin(self) -> AsyncIterator[AsyncSession]:  # type: ignore[override]
        async with self._serial(), super().begin() as session:
            yield session

    async def write(self, work: Callable[[Connection], T]) -> T:
        """Run `work` in one write transaction, in place, on a plain sqlite3 connection.

        Through the async driver every statement waits for an event-loop iteration, which
        is long under load, and the write lock (of every process) is held all along;
        SQLite itself takes microseconds a row, less than the waiting.
        """
        if self._lock_path is None:  # in memory: only the async engine's connection sees it
            async with self._serial():
                return await super().write(work)
        async with self._serial():
            with self._inline_engine().begin() as connection:
                return work(connection)

    @property
    def reads_in_place(self) -> bool:
        return self._lock_path is not None

    async def read_rows(self, sql: str) -> list[tuple[Any, ...]]:
        """In place, on a plain sqlite3 connection: a reader in WAL mode waits for no
        writer, and ten microseconds of SQLite cost less than a trip to a thread. Each
        query sees what was committed before it began (no transaction stays open)."""
        if self._lock_path is None:
            return await super().read_rows(sql)
        if self._reader is None:
            self._reader = self._inline_engine().raw_connection()
        # straight on the sqlite3 connection, past the pool's cursor wrapper: its rows are
        # tuples already and its statements cached
        return self._reader.driver_connection.execute(sql).fetchall()

    def _inline_engine(self) -> Engine:
        if self._inline is None:
            async_engine: AsyncEngine = self.kw["bind"]
            self._inline = sa_create_engine(async_engine.url.set(drivername="sqlite"))
            event.listen(self._inline, "connect", _sqlite_pragmas)
        return self._inline

    async def _lock_file(self) -> None:
        if self._lock_path is None:
            return
        if self._lock_fd is None:
            self._lock_fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        # Taken only while this coroutine runs: a lock granted to a waiting thread would be
        # held, idle, until the busy event loop came back to the write.
        while True:
            try:
                fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:  # another process writes, for a millisecond or so
                await asyncio.sleep(LOCK_RETRY)

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        if self._inline is not None:
            self._inline.dispose()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None


def session_factory(engine: AsyncEngine) -> Sessions:
    if engine.dialect.name == "sqlite":
        database = engine.url.database
        in_memory = not database or database == ":memory:"
        return _SerialWrites(engine, expire_on_commit=False,
                             database_file=None if in_memory else database)
    return Sessions(engine, expire_on_commit=False)


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def _upgrade(url: str) -> None:
    _ensure_sqlite_file(url)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    command.upgrade(alembic_config(url), "head")


async def migrate(url: str) -> None:
    """Bring the schema to the newest revision (Alembic runs its own event loop)."""
    await asyncio.to_thread(_upgrade, url)
