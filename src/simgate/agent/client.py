"""The agent's client of the device API (/mobile/v1); the only place with its wire names."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx

from simgate import __version__
from simgate.domain.routing import SimUsage
from simgate.domain.sims import SimSlot
from simgate.services.ingest import AGENT_USER_AGENT

log = logging.getLogger("simgate.agent.client")

# Reconnect delays of the event stream, then the last one forever.
SSE_BACKOFF = (1.0, 5.0, 30.0)


class ServerError(Exception):
    """The server refused or could not be reached; `status` is None when unreachable."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class PendingMessage:
    id: str
    phone_numbers: list[str]
    text: str | None
    data: str | None
    port: int | None
    sim_number: int | None
    with_delivery_report: bool
    is_encrypted: bool
    priority: int
    valid_until: str | None
    state: str = "Pending"  # Cancelling: the server waits for this device to confirm

    @classmethod
    def from_wire(cls, item: dict[str, Any]) -> PendingMessage:
        text = (item.get("textMessage") or {}).get("text", item.get("message"))
        data = item.get("dataMessage") or {}
        return cls(
            id=item["id"],
            phone_numbers=list(item["phoneNumbers"]),
            text=text,
            data=data.get("data"),
            port=data.get("port"),
            sim_number=item.get("simNumber"),
            with_delivery_report=item.get("withDeliveryReport", True),
            is_encrypted=item.get("isEncrypted", False),
            priority=item.get("priority", 0),
            valid_until=item.get("validUntil"),
            state=item.get("state") or "Pending",
        )


def _carried(data: str) -> list[PendingMessage]:
    """The messages an event carries, if any (older servers send none)."""
    try:
        items = json.loads(data).get("messages") or []
        return [PendingMessage.from_wire(i) for i in items]
    except (ValueError, AttributeError, KeyError, TypeError):
        return []


def sim_to_wire(slot: SimSlot) -> dict[str, Any]:
    return {
        "slotIndex": slot.slot_index,
        "simNumber": slot.sim_number,
        "phoneNumber": slot.phone_number,
        "carrierName": slot.carrier_name,
        "iccid": slot.iccid,
        "state": slot.status.value,
        "signal": slot.signal,
        "detail": slot.detail,
        **({"pausedUntil": slot.paused_until.isoformat(), "pauseReason": slot.pause_reason}
           if slot.paused_until else {}),
    }


class DeviceClient:
    """Thin async client; raises ServerError with a readable message."""

    def __init__(self, base_url: str, token: str | None = None, timeout: float = 10.0,
                 verify: bool = True,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self._http = httpx.AsyncClient(
            base_url=f"{self.base_url}/mobile/v1",
            timeout=timeout,
            verify=verify,
            transport=transport,
            limits=httpx.Limits(max_connections=8, max_keepalive_connections=8),
            headers={"User-Agent": f"{AGENT_USER_AGENT}{__version__}"},
        )

    async def close(self) -> None:
        await self._http.aclose()

    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    async def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = await self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ServerError(f"server {self.base_url} unreachable: {exc!r}") from None
        if response.status_code >= 400:
            try:
                message = response.json().get("message", response.text)
            except ValueError:
                message = response.text
            raise ServerError(f"{method} {path}: {response.status_code} {message}",
                              response.status_code)
        if response.status_code == 204 or not response.content:
            return None
        return response.json()

    async def register(self, username: str, password: str, name: str,
                       sims: list[SimSlot]) -> tuple[str, str]:
        """Register this device; returns (device id, token)."""
        body = await self._call(
            "POST", "/device", auth=(username, password),
            json={"name": name, "simCards": [sim_to_wire(s) for s in sims]},
        )
        self.token = body["token"]
        return body["id"], body["token"]

    async def report_sims(self, sims: list[SimSlot]) -> None:
        await self._call("PATCH", "/device", headers=self._auth(),
                         json={"simCards": [sim_to_wire(s) for s in sims]})

    async def pending(self, order: str = "lifo", limit: int = 100) -> list[PendingMessage]:
        items = await self._call("GET", "/message", headers=self._auth(),
                                 params={"order": order, "limit": limit})
        return [PendingMessage.from_wire(i) for i in items or []]

    async def report(self, updates: list[dict[str, Any]]) -> dict[str, str]:
        """PATCH states; returns each known message's resulting state."""
        result = await self._call("PATCH", "/message", headers=self._auth(), json=updates)
        return {item["id"]: item["state"] for item in result or []}

    async def usage(self, phones: list[str]) -> tuple[dict[int, SimUsage], dict[str, int]]:
        """Each slot's usage (0-based) and each number's slot of the last exchange."""
        body = await self._call("POST", "/routing/usage", headers=self._auth(),
                                json={"phoneNumbers": phones}) or {}
        sims = {int(n) - 1: SimUsage(minute=u["minute"], day=u["day"], month=u["month"],
                                     recipients_month=u["recipientsMonth"],
                                     known=frozenset(u["known"]))
                for n, u in (body.get("sims") or {}).items()}
        return sims, {p: n - 1 for p, n in (body.get("contacts") or {}).items()}

    async def forward_incoming(self, items: list[dict[str, Any]]) -> None:
        await self._call("POST", "/inbox", headers=self._auth(), json=items)

    async def send_logs(self, entries: list[dict[str, Any]]) -> None:
        await self._call("POST", "/logs", headers=self._auth(), json=entries)

    async def settings(self) -> dict[str, Any]:
        return await self._call("GET", "/settings", headers=self._auth()) or {}

    async def started(self, sims: list[SimSlot]) -> None:
        """Say the agent started, with its SIMs (the server raises app:started)."""
        await self._call("POST", "/started", headers=self._auth(),
                         json={"simCards": [sim_to_wire(s) for s in sims]})

    async def heartbeat(self) -> None:
        """Any call marks the device seen; this one reads its own record, nothing more."""
        await self._call("GET", "/device", headers=self._auth())

    async def ping(self, health: dict[str, Any]) -> None:
        await self._call("POST", "/ping", headers=self._auth(), json={"health": health})

    async def events(self) -> AsyncIterator[tuple[str, list[PendingMessage]]]:
        """Events pushed by the server (name, messages it carries), reconnecting forever."""
        failures = 0
        while True:
            try:
                async with self._http.stream(
                    "GET", "/events", headers=self._auth(), timeout=httpx.Timeout(10.0, read=60.0)
                ) as response:
                    if response.status_code >= 400:
                        raise ServerError(f"event stream refused: {response.status_code}",
                                          response.status_code)
                    failures = 0
                    yield "connected", []
                    name = ""
                    async for line in response.aiter_lines():
                        if line.startswith("event:"):
                            name = line[6:].strip()
                        elif line.startswith("data:") and name:
                            yield name, _carried(line[5:])
                            name = ""
            except (httpx.HTTPError, ServerError) as exc:
                delay = SSE_BACKOFF[min(failures, len(SSE_BACKOFF) - 1)]
                failures += 1
                log.warning("event stream lost (%s); reconnecting in %.0f s", exc, delay)
                await asyncio.sleep(delay)
