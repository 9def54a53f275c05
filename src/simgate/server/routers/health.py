"""Health endpoints: /health and its live, ready and startup probes."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

from simgate import __version__

router = APIRouter(tags=["health"])


def _overall(checks: dict[str, dict[str, Any]]) -> str:
    statuses = {c["status"] for c in checks.values()}
    return "fail" if "fail" in statuses else "warn" if "warn" in statuses else "pass"


def _respond(checks: dict[str, dict[str, Any]]) -> JSONResponse:
    status = _overall(checks)
    body = {"status": status, "version": __version__, "releaseId": 1, "checks": checks}
    return JSONResponse(body, status_code=500 if status == "fail" else 200)


async def _database(request: Request) -> dict[str, Any]:
    try:
        async with request.app.state.gateway.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001 - any failure is the answer here
        return {"status": "fail", "description": f"database unreachable: {exc}"}
    return {"status": "pass", "description": "database reachable"}


@router.get("/health")
async def health(request: Request) -> JSONResponse:
    """Overall health; 500 when a check fails."""
    return _respond({"database:connection": await _database(request)})


@router.get("/health/live")
async def live() -> JSONResponse:
    return _respond({"process:alive": {"status": "pass", "description": "process answers"}})


@router.get("/health/ready")
async def ready(request: Request) -> JSONResponse:
    return _respond({"database:connection": await _database(request)})


@router.get("/health/startup")
async def startup(request: Request) -> JSONResponse:
    started = getattr(request.app.state, "gateway", None) is not None
    return _respond({"startup:complete": {
        "status": "pass" if started else "fail",
        "description": "migrations applied, services started" if started else "starting",
    }})
