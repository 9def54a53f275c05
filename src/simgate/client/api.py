"""An async client of /3rdparty/v1 whose failures are one `ApiError` with a clear line."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from simgate.client.config import Target

API = "/3rdparty/v1"
PAGE = 100  # the most messages GET /messages gives in one answer


class ApiError(Exception):
    """A request that did not succeed. `status` is the HTTP status, or None when no
    answer came (the server is unreachable)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass(frozen=True)
class Page:
    items: list[dict[str, Any]]
    total: int | None  # X-Total-Count, when the server sends it


def _reason(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return body["message"]
    text = response.text.strip().splitlines()
    return text[0][:200] if text else response.reason_phrase


class Api:
    """One connection pool to one server, authenticated once for all requests."""

    def __init__(self, target: Target, timeout: float = 30.0,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        if target.token:
            auth: Any = None
            headers = {"Authorization": f"Bearer {target.token}"}
        elif target.username and target.password:
            auth, headers = (target.username, target.password), {}
        else:
            raise ApiError("no credentials: set SIMGATE_USERNAME and SIMGATE_PASSWORD (or"
                           " SIMGATE_TOKEN), or put them in the client config file", 401)
        self.target = target
        self._http = httpx.AsyncClient(
            base_url=target.server + API, auth=auth, headers=headers, timeout=timeout,
            transport=transport, limits=httpx.Limits(max_connections=32))

    async def __aenter__(self) -> Api:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._http.aclose()

    async def request(self, method: str, path: str, ok: tuple[int, ...] = (200,),
                      **kwargs: Any) -> httpx.Response:
        try:
            response = await self._http.request(method, path, **kwargs)
        except httpx.TimeoutException:
            raise ApiError(f"server {self.target.server} did not answer in time") from None
        except httpx.HTTPError as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ApiError(f"server {self.target.server} unreachable: {reason}") from None
        if response.status_code in ok:
            return response
        reason = _reason(response)
        if response.status_code == 401:
            where = f" (from {self.target.source})" if self.target.source != "flags" else ""
            reason = f"the server refused the credentials{where}: {reason}"
        raise ApiError(f"{method} {API}{path}: {response.status_code} {reason}",
                       response.status_code)

    async def send(self, body: dict[str, Any]) -> dict[str, Any]:
        """POST a message; 202 with its state."""
        return (await self.request("POST", "/messages", ok=(202,), json=body)).json()

    async def message(self, message_id: str) -> dict[str, Any]:
        return (await self.request("GET", f"/messages/{quote(message_id, safe='')}")).json()

    async def messages(self, **params: Any) -> Page:
        return await self._page("/messages", params)

    async def inbox(self, **params: Any) -> Page:
        return await self._page("/inbox", params)

    async def _page(self, path: str, params: dict[str, Any]) -> Page:
        """One page of a list; a parameter given as None is left out of the query."""
        response = await self.request(
            "GET", path, params={k: v for k, v in params.items() if v is not None})
        return Page(response.json(), _total(response))

    async def devices(self) -> list[dict[str, Any]]:
        return (await self.request("GET", "/devices")).json()

    async def remove_device(self, device_id: str) -> None:
        await self.request("DELETE", f"/devices/{quote(device_id, safe='')}", ok=(204,))

    async def sim_usage(self) -> list[dict[str, Any]]:
        """Each SIM's sends against its limits; none from a server without the route."""
        try:
            return (await self.request("GET", "/routing/usage")).json()
        except ApiError as exc:
            if exc.status in (403, 404):
                return []
            raise

    async def webhooks(self) -> list[dict[str, Any]]:
        return (await self.request("GET", "/webhooks")).json()

    async def add_webhook(self, body: dict[str, Any]) -> dict[str, Any]:
        return (await self.request("POST", "/webhooks", ok=(201,), json=body)).json()

    async def remove_webhook(self, webhook_id: str) -> None:
        await self.request("DELETE", f"/webhooks/{quote(webhook_id, safe='')}", ok=(204,))


def _total(response: httpx.Response) -> int | None:
    value = response.headers.get("X-Total-Count", "")
    return int(value) if value.isdigit() else None
