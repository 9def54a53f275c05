"""Identifiers and secrets."""

from __future__ import annotations

import hashlib
import secrets

_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_-"


def new_id(size: int = 21) -> str:
    """A URL-safe random id of the same form as the original server's."""
    return "".join(_ALPHABET[b & 63] for b in secrets.token_bytes(size))


def new_token() -> str:
    return secrets.token_urlsafe(32)


def sha256_hex(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()
