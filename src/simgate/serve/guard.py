"""Slow and greedy clients: deadlines for a request's headers and body, and a cap on the
connections one address (an IPv6 /64) holds open.

uvicorn times out only idle keep-alive connections: a client that trickles its headers,
or declares a body and never sends it, holds a connection (and a request task) as long as
it likes, and one address may open any number. The deadlines are kept by the HTTP
protocol itself (uvicorn's httptools protocol, subclassed), so they cover what no ASGI
middleware sees: headers still arriving, a body the application never reads. Responses
are not timed: device event streams and long polls stay open as long as they need.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
from collections import Counter
from dataclasses import dataclass
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from simgate.services.limits import address_groups

BODY_MIN_RATE = 500  # bytes a second: each 500 bytes received give a body one more second


@dataclass(frozen=True)
class Limits:
    header_timeout: float  # seconds from a request's first byte to its last header
    body_timeout: float  # seconds for a body, plus one per BODY_MIN_RATE bytes received
    per_address: int  # connections one client address may hold open; 0: no cap
    exempt: str = ""  # proxies (SIMGATE_FORWARDED_ALLOW_IPS): their clients are not them


def _refusal(status: int, reason: str, message: str) -> bytes:
    body = json.dumps({"code": status, "message": message}).encode()
    return (f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n").encode() + body


def _is_exempt(host: str, exempt: str) -> bool:
    entries = [e.strip() for e in exempt.split(",") if e.strip()]
    if "*" in entries:
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:  # a unix socket path
        return True
    for entry in entries:
        try:
            if address in ipaddress.ip_network(entry, strict=False):
                return True
        except ValueError:
            continue
    return False


class OpenConnections:
    """The connections each client holds open, against the cap: an IPv4 address, or an
    IPv6 /64 (a subscriber gets one, or more, and may use any address in it) counts as
    one client; the proxies exempted are not counted."""

    def __init__(self, limits: Limits) -> None:
        self._limits = limits
        self._open: Counter[str] = Counter()  # one event loop per process: no lock

    def open(self, host: str) -> tuple[str | None, bool]:
        """The key `host` is counted under (None: not counted), and whether it may open
        one more connection (counted when it may)."""
        if not self._limits.per_address or _is_exempt(host, self._limits.exempt):
            return None, True
        key = address_groups(host)[0]
        if self._open[key] >= self._limits.per_address:
            return key, False
        self._open[key] += 1
        return key, True

    def close(self, key: str) -> None:
        self._open[key] -= 1
        if self._open[key] <= 0:
            del self._open[key]


def guarded_protocol(limits: Limits) -> type[HttpToolsProtocol]:
    """An HTTP protocol class for uvicorn.Config(http=...) that keeps `limits`."""
    connections = OpenConnections(limits)

    class GuardedHttpTools(HttpToolsProtocol):
        _deadline: asyncio.TimerHandle | None = None
        _address: str | None = None  # counted against the cap
        _body_due = 0.0

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            host = self.client[0] if self.client else None
            if host:
                address, admitted = connections.open(host)
                if not admitted:
                    transport.write(_refusal(
                        503, "Service Unavailable",
                        f"too many connections from {address}: at most {limits.per_address}"
                        " at once; reuse connections, or wait for some to close"))
                    transport.close()
                    return
                self._address = address
            self._arm(limits.header_timeout, self._headers_late)

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            if self._address is not None:
                connections.close(self._address)
                self._address = None
            super().connection_lost(exc)

        def on_message_begin(self) -> None:  # the next request on a kept-alive connection
            super().on_message_begin()
            self._arm(limits.header_timeout, self._headers_late)

        def on_headers_complete(self) -> None:
            super().on_headers_complete()
            self._body_due = self.loop.time() + limits.body_timeout
            self._arm(limits.body_timeout, self._body_late)

        def on_body(self, body: bytes) -> None:
            super().on_body(body)
            # the deadline moves; its timer is moved only when it fires (see _body_late):
            # a new timer for every chunk was work on every request
            self._body_due += len(body) / BODY_MIN_RATE

        def on_message_complete(self) -> None:
            super().on_message_complete()
            self._disarm()

        def _arm(self, delay: float, callback: Any) -> None:
            self._disarm()
            if not self.transport.is_closing():
                self._deadline = self.loop.call_later(max(delay, 0.0), callback)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _headers_late(self) -> None:  # no request of this connection is answering
            self._give_up(f"request headers not received within {limits.header_timeout:g} s",
                          answer=True)

        def _body_late(self) -> None:  # the request may have been answered already
            if (left := self._body_due - self.loop.time()) > 0:  # chunks came meanwhile
                self._arm(left, self._body_late)
                return
            self._give_up("request body not received in time: send it at"
                          f" {BODY_MIN_RATE} bytes/s or faster",
                          answer=not self.cycle.response_started)

        def _give_up(self, message: str, answer: bool) -> None:
            self._deadline = None
            if answer:
                self.transport.write(_refusal(408, "Request Timeout", message))
            self.transport.close()  # a request task still reading sees a disconnect

    return GuardedHttpTools
