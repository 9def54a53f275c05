"""The agent's local journal: what it claimed, sent and still has to report.

It is what makes restarts safe: a message is written here before it is claimed, each
recipient is marked before the radio is asked to send, and every report and incoming
SMS waits here until the server took it. A send that may have happened is never repeated.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from simgate.files import private_file

T = TypeVar("T")
# (report, message id, phone, parts of it still unreported) -> the state reports to queue
ReportItems = Callable[[dict[str, Any], str, str, int], list[dict[str, Any]]]
KEPT_REPORTS = 1000
# A report may beat its send's answer by a moment; one kept longer is a repeat (the modem
# passed it on again after a crash) or stray, and must not settle a later part that
# reuses its 8-bit reference.
EARLY_REPORT_SECONDS = 120.0

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
CREATE INDEX IF NOT EXISTS messages_status ON messages (status);
CREATE TABLE IF NOT EXISTS parts (
    slot INTEGER NOT NULL,
    reference INTEGER NOT NULL,
    message_id TEXT NOT NULL,
    phone_number TEXT NOT NULL,
    PRIMARY KEY (slot, reference)
);
CREATE TABLE IF NOT EXISTS reports (  -- status reports that came before their part was known
    slot INTEGER NOT NULL,
    reference INTEGER NOT NULL,
    report TEXT NOT NULL,            -- what the state report is made of (JSON)
    PRIMARY KEY (slot, reference)
);
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,              -- states | incoming
    body TEXT NOT NULL               -- one item for the server (JSON)
);
CREATE TABLE IF NOT EXISTS set_aside ( -- what the server cannot take, kept with why
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,              -- as in outbox
    body TEXT NOT NULL,              -- the item as it was (JSON, or what the SIM gave)
    reason TEXT NOT NULL,
    at TEXT NOT NULL
);
"""


@dataclass(frozen=True)
class SetAside:
    """An item set aside: what it was, why, and when."""

    kind: str
    body: str
    reason: str
    at: str


@dataclass(frozen=True)
class JournalMessage:
    id: str
    body: dict[str, Any]
    slot: int | None
    status: str


