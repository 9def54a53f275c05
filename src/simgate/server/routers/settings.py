"""Settings API: the device settings of the user, as the official client reads them."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Body, Response

from simgate.domain.settings import dropped, public_view
from simgate.server.deps import GatewayDep, user_with
from simgate.server.wirejson import StrictJSONRoute

router = APIRouter(prefix="/settings", tags=["settings"],
                   route_class=StrictJSONRoute)

SettingsBody = dict[str, Any]


# The answer's list of keys not kept: curl shows a body, not a Warning header. The
# official clients read the answer as a dict (Python) or into a struct that ignores a key
# it does not know (Go), so one more top-level key costs them nothing; written back in a
# PUT, it is ignored.
DROPPED = "dropped"


def _without_note(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k != DROPPED}


def _answer(shown: dict[str, Any], names: list[str]) -> dict[str, Any]:
    """The settings, and the names not kept, escaped as in the header (a name may hold
    what JSON cannot carry, such as a lone surrogate)."""
    return {**shown, DROPPED: [_safe(n) for n in names[:MAX_NAMED * 10]]} if names else shown


def _safe(name: str) -> str:
    return json.dumps(name[:64])[1:-1]


def _warn_dropped(body: dict[str, Any], response: Response) -> list[str]:
    """Keys the original server drops are dropped here too; the Warning header names them
    (RFC 9111 warn-code 299: a persistent warning), and so does the answer's `dropped`."""
    names = dropped(body)
    if names:
        # a header is Latin-1 and a quoted-string ends at '"': names go JSON-escaped, ASCII,
        # cut to 64 characters, ten at most (an answer does not echo the whole input)
        shown = ", ".join(_safe(name) for name in names[:MAX_NAMED])
        more = f" and {len(names) - MAX_NAMED} more" if len(names) > MAX_NAMED else ""
        response.headers["Warning"] = (
            f'299 simgate "settings not kept (sms-gate.app drops them too): {shown}{more}"')
    return names


MAX_NAMED = 10


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
    response: Response,
    body: SettingsBody = Body(),
) -> dict[str, Any]:
    """Replace all settings; keys not given go back to their defaults. Keys not kept are
    named in `dropped` (and the Warning header)."""
    body = _without_note(body)
    names = _warn_dropped(body, response)
    values = {k: v for k, v in body.items() if v is not None}
    return _answer(public_view(await gateway.device_settings.replace(user_id, values)), names)


@router.patch("")
async def patch_settings(user_id: Annotated[int, user_with("settings:write")], gateway: GatewayDep,
                         response: Response, body: SettingsBody = Body()) -> dict[str, Any]:
    """Merge into the settings; a null value resets that key, or group, to its default.
    Keys not kept are named in `dropped` (and the Warning header)."""
    body = _without_note(body)
    names = _warn_dropped(body, response)
    return _answer(public_view(await gateway.device_settings.patch(user_id, body)), names)
