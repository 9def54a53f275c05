"""Work hours from the messages settings: no sends outside the window.

The agent keeps them in its host's local time; the server keeps them for the phones it
routes in `routing.timezone` (UTC when unset), since the app has no work hours of its own.
"""

from __future__ import annotations

from datetime import datetime, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo


def _minutes(clock: str) -> int:
    hours, minutes = clock.split(":")
    return int(hours) * 60 + int(minutes)


class WorkHours:
    """`work_hours_enabled/start/end` as the original documents them: sends only within
    [start, end) of the device's local time; an end before the start spans midnight."""

    def __init__(self, zone: tzinfo | None = None) -> None:
        self.window: tuple[int, int] | None = None  # minutes after midnight
        self.zone = zone  # None: the local time of this host

    @classmethod
    def of(cls, messages: dict[str, Any], timezone: str | None) -> WorkHours:
        """The window of the settings, kept in the zone named (IANA), else UTC."""
        hours = cls(ZoneInfo(timezone or "UTC"))
        hours.configure(messages)
        return hours

    def configure(self, messages: dict[str, Any]) -> None:
        if not messages.get("work_hours_enabled"):
            self.window = None
            return
        start = _minutes(messages.get("work_hours_start") or "09:00")
        end = _minutes(messages.get("work_hours_end") or "19:00")
        self.window = None if start == end else (start, end)

    def describe(self) -> str:
        if self.window is None:
            return "any time"
        start, end = self.window
        zone = f" {self.zone}" if self.zone is not None else ""
        return f"{start // 60:02d}:{start % 60:02d}-{end // 60:02d}:{end % 60:02d}{zone}"

    def wait(self, now: datetime | None = None) -> float:
        """Seconds until sends may go (0: now)."""
        if self.window is None:
            return 0.0
        now = (now or datetime.now().astimezone()).astimezone(self.zone)
        start, end = self.window
        minute = now.hour * 60 + now.minute
        inside = start <= minute < end if start < end else (minute >= start or minute < end)
        if inside:
            return 0.0
        midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
        opens = midnight + timedelta(minutes=start)
        if opens <= now:
            opens += timedelta(days=1)
        return (opens - now).total_seconds()
