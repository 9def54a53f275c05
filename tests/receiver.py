"""A real HTTP webhook receiver for tests: records every request it gets."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


async def serve_on_loopback(app: Starlette) -> tuple[uvicorn.Server, asyncio.Task, int]:
    """Serve `app` on a free loopback port in this loop: the server, its task, the port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 - uvicorn offers only a flag
        await asyncio.sleep(0.01)
    return server, task, port


@dataclass
class Received:
    body: bytes
    headers: dict[str, str]

    @property
    def json(self) -> dict[str, Any]:
        return json.loads(self.body)

    def signed_with(self, key: str) -> bool:
        """Whether X-Signature is the official app's HMAC-SHA256 of body + X-Timestamp
        under `key`: checked here with hmac itself, not with simgate's own verify()."""
        timestamp = self.headers.get("x-timestamp", "")
        expected = hmac.new(key.encode(), self.body + timestamp.encode(),
                            hashlib.sha256).hexdigest()
        return timestamp.isdigit() and hmac.compare_digest(
            expected, self.headers.get("x-signature", ""))


@dataclass
class Receiver:
    """Answers `status` (200 by default) and records what arrived."""

    status: int = 200
    delay: float = 0.0
    hang: bool = False  # hold every request open until release()
    hang_when: Callable[[Request], bool] | None = None  # ... or those it picks
    received: list[Received] = field(default_factory=list)
    requests_started: int = 0
    requests_finished: int = 0
    on_request: Callable[[Request], None] | None = None
    port: int = 0
    path: str = "/hook"
    _released: asyncio.Event = field(default_factory=asyncio.Event)
    _server: uvicorn.Server | None = None
    _task: asyncio.Task | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.path}"

    async def _hook(self, request: Request) -> Response:
        self.requests_started += 1
        if self.on_request:
            self.on_request(request)
        try:
            if self.hang or (self.hang_when and self.hang_when(request)):
                await self._released.wait()
            if self.delay:
                await asyncio.sleep(self.delay)
            if self.status < 300:
                self.received.append(Received(await request.body(), dict(request.headers)))
            return Response(status_code=self.status)
        finally:
            self.requests_finished += 1

    def release(self) -> None:
        """Let the held requests answer."""
        self._released.set()

    async def start(self) -> Receiver:
        app = Starlette(routes=[Route(self.path, self._hook, methods=["POST"])])
        self._server, self._task, self.port = await serve_on_loopback(app)
        return self

    async def stop(self) -> None:
        self.release()
        if self._server:
            self._server.should_exit = True
            await self._task

    def events(self, event: str | None = None) -> list[dict[str, Any]]:
        return [r.json for r in self.received if event is None or r.json["event"] == event]
