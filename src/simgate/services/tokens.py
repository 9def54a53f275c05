"""API tokens: bearer tokens with scopes, so a client need not send its password.

As the original server: POST /auth/token gives a JWT access token and a refresh token (one
pair, one id, the `jti` of both); a refresh rotates the pair; revoking the id ends both.
The signature spares the store garbage; the store keeps hashes of the tokens it issued
(so its key alone forges nothing) and says whether they were revoked.
"""

from __future__ import annotations

import hmac
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import jwt
from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from simgate.services.errors import BadRequest, Forbidden
from simgate.services.ids import new_id, sha256_hex
from simgate.services.stamps import TOKENS, Stamps, bump
from simgate.store.db import Sessions
from simgate.store.models import ApiToken, ServerSecret, utcnow

ALL = "all:any"
REFRESH = "tokens:refresh"
SCOPES = frozenset({
    ALL,
    "messages:send", "messages:read", "messages:list", "messages:cancel", "messages:export",
    "inbox:list", "inbox:read", "inbox:refresh",
    "devices:list", "devices:delete",
    "webhooks:list", "webhooks:write", "webhooks:delete",
    "settings:read", "settings:write",
    "logs:read",
    "tokens:manage",
})
DEFAULT_TTL = 3600
MAX_TTL = 30 * 24 * 3600
REFRESH_LIFETIME = timedelta(hours=720)
_ALGORITHM = "HS256"
_ISSUER = "simgate"
_KEY_NAME = "token-signing-key"


class NotARefreshToken(Exception):
    """A good token, but not a refresh token: the original answers 403."""


class InvalidToken(Exception):
    """A bearer token that does not authenticate; the text says why and what to do."""


@dataclass(frozen=True, slots=True)
class TokenClaims:
    user_id: int
    token_id: str
    scopes: frozenset[str]
    expires_at: datetime

    def allows(self, scope: str) -> bool:
        return ALL in self.scopes or scope in self.scopes


@dataclass(frozen=True, slots=True)
class IssuedToken:
    id: str
    access_token: str
    refresh_token: str | None
    expires_at: datetime


def check_scopes(scopes: list[str]) -> list[str]:
    """The asked scopes, sorted and without repeats; a 400 names any it does not know."""
    if not scopes:
        raise BadRequest("scopes: ask for at least one scope, e.g. [\"messages:send\"]")
    if REFRESH in scopes:
        raise BadRequest(f"scopes: {REFRESH} is given to refresh tokens only: do not ask for it")
    unknown = sorted(set(scopes) - SCOPES)
    if unknown:
        raise BadRequest(f"scopes: unknown scope {', '.join(map(repr, unknown))}; "
                         f"known scopes: {', '.join(sorted(SCOPES))}")
    return sorted(set(scopes))


async def signing_key(sessions: Sessions) -> str:
    """The key every worker signs with, made by whichever process asks first."""

    async def stored() -> str | None:
        async with sessions() as session:
            return await session.scalar(
                select(ServerSecret.value).where(ServerSecret.name == _KEY_NAME))

    key = await stored()
    if key is not None:
        return key
    try:
        async with sessions.begin() as session:
            session.add(ServerSecret(name=_KEY_NAME, value=secrets.token_urlsafe(48)))
    except IntegrityError:
        pass  # another worker made it a moment ago: use theirs
    return await stored()


async def revoke_all(session: AsyncSession, user_id: int) -> None:
    """End every token of a user (a new password ends what the old one gave)."""
    await session.execute(update(ApiToken)
                          .where(ApiToken.user_id == user_id, ApiToken.revoked_at.is_(None))
                          .values(revoked_at=utcnow()))
    await bump(session, TOKENS)


