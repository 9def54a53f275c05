"""Process lifecycles behind the CLI: the server, the agent, and both together."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import json
import logging
import multiprocessing
import multiprocessing.process
import os
import secrets
import signal
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TypeVar

import uvicorn
import uvloop

from simgate.agent.agent import Agent, AgentConfig
from simgate.agent.backends.base import SimBackend
from simgate.agent.client import ServerError
from simgate.bus.peers import PeerLink
from simgate.bus.redis import RedisLink, channel_of
from simgate.config import Settings, apply_log_level, configure_logging
from simgate.domain.routing import SimSelectionMode
from simgate.domain.sims import SimSlot
from simgate.files import read_private, write_private
from simgate.mail.server import start_smtp, stop_smtp
from simgate.serve import access_log
from simgate.serve.guard import Limits, guarded_protocol
from simgate.server.app import create_app
from simgate.services.gateway import Gateway

T = TypeVar("T")
PR_SET_PDEATHSIG = 1  # prctl(2)


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


def uvicorn_server(settings: Settings, gateway: Gateway,
                   readiness: Callable[[], dict[str, object]] | None = None) -> uvicorn.Server:
    apply_log_level(settings.log_level)
    config = uvicorn.Config(
        create_app(settings, gateway, readiness),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=settings.access_log,
        lifespan="on",
        proxy_headers=bool(settings.forwarded_allow_ips.strip()),
        forwarded_allow_ips=settings.forwarded_allow_ips,
        # Device event streams never end on their own; agents reconnect after a restart.
        timeout_graceful_shutdown=2,
        ssl_certfile=settings.tls_cert,
        ssl_keyfile=settings.tls_key,
        http=guarded_protocol(Limits(settings.header_timeout, settings.body_timeout,
                                     settings.max_connections_per_address,
                                     exempt=settings.forwarded_allow_ips)),
    )
    access_log.install()  # after the config: it sets up uvicorn's loggers
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
    link: PeerLink | RedisLink | None = None
    if settings.bus_url:
        link = RedisLink(gateway.bus, settings.bus_url, settings.bus_channel
                         or channel_of(settings.resolved_database_url))
        gateway.server_checks["bus:redis"] = link.health
    elif worker is not None and worker.count > 1:
        link = PeerLink(gateway.bus, worker.links, worker.index, worker.count)
    if link is not None:
        await link.start()
    server = uvicorn_server(settings, gateway)
    mail = await start_smtp(gateway) if worker is None or worker.leader else []
    settle_heap()
    watcher = asyncio.create_task(_end_streams_on_exit(server, gateway))
    try:
        await server.serve(sockets=[worker.listener] if worker else None)
    finally:
        watcher.cancel()
        await stop_smtp(mail)
        if link is not None:
            await link.close()
        await gateway.close()


def _credentials(settings: Settings) -> tuple[str, str]:
    """The user `run` serves: from SIMGATE_USERNAME/PASSWORD, else made once and kept."""
    if settings.username and settings.password:
        return settings.username, settings.password
    path = settings.data_dir / "credentials.json"
    with contextlib.suppress(FileNotFoundError):
        stored = json.loads(read_private(path))  # UnsafeFile if another user could plant it
        return stored["username"], stored["password"]
    username, password = "simgate", secrets.token_urlsafe(12)
    write_private(path, json.dumps({"username": username, "password": password}))
    return username, password


async def run_agent(config: AgentConfig, backend: SimBackend) -> None:
    agent = Agent(config, backend)
    settle_heap()
    await agent.run()


async def run_all_in_one(settings: Settings, backend: Callable[[], SimBackend],
                         mode: SimSelectionMode,
                         announce: Callable[[str, str, str, list], None]) -> None:
    """Server + agent; the agent talks HTTP over loopback, from a process of its own."""
    username, password = _credentials(settings)
    update: dict[str, object] = {"username": username, "password": password}
    if "allow_private_webhooks" not in settings.model_fields_set:
        update["allow_private_webhooks"] = True  # a local demo posts to local receivers
    settings = settings.model_copy(update=update)
    gateway = await Gateway.open(settings)
    url = f"{settings.scheme}://{_loopback(settings.host)}:{settings.port}"
    agent = AgentProcess(
        AgentConfig(server_url=url, journal_path=settings.data_dir / "agent" / "journal.db",
                    username=username, password=password, name="simgate run",
                    sim_selection_mode=mode, heartbeat_interval=settings.heartbeat_seconds,
                    # its own process over loopback: the certificate names the LAN host
                    verify=settings.tls_cert is None),
        backend,
    )

    known: list[list[SimSlot]] = []  # the agent's SIMs, once it has registered

    def agent_check() -> dict[str, object]:
        if known and known[0]:
            return {"status": "pass",
                    "description": f"agent registered with {len(known[0])} SIM slot(s)"}
        return {"status": "fail", "description": "the embedded agent has not registered yet"}

    server = uvicorn_server(settings, gateway, agent_check)
    mail = await start_smtp(gateway)
    settle_heap()
    try:
        async with asyncio.TaskGroup() as group:
            serving = group.create_task(server.serve())
            while not server.started:
                if serving.done():
                    return
                await asyncio.sleep(0.02)
            agent.start()
            watcher = group.create_task(_end_streams_on_exit(server, gateway, agent.stop))
            sims = await agent.ready()
            known.append(sims)
            announce(url, username, password, sims)
            ended = group.create_task(agent.ended())
            await asyncio.wait({serving, ended}, return_when=asyncio.FIRST_COMPLETED)
            if ended.done() and not server.should_exit:
                server.should_exit = True
                raise ServerError(f"the agent stopped (exit code {ended.result()}): see its"
                                  " log above")
            await serving
            ended.cancel()
            watcher.cancel()
    finally:
        await agent.stop()
        await stop_smtp(mail)
        await gateway.close()


class AgentProcess:
    """The agent of `simgate run` in a child process, so the server and the SIMs each
    have a core: in one process they share one, and the other stays idle.

    The child dies with its parent (kill -9 included), so a journal is never driven by
    two agents; Ctrl-C reaches the parent, which stops the child.
    """

    def __init__(self, config: AgentConfig, backend: Callable[[], SimBackend]) -> None:
        self._config = config
        self._backend = backend
        self._process: multiprocessing.process.BaseProcess | None = None
        self._conn: Connection | None = None

    def start(self) -> None:
        context = multiprocessing.get_context("spawn")  # no copy of the server's loop
        ours, theirs = context.Pipe(duplex=False)
        self._process = context.Process(
            target=_agent_main, args=(self._config, self._backend, theirs, os.getpid(),
                                      logging.getLogger().getEffectiveLevel()),
            name="simgate agent")
        self._process.start()  # from the main thread: the child's death signal follows it
        theirs.close()
        self._conn = ours

    async def ready(self) -> list[SimSlot]:
        """The SIMs, once the agent is registered and working."""
        assert self._conn is not None
        try:
            return await asyncio.to_thread(self._conn.recv)
        except EOFError:
            code = await self.ended()
            raise ServerError(f"the agent stopped before it was ready (exit code {code}):"
                              " see its log above") from None

    async def ended(self) -> int | None:
        """Wait for the child to end; its exit code."""
        assert self._process is not None
        await asyncio.to_thread(self._process.join)
        return self._process.exitcode

    async def stop(self) -> None:
        process = self._process
        if process is None or process.exitcode is not None:
            return
        process.terminate()
        await asyncio.to_thread(process.join, 10)
        if process.exitcode is None:
            process.kill()
            await asyncio.to_thread(process.join)


def _agent_main(config: AgentConfig, backend: Callable[[], SimBackend], ready: Connection,
                parent: int, log_level: int) -> None:
    """Entry point of the agent's process; it logs at the server's level
    (SIMGATE_LOG_LEVEL), so `warning` spares it a line per send too."""
    _die_with(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops us, with SIGTERM
    configure_logging()
    logging.getLogger().setLevel(log_level)
    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(_agent_serve(Agent(config, backend()), ready, parent))
    except ServerError as exc:
        logging.getLogger("simgate.agent").error("%s", exc)
        raise SystemExit(1) from None


async def _agent_serve(agent: Agent, ready: Connection, parent: int) -> None:
    settle_heap()
    task = asyncio.create_task(agent.run())
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    announced = asyncio.create_task(agent.ready.wait())
    orphaned = asyncio.create_task(_parent_gone(parent))
    await asyncio.wait({task, announced}, return_when=asyncio.FIRST_COMPLETED)
    if announced.done():
        ready.send(agent.sims)
    ready.close()
    orphaned.add_done_callback(lambda _: task.cancel())
    with contextlib.suppress(asyncio.CancelledError):
        await task
    orphaned.cancel()


def _die_with(parent: int) -> None:
    """Ask Linux to kill this process when its parent dies (elsewhere: see _parent_gone)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # it died before we asked
        os._exit(1)


async def _parent_gone(parent: int) -> None:
    while os.getppid() == parent:  # noqa: ASYNC110 - no event tells of a parent's end
        await asyncio.sleep(1.0)


def _loopback(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "", "::") else host
