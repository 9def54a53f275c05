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
# Six digits (as the original) fall to a million tries. Tries are counted before the store
# is asked, in each server process: per address, per network around it (IPv4 /24, IPv6 /48,
# as a subscriber may hold a whole /64 or more), and, past a number of wrong codes in all,
# an address that already got one wrong waits: whoever types the right code first still
# gets in.
TRIES_PER_ADDRESS = 10
TRIES_PER_NETWORK = 30
WRONG_IN_ALL = 100
WINDOW = 60.0


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
        self._tries: dict[object, deque[float]] = {}
        self._swept_at = 0.0

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
        address, network = _address_groups(client)
        now = time.monotonic()
        self._sweep(now)
        wrong_lately = bool(self._recent(("wrong", address), now))
        if (len(self._recent(address, now)) >= TRIES_PER_ADDRESS
                or len(self._recent(network, now)) >= TRIES_PER_NETWORK
                or (wrong_lately and len(self._recent("wrong", now)) >= WRONG_IN_ALL)):
            raise TooManyAttempts("too many codes tried: wait a minute, then ask for a new code")
        for key in (address, network):
            self._tries.setdefault(key, deque()).append(now)
        async with self._sessions.begin() as session:
            user_id = await session.scalar(
                delete(UserCode)
                .where(UserCode.code == code.strip(), UserCode.valid_until > utcnow())
                .returning(UserCode.user_id))
        if user_id is None:
            for key in (("wrong", address), "wrong"):
                self._tries.setdefault(key, deque()).append(now)
        return user_id

    def _recent(self, key: object, now: float) -> deque[float]:
        tries = self._tries.get(key) or deque()
        while tries and tries[0] < now - WINDOW:
            tries.popleft()
        return tries

    def _sweep(self, now: float) -> None:
        """Forget addresses that went quiet, now and then (not on every try: cheap)."""
        if now - self._swept_at < 10:
            return
        self._swept_at = now
        self._tries = {k: v for k, v in self._tries.items() if v and v[-1] >= now - WINDOW}

    def is_server_key(self, token: str) -> bool:
        """Whether `token` is the server key; an empty token or key never matches."""
        if not self._server_key or not token.strip():
            return False
        return hmac.compare_digest(token.encode(), self._server_key.encode())

    async def new_user(self) -> NewUser:
        """A user of its own for a device that joined with the server key."""
        login = "".join(secrets.choice(string.ascii_uppercase + string.digits) for _ in range(6))
        password = "".join(secrets.choice(string.ascii_lowercase + string.digits)
                           for _ in range(14))
        user = await self._users.add(login, password)
        return NewUser(user.id, login, password)


def _address_groups(address: str) -> tuple[str, str]:
    """An address as the limits count it, and the network around it: an IPv4 address (also
    written as IPv6) and its /24, an IPv6 /64 (one subscriber, usually) and its /48."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address, address
    if ip.version == 6 and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    if ip.version == 4:
        return str(ip), str(ipaddress.ip_network(f"{ip}/24", strict=False))
    return (str(ipaddress.ip_network(f"{ip}/64", strict=False)),
            str(ipaddress.ip_network(f"{ip}/48", strict=False)))
