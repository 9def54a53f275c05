"""What the dashboard's pages show, read through the services: devices with their SIM
slots, health and advice, and a message's timeline. Plain data for the templates."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from simgate.domain.sims import ADVICE, SimStatus
from simgate.services.gateway import Gateway
from simgate.services.health import STALE_AFTER, device_checks
from simgate.services.usage import SimReport, sim_reports
from simgate.store.models import Device, Message, utcnow


@dataclass(frozen=True)
class UsageBar:
    name: str  # "today", "this month", ...
    used: int
    limit: int | None


@dataclass(frozen=True)
class SimPanel:
    number: int  # 1-based simNumber
    status: str
    ready: bool
    phone_number: str | None
    operator: str | None
    signal: int | None
    health: str  # the health check's words
    advice: str  # what to do when it is not ready; empty when it is
    usage: str = ""  # sends this minute, today, this month against the limits
    held: str = ""  # why routing skips it now (a limit reached, a cool-down), if it does
    # each counter routing limits, against its limit (None: no limit), drawn as bars
    bars: tuple[UsageBar, ...] = ()


@dataclass(frozen=True)
class DevicePanel:
    id: str
    name: str
    last_seen: datetime
    stale: bool
    health: str
    failed_last_hour: int
    sims: list[SimPanel]


def _usage(report: SimReport | None) -> tuple[str, str]:
    """The SIM's sends against its limits, and why routing skips it now, if it does."""
    if report is None:
        return "", ""
    rate = report.rule.rate_per_minute
    minute = f"minute {report.usage.minute}/{rate}, " if rate is not None else ""
    held = report.at_limit or ""
    if report.paused_until is not None:
        held = (f"paused until {report.paused_until:%H:%M:%S} UTC"
                + (f": {report.pause_reason}" if report.pause_reason else ""))
    return minute + report.describe(), held


def _bars(report: SimReport | None) -> tuple[UsageBar, ...]:
    """The counters that have a limit, and today's sends always."""
    if report is None:
        return ()
    rule, usage = report.rule, report.usage
    bars = [UsageBar("this minute", usage.minute, rule.rate_per_minute),
            UsageBar("today", usage.day, rule.daily_limit),
            UsageBar("this month", usage.month, rule.monthly_limit),
            UsageBar("recipients this month", usage.recipients_month,
                     rule.unique_recipients_monthly)]
    return tuple(b for b in bars if b.limit is not None or b.name == "today")


async def devices(gateway: Gateway, user_id: int) -> list[DevicePanel]:
    """The user's devices and their SIM slots, as the health checks see them."""
    found = await gateway.devices.list(user_id)
    checks = await device_checks(gateway.sessions, user_id)
    routing = (await gateway.device_settings.get(user_id)).get("routing") or {}
    reports = {(r.device_id, r.slot_index + 1): r
               for r in await sim_reports(gateway.sessions, gateway.usage, user_id, routing)}
    now = utcnow()
    panels = []
    for device in found:
        prefix = f"devices:{device.id}"
        panels.append(DevicePanel(
            id=device.id, name=device.name, last_seen=device.last_seen,
            stale=now - device.last_seen > STALE_AFTER,
            health=checks.get(f"{prefix}:connection", {}).get("description", ""),
            failed_last_hour=checks.get(f"{prefix}:messages:failed", {})
            .get("observedValue", 0),
            sims=[_sim(device, sim, checks, reports) for sim in device.sims]))
    return panels


def _sim(device: Device, sim: Any, checks: dict[str, Any],
         reports: dict[tuple[str, int], SimReport]) -> SimPanel:
    status = SimStatus(sim.status)
    number = sim.slot_index + 1
    advice = "" if status is SimStatus.READY else (sim.detail or ADVICE[status])
    report = reports.get((device.id, number))
    usage, held = _usage(report)
    return SimPanel(
        number=number, status=status.value, ready=status is SimStatus.READY,
        phone_number=sim.phone_number, operator=sim.carrier_name, signal=sim.signal,
        health=checks.get(f"devices:{device.id}:sim:{number}", {}).get("description", ""),
        advice=advice, usage=usage, held=held, bars=_bars(report))


@dataclass(frozen=True)
class SimChoice:
    """One entry of the send form's SIM picker."""

    value: str  # "" for automatic, else "<device id>:<simNumber>"
    label: str


def sim_choices(panels: list[DevicePanel]) -> list[SimChoice]:
    choices = [SimChoice("", "Automatic (the settings' SIM selection)")]
    for device in panels:
        for sim in device.sims:
            if sim.status == SimStatus.ABSENT.value:
                continue
            about = ", ".join(x for x in (sim.phone_number, sim.operator) if x)
            label = f"SIM {sim.number}" + (f" ({about})" if about else "")
            if sim.status != SimStatus.READY.value:
                label += f" - {sim.status}"
            if len(panels) > 1:
                label += f" on {device.name}"
            choices.append(SimChoice(f"{device.id}:{sim.number}", label))
    return choices


@dataclass(frozen=True)
class Step:
    state: str
    at: str


def timeline(message: Message) -> list[Step]:
    """The states a message went through, in the order it reached them."""
    return [Step(state, at) for state, at in sorted(message.states.items(),
                                                    key=lambda item: item[1])]
