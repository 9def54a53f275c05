"""FastAPI dependencies and small helpers shared by the routers."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import Depends, Request, Security

from simgate.domain.dates import utc
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
    """A timestamp in UTC, the same instant (one without an offset is taken as UTC)."""
    return utc(value) if value is not None else None


def public_base(request: Request) -> str:
    """The base of the URLs handed out: SIMGATE_PUBLIC_URL, else the request's scheme and
    host (uvicorn believes a forwarded scheme only from SIMGATE_FORWARDED_ALLOW_IPS)."""
    configured = request.app.state.gateway.settings.public_url
    return configured or f"{request.url.scheme}://{request.url.netloc}"
