"""Health endpoints: /health and its live, ready and startup probes.

Anyone may ask (orchestrators and load balancers do, without credentials), so an answer
without credentials is about the server alone: its own checks, and a status of those
only (one tenant's SIM in Error must not take the server out of a load balancer). The
checks of devices and SIM slots are shown to their user, and count in the status they
see. A failing check is a 503, as the original answers.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from simgate import __version__
from simgate.server.auth import authorize, has_credentials
from simgate.server.deps import GatewayDep
from simgate.server.wirejson import StrictJSONRoute
from simgate.services.gateway import Gateway
from simgate.services.health import (
    Check,
    database_check,
    device_checks,
    ingest_check,
    overall,
    push_check,
    usage_checks,
)
from simgate.services.usage import sim_reports
from simgate.store.models import Device

router = APIRouter(tags=["health"], route_class=StrictJSONRoute)
DETAIL_SCOPE = "devices:list"


def _respond(checks: dict[str, Check]) -> JSONResponse:
    status = overall(checks)
    body = {"status": status, "version": __version__, "releaseId": 1, "checks": checks}
    return JSONResponse(body, status_code=503 if status == "fail" else 200)


@router.get("/health")
async def health(request: Request, gateway: GatewayDep) -> JSONResponse:
    """The store, and, to a user (Basic or a token with devices:list), each of their
    devices and SIM slots, and each SIM's usage against its routing limits; without
    credentials, the server's own checks alone. 503 when a check shown fails."""
    checks = {"database:connection": await database_check(gateway.engine),
              **{name: check() for name, check in gateway.server_checks.items()}}
    if has_credentials(request):
        caller = await authorize(request)
        if caller.allows(DETAIL_SCOPE):
            checks.update(await device_checks(gateway.sessions, caller.user_id,
                                              lambda d: phone_checks(gateway, d)))
            routing = (await gateway.device_settings.get(caller.user_id)).get("routing") or {}
            checks.update(usage_checks(await sim_reports(
                gateway.sessions, gateway.usage, caller.user_id, routing)))
    return _respond(checks)


@router.get("/health/live")
async def live() -> JSONResponse:
    """The process answers."""
    return _respond({"process:alive": {"status": "pass", "description": "process answers"}})


@router.get("/health/ready")
async def ready(request: Request, gateway: GatewayDep) -> JSONResponse:
    """Ready to accept messages: the store answers (and in `run`, the embedded agent has
    registered and knows its SIMs, so a send right after does not find "no device")."""
    checks = {"database:connection": await database_check(gateway.engine)}
    if request.app.state.readiness is not None:
        checks["agent:registered"] = request.app.state.readiness()
    return _respond(checks)


@router.get("/health/startup")
async def startup(gateway: GatewayDep) -> JSONResponse:
    """Started: migrations applied and services running (answers once the app is up)."""
    return _respond({"startup:complete": {"status": "pass",
                                          "description": "migrations applied, services started"}})


def phone_checks(gateway: Gateway, device: Device) -> dict[str, Check]:
    """What an Android phone is handed that it cannot use, or waits for in vain (an open
    stream is seen by the process that holds it)."""
    return ingest_check(gateway.ingest.handed.get(device.id)) | push_check(
        device.push_token, gateway.device_settings.fcm_reaches_phones,
        device.id in gateway.bus.devices_streaming())
