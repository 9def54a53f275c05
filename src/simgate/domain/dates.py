"""Dates as devices read them."""

from __future__ import annotations

from datetime import UTC, datetime


def millis(value: datetime) -> str:
    """A date with exactly three fraction digits, in UTC: the Android app parses dates
    with `yyyy-MM-dd'T'HH:mm:ss.SSSXXX`, which reads any fraction as a count of
    milliseconds (".456789" would be 456,789 ms) and refuses a date without one."""
    value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return value.isoformat(timespec="milliseconds").replace("+00:00", "Z")
