"""The dashboard's API tokens: make one with chosen scopes and lifetime (shown once, as
POST /3rdparty/v1/auth/token answers it), list the ones that still work, revoke one.

The same service as the API: the same scope and lifetime checks, the same revocation (a
pair minted with a revoked token ends with it).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from simgate.services.errors import ServiceError
from simgate.services.tokens import ALL, DEFAULT_TTL, MAX_TTL, REFRESH, SCOPES, IssuedToken
from simgate.web.render import FormDep, Viewer, ViewerDep, render

router = APIRouter(include_in_schema=False)

LIFETIMES = [(3600, "1 hour"), (86400, "1 day"), (7 * 86400, "7 days"),
             (MAX_TTL, "30 days (the longest)")]


async def _context(who: Viewer, **extra: Any) -> dict[str, Any]:
    rows = await who.gateway.tokens.list(who.user_id)
    return {"tokens": [{"id": row.id, "scopes": row.scopes, "created_at": row.created_at,
                        "access_until": row.created_at + timedelta(seconds=row.ttl_seconds),
                        "refresh_until": row.expires_at if row.refresh_hash else None,
                        "minted": row.parent_id is not None} for row in rows],
            "scopes": [ALL, *sorted(SCOPES - {ALL, REFRESH})],
            "lifetimes": LIFETIMES, "default_ttl": DEFAULT_TTL,
            "issued": None, "error": "", "notice": "", "chosen": [], **extra}


@router.get("/tokens")
async def tokens(request: Request, who: ViewerDep) -> HTMLResponse:
    notice = "Token revoked: it no longer works." if request.query_params.get("revoked") else ""
    return render(request, "tokens.html", await _context(who, notice=notice), who=who)


def _ttl(value: str) -> int:
    if not value.strip().isdigit():
        raise ServiceError("lifetime: pick one from the list")
    return int(value)


@router.post("/tokens")
async def make_token(request: Request, who: ViewerDep, form: FormDep) -> Response:
    """A new pair, shown on this answer only: the store keeps hashes, never the tokens."""
    chosen = form.fields.get("scope", [])
    issued: IssuedToken | None = None
    try:
        issued = await who.gateway.tokens.issue(who.user_id, chosen, _ttl(form.get("ttl")))
    except ServiceError as exc:
        return render(request, "tokens.html", await _context(
            who, error=exc.message, chosen=chosen), exc.status, who=who)
    return render(request, "tokens.html", await _context(who, issued=issued, chosen=chosen),
                  201, who=who)


@router.post("/tokens/{token_id}/revoke")
async def revoke_token(token_id: str, who: ViewerDep, form: FormDep) -> Response:
    await who.gateway.tokens.revoke(who.user_id, token_id)
    return RedirectResponse("/tokens?revoked=1", 303)
