"""The send route served in front of the framework: the one route that takes bulk traffic.

Under load, the middleware layers, the exception middleware and the match of the path
against every route cost about as much as accepting the message. A POST to the send
paths (no root path, a declared body within the limit) goes straight to the send handler
here; its errors get the answers of the app's own handlers, and every answer the Link
header the app adds. Anything else, and any request this does not recognise, goes
through the app as before.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from simgate.server import errors

SEND_PATHS = frozenset(f"{prefix}/3rdparty/v1/{name}"
                       for prefix in ("", "/api") for name in ("messages", "message"))

Handler = Callable[[Request], Awaitable[Response]]


class SendFastPath:
    """An ASGI middleware: POST to the send paths straight to `handler`."""

    def __init__(self, app: ASGIApp, handler: Handler, max_bytes: int,
                 link: tuple[bytes, bytes]) -> None:
        self.app = app
        self.handler = handler
        self.max_bytes = max_bytes
        self.link = link

    def _declared_length(self, scope: Scope) -> int | None:
        """The declared body length if this request is one to serve here, else None."""
        if (scope["type"] != "http" or scope["method"] != "POST"
                or scope["path"] not in SEND_PATHS or scope.get("root_path")
                or b"\x00" in scope["query_string"] or b"%00" in scope["query_string"]):
            return None
        declared = None  # the last one, as the app's body limit reads it
        credentials = False
        for name, value in scope["headers"]:
            if name == b"content-length":
                declared = value
            credentials |= name == b"authorization"
        if not credentials:
            return None  # the app refuses it at once, without waiting for a body
        if declared is None or not declared.isdigit() or int(declared) > self.max_bytes:
            return None  # chunked or too large: the app answers as it always does
        return int(declared)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._declared_length(scope) is None:
            await self.app(scope, receive, send)
            return
        chunks, seen = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunk = message.get("body", b"")
            seen += len(chunk)
            if seen > self.max_bytes:
                response: Response = errors.error_response(
                    413, f"request body too large: the limit is {self.max_bytes} bytes",
                    headers={"Connection": "close"})
                await self._answer(response, scope, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()  # the disconnect, when it comes
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        request = Request(scope, replay)
        try:
            response = await self.handler(request)
        except Exception as exc:  # noqa: BLE001 - answered as the app's handlers answer it
            response = await errors.response_for(request, exc)
        await self._answer(response, scope, send)

    async def _answer(self, response: Response, scope: Scope, send: Send) -> None:
        response.raw_headers.append(self.link)
        await response(scope, _no_receive, send)


async def _no_receive() -> Message:
    return {"type": "http.disconnect"}
