"""How a device joins without its user's password, as the Android app does with a private
server: a one-time code the user asked for, or the server key, which makes a new user for
the device (the app then shows that user's login and password)."""

from __future__ import annotations

import hmac
import ipaddress
import secrets
import string
import time
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, or_
from sqlalchemy.exc import IntegrityError

from simgate.services.errors import Unavailable
from simgate.services.users import Users
from simgate.store.db import Sessions
from simgate.store.models import UserCode, utcnow

CODE_LIFETIME = timedelta(minutes=5)
# Six digits (as the original) fall to a million tries: tries are limited per address (an
# IPv6 /64 counts as one), counted before the store is asked, in each server process.
CODE_TRIES_PER_MINUTE = 10


class TooManyAttempts(Exception):
    """Too many codes tried from one address lately: the caller must wait."""


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
        self._tries: dict[str, deque[float]] = {}

    async def issue_code(self, user_id: int) -> IssuedCode:
        """A six-digit code, good once within five minutes; the user's earlier codes end."""
        valid_until = utcnow() + CODE_LIFETIME
        for _ in range(10):
            code = f"{secrets.randbelow(1_000_000):06d}"
            try:
                async with self._sessions.begin() as session:
                    await session.execute(delete(UserCode).where(or_(
                        UserCode.user_id == user_id, UserCode.valid_until < utcnow())))
                    session.add(UserCode(code=code, user_id=user_id, valid_until=valid_until))
                return IssuedCode(code, valid_until)
            except IntegrityError:
                continue  # that code is someone else's for now: draw another
        raise Unavailable("no free code just now: ask again in a minute")

    async def redeem(self, code: str, client: str) -> int | None:
        """The user a valid code belongs to, spending the code (one device, even when
        several try at once); TooManyAttempts when `client` tried too many lately."""
        key = _address_group(client)
        self._count_try(key)
        async with self._sessions.begin() as session:
            user_id = await session.scalar(
                delete(UserCode)
                .where(UserCode.code == code.strip(), UserCode.valid_until > utcnow())
                .returning(UserCode.user_id))
        tries = self._tries.get(key)
        if user_id is not None and tries:
            tries.pop()  # the right code does not count against its sender
        return user_id

    def _count_try(self, key: str) -> None:
        now = time.monotonic()
        tries = self._tries.setdefault(key, deque())
        while tries and tries[0] < now - 60:
            tries.popleft()
        if len(tries) >= CODE_TRIES_PER_MINUTE:
            raise TooManyAttempts("too many codes tried: wait a minute, then ask for a new code")
        tries.append(now)
        if len(self._tries) > 10_000:  # addresses that went quiet are forgotten
            self._tries = {k: v for k, v in self._tries.items() if v and v[-1] >= now - 60}

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


def _address_group(address: str) -> str:
    """An address as the limit counts it: IPv6 by /64, which one subscriber usually has."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if ip.version == 6:
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)
