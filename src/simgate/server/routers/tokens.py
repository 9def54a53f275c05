"""API tokens, /3rdparty/v1/auth/token: so clients need not send the password each time."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Request, Response, Security, status

from simgate.server.auth import Caller, bearer_token, current_caller, token_refused
from simgate.server.deps import GatewayDep
from simgate.server.schemas import TokenOut, TokenRequest
from simgate.server.wirejson import StrictJSONRoute
from simgate.services.tokens import REFRESH, InvalidToken, IssuedToken, NotARefreshToken

router = APIRouter(prefix="/auth/token", tags=["tokens"], route_class=StrictJSONRoute)

Manager = Annotated[Caller, Security(current_caller, scopes=["tokens:manage"])]


def _out(issued: IssuedToken) -> TokenOut:
    return TokenOut.of(issued.id, issued.access_token, issued.refresh_token, issued.expires_at)


@router.post("", response_model=TokenOut, status_code=status.HTTP_201_CREATED,
             response_model_exclude_none=True)
async def generate_token(body: TokenRequest, caller: Manager, gateway: GatewayDep) -> TokenOut:
    """An access token with the asked scopes, and a refresh token. Asked with a token, it
    gets at most that token's scopes and lifetime, and no refresh token."""
    return _out(await gateway.tokens.issue(caller.user_id, body.scopes, body.ttl, caller.token))


@router.post("/refresh", response_model=TokenOut, status_code=status.HTTP_201_CREATED,
             response_model_exclude_none=True)
async def refresh_token(request: Request, gateway: GatewayDep) -> TokenOut:
    """A new pair for `Authorization: Bearer <refreshToken>`; the old pair stops working."""
    token = bearer_token(request)
    how = (f"send the refresh token as Authorization: Bearer <token> (the refreshToken"
           f" given with the access token, holding {REFRESH})")
    if token is None:
        if request.headers.get("authorization", "").lower().startswith("basic "):
            raise HTTPException(403, f"a password gets no refresh: {how}")  # as the original
        raise token_refused(how)
    try:
        return _out(await gateway.tokens.refresh(token))
    except NotARefreshToken as exc:
        raise HTTPException(403, str(exc)) from None
    except InvalidToken as exc:
        raise token_refused(str(exc)) from None


@router.delete("/{jti}", status_code=status.HTTP_204_NO_CONTENT)
async def revoke_token(jti: str, caller: Manager, gateway: GatewayDep) -> Response:
    """Revoke a token pair by its id: both its access and its refresh token stop working.
    An id that names no pair of the caller's is a 204 too, as with the original."""
    await gateway.tokens.revoke(caller.user_id, jti)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
