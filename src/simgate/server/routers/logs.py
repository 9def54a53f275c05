"""Logs API: what the server and the user's devices recorded (SIM errors included)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query

from simgate.server.deps import GatewayDep, aware, user_with
from simgate.server.schemas import LogOut
from simgate.server.wirejson import StrictJSONRoute

router = APIRouter(tags=["logs"], route_class=StrictJSONRoute)


@router.get("/logs", response_model=list[LogOut])
async def list_logs(
    user_id: Annotated[int, user_with("logs:read")], gateway: GatewayDep,
    since: Annotated[datetime | None, Query(alias="from")] = None,
    until: Annotated[datetime | None, Query(alias="to")] = None,
) -> list[LogOut]:
    """Entries newest first; `from`/`to` bound the period."""
    entries = await gateway.logs.list(user_id, aware(since), aware(until))
    return [LogOut(id=e.id, priority=e.priority, module=e.module, message=e.message,
                   context=e.context, created_at=e.created_at) for e in entries]
