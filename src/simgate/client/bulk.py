"""Bulk sends from a CSV file, resumable through a result file.

Every row gets a message id, written to the result file (and synced to disk) before the
row is sent; the id travels in the request, so a row sent again after an interruption is
the same message to the server (it answers 409, and the row counts as accepted), never a
second SMS. Re-running with the same result file sends only the rows not yet accepted.
"""

from __future__ import annotations

import asyncio
import csv
import os
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from simgate.client.api import PAGE, Api, ApiError
from simgate.domain.states import FINAL_STATES, ProcessState

COLUMNS = ("phone", "text", "sim", "id")
# Where --wait stops: the server's final states, and Sent, since a delivery report may
# never come (none was asked for, or the network does not send one).
FINAL = frozenset({ProcessState.SENT, *FINAL_STATES})
RESULT_FIELDS = ("row", "phone", "id", "status", "state", "error")
MAX_ID = 36  # the API's longest message id


class BulkInputError(Exception):
    """The CSV or the result file cannot be used; the message names the row."""


@dataclass(frozen=True)
class Row:
    number: int  # the data row, 1 for the first row under the header
    phone: str
    text: str
    sim: int | None = None
    id: str | None = None


@dataclass(frozen=True)
class Outcome:
    row: int
    phone: str
    id: str
    status: str  # submitting, accepted or rejected
    state: str = ""  # the message's state, as the server last said
    error: str = ""
    created: str = ""  # createdAt, as the server said (kept in memory only)


def read_rows(path: Path) -> list[Row]:
    """Every row of the CSV, checked before anything is sent: a header with `phone` and
    `text` (and optionally `sim` and `id`), a phone and a text on every row."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as file:
            reader = csv.DictReader(file)
            header = [h.strip().lower() for h in reader.fieldnames or []]
            missing = [c for c in ("phone", "text") if c not in header]
            if missing:
                raise BulkInputError(f"{path}: the header row needs the column(s)"
                                     f" {', '.join(missing)} (columns: phone, text,"
                                     " optional sim and id)")
            unknown = [h for h in header if h not in COLUMNS]
            if unknown:
                raise BulkInputError(f"{path}: unknown column(s) {', '.join(unknown)};"
                                     " the columns are phone, text, optional sim and id")
            reader.fieldnames = header
            rows = [_row(path, n, raw) for n, raw in enumerate(reader, start=1)]
    except (OSError, UnicodeDecodeError) as exc:
        raise BulkInputError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}"
                             ) from None
    except csv.Error as exc:
        raise BulkInputError(f"{path} is not a valid CSV file: {exc}") from None
    if not rows:
        raise BulkInputError(f"{path} has no rows under its header")
    ids = [r.id for r in rows if r.id]
    if len(set(ids)) != len(ids):
        raise BulkInputError(f"{path}: the id column repeats an id; each row needs its own")
    return rows


def _row(path: Path, number: int, raw: dict[str, Any]) -> Row:
    where = f"{path} row {number}"
    if None in raw:
        raise BulkInputError(f"{where}: more fields than the header has columns"
                             " (quote a text that holds commas)")
    value = {k: (v or "").strip() if k != "text" else (v or "") for k, v in raw.items()}
    if not value.get("phone"):
        raise BulkInputError(f"{where}: no phone number")
    if not value.get("text"):
        raise BulkInputError(f"{where}: no text")
    sim = value.get("sim") or None
    if sim is not None and not (sim.isdigit() and 1 <= int(sim) <= 64):
        raise BulkInputError(f"{where}: sim {sim!r} is not a SIM number (1-64)")
    message_id = value.get("id") or None
    if message_id is not None and len(message_id) > MAX_ID:
        raise BulkInputError(f"{where}: id is longer than {MAX_ID} characters")
    return Row(number, value["phone"], value["text"], int(sim) if sim else None, message_id)


class ResultFile:
    """The per-row log of a bulk send: a CSV appended to, the last line of a row wins.

    A line cut short by a crash is ignored: the row's earlier line (its id) still holds."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.outcomes: dict[int, Outcome] = {}
        if path.exists():
            self._load()
        new = not path.exists() or path.stat().st_size == 0
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._file: TextIO = os.fdopen(fd, "a", newline="", encoding="utf-8")
        self._writer = csv.writer(self._file)
        if new:
            self._writer.writerow(RESULT_FIELDS)
        elif not path.read_bytes().endswith(b"\n"):
            self._file.write("\r\n")  # end a line cut short: no new line joins it
        self._prefix = secrets.token_hex(6)

    def _load(self) -> None:
        try:
            with self.path.open(newline="", encoding="utf-8") as file:
                reader = csv.DictReader(file)
                if tuple(reader.fieldnames or ()) != RESULT_FIELDS:
                    raise BulkInputError(f"{self.path} is not a result file of simgate send"
                                         f" (its header is not {','.join(RESULT_FIELDS)})")
                for line in reader:
                    if (None in line or None in line.values() or not line["row"].isdigit()
                            or not line["id"]):
                        continue  # cut short
                    outcome = Outcome(int(line["row"]), line["phone"], line["id"],
                                      line["status"], line["state"], line["error"])
                    self.outcomes[outcome.row] = outcome
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            raise BulkInputError(f"cannot read the result file {self.path}: {exc}") from None

    def check(self, rows: list[Row]) -> None:
        """Refuse a result file written for another CSV."""
        by_number = {r.number: r for r in rows}
        for outcome in self.outcomes.values():
            row = by_number.get(outcome.row)
            if row is None or row.phone != outcome.phone:
                raise BulkInputError(
                    f"{self.path} was written for another CSV (its row {outcome.row} is"
                    f" {outcome.phone}): give another --result file, or the CSV it was for")

    def plan(self, rows: Iterable[Row]) -> list[Outcome]:
        """Give each new row its id and write it down (synced) before any is sent."""
        planned = []
        for row in rows:
            known = self.outcomes.get(row.number)
            if known is None:
                known = Outcome(row.number, row.phone,
                                row.id or f"{self._prefix}-{row.number}", "submitting")
                self.write(known)
            planned.append(known)
        self.sync()
        return planned

    def write(self, outcome: Outcome) -> None:
        self.outcomes[outcome.row] = outcome
        self._writer.writerow([outcome.row, outcome.phone, outcome.id, outcome.status,
                               outcome.state, outcome.error])

    def sync(self) -> None:
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        if not self._file.closed:
            self.sync()
            self._file.close()


