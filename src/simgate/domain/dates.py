"""Dates as devices read them."""

from __future__ import annotations

from datetime import UTC, datetime


def utc(value: datetime) -> datetime:
    """The same instant in UTC; a date without an offset is taken as UTC already.

    Every date is brought to UTC before it is stored or compared: SQLite keeps a date's
    wall-clock time and drops its offset, so `08:30-05:00` would come back `08:30Z`."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def millis(value: datetime) -> str:
    """A date with exactly three fraction digits, in UTC: the Android app parses dates
    with `yyyy-MM-dd'T'HH:mm:ss.SSSXXX`, which reads any fraction as a count of
    milliseconds (".456789" would be 456,789 ms) and refuses a date without one."""
    return utc(value).isoformat(timespec="milliseconds").replace("+00:00", "Z")
