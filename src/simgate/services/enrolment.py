"""How a device joins without its user's password, as the Android app does with a private
server: a one-time code the user asked for, or the server key, which makes a new user for
the device (the app then shows that user's login and password); in public mode, nothing
at all, which also makes a new user."""

from __future__ import annotations

import hmac
import secrets
import string
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, or_
from sqlalchemy.exc import IntegrityError

from simgate.services.errors import TooManyRequests, Unavailable
from simgate.services.limits import SlidingCounts, address_groups
from simgate.services.users import Users
from simgate.store.db import Sessions
from simgate.store.models import UserCode, utcnow

CODE_LIFETIME = timedelta(minutes=5)
# Six digits (as the original) fall to a million tries. Tries are counted before the store
# is asked, in each server process: per address, per network around it (IPv4 /24, IPv6 /48,
# as a subscriber may hold a whole /64 or more), and, past a number of wrong codes in all,
# an address that already got one wrong waits: whoever types the right code first still
# gets in. A wrong server key (Bearer on registration) counts as a wrong code.
TRIES_PER_ADDRESS = 10
TRIES_PER_NETWORK = 30
WRONG_IN_ALL = 100
WINDOW = 60.0
# Open joins (public mode) make a user each: a few per address and per network an hour.
JOINS_PER_ADDRESS = 5
JOINS_PER_NETWORK = 20
JOIN_WINDOW = 3600.0


class TooManyAttempts(TooManyRequests):
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
    def __init__(self, sessions: Sessions, users: Users, server_key: str | None,
                 open_joins: bool = False) -> None:
        self._sessions = sessions
        self._users = users
        self._server_key = server_key
        self._tries = SlidingCounts(WINDOW)
        self.open_joins = open_joins
        self._joins = SlidingCounts(JOIN_WINDOW)

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

    def _admit(self, client: str, advice: str) -> None:
        """TooManyAttempts when `client` tried too many codes or keys lately."""
        address, network = address_groups(client)
        tries = self._tries
        wrong_lately = tries.count(("wrong", address)) > 0
        if (tries.count(address) >= TRIES_PER_ADDRESS
                or tries.count(network) >= TRIES_PER_NETWORK
                or (wrong_lately and tries.count("wrong") >= WRONG_IN_ALL)):
            raise TooManyAttempts(f"too many codes or keys tried: wait a minute, then {advice}",
                                  retry_after=WINDOW)

    def _tried(self, client: str) -> None:
        self._tries.add(address_groups(client))

    def _wrong(self, client: str) -> None:
        self._tries.add((("wrong", address_groups(client)[0]), "wrong"))

    async def redeem(self, code: str, client: str) -> int | None:
        """The user a valid code belongs to, spending the code (one device, even when
        several try at once); TooManyAttempts when `client` tried too many lately."""
        self._admit(client, "ask for a new code")
        self._tried(client)  # counted before the store is asked
        async with self._sessions.begin() as session:
            user_id = await session.scalar(
                delete(UserCode)
                .where(UserCode.code == code.strip(), UserCode.valid_until > utcnow())
                .returning(UserCode.user_id))
        if user_id is None:
            self._wrong(client)
        return user_id

    def admit_key(self, client: str) -> None:
        """Before a Bearer key is compared: TooManyAttempts when `client` got too many
        codes or keys wrong lately (the limits of codes, shared with them)."""
        self._admit(client, "check the server key (SIMGATE_PRIVATE_TOKEN)")

    def wrong_key(self, client: str) -> None:
        """A Bearer that was neither the server key nor a token: a guess, counted."""
        self._tried(client)
        self._wrong(client)

    def is_server_key(self, token: str) -> bool:
        """Whether `token` is the server key; an empty token or key never matches."""
        if not self._server_key or not token.strip():
            return False
        return hmac.compare_digest(token.encode(), self._server_key.encode())

    async def join_openly(self, client: str) -> NewUser:
        """Public mode: a user of its own for a device that came with no credentials;
        TooManyAttempts when `client`'s address or network made too many lately."""
        address, network = address_groups(client)
        wait = max(self._joins.wait(address, JOINS_PER_ADDRESS),
                   self._joins.wait(network, JOINS_PER_NETWORK))
        if wait > 0:
            raise TooManyAttempts(
                f"too many devices joined from this address lately (at most"
                f" {JOINS_PER_ADDRESS} an hour): wait, or sign in with a user's login or a"
                " code", retry_after=wait)
        self._joins.add((address, network))
        return await self.new_user()

    async def new_user(self) -> NewUser:
        """A user of its own for a device that joined with the server key."""
        login = "".join(secrets.choice(string.ascii_uppercase + string.digits) for _ in range(6))
        password = "".join(secrets.choice(string.ascii_lowercase + string.digits)
                           for _ in range(14))
        user = await self._users.add(login, password)
        return NewUser(user.id, login, password)
