"""The HTTP transport of webhook deliveries: it checks the address it connects to.

A check on one resolution and a connect on another is what DNS rebinding exploits, so
the name is resolved once, every address is checked, and the connection goes to one of
those addresses. TLS still uses the name (SNI and certificate), and the request still
carries it in Host: httpcore passes the URL's host to the network backend and keeps it
for everything else, so the backend is the one place to swap the name for the address.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import httpcore
import httpx

from simgate.webhooks.urls import check_address

# host, port -> the addresses to try, in order
Resolver = Callable[[str, int], Awaitable[list[str]]]


async def resolve(host: str, port: int) -> list[str]:
    """The system resolver (hosts file, DNS), as a connect would use it."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class CheckedBackend(httpcore.AsyncNetworkBackend):
    """Connects only to addresses that `check_address` allows for this scheme."""

    def __init__(self, https: bool, allow_private: bool, resolver: Resolver = resolve,
                 inner: httpcore.AsyncNetworkBackend | None = None) -> None:
        self._https = https
        self._allow_private = allow_private
        self._resolve = resolver
        self._inner = inner or httpcore.AnyIOBackend()

    # httpcore's signature, timeout included
    async def connect_tcp(self, host: str, port: int,
                          timeout: float | None = None,  # noqa: ASYNC109
                          local_address: str | None = None,
                          socket_options: Iterable[Any] | None = None
                          ) -> httpcore.AsyncNetworkStream:
        try:
            async with asyncio.timeout(timeout):
                addresses = await self._resolve(host.strip("[]"), port)
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"resolving {host} took too long") from None
        except OSError as exc:
            raise httpcore.ConnectError(f"webhook host {host} does not resolve: "
                                        f"{getattr(exc, 'strerror', None) or exc}") from None
        if not addresses:
            raise httpcore.ConnectError(f"webhook host {host} has no address")
        for address in addresses:  # all of them: a mix of public and private is refused
            check_address(address, host, self._https, self._allow_private)
        error: Exception | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(
                    address, port, timeout=timeout, local_address=local_address,
                    socket_options=socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
        assert error is not None
        raise error

    async def connect_unix_socket(self, path: str,
                                  timeout: float | None = None,  # noqa: ASYNC109
                                  socket_options: Iterable[Any] | None = None
                                  ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("webhooks are not delivered to unix sockets")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class CheckedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport, connecting through a `CheckedBackend`; never via a proxy
    (a proxy's address is not the receiver's)."""

    def __init__(self, backend: CheckedBackend) -> None:
        super().__init__(trust_env=False)
        # httpx offers no network_backend argument: its pool is replaced by one with
        # httpx's defaults on the checking backend (httpx is pinned in pyproject.toml).
        # SSL_CERT_FILE / SSL_CERT_DIR still count: a local receiver may use its own CA.
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(), network_backend=backend,
            max_connections=100, max_keepalive_connections=20, keepalive_expiry=5.0)


def checked_client(timeout: float, allow_private: bool,
                   resolver: Resolver = resolve) -> httpx.AsyncClient:
    """The client deliveries use: each scheme with its own rule for addresses."""
    return httpx.AsyncClient(
        timeout=timeout, follow_redirects=False, trust_env=False,
        mounts={
            "http://": CheckedTransport(CheckedBackend(False, allow_private, resolver)),
            "https://": CheckedTransport(CheckedBackend(True, allow_private, resolver)),
        },
    )
