"""Health checks of the gateway: the store, every device and every SIM slot."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from simgate.domain.sims import ADVICE, SimStatus
from simgate.services.ingest import refused_by_the_app
from simgate.services.usage import SimReport
from simgate.store.models import Device, Message, utcnow

# A device not heard from for this long is reported as a warning.
STALE_AFTER = timedelta(minutes=15)

Check = dict[str, Any]
log = logging.getLogger(__name__)

def overall(checks: dict[str, Check]) -> str:
    statuses = {c["status"] for c in checks.values()}
    return "fail" if "fail" in statuses else "warn" if "warn" in statuses else "pass"


async def database_check(engine: AsyncEngine) -> Check:
    try:
        async with engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
    except Exception:  # noqa: BLE001 - any failure is the answer here
        log.exception("health: database unreachable")
        # the cause (with host names) goes to the log: anyone may ask for health
        return {"status": "fail", "description": "database unreachable: see the server log"}
    return {"status": "pass", "description": "database reachable"}


async def device_checks(sessions: async_sessionmaker, user_id: int | None = None,
                        more: Callable[[Device], dict[str, Check]] | None = None
                        ) -> dict[str, Check]:
    """Per device (of one user, or of all): connection, each SIM slot, and messages failed
    in the last hour; and what `more` says of it."""
    checks: dict[str, Check] = {}
    now = utcnow()
    mine = [] if user_id is None else [Device.user_id == user_id]
    async with sessions() as session:
        devices = list(await session.scalars(
            select(Device).where(Device.deleted_at.is_(None), *mine)))
        failed = dict((await session.execute(
            select(Message.device_id, func.count())
            .where(Message.state == "Failed", Message.updated_at >= now - timedelta(hours=1),
                   *([Message.device_id.in_([d.id for d in devices])] if mine else []))
            .group_by(Message.device_id)
        )).all())
    for device in devices:
        prefix = f"devices:{device.id}"
        seen_ago = now - device.last_seen
        checks[f"{prefix}:connection"] = {
            "status": "warn" if seen_ago > STALE_AFTER else "pass",
            "description": f"{device.name}: last seen {int(seen_ago.total_seconds())} s ago",
            "observedValue": int(seen_ago.total_seconds()), "observedUnit": "s",
        }
        ready = 0
        for sim in device.sims:
            status = SimStatus(sim.status)
            ready += status in (SimStatus.READY, SimStatus.UNKNOWN)  # unknown: sends are tried
            description = f"SIM {sim.slot_index + 1}: {status.value}"
            if status is not SimStatus.READY:
                description += f" - {sim.detail or ADVICE[status]}"
            elif sim.carrier_name:
                description += f" on {sim.carrier_name}"
            paused = sim.paused_until is not None and sim.paused_until > now
            if paused:
                description += (f"; paused by routing until {sim.paused_until:%H:%M:%S} UTC:"
                                f" {sim.pause_reason}")
            checks[f"{prefix}:sim:{sim.slot_index + 1}"] = {
                "status": "pass" if status is SimStatus.READY and not paused else "warn",
                "description": description,
                "observedValue": sim.signal, "observedUnit": "csq",
            }
        if device.sims and not ready:
            checks[f"{prefix}:sims"] = {"status": "fail",
                                       "description": f"{device.name}: no SIM is ready to send"}
        if more is not None:
            checks.update({f"{prefix}:{name}": check for name, check in more(device).items()})
        count = failed.get(device.id, 0)
        checks[f"{prefix}:messages:failed"] = {
            "status": "warn" if count else "pass",
            "description": f"{count} message(s) failed in the last hour",
            "observedValue": count, "observedUnit": "messages",
        }
    return checks


def usage_checks(reports: list[SimReport]) -> dict[str, Check]:
    """Per SIM: sends today and this month against its limits, distinct recipients; a
    warning when routing skips it (a limit reached, or a cool-down after failed sends)."""
    checks: dict[str, Check] = {}
    for report in reports:
        skipped = ([f"paused until {report.paused_until:%H:%M:%S} UTC: {report.pause_reason}"]
                   if report.paused_until and report.paused_until > utcnow() else [])
        skipped += [report.at_limit] if report.at_limit else []
        checks[f"devices:{report.device_id}:sim:{report.slot_index + 1}:usage"] = {
            "status": "warn" if skipped else "pass",
            "description": f"SIM {report.slot_index + 1}: {report.describe()}"
                           + ("; skipped by routing: " + "; ".join(skipped) if skipped else ""),
            "observedValue": report.usage.day, "observedUnit": "messages today",
        }
    return checks


def ingest_check(url: str | None) -> dict[str, Check]:
    """A warning when a phone was handed ingest hooks its app refuses (plain HTTP to a
    host other than 127.0.0.1): its received SMS would never reach the server."""
    if url is None or not refused_by_the_app(url):
        return {}
    origin = url.split("/mobile/v1/", 1)[0].split("/api/", 1)[0]  # not the secret part
    return {"ingest": {
        "status": "warn",
        "description": f"the phone is handed ingest hooks at {origin}, plain HTTP, which"
                       " the Android app refuses to any host but 127.0.0.1: set"
                       " SIMGATE_PUBLIC_URL to the https:// address the phone reaches"
                       " (README \"Use your Android phone\")"}}


def push_check(push_token: str | None, fcm_reaches_phones: bool,
               streaming: bool) -> dict[str, Check]:
    """A warning for a phone with an FCM token while no FCM push is sent (the relay off)
    and it has no event stream open: on AUTO it hears of new messages only when it polls,
    every 15 minutes. It is handed SSE_ONLY, which the app applies when restarted."""
    if not push_token or fcm_reaches_phones or streaming:
        return {}
    return {"push": {
        "status": "warn",
        "description": "the phone waits for FCM pushes, which this server does not send"
                       " (SIMGATE_PUSH_RELAY=false), and has no event stream open: it is"
                       " handed notification_channel SSE_ONLY; restart the app to apply"
                       " (or set SIMGATE_PUSH_RELAY=true)"}}
