"""Process lifecycles behind the CLI: the server, the agent, and both together."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import uvicorn

from simgate.config import Settings
from simgate.server.app import create_app
from simgate.services.gateway import Gateway

T = TypeVar("T")


async def with_gateway(settings: Settings, action: Callable[[Gateway], Awaitable[T]]) -> T:
    """Open the store (migrating it), run one action, close."""
    gateway = await Gateway.open(settings)
    try:
        return await action(gateway)
    finally:
        await gateway.close()


def uvicorn_server(settings: Settings, gateway: Gateway) -> uvicorn.Server:
    config = uvicorn.Config(
        create_app(settings, gateway),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=False,
        lifespan="on",
    )
    return uvicorn.Server(config)


async def serve_forever(settings: Settings) -> None:
    gateway = await Gateway.open(settings)
    try:
        await uvicorn_server(settings, gateway).serve()
    finally:
        await gateway.close()
