"""Who is calling: Basic credentials for users, Bearer tokens for devices."""

from __future__ import annotations

import base64
import binascii

from fastapi import HTTPException, Request

from simgate.services.devices import DeviceIdentity

_BASIC_CHALLENGE = {"WWW-Authenticate": 'Basic realm="simgate"'}


def _unauthorized(message: str) -> HTTPException:
    return HTTPException(401, message, headers=_BASIC_CHALLENGE)


def basic_credentials(request: Request) -> tuple[str, str] | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise _unauthorized("malformed Basic credentials") from None
    username, sep, password = decoded.partition(":")
    if not sep:
        raise _unauthorized("malformed Basic credentials: expected username:password")
    return username, password


async def current_user(request: Request) -> int:
    """FastAPI dependency: the user id behind valid Basic credentials."""
    credentials = basic_credentials(request)
    if credentials is None:
        raise _unauthorized("authentication required: use Basic auth (username:password)")
    user_id = await request.app.state.gateway.users.authenticate(*credentials)
    if user_id is None:
        raise _unauthorized("invalid username or password")
    return user_id


async def current_device(request: Request) -> DeviceIdentity:
    """FastAPI dependency: the device behind a Bearer token."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise HTTPException(401, "device authentication required: Authorization: Bearer <token>")
    identity = await request.app.state.gateway.devices.identify(token.strip())
    if identity is None:
        raise HTTPException(401, "unknown or revoked device token: register the device again")
    await request.app.state.gateway.devices.touch(identity.device_id)
    return identity