def body_of(row: Row, message_id: str, defaults: dict[str, Any]) -> dict[str, Any]:
    body = {**defaults, "id": message_id, "phoneNumbers": [row.phone],
            "textMessage": {"text": row.text}}
    if row.sim is not None:
        body["simNumber"] = row.sim
    return body


async def submit(api: Api, row: Row, planned: Outcome, defaults: dict[str, Any]) -> Outcome:
    """Send one row with its planned id. A 409 means an earlier run already sent it: the
    row is accepted with the state the server has. Other 4xx answers reject the row;
    anything else (unreachable, auth, 5xx) stops the whole send (raised)."""
    try:
        answer = await api.send(body_of(row, planned.id, defaults))
    except ApiError as exc:
        if exc.status == 409:
            answer = await api.message(planned.id)
        elif exc.status in (400, 404, 413, 422):
            return replace(planned, status="rejected", state="", error=exc.message)
        else:
            raise
    return replace(planned, status="accepted", state=answer.get("state", ""), error="",
                   created=answer.get("createdAt", ""))


async def send_rows(api: Api, rows: list[Row], result: ResultFile, defaults: dict[str, Any],
                    on_outcome: Callable[[Outcome], None], concurrency: int = 8,
                    chunk: int = 200) -> None:
    """Send the rows not yet accepted, `concurrency` at a time, in chunks whose ids are
    written down first."""
    todo = [r for r in rows if getattr(result.outcomes.get(r.number), "status", "")
            != "accepted"]
    slots = asyncio.Semaphore(concurrency)

    async def one(row: Row, planned: Outcome) -> None:
        async with slots:
            outcome = await submit(api, row, planned, defaults)
        result.write(outcome)
        on_outcome(outcome)

    try:
        for start in range(0, len(todo), chunk):
            part = todo[start:start + chunk]
            async with asyncio.TaskGroup() as group:
                for row, planned in zip(part, result.plan(part), strict=True):
                    group.create_task(one(row, planned))
            result.sync()
    except* Exception as errors:  # the first failure, as itself (not as a group)
        raise errors.exceptions[0] from None


async def wait_final(api: Api, result: ResultFile, on_outcome: Callable[[Outcome], None],
                     interval: float = 0.5, concurrency: int = 8) -> None:
    """Poll the accepted messages until each is Sent, Delivered, Failed or Cancelled,
    writing each final state to the result file.

    Messages whose creation time is known are read a page of 100 at a time (the list
    from the oldest of them on); the others (accepted by an earlier run) one by one."""
    slots = asyncio.Semaphore(concurrency)

    def settle(outcome: Outcome, state: dict[str, Any]) -> None:
        if state["state"] not in FINAL:
            if not outcome.created:
                result.outcomes[outcome.row] = replace(outcome, created=state["createdAt"])
            return
        errors = [r.get("error") for r in state.get("recipients", []) if r.get("error")]
        done = replace(outcome, state=state["state"], error="; ".join(errors),
                       created=state["createdAt"])
        result.write(done)
        on_outcome(done)

    async def one(outcome: Outcome) -> None:
        async with slots:
            settle(outcome, await api.message(outcome.id))

    async def listed(outcomes: list[Outcome]) -> None:
        by_id = {o.id: o for o in outcomes}
        since = min(outcomes, key=lambda o: datetime.fromisoformat(o.created)).created
        offset = 0
        while by_id:
            page = await api.messages(**{"from": since}, sort="created_at", limit=PAGE,
                                      offset=offset)
            for state in page.items:
                if (outcome := by_id.pop(state["id"], None)) is not None:
                    settle(outcome, state)
            offset += len(page.items)
            if len(page.items) < PAGE:
                break

    while waiting := [o for o in result.outcomes.values()
                      if o.status == "accepted" and o.state not in FINAL]:
        try:
            async with asyncio.TaskGroup() as group:
                for outcome in waiting:
                    if not outcome.created:
                        group.create_task(one(outcome))
                if known := [o for o in waiting if o.created]:
                    group.create_task(listed(known))
        except* Exception as errors:
            raise errors.exceptions[0] from None
        result.sync()
        if any(o.status == "accepted" and o.state not in FINAL
               for o in result.outcomes.values()):
            await asyncio.sleep(interval)
