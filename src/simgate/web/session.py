"""The dashboard's session: a signed cookie that names the user and carries the CSRF token.

Nothing is stored on the server: the cookie holds the user id, the credential stamp it
was issued under, when it was issued and a random CSRF token, signed with HMAC-SHA256 under
a key derived from the server's signing key (the same in every worker and after a
restart). A user's new password ends that user's sessions on the next request, as it ends
their remembered password checks and API tokens; other users stay logged in.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass

from fastapi import Request, Response

from simgate.services import stamps
from simgate.services.tokens import signing_key

COOKIE = "simgate_session"
MAX_AGE = 12 * 3600  # a session lasts a working day, then the user logs in again


@dataclass(frozen=True, slots=True)
class WebSession:
    """What the cookie says; `user_id` is None before login (the CSRF token of the login
    form lives there too)."""

    csrf: str
    user_id: int | None = None
    stamp: int | None = None
    issued: int = 0


def new_session(user_id: int | None = None, stamp: int | None = None) -> WebSession:
    return WebSession(secrets.token_urlsafe(24), user_id, stamp, int(time.time()))


async def _key(request: Request) -> bytes:
    """The cookie key, derived once per app from the server's signing key."""
    key = getattr(request.app.state, "web_session_key", None)
    if key is None:
        server_key = await signing_key(request.app.state.gateway.sessions)
        key = hmac.new(server_key.encode(), b"simgate dashboard session",
                       hashlib.sha256).digest()
        request.app.state.web_session_key = key
    return key


def _b64(raw: bytes) -> str:
    """URL-safe base64 without padding: a cookie value that needs no quoting."""
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _sign(key: bytes, body: bytes) -> str:
    return _b64(hmac.new(key, body, hashlib.sha256).digest())


async def encode(request: Request, session: WebSession) -> str:
    body = _b64(json.dumps([session.csrf, session.user_id, session.stamp, session.issued],
                           separators=(",", ":")).encode())
    return f"{body}.{_sign(await _key(request), body.encode())}"


async def decode(request: Request) -> WebSession | None:
    """The session of the request's cookie if its signature holds and it is not too old."""
    raw = request.cookies.get(COOKIE, "")
    body, _, signature = raw.partition(".")
    if not body or not hmac.compare_digest(signature, _sign(await _key(request), body.encode())):
        return None
    try:
        csrf, user_id, stamp, issued = json.loads(base64.urlsafe_b64decode(body + "=="))
    except (ValueError, TypeError):
        return None
    if not isinstance(issued, int) or time.time() - issued > MAX_AGE:
        return None
    return WebSession(str(csrf), user_id, stamp, issued)


async def password_stamp(request: Request, user_id: int) -> int:
    """The user's password stamp, as the store has it now."""
    return stamps.password_stamp(await request.app.state.gateway.stamps.current(), user_id)


async def logged_in(request: Request) -> WebSession | None:
    """The session if it names a user whose password did not change since it was issued."""
    session = await decode(request)
    if session is None or not isinstance(session.user_id, int):
        return None
    if session.stamp != await password_stamp(request, session.user_id):
        return None
    return session


async def attach(request: Request, response: Response, session: WebSession) -> None:
    """Set the cookie: HttpOnly, SameSite=Lax, and Secure when served over HTTPS."""
    response.set_cookie(COOKIE, await encode(request, session), max_age=MAX_AGE,
                        httponly=True, samesite="lax", path="/",
                        secure=request.url.scheme == "https")


def forget(request: Request, response: Response) -> None:
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="lax",
                           secure=request.url.scheme == "https")


def csrf_matches(session: WebSession | None, token: str | None) -> bool:
    return (session is not None and bool(token)
            and hmac.compare_digest(session.csrf.encode(), (token or "").encode()))
