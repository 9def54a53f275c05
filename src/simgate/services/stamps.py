"""Credential stamps: how a process learns, on its very next request, that a password
changed or a token was revoked in another process (a worker, `simgate users passwd`,
another server on the same store).

Checks of passwords (argon2) and tokens are remembered per process; each remembered check
carries the stamp it was made under and holds only while the store's stamp is the same.
A password has a stamp per user ("passwords:<user id>", a row made at its first change):
one user's new password ends that user's sessions and remembered checks, no one else's.
"""

from __future__ import annotations

import asyncio
import contextlib

from sqlalchemy import update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from simgate.store.db import Sessions
from simgate.store.models import CredentialStamp

PASSWORDS = "passwords"
TOKENS = "tokens"


async def bump(session: AsyncSession, *names: str) -> None:
    """Raise stamps in the caller's transaction: the change and the stamp commit together."""
    await session.execute(update(CredentialStamp).where(CredentialStamp.name.in_(names))
                          .values(value=CredentialStamp.value + 1))


def user_passwords(user_id: int) -> str:
    """The name of a user's password stamp."""
    return f"{PASSWORDS}:{user_id}"


async def bump_password(session: AsyncSession, user_id: int) -> None:
    """Raise a user's password stamp in the caller's transaction (made at 1 the first time)."""
    dialect = postgresql if session.bind.dialect.name == "postgresql" else sqlite
    table = CredentialStamp.__table__
    insert = dialect.insert(table).values(name=user_passwords(user_id), value=1)
    await session.execute(insert.on_conflict_do_update(
        index_elements=["name"], set_={"value": table.c.value + 1}))


def password_stamp(current: dict[str, int], user_id: int) -> int:
    """A user's password stamp in a read of `current`; the server-wide row is part of it,
    so sessions issued under it (before stamps were per user) still hold."""
    return current[PASSWORDS] + current.get(user_passwords(user_id), 0)


def password_generation(current: dict[str, int]) -> int:
    """A number every password change raises: a check begun under one generation is not
    shared with a request that came after a change."""
    return sum(value for name, value in current.items()
               if name == PASSWORDS or name.startswith(f"{PASSWORDS}:"))


_READ = "SELECT name, value FROM credential_stamps"


class Stamps:
    """The store's stamps, as read after the caller asked.

    A read that began before the caller asked might predate a change the caller already
    relies on (a password changed, then a request with the old one), so each caller gets
    the result of a read begun after it asked. Callers asking meanwhile share the next
    read: under load there is one read in flight, not one per request (on SQLite, read in
    place in microseconds, each caller reads).
    """

    def __init__(self, sessions: Sessions) -> None:
        self._sessions = sessions
        self._lock = asyncio.Lock()
        self._next: asyncio.Future[dict[str, int]] | None = None
        self._reads: set[asyncio.Task[None]] = set()

    async def current(self) -> dict[str, int]:
        if self._sessions.reads_in_place:  # SQLite: microseconds, nothing to share
            return dict(await self._sessions.read_rows(_READ))
        if self._next is None:
            self._next = asyncio.get_running_loop().create_future()
            read = asyncio.create_task(self._read(self._next))
            self._reads.add(read)
            read.add_done_callback(self._reads.discard)
        return await asyncio.shield(self._next)

    async def _read(self, result: asyncio.Future[dict[str, int]]) -> None:
        async with self._lock:  # one read at a time; those who ask meanwhile get the next
            if self._next is result:
                self._next = None
            try:
                result.set_result(dict(await self._sessions.read_rows(_READ)))
            except Exception as exc:  # noqa: BLE001 - handed to every caller waiting
                result.set_exception(exc)
            finally:
                if not result.done():
                    result.cancel()

    async def close(self) -> None:
        """Let reads in flight finish before the store closes."""
        with contextlib.suppress(Exception):
            await asyncio.gather(*self._reads, return_exceptions=True)
