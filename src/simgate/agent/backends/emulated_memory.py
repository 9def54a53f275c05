"""What the emulated network and its SIMs keep when the process that emulates them dies.

A real SIM's message store is non-volatile, and a real network keeps a status report
until the modem has taken it: neither is lost when the gateway's host crashes. With a
file, the emulator keeps both in SQLite, so `kill -9` of `simgate run` tests what it
would with real modems; without one, both live in memory, as before. A committed write
survives the process (WAL, synchronous=NORMAL), which is the failure emulated here.
"""

from __future__ import annotations

import itertools
import sqlite3
from pathlib import Path

from simgate.files import private_file

SCHEMA = """
CREATE TABLE IF NOT EXISTS stored (
    slot INTEGER NOT NULL, memory TEXT NOT NULL, idx INTEGER NOT NULL,
    stat INTEGER NOT NULL, pdu TEXT NOT NULL, PRIMARY KEY (slot, memory, idx));
CREATE TABLE IF NOT EXISTS owed (
    id INTEGER PRIMARY KEY, slot INTEGER NOT NULL, pdu TEXT NOT NULL,
    length INTEGER NOT NULL);
"""

OwedReport = tuple[int, str, int]  # id, status report PDU, its TPDU length


class NetworkMemory:
    """SIM stores and owed status reports, in `path` or (without one) in memory only."""

    def __init__(self, path: Path | None = None) -> None:
        self._db: sqlite3.Connection | None = None
        self._ids = itertools.count(1)
        if path is not None:
            self._db = sqlite3.connect(private_file(path), isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(SCHEMA)
            last = self._db.execute("SELECT max(id) FROM owed").fetchone()[0] or 0
            self._ids = itertools.count(last + 1)

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    # -- SIM message stores ------------------------------------------------------------

    def stored(self, slot: int) -> list[tuple[str, int, int, str]]:
        """(memory, index, stat, PDU) of what `slot`'s stores held when last running."""
        if self._db is None:
            return []
        return self._db.execute("SELECT memory, idx, stat, pdu FROM stored WHERE slot = ?"
                                " ORDER BY memory, idx", (slot,)).fetchall()

    def store(self, slot: int, memory: str, index: int, stat: int, hex_pdu: str) -> None:
        if self._db is not None:
            self._db.execute("INSERT OR REPLACE INTO stored VALUES (?, ?, ?, ?, ?)",
                             (slot, memory, index, stat, hex_pdu))

    def unstore(self, slot: int, memory: str, indexes: list[int]) -> None:
        if self._db is not None and indexes:
            self._db.executemany("DELETE FROM stored WHERE slot = ? AND memory = ? AND idx = ?",
                                 [(slot, memory, i) for i in indexes])

    # -- status reports the network still owes -----------------------------------------

    def owe(self, slot: int, hex_pdu: str, length: int) -> int:
        """Record a report owed to `slot` before the send's answer; returns its id."""
        owed_id = next(self._ids)
        if self._db is not None:
            self._db.execute("INSERT INTO owed VALUES (?, ?, ?, ?)",
                             (owed_id, slot, hex_pdu, length))
        return owed_id

    def settle(self, owed_id: int) -> None:
        """The modem took the report (acknowledged it, stored it, or needed none)."""
        if self._db is not None:
            self._db.execute("DELETE FROM owed WHERE id = ?", (owed_id,))

    def owed(self, slot: int) -> list[OwedReport]:
        if self._db is None:
            return []
        return self._db.execute("SELECT id, pdu, length FROM owed WHERE slot = ? ORDER BY id",
                                (slot,)).fetchall()
