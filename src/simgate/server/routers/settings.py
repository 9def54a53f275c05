"""Settings API: the device settings of the user, as the official client reads them."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body

from simgate.domain.settings import public_view
from simgate.server.deps import GatewayDep, user_with
from simgate.server.wirejson import StrictJSONRoute

router = APIRouter(prefix="/settings", tags=["settings"],
                   route_class=StrictJSONRoute)

SettingsBody = dict[str, dict[str, Any] | None]


@router.get("")
async def get_settings(
    user_id: Annotated[int, user_with("settings:read")],
    gateway: GatewayDep,
) -> dict[str, Any]:
    """All groups with defaults filled in; write-only secrets are not shown."""
    return public_view(await gateway.device_settings.get(user_id))


@router.put("")
async def replace_settings(
    user_id: Annotated[int, user_with("settings:write")],
    gateway: GatewayDep,
    body: SettingsBody = Body(),
) -> dict[str, Any]:
    """Replace all settings; keys not given go back to their defaults."""
    values = {k: v for k, v in body.items() if v is not None}
    return public_view(await gateway.device_settings.replace(user_id, values))


@router.patch("")
async def patch_settings(user_id: Annotated[int, user_with("settings:write")], gateway: GatewayDep,
                         body: SettingsBody = Body()) -> dict[str, Any]:
    """Merge into the settings; a null value resets that key, or group, to its default."""
    return public_view(await gateway.device_settings.patch(user_id, body))
