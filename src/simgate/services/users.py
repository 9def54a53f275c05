"""Users and their credentials."""

from __future__ import annotations

import asyncio
import hashlib
import re
import time

from sqlalchemy import select
from sqlalchemy.ext.asyncio import async_sessionmaker

from simgate.services.errors import BadRequest, Conflict, TooManyRequests
from simgate.services.limits import SlidingCounts
from simgate.services.logins import LoginGuard
from simgate.services.passwords import Passwords
from simgate.services.stamps import Stamps, bump_password, password_generation, password_stamp
from simgate.services.tokens import revoke_all
from simgate.store.models import User

_USERNAME = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
MIN_PASSWORD = 8
# A new password from a device ends the user's tokens and sessions and costs a slow hash:
# a few a user within ten minutes (per server process), then 429.
CHANGES_PER_USER = 3
CHANGE_WINDOW = 600.0


class PasswordChangesThrottled(TooManyRequests):
    """The user's password changed too often lately: the device must wait."""


def validate_credentials(username: str, password: str) -> None:
    if not _USERNAME.match(username):
        raise BadRequest(
            "invalid username: use 1-64 letters, digits or _ . @ - (no spaces or colons)"
        )
    if len(password) < MIN_PASSWORD:
        raise BadRequest(f"password too short: use at least {MIN_PASSWORD} characters")


class Users:
    """Creates users and checks Basic credentials.

    Argon2 is slow on purpose; a verified (username, password) pair is remembered for a
    short while, so a busy API client does not pay it on every request. What is
    remembered holds only while the user's password stamp in the store is the one it was
    checked under: their new password (here, in another worker, or from the CLI) ends it
    on the next request, and ends their API tokens; other users' checks hold.
    """

    def __init__(self, sessions: async_sessionmaker, stamps: Stamps,
                 cache_seconds: float = 60.0, passwords: Passwords | None = None) -> None:
        self._sessions = sessions
        self._stamps = stamps
        self._passwords = passwords or Passwords()
        self._guard = LoginGuard()
        self._changes = SlidingCounts(CHANGE_WINDOW)
        self._cache: dict[bytes, tuple[int, float, int]] = {}
        self._cache_seconds = cache_seconds
        self._checks: dict[tuple[bytes, int], asyncio.Future[int | None]] = {}

    async def close(self) -> None:
        """Let credential checks in flight finish: one left running would touch the store
        after it is closed (a request cancelled while waiting does not stop its check)."""
        await asyncio.gather(*self._checks.values(), return_exceptions=True)
        self._passwords.close()

    async def add(self, username: str, password: str) -> User:
        validate_credentials(username, password)
        password_hash = await self._passwords.hash(password)  # not while holding the store
        async with self._sessions.begin() as session:
            exists = await session.scalar(select(User.id).where(User.username == username))
            if exists is not None:
                raise Conflict(f"user {username!r} already exists")
            user = User(username=username, password_hash=password_hash)
            session.add(user)
        return user

    async def set_password(self, username: str, password: str) -> None:
        validate_credentials(username, password)
        password_hash = await self._passwords.hash(password)
        async with self._sessions.begin() as session:
            user = await session.scalar(select(User).where(User.username == username))
            if user is None:
                raise BadRequest(f"no user {username!r}")
            user.password_hash = password_hash
            await revoke_all(session, user.id)
            await bump_password(session, user.id)

    async def name_of(self, user_id: int) -> str | None:
        async with self._sessions() as session:
            return await session.scalar(select(User.username).where(User.id == user_id))

    async def change_password(self, user_id: int, current: str, new: str,
                              client: str = "") -> bool:
        """Set a new password if `current` is right (a device asks on its user's behalf);
        wrong ones count as failed logins of `client`. PasswordChangesThrottled past
        CHANGES_PER_USER changes within CHANGE_WINDOW, before any password is checked."""
        self._admit_change(user_id)
        username = await self.name_of(user_id)
        if username is None or await self.authenticate(username, current, client) != user_id:
            return False
        validate_credentials(username, new)
        # checked again and counted with nothing awaited between: of changes asked
        # together, past the limit, none gets through
        self._admit_change(user_id)
        self._changes.add((user_id,))
        await self.set_password(username, new)
        return True

    def _admit_change(self, user_id: int) -> None:
        wait = self._changes.wait(user_id, CHANGES_PER_USER)
        if wait > 0:
            raise PasswordChangesThrottled(
                f"this user's password changed {CHANGES_PER_USER} times in the last"
                f" {CHANGE_WINDOW / 60:.0f} minutes: wait {max(1, round(wait))} s before"
                " changing it again", retry_after=wait)

    async def ensure(self, username: str, password: str) -> None:
        """Make sure the user exists with exactly this password (for unattended starts)."""
        if await self._check(_key(username, password), await self._stamps.current(), username,
                             password) is not None:
            return
        async with self._sessions() as session:
            exists = await session.scalar(select(User.id).where(User.username == username))
        if exists is None:
            await self.add(username, password)
        else:
            await self.set_password(username, password)

    async def list(self) -> list[User]:
        async with self._sessions() as session:
            return list(await session.scalars(select(User).order_by(User.id)))

    async def authenticate(self, username: str, password: str, client: str = "") -> int | None:
        """The user id for valid credentials, else None; LoginThrottled when `client` (its
        address) failed too often lately, or the user is under attack and it failed once.

        Requests that arrive together with the same credentials share one check: a client
        opening many connections at once would otherwise start one slow hash each.
        """
        key = _key(username, password)
        stamps = await self._stamps.current()
        cached = self._cache.get(key)
        if (cached and cached[2] == password_stamp(stamps, cached[0])
                and cached[1] > time.monotonic()):
            return cached[0]  # the right password, checked lately: no limit applies
        self._guard.admit(username, client)
        async with self._guard.turn(username):
            shared = (key, password_generation(stamps))
            check = self._checks.get(shared)
            if check is None:
                check = asyncio.ensure_future(self._check(key, stamps, username, password))
                self._checks[shared] = check
                check.add_done_callback(lambda _: self._checks.pop(shared, None))
            user_id = await asyncio.shield(check)
        if user_id is None:
            self._guard.failed(username, client)
        return user_id

    async def _check(self, key: bytes, stamps: dict[str, int], username: str,
                     password: str) -> int | None:
        """The user's id if the password is theirs: the same work for a name nobody has;
        remembered under the user's stamp in `stamps`, read before the password was."""
        async with self._sessions() as session:
            row = (
                await session.execute(
                    select(User.id, User.password_hash).where(User.username == username)
                )
            ).first()
        password_hash = row.password_hash if row is not None else None
        if not await self._passwords.verify(password_hash, password) or row is None:
            return None
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[key] = (row.id, time.monotonic() + self._cache_seconds,
                            password_stamp(stamps, row.id))
        return row.id


def _key(username: str, password: str) -> bytes:
    return hashlib.sha256(f"{username}\0{password}".encode()).digest()
