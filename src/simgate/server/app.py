"""The FastAPI application: routers under their public prefixes and the /api aliases."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from simgate import __version__, web
from simgate.config import Settings
from simgate.mail.relay import MailRelay
from simgate.server import errors
from simgate.server.hotpath import SendFastPath
from simgate.server.routers import (
    health,
    inbox,
    logs,
    meta,
    mobile,
    routing,
    thirdparty,
    tokens,
    twilio,
    webhooks,
)
from simgate.server.routers import settings as device_settings
from simgate.server.schemas import ErrorOut, SendRequest, json_body
from simgate.services import twilio_setup
from simgate.services.gateway import Gateway


class NoNulInUrl:
    """A NUL character in the path or query is a 400: no route wants one, and the store
    cannot hold one (PostgreSQL refuses it in text), which made lookups by such an id 500."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and ("\x00" in scope["path"]
                                        or b"%00" in scope["query_string"]
                                        or b"\x00" in scope["query_string"]):
            response = errors.error_response(
                400, "the URL holds a NUL character (%00): remove it")
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


# Where phones post their events (the ingest hooks of GET /mobile/v1/webhooks).
INGEST_PATH = re.compile(r"^(/api)?/mobile/v1/ingest/")


class BodyLimit:
    """Refuse bodies over the limit with 413 before reading them into memory."""

    def __init__(self, app: ASGIApp, max_bytes: int, ingest_bytes: int = 0) -> None:
        self.app = app
        self.max_bytes = max_bytes
        # a phone's events at its ingest hook carry MMS parts in base64
        self.ingest_bytes = max(max_bytes, ingest_bytes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = (self.ingest_bytes if INGEST_PATH.match(scope.get("path", ""))
                 else self.max_bytes)
        declared = None  # the last one, as a dict of the headers would hold
        for name, value in scope["headers"]:
            if name == b"content-length":
                declared = value
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await self._too_large(send, limit)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise _TooLarge(limit)
            return message

        try:
            await self.app(scope, limited, send)
        except _TooLarge as exc:  # where no exception handler answered it
            await errors.error_response(413, exc.detail, headers=exc.headers)(
                {"type": "http"}, _no_receive, send)

    async def _too_large(self, send: Send, limit: int) -> None:
        exc = _TooLarge(limit)
        await errors.error_response(413, exc.detail, headers=exc.headers)(
            {"type": "http"}, _no_receive, send)


class LinkHeader:
    """Every answer links the API catalog and description, as the original's do."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def linked(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = message.get("headers", [])
                if not any(name.lower() == b"link" for name, _ in headers):
                    message["headers"] = [*headers, _LINK]
            await send(message)

        await self.app(scope, receive, linked)


_LINK = (b"link", meta.LINK.encode())


class _TooLarge(HTTPException):
    """An HTTPException, so that a route reading the body (FastAPI catches any other
    error there as a malformed body, a 400) lets it through to the 413 handler. The rest
    of the body is not read: the connection closes."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body too large: the limit is {limit} bytes",
                         headers={"Connection": "close"})


async def _no_receive() -> Message:
    return {"type": "http.disconnect"}


def create_app(settings: Settings, gateway: Gateway | None = None,
               readiness: Callable[[], dict[str, Any]] | None = None) -> FastAPI:
    """The ASGI app; opens its own Gateway at startup unless one is given. `readiness`
    is one more check of /health/ready (in `run`: the embedded agent is there)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        own = gateway is None
        app.state.gateway = gateway or await Gateway.open(settings)
        app.state.twilio = await twilio_setup.attach(app.state.gateway)
        if settings.smtp_relay:
            app.state.gateway.dispatcher.mailer = MailRelay(
                settings.smtp_relay, settings.smtp_relay_from, settings.webhook_timeout)
        try:
            yield
        finally:
            await app.state.twilio.close()
            if own:
                await app.state.gateway.close()

    app = FastAPI(
        title="simgate",
        version=__version__,
        description="SMS gateway API, compatible with SMS Gateway for Android (sms-gate.app).",
        lifespan=lifespan,
        # No OpenTelemetry here: its per-request checks would cost on every call.
        telemetry={"tracing": False, "metrics": False, "logs": False},
        docs_url=None, redoc_url=None,  # served by routers.meta, with no CDN
    )
    app.state.readiness = readiness
    errors.install(app)
    for prefix in ("", "/api"):
        documented = prefix == ""
        for router in (thirdparty.router, webhooks.router, device_settings.router,
                       inbox.router, logs.router, tokens.router, routing.router):
            app.include_router(router, prefix=f"{prefix}/3rdparty/v1",
                               include_in_schema=documented)
        app.include_router(health.router, prefix=f"{prefix}/3rdparty/v1",
                           include_in_schema=False)
        app.include_router(mobile.router, prefix=f"{prefix}/mobile/v1",
                           include_in_schema=documented)
    app.include_router(health.router)
    # Twilio documents these itself: its OpenAPI description is the contract
    app.include_router(twilio.router, prefix="/2010-04-01/Accounts", include_in_schema=False)
    meta.install(app, settings.metrics_allow_ips)
    web.install(app)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes,
                       ingest_bytes=settings.mms_max_bytes * 4 // 3 + 65_536)
    app.add_middleware(NoNulInUrl)
    app.add_middleware(LinkHeader)
    app.add_middleware(SendFastPath, handler=thirdparty.send_message,
                       max_bytes=settings.max_body_bytes, link=_LINK)
    app.state.sse_keepalive = settings.sse_keepalive_seconds
    _document(app, {"/3rdparty/v1/messages": {"post": thirdparty.SEND_OPERATION}},
              [SendRequest, ErrorOut])
    return app


def _document(app: FastAPI, paths: dict[str, Any], models: list[type[BaseModel]]) -> None:
    """Add to OpenAPI the routes FastAPI does not describe (plain Starlette routes)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()
            for path, operations in paths.items():
                schema["paths"].setdefault(path, {}).update(operations)
            for operations in schema["paths"].values():  # bad input is a 400 here, not 422
                for operation in operations.values():
                    if operation.get("responses", {}).pop("422", None) is not None:
                        operation["responses"].setdefault(
                            "400", json_body("ErrorOut", "Bad input: the message says what to fix"))
            for unused in ("HTTPValidationError", "ValidationError"):  # the 422 body
                schema.get("components", {}).get("schemas", {}).pop(unused, None)
            _, definitions = models_json_schema(
                [(m, "validation") for m in models],
                ref_template="#/components/schemas/{model}",
            )
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for name, definition in definitions.get("$defs", {}).items():
                components.setdefault(name, definition)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
