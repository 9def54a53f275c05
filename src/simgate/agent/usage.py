"""Per-SIM usage for routing: sends per minute, day and month, distinct recipients per
month, and the SIM of the last exchange with each contact (for Sticky).

Kept in a small SQLite file beside the journal, so limits hold across agent restarts.
Counted when a message is routed to a SIM (and again for each failover attempt), so a
batch routed at once cannot overshoot a limit; days and months are UTC.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from simgate.domain.routing import SimUsage
from simgate.files import private_file

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sends (slot INTEGER NOT NULL, at REAL NOT NULL,
                                  day TEXT NOT NULL, month TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS sends_by_slot ON sends (slot, month, day, at);
CREATE TABLE IF NOT EXISTS recipients (slot INTEGER NOT NULL, month TEXT NOT NULL,
                                       phone TEXT NOT NULL, PRIMARY KEY (slot, month, phone));
CREATE TABLE IF NOT EXISTS contacts (phone TEXT PRIMARY KEY, slot INTEGER NOT NULL);
"""


def _periods(at: float) -> tuple[str, str]:
    moment = datetime.fromtimestamp(at, UTC)
    return moment.strftime("%Y-%m-%d"), moment.strftime("%Y-%m")


class UsageFile:
    """The counters; synchronous SQLite calls of microseconds, made only when the owner
    set routing rules or a strategy that needs them."""

    def __init__(self, path: Path) -> None:
        self._db = sqlite3.connect(private_file(path), isolation_level=None,
                                   check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    def usage(self, slots: Iterable[int], phones: Sequence[str]) -> dict[int, SimUsage]:
        """Each slot's usage now, with which of `phones` it already counts this month."""
        now = time.time()
        day, month = _periods(now)
        found = {}
        marks = ",".join("?" * len(phones))
        for slot in slots:
            minute, today, this_month = self._db.execute(
                "SELECT COALESCE(SUM(at >= ?), 0), COALESCE(SUM(day = ?), 0), COUNT(*)"
                " FROM sends WHERE slot = ? AND month = ?", (now - 60, day, slot, month)
            ).fetchone()
            distinct = self._db.execute(
                "SELECT COUNT(*) FROM recipients WHERE slot = ? AND month = ?", (slot, month)
            ).fetchone()[0]
            known = {r[0] for r in self._db.execute(
                f"SELECT phone FROM recipients WHERE slot = ? AND month = ? AND phone IN ({marks})",
                (slot, month, *phones))} if phones else set()
            found[slot] = SimUsage(minute=minute, day=today, month=this_month,
                                   recipients_month=distinct, known=frozenset(known))
        return found

    def count(self, slot: int, phones: Sequence[str]) -> None:
        """One message routed to `slot` for these recipients."""
        now = time.time()
        day, month = _periods(now)
        with self._db:
            self._db.execute("BEGIN")
            self._db.execute("INSERT INTO sends VALUES (?, ?, ?, ?)", (slot, now, day, month))
            self._db.executemany("INSERT OR IGNORE INTO recipients VALUES (?, ?, ?)",
                                 [(slot, month, p) for p in phones])
            self._db.executemany("INSERT OR REPLACE INTO contacts VALUES (?, ?)",
                                 [(p, slot) for p in phones])
            self._db.execute("DELETE FROM sends WHERE month < ?", (month,))

    def exchanged(self, phone: str, slot: int) -> None:
        """An SMS from `phone` arrived on `slot`: Sticky keeps the contact there."""
        self._db.execute("INSERT OR REPLACE INTO contacts VALUES (?, ?)", (phone, slot))

    def last_slot(self, phone: str) -> int | None:
        row = self._db.execute("SELECT slot FROM contacts WHERE phone = ?", (phone,)).fetchone()
        return row[0] if row else None
