"""Identifiers and secrets."""

from __future__ import annotations

import hashlib
import secrets
import time

_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_-"
_STAMP_DIGITS = 7  # base 62: milliseconds for about 110 years
_ID_SIZE = 21


def new_id() -> str:
    """A URL-safe id of the same form as the original server's, that sorts by creation time.

    Milliseconds in the first seven characters (the alphabet's first 62 characters are in
    ASCII order), then 84 random bits. Random ids would land all over the store's unique
    indexes, each new row dirtying a page of its own; ids made in order append instead.
    """
    stamp, digits = time.time_ns() // 1_000_000, []
    for _ in range(_STAMP_DIGITS):
        stamp, digit = divmod(stamp, 62)
        digits.append(_ALPHABET[digit])
    digits.reverse()
    digits.extend(_ALPHABET[b & 63] for b in secrets.token_bytes(_ID_SIZE - _STAMP_DIGITS))
    return "".join(digits)


def new_token() -> str:
    return secrets.token_urlsafe(32)


def sha256_hex(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()
