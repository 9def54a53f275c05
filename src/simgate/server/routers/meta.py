"""What describes the API, as the original serves it: /api/docs (Swagger UI, with its assets
served from the installed fastapi-offline package, so the docs work offline),
/.well-known/api-catalog (RFC 9727) and /metrics (Prometheus)."""

from __future__ import annotations

import ipaddress
from importlib.resources import files

from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from simgate.server.auth import client_address
from simgate.server.deps import public_base
from simgate.server.errors import error_response
from simgate.services.metrics import Figures, figures

router = APIRouter(include_in_schema=False)

DOCS = "/api/docs"
ASSETS = f"{DOCS}/assets"
SPEC = f"{DOCS}/doc.json"
LINKSET = 'application/linkset+json; profile="https://www.rfc-editor.org/info/rfc9727"'
# Every answer points at the catalog and the description, as the original's root handler.
LINK = (f'</.well-known/api-catalog>; rel="api-catalog", <{SPEC}>; rel="service-desc", '
        f'<{DOCS}/>; rel="service-doc", </.well-known/api-catalog>; rel="describedby"')


def install(app: FastAPI, metrics_allow: str) -> None:
    """Add the docs, their assets, the catalog and /metrics to the app."""
    app.mount(ASSETS, StaticFiles(directory=str(files("fastapi_offline") / "static")),
              name="docs-assets")
    app.state.metrics_allow = _networks(metrics_allow)
    app.include_router(router)


def _swagger(request: Request) -> HTMLResponse:
    return get_swagger_ui_html(
        openapi_url=SPEC, title=f"{request.app.title} - API docs",
        swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
        swagger_css_url=f"{ASSETS}/swagger-ui.css",
        swagger_favicon_url=f"{ASSETS}/favicon.png")


@router.get("/docs")
@router.get(DOCS)
@router.get(f"{DOCS}/")
@router.get(f"{DOCS}/index.html")
async def swagger_ui(request: Request) -> HTMLResponse:
    return _swagger(request)


@router.get("/redoc")
async def redoc(request: Request) -> HTMLResponse:
    return get_redoc_html(openapi_url=SPEC, title=f"{request.app.title} - API reference",
                          redoc_js_url=f"{ASSETS}/redoc.standalone.js",
                          redoc_favicon_url=f"{ASSETS}/favicon.png", with_google_fonts=False)


@router.get(SPEC)
async def spec(request: Request) -> JSONResponse:
    return JSONResponse(request.app.openapi())


@router.get("/api")
@router.get("/api/")
async def api_root() -> RedirectResponse:
    return RedirectResponse(DOCS, status_code=301)


@router.get("/.well-known/api-catalog")
async def api_catalog(request: Request) -> JSONResponse:
    """Where the API, its description, its docs and its status are (RFC 9727 linkset)."""
    base = f"{public_base(request)}/api"
    linkset = {"linkset": [{
        "anchor": f"{base}/3rdparty/v1",
        "service-desc": [{"href": f"{base}/docs/doc.json", "type": "application/json"}],
        "service-doc": [{"href": f"{base}/docs/", "type": "text/html"}],
        "status": [{"href": f"{base}/3rdparty/v1/health/ready", "type": "application/json"}],
    }]}
    return JSONResponse(linkset, media_type=LINKSET, headers=_catalog_headers())


@router.head("/.well-known/api-catalog")
async def api_catalog_head() -> Response:
    return Response(media_type=LINKSET, headers=_catalog_headers())


def _catalog_headers() -> dict[str, str]:
    return {"Link": '</.well-known/api-catalog>; rel="api-catalog"',
            "Cache-Control": "public, max-age=3600"}


Networks = list[ipaddress.IPv4Network | ipaddress.IPv6Network]


def _networks(spec: str) -> Networks:
    return [ipaddress.ip_network(part.strip(), strict=False)
            for part in spec.split(",") if part.strip()]


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    """Prometheus text: messages by device, SIM and state, and each SIM slot's state.

    It names every device, so only the addresses of SIMGATE_METRICS_ALLOW_IPS may read it.
    """
    address = client_address(request)
    try:
        allowed = any(ipaddress.ip_address(address) in n for n in request.app.state.metrics_allow)
    except ValueError:
        allowed = False
    if not allowed:
        return error_response(403, f"/metrics is not open to {address}: add it to"
                                   " SIMGATE_METRICS_ALLOW_IPS (addresses or networks)")
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Snapshot(await figures(request.app.state.gateway.sessions)))
    return Response(generate_latest(registry),
                    media_type="text/plain; version=0.0.4; charset=utf-8")


class _Snapshot(Collector):
    """One scrape's figures as metric families."""

    def __init__(self, data: Figures) -> None:
        self.data = data

    def collect(self):  # type: ignore[no-untyped-def]
        messages = GaugeMetricFamily(
            "simgate_messages", "Messages stored, by device, the SIM that sent them (none:"
            " not sent yet) and their current state", labels=["device", "sim", "state"])
        for device, sim, state, count in self.data.messages:
            messages.add_metric([device, str(sim) if sim else "none", state], count)
        up = GaugeMetricFamily("simgate_sim_ready", "1 when the SIM slot is ready to send",
                               labels=["device", "sim", "status"])
        signal = GaugeMetricFamily("simgate_sim_signal", "Signal of the SIM slot (CSQ, 0-31)",
                                   labels=["device", "sim"])
        for sim in self.data.sims:
            labels = [sim.device_id, str(sim.sim_number)]
            up.add_metric([*labels, sim.status], 1.0 if sim.status == "Ready" else 0.0)
            if sim.signal is not None:
                signal.add_metric(labels, sim.signal)
        seen = GaugeMetricFamily("simgate_device_last_seen_seconds",
                                 "Seconds since the device was last heard from",
                                 labels=["device"])
        for device, seconds in self.data.last_seen.items():
            seen.add_metric([device], seconds)
        yield from (messages, up, signal, seen)
