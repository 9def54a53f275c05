"""FastAPI dependencies and small helpers shared by the routers."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Depends, Request, Security

from simgate.server.auth import current_device, current_user
from simgate.services.devices import DeviceIdentity
from simgate.services.gateway import Gateway


async def gateway_of(request: Request) -> Gateway:
    return request.app.state.gateway


GatewayDep = Annotated[Gateway, Depends(gateway_of)]
DeviceDep = Annotated[DeviceIdentity, Depends(current_device)]


def user_with(scope: str) -> Any:
    """The id of the user calling, who must hold `scope` (Basic credentials hold all)."""
    return Security(current_user, scopes=[scope])


def aware(value: datetime | None) -> datetime | None:
    """Timestamps without an offset are taken as UTC."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value
