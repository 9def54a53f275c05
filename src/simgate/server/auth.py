"""Who is calling: users by Basic credentials or API tokens, devices by their tokens."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from fastapi import HTTPException, Request
from fastapi.security import SecurityScopes

from simgate.services.devices import DeviceIdentity
from simgate.services.tokens import ALL, InvalidToken, TokenClaims

_BASIC_CHALLENGE = {"WWW-Authenticate": 'Basic realm="simgate"'}
_TOKEN_CHALLENGE = {"WWW-Authenticate": 'Bearer error="invalid_token"'}


@dataclass(frozen=True, slots=True)
class Caller:
    """A user, with what it may do: Basic credentials may do everything, a token what
    its scopes say."""

    user_id: int
    token: TokenClaims | None = None

    def allows(self, scope: str) -> bool:
        return self.token is None or self.token.allows(scope)


def _unauthorized(message: str) -> HTTPException:
    return HTTPException(401, message, headers=_BASIC_CHALLENGE)


def token_refused(message: str) -> HTTPException:
    return HTTPException(401, message, headers=_TOKEN_CHALLENGE)


def _authorization(request: Request) -> tuple[str, str]:
    """The Authorization header as (scheme in lower case, credentials)."""
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    return scheme.lower(), value.strip()


def client_address(request: Request) -> str:
    """The caller's address (a trusted proxy's X-Forwarded-For already applied)."""
    return request.client.host if request.client else ""


def has_credentials(request: Request) -> bool:
    """Whether the request carries an Authorization header of any scheme."""
    return bool(request.headers.get("authorization", "").strip())


def basic_credentials(request: Request) -> tuple[str, str] | None:
    scheme, value = _authorization(request)
    if scheme != "basic":
        return None
    try:
        decoded = base64.b64decode(value, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise _unauthorized("malformed Basic credentials") from None
    username, sep, password = decoded.partition(":")
    if not sep:
        raise _unauthorized("malformed Basic credentials: expected username:password")
    return username, password


def bearer_token(request: Request) -> str | None:
    scheme, token = _authorization(request)
    return (token or None) if scheme == "bearer" else None


async def authorize(request: Request, *scopes: str) -> Caller:
    """The caller behind Basic credentials or an API token, who must hold `scopes`."""
    token = bearer_token(request)
    if token is not None:
        try:
            claims = await request.app.state.gateway.tokens.authenticate(token)
        except InvalidToken as exc:
            raise token_refused(str(exc)) from None
        caller = Caller(claims.user_id, claims)
    else:
        credentials = basic_credentials(request)
        if credentials is None:
            raise _unauthorized("authentication required: use Basic auth (username:password)"
                                " or Authorization: Bearer <token>")
        user_id = await request.app.state.gateway.users.authenticate(
            *credentials, client_address(request))
        if user_id is None:
            raise _unauthorized("invalid username or password")
        caller = Caller(user_id)
    for scope in scopes:
        if not caller.allows(scope):
            raise HTTPException(403, f"scope required: {scope}: ask for a token with it")
    return caller


async def current_caller(request: Request, security_scopes: SecurityScopes) -> Caller:
    """FastAPI dependency: the caller, holding the scopes the route asks for."""
    return await authorize(request, *security_scopes.scopes)


async def current_user(request: Request, security_scopes: SecurityScopes) -> int:
    """FastAPI dependency: the id of the user calling, holding the route's scopes."""
    return (await authorize(request, *security_scopes.scopes)).user_id


@dataclass(frozen=True, slots=True)
class Registrant:
    """The user a registering device joins, and the password when the user is new."""

    user_id: int
    login: str
    password: str | None = None  # None: the user existed, its password is not shown


async def registrant(request: Request) -> Registrant:
    """Who a registering device joins: `Authorization: Code <code>` (a code
    the user asked for), `Bearer <server key>` (a new user), the user's own credentials
    (Basic, or a token with all:any), or, in public mode, no Authorization (a new user)."""
    gateway = request.app.state.gateway
    scheme, value = _authorization(request)
    if scheme == "code":
        user_id = await gateway.enrolment.redeem(value, client_address(request))
        if user_id is None:
            raise HTTPException(401, "invalid or used code: ask for a new one with"
                                     " GET /mobile/v1/user/code",
                                headers={"WWW-Authenticate": "Code"})
        return Registrant(user_id, await gateway.users.name_of(user_id) or "")
    if gateway.enrolment.open_joins and (not has_credentials(request)
                                         or (scheme == "bearer" and not value)):
        new = await gateway.enrolment.join_openly(client_address(request))
        return Registrant(new.user_id, new.login, new.password)
    if scheme == "bearer":  # the server key, or a token: a wrong one is a guess, limited
        gateway.enrolment.admit_key(client_address(request))
        if gateway.enrolment.is_server_key(value):
            new = await gateway.enrolment.new_user()
            return Registrant(new.user_id, new.login, new.password)
        try:
            caller = await authorize(request, ALL)
        except HTTPException as exc:
            if exc.status_code == 401:
                gateway.enrolment.wrong_key(client_address(request))
            raise
        return Registrant(caller.user_id, await gateway.users.name_of(caller.user_id) or "")
    caller = await authorize(request, ALL)
    return Registrant(caller.user_id, await gateway.users.name_of(caller.user_id) or "")


async def current_device(request: Request) -> DeviceIdentity:
    """FastAPI dependency: the device behind a Bearer token."""
    token = bearer_token(request)
    if token is None:
        raise HTTPException(401, "device authentication required: Authorization: Bearer <token>")
    identity = await request.app.state.gateway.devices.identify(token)
    if identity is None:
        raise HTTPException(401, "unknown or revoked device token: register the device again")
    await request.app.state.gateway.devices.touch(identity.device_id)
    return identity
