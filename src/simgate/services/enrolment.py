"""How a device joins without its user's password, as the Android app does with a private
server: a one-time code the user asked for, or the server key, which makes a new user for
the device (the app then shows that user's login and password)."""

from __future__ import annotations

import hmac
import secrets
import string
import time
from collections import defaultdict, deque
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError

from simgate.services.users import Users
from simgate.store.db import Sessions
from simgate.store.models import UserCode, utcnow

CODE_LIFETIME = timedelta(minutes=5)
# Six digits are guessed in a million tries: wrong codes are limited per address and in all.
WRONG_CODES_PER_MINUTE = 10
WRONG_CODES_PER_MINUTE_ALL = 100


class TooManyAttempts(Exception):
    """Too many wrong codes lately: the caller must wait."""


@dataclass(frozen=True, slots=True)
class IssuedCode:
    code: str
    valid_until: datetime


@dataclass(frozen=True, slots=True)
class NewUser:
    user_id: int
    login: str
    password: str


class Enrolment:
    def __init__(self, sessions: Sessions, users: Users, server_key: str | None) -> None:
        self._sessions = sessions
        self._users = users
        self._server_key = server_key
        self._wrong: defaultdict[str, deque[float]] = defaultdict(deque)

    async def issue_code(self, user_id: int) -> IssuedCode:
        """A six-digit code, good once within five minutes."""
        valid_until = utcnow() + CODE_LIFETIME
        while True:
            code = f"{secrets.randbelow(1_000_000):06d}"
            try:
                async with self._sessions.begin() as session:
                    await session.execute(delete(UserCode).where(UserCode.valid_until < utcnow()))
                    session.add(UserCode(code=code, user_id=user_id, valid_until=valid_until))
                return IssuedCode(code, valid_until)
            except IntegrityError:
                continue  # that code is someone else's for now: draw another

    async def redeem(self, code: str, client: str) -> int | None:
        """The user a valid code belongs to; the code is then spent. TooManyAttempts when
        `client` (an address), or everyone, gave too many wrong codes in the last minute."""
        self._check_attempts(client)
        async with self._sessions.begin() as session:
            row = await session.get(UserCode, code.strip())
            if row is not None:
                await session.delete(row)
        if row is None or row.valid_until <= utcnow():
            now = time.monotonic()
            self._wrong[f"from {client}"].append(now)
            self._wrong["all"].append(now)
            return None
        return row.user_id

    def _check_attempts(self, client: str) -> None:
        horizon = time.monotonic() - 60
        for key, limit in ((f"from {client}", WRONG_CODES_PER_MINUTE),
                           ("all", WRONG_CODES_PER_MINUTE_ALL)):
            attempts = self._wrong.get(key) or deque()
            while attempts and attempts[0] < horizon:
                attempts.popleft()
            if not attempts:
                self._wrong.pop(key, None)
            if len(attempts) >= limit:
                raise TooManyAttempts("too many wrong codes: wait a minute, then ask for a"
                                      " new code")

    def is_server_key(self, token: str) -> bool:
        return self._server_key is not None and hmac.compare_digest(
            token.encode(), self._server_key.encode())

    async def new_user(self) -> NewUser:
        """A user of its own for a device that joined with the server key."""
        login = "".join(secrets.choice(string.ascii_uppercase + string.digits) for _ in range(6))
        password = "".join(secrets.choice(string.ascii_lowercase + string.digits)
                           for _ in range(14))
        user = await self._users.add(login, password)
        return NewUser(user.id, login, password)