class JournalFile:
    """The SQLite file, used from one thread at a time (the `Journal`'s own)."""

    def __init__(self, path: Path) -> None:
        self._db = sqlite3.connect(private_file(path), isolation_level=None,
                                   check_same_thread=False)
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
    def lookup(self, ids: list[str]) -> dict[str, JournalMessage]:
        """The journal's entries for these ids (by its primary key, whatever it holds)."""
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))
        rows = self._db.execute(
            f"SELECT id, body, slot, status FROM messages WHERE id IN ({marks})", ids)
        return {r[0]: JournalMessage(r[0], json.loads(r[1]), r[2], r[3]) for r in rows}

    def claim_routed(self, items: list[tuple[str, dict[str, Any], int | None]],
                     cursor: str | None) -> None:
        """Claimed messages and the round-robin cursor after routing them, at once."""
        with self._db:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT OR IGNORE INTO messages VALUES (?, ?, ?, 'claimed')",
                [(i, json.dumps(b), s) for i, b, s in items],
            )
            if cursor is not None:
                self._db.execute("INSERT OR REPLACE INTO kv VALUES ('rr_cursor', ?)", (cursor,))

    def settle(self, queued: list[str], done: list[str]) -> None:
        """A claim's answer: what to send, and what is finished, in one transaction."""
        with self._db:
            self._db.execute("BEGIN")
            self._db.executemany("UPDATE messages SET status = ? WHERE id = ?",
                                 [("queued", i) for i in queued] + [("done", i) for i in done])

    def finish(self, message_id: str, states: list[dict[str, Any]],
               sent: int | None = None) -> None:
        """A message done, its state report queued and (at `sent`) its last recipient
        marked sent, in one transaction."""
        with self._db:
            self._db.execute("BEGIN")
            if sent is not None:
                self._db.execute("INSERT OR REPLACE INTO recipients VALUES (?, ?, 'sent')",
                                 (message_id, sent))
            self._db.execute("UPDATE messages SET status = 'done' WHERE id = ?", (message_id,))
            self._db.executemany("INSERT INTO outbox (kind, body) VALUES ('states', ?)",
                                 [(json.dumps(i),) for i in states])

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

    # delivery report matching: a status report is kept from the moment it arrives, in the
    # transaction that matches it to its part and queues the state it tells, or else until
    # its part is known; a crash in between loses nothing.
    def add_parts(self, slot: int, references: list[int], message_id: str, phone: str,
                  items: ReportItems) -> bool:
        """Remember sent parts, and settle the reports that came before them; True when
        state reports were queued."""
        settled = False
        with self._db:
            self._db.execute("BEGIN")
            self._db.executemany("INSERT OR REPLACE INTO parts VALUES (?, ?, ?, ?)",
                                 [(slot, r, message_id, phone) for r in references])
            for reference in references:
                row = self._db.execute(
                    "SELECT report FROM reports WHERE slot = ? AND reference = ?",
                    (slot, reference)).fetchone()
                if row is not None:
                    self._db.execute("DELETE FROM reports WHERE slot = ? AND reference = ?",
                                     (slot, reference))
                    report = json.loads(row[0])
                    if _early(report):
                        settled |= self._settle(slot, reference, report, items)
        return settled

    def file_report(self, slot: int, reference: int, report: dict[str, Any],
                    items: ReportItems) -> bool:
        """A status report: settled against its part (True), or kept for when the part is
        known (a report may beat the send's answer, or a crash may come between them)."""
        with self._db:
            self._db.execute("BEGIN")
            if self._settle(slot, reference, report, items):
                return True
            self._db.execute("INSERT OR REPLACE INTO reports VALUES (?, ?, ?)",
                             (slot, reference, json.dumps(report)))
            self._db.execute(  # reports that no part will ever claim do not pile up
                "DELETE FROM reports WHERE rowid NOT IN"
                " (SELECT rowid FROM reports ORDER BY rowid DESC LIMIT ?)", (KEPT_REPORTS,))
        return False

    def _settle(self, slot: int, reference: int, report: dict[str, Any],
                items: ReportItems) -> bool:
        found = self.take_part(slot, reference)
        if found is None:
            return False
        message_id, phone, left = found
        if not report["delivered"]:
            self.drop_parts(message_id, phone)
        self.queue("states", items(report, message_id, phone, left))
        return True

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
        """The oldest items of `kind`; one that cannot be read back is set aside."""
        rows = self._db.execute(
            "SELECT seq, body FROM outbox WHERE kind = ? ORDER BY seq LIMIT ?", (kind, limit)
        ).fetchall()
        items = []
        for seq, body in rows:
            try:
                items.append((seq, json.loads(body)))
            except ValueError as exc:
                self.set_aside(kind, seq, body, f"unreadable in the journal: {exc}")
        return items

    def set_aside(self, kind: str, seq: int | None, body: str, reason: str) -> None:
        """Keep an item with the reason it cannot go, out of the outbox (at `seq`)."""
        with self._db:
            self._db.execute("BEGIN")
            self._db.execute("INSERT INTO set_aside (kind, body, reason, at) VALUES"
                             " (?, ?, ?, ?)", (kind, body, reason, datetime.now(UTC).isoformat()))
            if seq is not None:
                self._db.execute("DELETE FROM outbox WHERE seq = ?", (seq,))

    def set_aside_count(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM set_aside").fetchone()[0]

    def drop(self, kind: str, up_to_seq: int) -> None:
        self._db.execute("DELETE FROM outbox WHERE kind = ? AND seq <= ?", (kind, up_to_seq))


class Journal:
    """The journal as an event loop uses it: every call runs in the journal's own thread,
    so SQLite (and its fsync at a checkpoint) never holds up the loop's other work."""

    def __init__(self, path: Path) -> None:
        self._file = JournalFile(path)  # at start-up, before the loop has other work
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="journal")

    def peek(self, key: str) -> str | None:
        """A stored value, read in place: only while starting up."""
        return self._file.get(key)

    async def _run(self, call: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._thread, call, *args)

    async def close(self) -> None:
        await self._run(self._file.close)
        self._thread.shutdown()

    async def put(self, key: str, value: str) -> None:
        await self._run(self._file.put, key, value)

    async def lookup(self, ids: list[str]) -> dict[str, JournalMessage]:
        return await self._run(self._file.lookup, ids)

    async def claim_routed(self, items: list[tuple[str, dict[str, Any], int | None]],
                           cursor: str | None) -> None:
        await self._run(self._file.claim_routed, items, cursor)

    async def settle(self, queued: list[str], done: list[str]) -> None:
        await self._run(self._file.settle, queued, done)

    async def finish(self, message_id: str, states: list[dict[str, Any]],
                     sent: int | None = None) -> None:
        await self._run(self._file.finish, message_id, states, sent)

    async def with_status(self, status: str) -> list[JournalMessage]:
        return await self._run(self._file.with_status, status)

    async def recipient_status(self, message_id: str) -> dict[int, str]:
        return await self._run(self._file.recipient_status, message_id)

    async def mark_recipient(self, message_id: str, position: int, status: str) -> None:
        await self._run(self._file.mark_recipient, message_id, position, status)

    async def add_parts(self, slot: int, references: list[int], message_id: str,
                        phone: str, items: ReportItems) -> bool:
        return await self._run(self._file.add_parts, slot, references, message_id, phone,
                               items)

    async def file_report(self, slot: int, reference: int, report: dict[str, Any],
                          items: ReportItems) -> bool:
        return await self._run(self._file.file_report, slot, reference, report, items)

    async def queue(self, kind: str, items: list[dict[str, Any]]) -> None:
        await self._run(self._file.queue, kind, items)

    async def unsent(self, kind: str, limit: int = 500) -> list[tuple[int, dict[str, Any]]]:
        return await self._run(self._file.unsent, kind, limit)

    async def drop(self, kind: str, up_to_seq: int) -> None:
        await self._run(self._file.drop, kind, up_to_seq)

    async def set_aside(self, kind: str, seq: int | None, body: str, reason: str) -> None:
        await self._run(self._file.set_aside, kind, seq, body, reason)

    async def set_aside_count(self) -> int:
        return await self._run(self._file.set_aside_count)


def read_set_aside(path: Path, limit: int = 20) -> tuple[int, list[SetAside]]:
    """How many items a journal holds set aside, and the latest `limit`, read without
    writing (an agent may be running on it): for `simgate doctor`."""
    db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        count = db.execute("SELECT COUNT(*) FROM set_aside").fetchone()[0]
        rows = db.execute("SELECT kind, body, reason, at FROM set_aside ORDER BY id DESC"
                          " LIMIT ?", (limit,)).fetchall()
    except sqlite3.OperationalError:  # a journal of an agent before set-aside items
        return 0, []
    finally:
        db.close()
    return count, [SetAside(*row) for row in rows]


def _early(report: dict[str, Any]) -> bool:
    """Kept at most EARLY_REPORT_SECONDS ago (`at` is when the agent got it)."""
    age = datetime.now(UTC) - datetime.fromisoformat(report["at"])
    return age.total_seconds() <= EARLY_REPORT_SECONDS
