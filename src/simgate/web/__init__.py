"""The web dashboard at `/`: server-rendered pages (Jinja2) with htmx, served from the
package; it logs in with the users and passwords of the API and calls the same services."""

from __future__ import annotations

from importlib.resources import files
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from simgate.web import actions, live, login, pages, tokens
from simgate.web.render import CsrfRefused, LoginRequired, render

STATIC = "/static"


def install(app: FastAPI) -> None:
    """Add the dashboard's pages, forms, event stream and static files to the app."""
    for module in (login, live, pages, actions, tokens):
        app.include_router(module.router)
    app.mount(STATIC, StaticFiles(directory=str(files("simgate.web") / "static")),
              name="dashboard-static")

    @app.exception_handler(LoginRequired)
    async def _login_required(request: Request, _: LoginRequired) -> Response:
        if request.headers.get("hx-request"):  # htmx: the whole page goes to the login
            return Response(status_code=401, headers={"HX-Redirect": "/login"})
        if request.method != "GET" or request.url.path == "/events":
            return render(request, "error.html", {
                "error": "Log in first: your session ended or was never started."}, 401)
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?next={quote(target, safe='')}", 303)

    @app.exception_handler(CsrfRefused)
    async def _csrf_refused(request: Request, _: CsrfRefused) -> Response:
        return render(request, "error.html", {
            "error": "The form's security token is missing or stale: reload the page and"
                     " submit it again."}, 403)