async def _revoke_descendants(session: AsyncSession, token_id: str) -> None:
    """End the pairs minted with a pair, and theirs: a child token lives no longer than its
    parent (revoked, or retired by a refresh)."""
    now, parents = utcnow(), [token_id]
    while parents:
        children = list(await session.scalars(
            select(ApiToken.id).where(ApiToken.parent_id.in_(parents))))
        if children:
            await session.execute(
                update(ApiToken)
                .where(ApiToken.id.in_(children), ApiToken.revoked_at.is_(None))
                .values(revoked_at=now))
        parents = children


class Tokens:
    """Issues, refreshes, revokes and checks API tokens.

    A token found good is remembered for a short while, so a busy client does not cost a
    store read per request; it holds only while the store's token stamp is the one it was
    checked under, so a revocation anywhere ends it on the next request.
    """

    def __init__(self, sessions: Sessions, key: str, stamps: Stamps,
                 cache_seconds: float = 60.0) -> None:
        self._sessions = sessions
        self._key = key
        self._stamps = stamps
        self._cache_seconds = cache_seconds
        self._live: dict[str, tuple[float, int]] = {}

    async def issue(self, user_id: int, scopes: list[str], ttl: int | None,
                    parent: TokenClaims | None = None) -> IssuedToken:
        """A new pair; asked with a token (`parent`), it holds no more than that token:
        its scopes at most, its lifetime at most, no refresh token, revoked with it."""
        scopes = check_scopes(scopes)
        ttl = DEFAULT_TTL if ttl is None else ttl
        if not 1 <= ttl <= MAX_TTL:
            raise BadRequest(f"ttl: give the access token's lifetime in seconds, 1 to {MAX_TTL}"
                             f" (30 days); without it, {DEFAULT_TTL}")
        if parent is not None:
            missing = [scope for scope in scopes if not parent.allows(scope)]
            if missing:
                raise Forbidden(f"scope required: {missing[0]}: a token can grant only the"
                                " scopes it holds; ask with Basic credentials instead")
            left = (parent.expires_at - utcnow()).total_seconds()
            ttl = max(1, min(ttl, int(left)))
        async with self._sessions.begin() as session:
            return self._new_pair(session, user_id, scopes, ttl, parent)

    async def refresh(self, refresh_token: str) -> IssuedToken:
        """A new pair for a refresh token; the old pair is revoked, so each refresh token
        works once."""
        claims = self._decode(refresh_token)
        if REFRESH not in claims.scopes:
            raise NotARefreshToken("not a refresh token: use the refreshToken that came"
                                   " with it")
        async with self._sessions.begin() as session:
            row = await session.get(ApiToken, claims.token_id)
            if row is None or not _same(row.refresh_hash, refresh_token):
                raise InvalidToken(_NOT_OURS)
            revoked = await session.execute(
                update(ApiToken)
                .where(ApiToken.id == claims.token_id, ApiToken.revoked_at.is_(None))
                .values(revoked_at=utcnow()))
            if revoked.rowcount != 1:
                raise InvalidToken("refresh token revoked or already used: "
                                   "ask for a new one at POST /3rdparty/v1/auth/token")
            await _revoke_descendants(session, claims.token_id)
            await bump(session, TOKENS)
            return self._new_pair(session, row.user_id, row.scopes, row.ttl_seconds, None)

    async def revoke(self, user_id: int, token_id: str) -> None:
        """Revoke a pair, and the pairs minted with it (and theirs)."""
        async with self._sessions.begin() as session:
            owner = await session.scalar(select(ApiToken.user_id).where(ApiToken.id == token_id))
            if owner != user_id:  # unknown, or another user's: nothing to revoke (204)
                return
            await session.execute(
                update(ApiToken)
                .where(ApiToken.id == token_id, ApiToken.revoked_at.is_(None))
                .values(revoked_at=utcnow()))
            await _revoke_descendants(session, token_id)
            await bump(session, TOKENS)

    async def list(self, user_id: int) -> list[ApiToken]:
        """The user's pairs that can still be used (not revoked, a token not yet expired),
        newest first: what the dashboard lists to revoke."""
        async with self._sessions() as session:
            return list(await session.scalars(
                select(ApiToken)
                .where(ApiToken.user_id == user_id, ApiToken.revoked_at.is_(None),
                       ApiToken.expires_at > utcnow())
                .order_by(ApiToken.created_at.desc()).limit(200)))

    async def authenticate(self, token: str) -> TokenClaims:
        """The claims of a good access token; InvalidToken says what is wrong with it."""
        claims = self._decode(token)
        if REFRESH in claims.scopes:
            raise InvalidToken("a refresh token only gets new tokens, at POST "
                               "/3rdparty/v1/auth/token/refresh: send the accessToken here")
        stamp = (await self._stamps.current())[TOKENS]
        live = self._live.get(token)
        if live and live[1] == stamp and live[0] > time.monotonic():
            return claims
        async with self._sessions() as session:
            row = (await session.execute(
                select(ApiToken.user_id, ApiToken.access_hash, ApiToken.revoked_at)
                .where(ApiToken.id == claims.token_id))).first()
        if row is None or row.user_id != claims.user_id or not _same(row.access_hash, token):
            raise InvalidToken(_NOT_OURS)
        if row.revoked_at is not None:
            raise InvalidToken("token revoked: ask for a new one at POST /3rdparty/v1/auth/token")
        if len(self._live) > 10_000:
            self._live.clear()
        self._live[token] = (time.monotonic() + self._cache_seconds, stamp)
        return claims

    async def prune(self) -> None:
        """Forget pairs whose last token has expired: they can no longer be used."""
        async with self._sessions.begin() as session:
            await session.execute(delete(ApiToken).where(ApiToken.expires_at < utcnow()))

    def _decode(self, token: str) -> TokenClaims:
        try:
            claims = jwt.decode(token, self._key, algorithms=[_ALGORITHM], issuer=_ISSUER,
                                options={"require": ["exp", "sub", "jti"]})
            return TokenClaims(int(claims["sub"]), str(claims["jti"]),
                               frozenset(claims.get("scopes", ())),
                               datetime.fromtimestamp(claims["exp"], UTC))
        except jwt.ExpiredSignatureError:
            raise InvalidToken("token expired: refresh it at POST /3rdparty/v1/auth/token/refresh"
                               " or ask for a new one") from None
        except (jwt.InvalidTokenError, ValueError, TypeError, OverflowError):
            raise InvalidToken(_NOT_OURS) from None

    def _new_pair(self, session: AsyncSession, user_id: int, scopes: list[str], ttl: int,
                  parent: TokenClaims | None) -> IssuedToken:
        now, token_id = utcnow(), new_id()
        expires_at = last_expiry = now + timedelta(seconds=ttl)
        access, refresh = self._sign(user_id, token_id, scopes, now, expires_at), None
        if parent is None:
            last_expiry = max(expires_at, now + REFRESH_LIFETIME)
            refresh = self._sign(user_id, token_id, [REFRESH], now, last_expiry)
        session.add(ApiToken(
            id=token_id, user_id=user_id, parent_id=parent and parent.token_id, scopes=scopes,
            ttl_seconds=ttl, access_hash=sha256_hex(access),
            refresh_hash=refresh and sha256_hex(refresh), expires_at=last_expiry,
            created_at=now))
        return IssuedToken(id=token_id, access_token=access, refresh_token=refresh,
                           expires_at=expires_at)

    def _sign(self, user_id: int, token_id: str, scopes: list[str], now: datetime,
              expires_at: datetime) -> str:
        return jwt.encode({"iss": _ISSUER, "sub": str(user_id), "jti": token_id, "iat": now,
                           "exp": expires_at, "scopes": scopes}, self._key, algorithm=_ALGORITHM)


_NOT_OURS = "invalid token: not one this server issued, or damaged"


def _same(stored_hash: str | None, token: str) -> bool:
    return stored_hash is not None and hmac.compare_digest(stored_hash, sha256_hex(token))
