"""Health endpoints: /health and its live, ready and startup probes."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from simgate import __version__
from simgate.server.deps import GatewayDep
from simgate.services.health import Check, database_check, device_checks, overall

router = APIRouter(tags=["health"])


def _respond(checks: dict[str, Check]) -> JSONResponse:
    status = overall(checks)
    body = {"status": status, "version": __version__, "releaseId": 1, "checks": checks}
    return JSONResponse(body, status_code=500 if status == "fail" else 200)


@router.get("/health")
async def health(gateway: GatewayDep) -> JSONResponse:
    """The store, each device and each SIM slot; 500 when a check fails."""
    checks = {"database:connection": await database_check(gateway.engine)}
    checks.update(await device_checks(gateway.sessions))
    return _respond(checks)


@router.get("/health/live")
async def live() -> JSONResponse:
    """The process answers."""
    return _respond({"process:alive": {"status": "pass", "description": "process answers"}})


@router.get("/health/ready")
async def ready(gateway: GatewayDep) -> JSONResponse:
    """Ready to accept messages: the store answers."""
    return _respond({"database:connection": await database_check(gateway.engine)})


@router.get("/health/startup")
async def startup(gateway: GatewayDep) -> JSONResponse:
    """Started: migrations applied and services running (answers once the app is up)."""
    return _respond({"startup:complete": {"status": "pass",
                                          "description": "migrations applied, services started"}})
