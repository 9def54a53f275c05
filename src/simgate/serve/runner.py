"""Process lifecycles behind the CLI: the server, the agent, and both together."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import secrets
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import uvicorn

from simgate.agent.agent import Agent, AgentConfig
from simgate.agent.backends.base import SimBackend
from simgate.bus.peers import PeerLink
from simgate.config import Settings
from simgate.domain.routing import SimSelectionMode
from simgate.server.app import create_app
from simgate.services.gateway import Gateway

T = TypeVar("T")


@dataclass(frozen=True)
class WorkerSlot:
    """One of several server processes sharing a listening socket (simgate.serve.workers)."""

    index: int
    count: int
    links: Path  # where the workers' bus sockets live
    listener: socket.socket

    @property
    def leader(self) -> bool:
        """The worker that delivers webhooks and keeps house."""
        return self.index == 0


async def with_gateway(settings: Settings, action: Callable[[Gateway], Awaitable[T]]) -> T:
    """Open the store (migrating it), run one action, close."""
    gateway = await Gateway.open(settings, background=False)
    try:
        return await action(gateway)
    finally:
        await gateway.close()


def settle_heap() -> None:
    """Keep what start-up built out of the garbage collector's walks, and walk less often.

    Each request leaves many short-lived objects; collections that walked the whole
    application every time cost about a fifth of the accept throughput.
    """
    gc.freeze()
    gc.set_threshold(20_000, 50, 100)


def uvicorn_server(settings: Settings, gateway: Gateway) -> uvicorn.Server:
    config = uvicorn.Config(
        create_app(settings, gateway),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=False,
        lifespan="on",
        proxy_headers=bool(settings.forwarded_allow_ips.strip()),
        forwarded_allow_ips=settings.forwarded_allow_ips,
        # Device event streams never end on their own; agents reconnect after a restart.
        timeout_graceful_shutdown=2,
        ssl_certfile=settings.tls_cert,
        ssl_keyfile=settings.tls_key,
    )
    return uvicorn.Server(config)


async def _end_streams_on_exit(server: uvicorn.Server, gateway: Gateway,
                               first: Callable[[], Awaitable[None]] | None = None) -> None:
    """When a signal asks the server to stop, end the device streams before it drains."""
    while not server.should_exit:  # noqa: ASYNC110 - uvicorn offers only a flag
        await asyncio.sleep(0.1)
    if first is not None:
        await first()
    gateway.bus.close()


async def prepare_store(settings: Settings) -> None:
    """Migrate the store and make sure the configured user exists (once, before workers)."""
    await with_gateway(settings, lambda _: asyncio.sleep(0))


async def serve_forever(settings: Settings, worker: WorkerSlot | None = None) -> None:
    """The server alone, or one worker of it (the store is then already prepared)."""
    gateway = await Gateway.open(settings, background=worker is None or worker.leader,
                                 prepare=worker is None)
    link = None
    if worker is not None and worker.count > 1:
        link = PeerLink(gateway.bus, worker.links, worker.index, worker.count)
        await link.start()
    server = uvicorn_server(settings, gateway)
    settle_heap()
    watcher = asyncio.create_task(_end_streams_on_exit(server, gateway))
    try:
        await server.serve(sockets=[worker.listener] if worker else None)
    finally:
        watcher.cancel()
        if link is not None:
            await link.close()
        await gateway.close()


def _credentials(settings: Settings) -> tuple[str, str]:
    """The user `run` serves: from SIMGATE_USERNAME/PASSWORD, else made once and kept."""
    if settings.username and settings.password:
        return settings.username, settings.password
    path = settings.data_dir / "credentials.json"
    if path.exists():
        stored = json.loads(path.read_text())
        return stored["username"], stored["password"]
    username, password = "simgate", secrets.token_urlsafe(12)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"username": username, "password": password}))
    path.chmod(0o600)
    return username, password


async def run_agent(config: AgentConfig, backend: SimBackend) -> None:
    agent = Agent(config, backend)
    settle_heap()
    await agent.run()


async def run_all_in_one(settings: Settings, backend: SimBackend, mode: SimSelectionMode,
                         announce: Callable[[str, str, str, list], None]) -> None:
    """Server + agent in one process; the agent still talks HTTP over loopback."""
    username, password = _credentials(settings)
    update: dict[str, object] = {"username": username, "password": password}
    if "allow_private_webhooks" not in settings.model_fields_set:
        update["allow_private_webhooks"] = True  # a local demo posts to local receivers
    settings = settings.model_copy(update=update)
    gateway = await Gateway.open(settings)
    server = uvicorn_server(settings, gateway)
    url = f"{settings.scheme}://{_loopback(settings.host)}:{settings.port}"
    agent = Agent(
        AgentConfig(server_url=url, journal_path=settings.data_dir / "agent" / "journal.db",
                    username=username, password=password, name="simgate run",
                    sim_selection_mode=mode,
                    # its own process over loopback: the certificate names the LAN host
                    verify=settings.tls_cert is None),
        backend,
    )
    settle_heap()
    try:
        async with asyncio.TaskGroup() as group:
            serving = group.create_task(server.serve())
            while not server.started:
                if serving.done():
                    return
                await asyncio.sleep(0.02)
            agent_task = group.create_task(agent.run())

            async def stop_agent() -> None:
                agent_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await agent_task

            watcher = group.create_task(_end_streams_on_exit(server, gateway, stop_agent))
            await agent.ready.wait()
            announce(url, username, password, agent.sims)
            await serving
            agent_task.cancel()
            watcher.cancel()
    finally:
        await gateway.close()


def _loopback(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "", "::") else host
