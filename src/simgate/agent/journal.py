"""The agent's local journal: what it claimed, sent and still has to report.

It is what makes restarts safe: a message is written here before it is claimed, each
recipient is marked before the radio is asked to send, and every report and incoming
SMS waits here until the server took it. A send that may have happened is never repeated.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS messages (
    id TEXT PRIMARY KEY,
    body TEXT NOT NULL,              -- the message as fetched (JSON)
    slot INTEGER,                    -- chosen slot, NULL = the phone's default
    status TEXT NOT NULL             -- claimed | queued | done
);
CREATE TABLE IF NOT EXISTS recipients (
    message_id TEXT NOT NULL,
    position INTEGER NOT NULL,
    status TEXT NOT NULL,            -- sending | sent | failed
    PRIMARY KEY (message_id, position)
);
CREATE TABLE IF NOT EXISTS parts (
    slot INTEGER NOT NULL,
    reference INTEGER NOT NULL,
    message_id TEXT NOT NULL,
    phone_number TEXT NOT NULL,
    PRIMARY KEY (slot, reference)
);
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,              -- states | incoming
    body TEXT NOT NULL               -- one item for the server (JSON)
);
"""


@dataclass(frozen=True)
class JournalMessage:
    id: str
    body: dict[str, Any]
    slot: int | None
    status: str


class Journal:
    """A small SQLite file; synchronous calls are microseconds, fine on the event loop."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    # key/value: credentials and the round-robin cursor
    def get(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def put(self, key: str, value: str) -> None:
        self._db.execute("INSERT OR REPLACE INTO kv VALUES (?, ?)", (key, value))

    # messages
    def known(self, ids: list[str]) -> set[str]:
        if not ids:
            return set()
        marks = ",".join("?" * len(ids))
        rows = self._db.execute(f"SELECT id FROM messages WHERE id IN ({marks})", ids)
        return {r[0] for r in rows}

    def claim(self, items: list[tuple[str, dict[str, Any], int | None]]) -> None:
        with self._db:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT OR IGNORE INTO messages VALUES (?, ?, ?, 'claimed')",
                [(i, json.dumps(b), s) for i, b, s in items],
            )

    def set_status(self, message_ids: list[str], status: str) -> None:
        with self._db:
            self._db.execute("BEGIN")
            self._db.executemany("UPDATE messages SET status = ? WHERE id = ?",
                                 [(status, i) for i in message_ids])

    def with_status(self, status: str) -> list[JournalMessage]:
        rows = self._db.execute(
            "SELECT id, body, slot, status FROM messages WHERE status = ? ORDER BY rowid",
            (status,),
        )
        return [JournalMessage(r[0], json.loads(r[1]), r[2], r[3]) for r in rows]

    def recipient_status(self, message_id: str) -> dict[int, str]:
        rows = self._db.execute(
            "SELECT position, status FROM recipients WHERE message_id = ?", (message_id,)
        )
        return dict(rows.fetchall())

    def mark_recipient(self, message_id: str, position: int, status: str) -> None:
        self._db.execute("INSERT OR REPLACE INTO recipients VALUES (?, ?, ?)",
                         (message_id, position, status))

    # delivery report matching
    def add_parts(self, slot: int, references: list[int], message_id: str, phone: str) -> None:
        self._db.executemany("INSERT OR REPLACE INTO parts VALUES (?, ?, ?, ?)",
                             [(slot, r, message_id, phone) for r in references])

    def take_part(self, slot: int, reference: int) -> tuple[str, str, int] | None:
        """Remove a reported part; returns (message id, phone, parts still unreported)."""
        row = self._db.execute(
            "SELECT message_id, phone_number FROM parts WHERE slot = ? AND reference = ?",
            (slot, reference),
        ).fetchone()
        if row is None:
            return None
        self._db.execute("DELETE FROM parts WHERE slot = ? AND reference = ?", (slot, reference))
        left = self._db.execute(
            "SELECT COUNT(*) FROM parts WHERE message_id = ? AND phone_number = ?", row
        ).fetchone()[0]
        return row[0], row[1], left

    def drop_parts(self, message_id: str, phone: str) -> None:
        self._db.execute("DELETE FROM parts WHERE message_id = ? AND phone_number = ?",
                         (message_id, phone))

    # what waits for the server: state reports and incoming SMS
    def queue(self, kind: str, items: list[dict[str, Any]]) -> None:
        self._db.executemany("INSERT INTO outbox (kind, body) VALUES (?, ?)",
                             [(kind, json.dumps(i)) for i in items])

    def unsent(self, kind: str, limit: int = 500) -> list[tuple[int, dict[str, Any]]]:
        rows = self._db.execute(
            "SELECT seq, body FROM outbox WHERE kind = ? ORDER BY seq LIMIT ?", (kind, limit)
        )
        return [(r[0], json.loads(r[1])) for r in rows]

    def drop(self, kind: str, up_to_seq: int) -> None:
        self._db.execute("DELETE FROM outbox WHERE kind = ? AND seq <= ?", (kind, up_to_seq))
