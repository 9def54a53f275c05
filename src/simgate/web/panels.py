"""What the dashboard's pages show, read through the services: devices with their SIM
slots, health and advice, and a message's timeline. Plain data for the templates."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from simgate.domain.settings import with_defaults
from simgate.domain.sims import ADVICE, SimStatus
from simgate.services.gateway import Gateway
from simgate.services.health import STALE_AFTER, device_checks
from simgate.store.models import Device, Message, utcnow

# the per-SIM limits of routing.sims shown beside each slot, with their labels
LIMITS = (("rate_per_minute", "a minute"), ("daily_limit", "a day"),
          ("monthly_limit", "a month"))


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
    limits: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class DevicePanel:
    id: str
    name: str
    last_seen: datetime
    stale: bool
    health: str
    failed_last_hour: int
    sims: list[SimPanel]


def _limits(routing: dict[str, Any], number: int) -> list[str]:
    rules = routing.get("sims", {}).get(str(number), {})
    shown = [f"at most {rules[key]} {label}" for key, label in LIMITS if rules.get(key)]
    if rules.get("enabled") is False:
        shown.insert(0, "disabled in settings")
    return shown


async def devices(gateway: Gateway, user_id: int) -> list[DevicePanel]:
    """The user's devices and their SIM slots, as the health checks see them."""
    found = await gateway.devices.list(user_id)
    checks = await device_checks(gateway.sessions, user_id)
    routing = with_defaults(await gateway.device_settings.get(user_id))["routing"]
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
            sims=[_sim(device, sim, checks, routing) for sim in device.sims]))
    return panels


def _sim(device: Device, sim: Any, checks: dict[str, Any],
         routing: dict[str, Any]) -> SimPanel:
    status = SimStatus(sim.status)
    number = sim.slot_index + 1
    advice = "" if status is SimStatus.READY else (sim.detail or ADVICE[status])
    return SimPanel(
        number=number, status=status.value, ready=status is SimStatus.READY,
        phone_number=sim.phone_number, operator=sim.carrier_name, signal=sim.signal,
        health=checks.get(f"devices:{device.id}:sim:{number}", {}).get("description", ""),
        advice=advice, limits=_limits(routing, number))


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
