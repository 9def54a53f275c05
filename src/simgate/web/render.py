"""Templates, the logged-in viewer, and CSRF-checked forms: what every dashboard page uses."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.resources import files
from typing import Annotated, Any
from urllib.parse import parse_qsl, quote

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from simgate.services.gateway import Gateway
from simgate.web import charts
from simgate.web import session as sessions

_templates = Environment(
    loader=FileSystemLoader(str(files("simgate.web") / "templates")),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True, lstrip_blocks=True,
)

# Pages load only the package's own script and style; no inline script runs.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")


def _when(value: datetime | str | None) -> str:
    """A UTC timestamp as people read it: 2026-11-27 16:05:09 UTC."""
    if value is None:
        return ""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return value
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


_templates.filters["when"] = _when
_templates.filters["urlpart"] = lambda value: quote(str(value), safe="")
_templates.globals.update(columns=charts.columns, hbars=charts.hbars, gauge=charts.gauge,
                          stack=charts.stack)


class LoginRequired(Exception):
    """The page needs a logged-in user: the app sends the browser to /login."""


class CsrfRefused(Exception):
    """A form came without the session's CSRF token (or without a session)."""


@dataclass(frozen=True, slots=True)
class Viewer:
    """The logged-in user looking at a page."""

    user_id: int
    username: str
    session: sessions.WebSession
    gateway: Gateway


async def viewer(request: Request) -> Viewer:
    """FastAPI dependency: the logged-in user, or LoginRequired."""
    session = await sessions.logged_in(request)
    if session is None or session.user_id is None:
        raise LoginRequired
    gateway: Gateway = request.app.state.gateway
    username = await gateway.users.name_of(session.user_id)
    if username is None:
        raise LoginRequired
    return Viewer(session.user_id, username, session, gateway)


ViewerDep = Annotated[Viewer, Depends(viewer)]


async def read_form(request: Request) -> dict[str, list[str]]:
    """An URL-encoded form body, each field with all its values."""
    form: dict[str, list[str]] = {}
    for name, value in parse_qsl((await request.body()).decode("utf-8", "replace"),
                                 keep_blank_values=True):
        form.setdefault(name, []).append(value)
    return form


@dataclass(frozen=True, slots=True)
class Form:
    """A posted form whose CSRF token matched the session's."""

    fields: dict[str, list[str]]

    def get(self, name: str, default: str = "") -> str:
        values = self.fields.get(name)
        return values[0] if values else default


async def checked_form(request: Request, session: sessions.WebSession | None) -> Form:
    """The form if it carries the session's CSRF token (field or X-CSRF-Token header)."""
    fields = await read_form(request)
    token = request.headers.get("x-csrf-token") or (fields.get("csrf") or [""])[0]
    if not sessions.csrf_matches(session, token):
        raise CsrfRefused
    return Form(fields)


async def posted(request: Request, who: ViewerDep) -> Form:
    """FastAPI dependency: the CSRF-checked form of a logged-in user."""
    return await checked_form(request, who.session)


FormDep = Annotated[Form, Depends(posted)]


def render(request: Request, template: str, context: dict[str, Any],
           status_code: int = 200, who: Viewer | None = None,
           csrf: str | None = None) -> HTMLResponse:
    """A page (or an htmx fragment) from its template."""
    page = _templates.get_template(template).render(
        request=request, path=request.url.path, who=who,
        csrf=csrf or (who.session.csrf if who else ""), **context)
    return HTMLResponse(page, status_code=status_code, headers={
        "Content-Security-Policy": CSP, "X-Frame-Options": "DENY",
        "Cache-Control": "no-store", "Referrer-Policy": "same-origin"})
