"""An HTTP relay in front of a real server that can cut the line: after a given number
of sends it still passes each send on (the server takes the message) but holds the
answer, as a network that drops at the worst moment. So a test can interrupt a client
while its requests are known to be on the wire, on any machine, however fast."""

from __future__ import annotations

import asyncio

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.receiver import serve_on_loopback

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host",
              "content-encoding"}


class CuttingRelay:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.port = 0
        self.held = 0  # sends of the current cut whose answers are held
        self._after: int | None = None
        self._sends = 0
        self._gate = asyncio.Event()
        # a connection per request: a kept-alive one the server closes after its idle
        # timeout, just as a POST goes out on it, fails that POST (the relay answered 500)
        self._client = httpx.AsyncClient(base_url=upstream, timeout=120,
                                         limits=httpx.Limits(max_keepalive_connections=0))
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cut(self, after: int) -> None:
        """Answer `after` more sends, then hold the answers of the sends after them."""
        self._gate.set()  # answers still held from an earlier cut go (to closed sockets)
        self._gate = asyncio.Event()
        self._after, self._sends, self.held = after, 0, 0

    def release(self) -> None:
        self._after = None
        self._gate.set()

    async def _relay(self, request: Request) -> Response:
        upstream = await self._client.request(
            request.method, request.url.path, params=request.query_params,
            content=await request.body(),
            headers={k: v for k, v in request.headers.items() if k not in HOP_BY_HOP})
        if request.method == "POST" and request.url.path.endswith("/messages"):
            self._sends += 1
            if self._after is not None and self._sends > self._after:
                gate = self._gate
                self.held += 1
                await gate.wait()
        return Response(upstream.content, status_code=upstream.status_code,
                        headers={k: v for k, v in upstream.headers.items()
                                 if k not in HOP_BY_HOP})

    async def start(self) -> CuttingRelay:
        app = Starlette(routes=[Route("/{path:path}", self._relay,
                                      methods=["GET", "POST", "DELETE"])])
        self._server, self._task, self.port = await serve_on_loopback(app)
        return self

    async def stop(self) -> None:
        self.release()
        if self._server:
            self._server.should_exit = True
            await self._task
        await self._client.aclose()
