"""`simgate devices list`, `devices rm ID` and `simgate sims`: the devices of the API user
and their SIM slots, over /3rdparty/v1 like the other user commands."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

import typer
from rich.table import Column, Table

from simgate.client.api import Api
from simgate.usercli.common import Exit, JsonOpt, LazyApi, connected, fail, out, print_json, when

app = typer.Typer(help="List the devices (phones, agents) of the user, or remove one.",
                  no_args_is_help=True)


@app.command("list")
@connected
def list_devices(json_output: JsonOpt = False, *, connection: LazyApi) -> None:
    """Devices with their id, when each was last seen and its SIM slots."""
    found = connection.run(lambda a: a.devices())
    if json_output:
        print_json(found)
        return
    if not found:
        out.print("no device: start `simgate agent` or connect a phone", highlight=False)
        return
    table = Table(Column("id", no_wrap=True), "name", Column("last seen (UTC)", no_wrap=True),
                  "SIMs")
    for device in found:
        sims = ", ".join(f"{s['simNumber']} {s.get('state', '')}".strip()
                         for s in device.get("simCards", []))
        table.add_row(device["id"], device["name"], when(device.get("lastSeen")), sims or "-")
    out.print(table)


@app.command("rm")
@connected
def remove(
    device_id: Annotated[str, typer.Argument(metavar="ID",
                                             help="The device's id (`simgate devices list`).")],
    *,
    connection: LazyApi,
) -> None:
    """Remove a device: its waiting messages go to another device (or wait for one), and
    it is no longer counted by `/health` and `simgate doctor`. A device that registers
    again comes back as a new one."""

    async def work(api: Api) -> str:
        names = {d["id"]: d["name"] for d in await api.devices()}
        if device_id not in names:
            raise fail(f"no device {device_id!r}: `simgate devices list` shows the ids",
                       Exit.ERROR)
        await api.remove_device(device_id)
        return names[device_id]

    name = connection.run(work)
    out.print(f"removed device {device_id} ({name})", highlight=False)


@dataclass(frozen=True)
class _Column:
    header: str
    values: list[str]
    wraps: bool  # may wrap onto more lines (its longest word is its narrowest)
    keep: int  # dropped first when the table is too wide: the lowest

    def narrowest(self) -> int:
        cells = [self.header, *self.values]
        if self.wraps:
            return max(len(word) for cell in cells for word in (cell.split() or [""]))
        return max(len(cell) for cell in cells)


def _fit(columns: list[_Column], width: int) -> list[_Column]:
    """The columns that fit in `width` without cutting a cell that may not wrap; the least
    needed go first, the phone number never."""
    shown = list(columns)
    while sum(c.narrowest() for c in shown) + 3 * len(shown) + 1 > width:
        optional = [c for c in shown if c.keep < 9]
        if not optional:
            break
        shown.remove(min(optional, key=lambda c: c.keep))
    return shown


def _counts(used: dict[str, Any] | None) -> tuple[str, str, str]:
    """Sends today, this month and distinct recipients, each "n/limit" when limited."""
    if used is None:
        return "-", "-", "-"
    limits = used.get("limits") or {}

    def of(value: int, limit: int | None) -> str:
        return str(value) if limit is None else f"{value}/{limit}"

    return (of(used["sentToday"], limits.get("dailyLimit")),
            of(used["sentThisMonth"], limits.get("monthlyLimit")),
            of(used["recipientsThisMonth"], limits.get("uniqueRecipientsMonthly")))


def _note(sim: dict[str, Any], used: dict[str, Any] | None) -> str:
    notes = [sim["detail"]] if sim.get("detail") else []
    if used is not None:
        if not used.get("enabled", True):
            notes.append("disabled in routing.sims")
        if used.get("atLimit"):
            notes.append(used["atLimit"])
        if used.get("pausedUntil"):
            notes.append(f"paused until {used['pausedUntil']}: {used.get('pauseReason') or ''}")
    return "; ".join(notes)


@connected
def sims(json_output: JsonOpt = False, *, connection: LazyApi) -> None:
    """List devices and their SIM slots with their live state and their sends against
    their limits.

    Without --username/--password, uses the credentials `simgate run` keeps in the data
    directory (credentials.json). The table fits the terminal: columns are dropped
    (recipients, month, operator, signal...) before a phone number is cut; --json has all.
    """

    async def work(api: Api) -> list[dict[str, Any]]:
        devices = await api.devices()
        usage = {(u["deviceId"], u["simNumber"]): u for u in await api.sim_usage()}
        return [{"deviceId": d["id"], "deviceName": d["name"], **sim,
                 "usage": usage.get((d["id"], sim["simNumber"]))}
                for d in devices for sim in d.get("simCards", [])]

    found = connection.run(work)
    if json_output:
        print_json(found)
        return
    rows = [(s, _counts(s["usage"])) for s in found]
    columns = [
        _Column("device", [s["deviceName"] for s, _ in rows], True, 5),
        _Column("SIM", [str(s["simNumber"]) for s, _ in rows], False, 10),
        _Column("state", [s.get("state", "") for s, _ in rows], False, 10),
        _Column("phone number", [s.get("phoneNumber") or "-" for s, _ in rows], False, 10),
        _Column("operator", [s.get("carrierName") or "-" for s, _ in rows], False, 3),
        _Column("signal", ["-" if s.get("signal") is None else f"{s['signal']}/31"
                           for s, _ in rows], False, 2),
        _Column("today", [c[0] for _, c in rows], False, 6),
        _Column("month", [c[1] for _, c in rows], False, 1),
        _Column("recipients", [c[2] for _, c in rows], False, 0),
        _Column("detail", [_note(s, s["usage"]) for s, _ in rows], True, 4),
    ]
    if not any(columns[-1].values):
        columns.pop()
    shown = _fit(columns, out.width)
    table = Table(*(Column(c.header, no_wrap=not c.wraps, min_width=c.narrowest(),
                           overflow="fold") for c in shown))
    for i in range(len(rows)):
        table.add_row(*(c.values[i] for c in shown))
    out.print(table)
    dropped = [c.header for c in columns if c not in shown]
    if dropped:
        out.print(f"(too narrow for: {', '.join(dropped)}; widen the terminal or use --json)",
                  highlight=False)
