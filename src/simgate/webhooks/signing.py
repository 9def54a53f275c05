"""Webhook signatures as sms-gate.app makes them: HMAC-SHA256 over body + timestamp."""

from __future__ import annotations

import hashlib
import hmac
import time


def sign(key: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    """Headers for one delivery: X-Timestamp (Unix seconds) and X-Signature (hex)."""
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    signature = hmac.new(key.encode(), body + stamp.encode(), hashlib.sha256).hexdigest()
    return {"X-Timestamp": stamp, "X-Signature": signature}


def verify(key: str, body: bytes, timestamp: str, signature: str,
           tolerance_seconds: int = 300) -> bool:
    """What a receiver checks: the signature matches and the timestamp is recent."""
    if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > tolerance_seconds:
        return False
    expected = hmac.new(key.encode(), body + timestamp.encode(), hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, signature)
