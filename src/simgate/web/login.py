"""Logging in and out of the dashboard, with the users and passwords of the API."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from simgate.server.auth import client_address
from simgate.services.errors import TooManyRequests
from simgate.web import session as sessions
from simgate.web.render import ViewerDep, checked_form, render

router = APIRouter(include_in_schema=False)


def _safe_next(target: str) -> str:
    """Only a path of this site: never another host (//evil.example, \\\\evil)."""
    if target.startswith("/") and not target.startswith(("//", "/\\")):
        return target
    return "/"


async def _login_page(request: Request, next_page: str, error: str = "",
                      status_code: int = 200, username: str = "",
                      retry_after: int | None = None) -> HTMLResponse:
    """The form, with an anonymous session holding its CSRF token; `next_page` is where
    a successful login leads."""
    anonymous = await sessions.decode(request)
    if anonymous is None or anonymous.user_id is not None:
        anonymous = sessions.new_session()
    response = render(request, "login.html", {
        "error": error, "username": username,
        "next": _safe_next(next_page)},
        status_code=status_code, csrf=anonymous.csrf)
    if retry_after is not None:
        response.headers["Retry-After"] = str(retry_after)
    await sessions.attach(request, response, anonymous)
    return response


@router.get("/login")
async def login_form(request: Request) -> Response:
    if await sessions.logged_in(request) is not None:
        return RedirectResponse(_safe_next(request.query_params.get("next", "/")), 303)
    return await _login_page(request, request.query_params.get("next", "/"))


@router.post("/login")
async def login(request: Request) -> Response:
    """Check the password as the API does: failed logins count against the caller's
    address and the user (the same limiter), so the form is no way around it."""
    form = await checked_form(request, await sessions.decode(request))
    username, password = form.get("username").strip(), form.get("password")
    next_page = form.get("next", "/")
    gateway = request.app.state.gateway
    try:
        user_id = await gateway.users.authenticate(username, password, client_address(request))
    except TooManyRequests as exc:
        return await _login_page(request, next_page, exc.message, 429, username,
                                 exc.retry_after)
    if user_id is None:
        return await _login_page(request, next_page, "Invalid username or password.", 401,
                                 username)
    response = RedirectResponse(_safe_next(next_page), 303)
    # a new session (and CSRF token) at login: nothing chosen before it carries over
    await sessions.attach(request, response, sessions.new_session(
        user_id, await sessions.password_stamp(request, user_id)))
    return response


@router.post("/logout")
async def logout(request: Request, who: ViewerDep) -> Response:
    await checked_form(request, who.session)
    response = RedirectResponse("/login", 303)
    sessions.forget(request, response)
    return response
