"""`simgate messages`, `message ID` and `inbox`: what went out, and what came in."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Annotated, Any

import typer
from rich.table import Column, Table

from simgate.client.api import PAGE, Api
from simgate.client.bulk import FINAL
from simgate.domain.sims import MAX_SIM_SLOTS
from simgate.domain.states import ProcessState
from simgate.usercli.common import (
    Exit,
    JsonOpt,
    LazyApi,
    connected,
    fail,
    out,
    print_json,
    when,
)

STATES = tuple(ProcessState)


def _recipients(message: dict[str, Any]) -> str:
    return ", ".join(
        r["phoneNumber"] + ("" if r["state"] == message["state"] else f" ({r['state']})")
        for r in message.get("recipients", []))


def _errors(message: dict[str, Any]) -> str:
    return "; ".join(r["error"] for r in message.get("recipients", []) if r.get("error"))


def _row(message: dict[str, Any]) -> list[str]:
    sim = message.get("simNumber")
    return [message["id"], message["state"], str(sim) if sim else "-", _recipients(message),
            when(message.get("createdAt")), _errors(message)]


async def _list(api: Api, limit: int, **query: Any) -> list[dict[str, Any]]:
    """Up to `limit` messages, newest first, a page at a time."""
    found: list[dict[str, Any]] = []
    while len(found) < limit:
        page = await api.messages(limit=min(PAGE, limit - len(found)), offset=len(found),
                                  **query)
        found += page.items
        if len(page.items) < PAGE or (page.total is not None and len(found) >= page.total):
            break
    return found[:limit]


@connected
def messages(
    state: Annotated[str | None, typer.Option(
        "--state", help=f"Only messages in this state: {', '.join(STATES)}.")] = None,
    device: Annotated[str | None, typer.Option("--device", help="Only this device's.")] = None,
    sim: Annotated[int | None, typer.Option(
        "--sim", min=1, max=MAX_SIM_SLOTS,
        help="Only those sent through this SIM (1-based), and those not sent yet that ask"
             " for it.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="How many, newest first.")]
    = 20,
    follow: Annotated[bool, typer.Option(
        "--follow", "-f", help="Keep watching: print each new message and state change"
                               " (Ctrl-C stops).")] = False,
    interval: Annotated[float, typer.Option(
        "--interval", min=0.2, help="With --follow: seconds between looks.")] = 1.0,
    json_output: JsonOpt = False,
    *,
    connection: LazyApi,  # given by @connected
) -> None:
    """List messages with their state, the SIM that sent them and their recipients.

    With --json: a JSON array; with --follow --json: one JSON object a line, per change."""
    if state is not None and state not in STATES:
        raise fail(f"--state {state!r}: use one of {', '.join(STATES)}", Exit.BAD_INPUT)
    query = {"state": state, "deviceId": device, "simNumber": sim}
    if follow:
        try:
            connection.run(lambda a: _follow(a, limit, interval, query, json_output))
        except KeyboardInterrupt:
            raise typer.Exit(0) from None
        return
    found = connection.run(lambda a: _list(a, limit, **query))
    if json_output:
        print_json(found)
        return
    rows = [_row(m) for m in found]
    errors = any(row[-1] for row in rows)  # the error column only when there is one
    table = Table(Column("id", no_wrap=True), Column("state", no_wrap=True), "SIM",
                  "recipients", Column("created (UTC)", no_wrap=True),
                  *(["error"] if errors else []))
    for row in rows:
        table.add_row(*(row if errors else row[:-1]))
    out.print(table)


async def _follow(api: Api, limit: int, interval: float, query: dict[str, Any],
                  json_output: bool) -> None:
    """Show the latest messages, then every new message and state change.

    Each look lists the messages made since shortly before the newest one seen (server
    time, so the client's clock does not matter), and asks for the ones still under way
    that the list no longer shows (up to 50 a look). With --state, each look lists the
    newest of that state instead, and a message that leaves it shows its new state."""
    seen: dict[str, str] = {}
    under_way: dict[str, None] = {}  # ids not yet in a final state, oldest first
    newest: datetime | None = None

    def note(message: dict[str, Any], quiet: bool = False) -> None:
        nonlocal newest
        before = seen.get(message["id"])
        if before != message["state"]:
            seen[message["id"]] = message["state"]
            if not quiet:
                _show(message, json_output, before)
        if message["state"] in FINAL:
            under_way.pop(message["id"], None)
        else:
            under_way.setdefault(message["id"])
        created = datetime.fromisoformat(message["createdAt"])
        newest = created if newest is None else max(newest, created)

    def window() -> dict[str, str]:
        if query.get("state") or newest is None:
            return {}
        return {"from": (newest - timedelta(seconds=5)).isoformat()}

    for message in reversed(await _list(api, limit, **query)):
        note(message)
    # the rest of the first look's window is known already: only its changes are news;
    # a message made since the first look is news itself
    shown = newest
    for message in reversed(await _list(api, 10 * PAGE, **query, **window())):
        note(message, quiet=shown is not None
             and datetime.fromisoformat(message["createdAt"]) <= shown)
    while True:
        await asyncio.sleep(interval)
        recent = await _list(api, PAGE if query.get("state") else 10 * PAGE, **query,
                             **window())
        for message in reversed(recent):
            note(message)
        listed = {m["id"] for m in recent}
        for message_id in [i for i in under_way if i not in listed][:50]:
            note(await api.message(message_id))


def _show(message: dict[str, Any], json_output: bool, before: str | None) -> None:
    if json_output:
        print_json(message)
        return
    change = f"{before} -> {message['state']}" if before else message["state"]
    sim = message.get("simNumber")
    errors = _errors(message)
    out.print(f"{datetime.now():%H:%M:%S} [bold]{message['id']}[/] {change}"
              + (f" via SIM {sim}" if sim else "") + f" to {_recipients(message)}"
              + (f": {errors}" if errors else ""), highlight=False)


@connected
def message(
    message_id: Annotated[str, typer.Argument(metavar="ID", help="The message id.")],
    json_output: JsonOpt = False,
    *,
    connection: LazyApi,  # given by @connected
) -> None:
    """One message in detail: its states over time, recipients and send attempts."""
    found = connection.run(lambda a: a.message(message_id))
    if json_output:
        print_json(found)
        return
    sim = found.get("simNumber")
    out.print(f"[bold]{found['id']}[/] {found['state']}" + (f" via SIM {sim}" if sim else "")
              + f"  device {found.get('deviceId', '-')}", highlight=False)
    timeline = Table("state", "at (UTC)", title="states", title_justify="left")
    for name, at in sorted(found.get("states", {}).items(), key=lambda kv: kv[1]):
        timeline.add_row(name, when(at))
    out.print(timeline)
    recipients = Table("recipient", "state", "error", title="recipients",
                       title_justify="left")
    for r in found.get("recipients", []):
        recipients.add_row(r["phoneNumber"], r["state"], r.get("error") or "")
    out.print(recipients)
    if found.get("attempts"):
        attempts = Table("at (UTC)", "device", "SIM", "error", title="attempts",
                         title_justify="left")
        for a in found["attempts"]:
            attempts.add_row(when(a.get("at")), a.get("deviceId") or "-",
                             str(a.get("simNumber") or "-"), a.get("error") or "")
        out.print(attempts)


@connected
def inbox(
    limit: Annotated[int, typer.Option("--limit", min=1, max=500, help="How many, newest"
                                                                        " first.")] = 20,
    kind: Annotated[str | None, typer.Option(
        "--type", help="Only SMS, DATA_SMS, MMS or MMS_DOWNLOADED.")] = None,
    device: Annotated[str | None, typer.Option("--device", help="Only this device's.")] = None,
    json_output: JsonOpt = False,
    *,
    connection: LazyApi,  # given by @connected
) -> None:
    """Received SMS, newest first, with the SIM that received each."""
    page = connection.run(lambda a: a.inbox(limit=limit, type=kind, deviceId=device))
    if json_output:
        print_json(page.items)
        return
    table = Table("received (UTC)", "from", "to", "SIM", "type", "text")
    for m in page.items:
        table.add_row(when(m.get("createdAt")), m.get("sender") or "-",
                      m.get("recipient") or "-", str(m.get("simNumber") or "-"),
                      m.get("type", ""), m.get("contentPreview", ""))
    out.print(table)
    if page.total is not None and page.total > len(page.items):
        out.print(f"{len(page.items)} of {page.total}; --limit for more", highlight=False)
