"""How a device joins without its user's password, as the Android app does with a private
server: a one-time code the user asked for, or the server key, which makes a new user for
the device (the app then shows that user's login and password)."""

from __future__ import annotations

import hmac
import secrets
import string
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError

from simgate.services.users import Users
from simgate.store.db import Sessions
from simgate.store.models import UserCode, utcnow

CODE_LIFETIME = timedelta(minutes=5)


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

    async def redeem(self, code: str) -> int | None:
        """The user a valid code belongs to; the code is then spent."""
        async with self._sessions.begin() as session:
            row = await session.get(UserCode, code.strip())
            if row is None:
                return None
            await session.delete(row)
            return row.user_id if row.valid_until > utcnow() else None

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
