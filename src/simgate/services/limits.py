"""Counting tries per client address, to limit guessing (one-time codes, passwords).

Counts live in each server process: with several workers, a client that spreads its
connections over them gets the limits once per worker.
"""

from __future__ import annotations

import ipaddress
import time
from collections import deque
from collections.abc import Hashable, Iterable


class SlidingCounts:
    """How many times each key happened within the last `window` seconds."""

    def __init__(self, window: float = 60.0) -> None:
        self.window = window
        self._events: dict[Hashable, deque[float]] = {}
        self._swept_at = 0.0

    def count(self, key: Hashable, now: float | None = None) -> int:
        return len(self._recent(key, time.monotonic() if now is None else now))

    def add(self, keys: Iterable[Hashable], now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        self._sweep(now)
        for key in keys:
            self._events.setdefault(key, deque()).append(now)

    def wait(self, key: Hashable, limit: int, now: float | None = None) -> float:
        """Seconds until `key` has happened fewer than `limit` times in the window."""
        now = time.monotonic() if now is None else now
        events = self._recent(key, now)
        if len(events) < limit:
            return 0.0
        return events[len(events) - limit] + self.window - now

    def _recent(self, key: Hashable, now: float) -> deque[float]:
        events = self._events.get(key) or deque()
        while events and events[0] < now - self.window:
            events.popleft()
        return events

    def _sweep(self, now: float) -> None:
        """Forget keys that went quiet, now and then (not on every event: cheap)."""
        if now - self._swept_at < 10:
            return
        self._swept_at = now
        self._events = {k: v for k, v in self._events.items()
                        if v and v[-1] >= now - self.window}


def address_groups(address: str) -> tuple[str, str]:
    """An address as the limits count it, and the network around it: an IPv4 address (also
    written as IPv6) and its /24, an IPv6 /64 (one subscriber, usually) and its /48."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address, address
    if ip.version == 6 and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    if ip.version == 4:
        return str(ip), str(ipaddress.ip_network(f"{ip}/24", strict=False))
    return (str(ipaddress.ip_network(f"{ip}/64", strict=False)),
            str(ipaddress.ip_network(f"{ip}/48", strict=False)))
