"""simgate's routing API: per-SIM usage against the limits of `routing.sims`."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter

from simgate.server.deps import GatewayDep, user_with
from simgate.server.schemas import SimUsageOut
from simgate.server.wirejson import StrictJSONRoute
from simgate.services.usage import sim_reports

router = APIRouter(tags=["routing"], route_class=StrictJSONRoute)


@router.get("/routing/usage", response_model=list[SimUsageOut])
async def routing_usage(user_id: Annotated[int, user_with("devices:list")],
                        gateway: GatewayDep) -> list[SimUsageOut]:
    """Each SIM of the user's devices: sends this minute, today and this month, distinct
    recipients this month, its limits, and why routing skips it now, if it does (a limit
    reached, a cool-down after failed sends). simgate's own; counted in the store, so
    every server worker answers the same."""
    routing = (await gateway.device_settings.get(user_id)).get("routing") or {}
    return [SimUsageOut.of(r) for r in
            await sim_reports(gateway.sessions, gateway.usage, user_id, routing)]
