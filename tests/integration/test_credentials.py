"""Password checks as a service: changes seen at once by every process on the store, and
the same work for names nobody has."""

from __future__ import annotations

import asyncio
from typing import Literal

import pytest
from argon2 import PasswordHasher

from simgate.config import Settings
from simgate.services.gateway import Gateway
from simgate.services.passwords import Passwords
from simgate.services.tokens import InvalidToken
from simgate.services.users import Users


@pytest.fixture
async def two_gateways(store_url, tmp_path):
    """Two server processes' services on one store (SQLite file, or PostgreSQL)."""
    settings = Settings(data_dir=tmp_path, database_url=store_url)
    first = await Gateway.open(settings, background=False)
    second = await Gateway.open(settings, background=False, prepare=False)
    yield first, second
    await second.close()
    await first.close()


async def test_a_new_password_is_seen_at_once_by_another_process(two_gateways):
    first, second = two_gateways
    user = await first.users.add("dana", "dana-secret")
    token = await second.tokens.issue(user.id, ["messages:list"], 600)
    # the other process checks both, and remembers them
    assert await second.users.authenticate("dana", "dana-secret") == user.id
    assert (await second.tokens.authenticate(token.access_token)).user_id == user.id

    await first.users.set_password("dana", "dana-secret-2")

    assert await second.users.authenticate("dana", "dana-secret") is None
    with pytest.raises(InvalidToken, match="revoked"):
        await second.tokens.authenticate(token.access_token)
    assert await second.users.authenticate("dana", "dana-secret-2") == user.id


async def test_requests_arriving_together_share_the_stamp_reads(two_gateways):
    """Many concurrent callers, each answered by a read begun after it asked."""
    first, second = two_gateways
    user = await first.users.add("erin", "erin-secret")
    token = await first.tokens.issue(user.id, ["messages:list"], 600)
    assert (await second.tokens.authenticate(token.access_token)).user_id == user.id
    await first.tokens.revoke(user.id, token.id)
    results = await asyncio.gather(*(second.tokens.authenticate(token.access_token)
                                     for _ in range(50)), return_exceptions=True)
    assert all(isinstance(result, InvalidToken) for result in results)


class CountingHasher(PasswordHasher):
    """The real argon2 hasher, counting the checks it makes."""

    verified = 0

    def verify(self, hash: str | bytes, password: str | bytes) -> Literal[True]:
        CountingHasher.verified += 1
        return super().verify(hash, password)


async def test_an_unknown_user_costs_the_same_argon2_check_as_a_wrong_password(gateway):
    users = Users(gateway.sessions, gateway.stamps, passwords=Passwords(CountingHasher()))
    try:
        await users.add("frank", "frank-secret")
        CountingHasher.verified = 0
        assert await users.authenticate("frank", "wrong-password", "192.0.2.1") is None
        assert CountingHasher.verified == 1
        assert await users.authenticate("nobody-by-that-name", "any", "192.0.2.2") is None
        assert CountingHasher.verified == 2
        assert await users.authenticate("frank", "frank-secret", "192.0.2.3") is not None
        assert CountingHasher.verified == 3
    finally:
        await users.close()


async def test_one_users_new_password_leaves_other_users_remembered_checks(two_gateways):
    """Each user's checks carry that user's stamp: another tenant's new password, in any
    process, costs them no new argon2 check."""
    first, second = two_gateways
    users = Users(second.sessions, second.stamps, passwords=Passwords(CountingHasher()))
    try:
        gina = await first.users.add("gina", "gina-secret")
        await first.users.add("hugo", "hugo-secret")
        assert await users.authenticate("gina", "gina-secret") == gina.id
        CountingHasher.verified = 0
        await first.users.set_password("hugo", "hugo-secret-2")
        await first.users.set_password("hugo", "hugo-secret-3")
        assert await users.authenticate("gina", "gina-secret") == gina.id
        assert CountingHasher.verified == 0
        await first.users.set_password("gina", "gina-secret-2")
        assert await users.authenticate("gina", "gina-secret") is None
        assert CountingHasher.verified == 1
    finally:
        await users.close()
