"""Which webhook URLs are allowed: the server must not become an SSRF tool."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit


class ForbiddenUrl(ValueError):
    """The URL is not acceptable as a webhook receiver; the text says why."""


def _is_private(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    return not ip.is_global


async def resolve(host: str) -> list[str]:
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
        return [str(ip)]
    except ValueError:
        pass
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ForbiddenUrl(f"webhook host {host!r} does not resolve: {exc.strerror}") from None
    return sorted({str(info[4][0]) for info in infos})


async def check_url(url: str, allow_private: bool) -> None:
    """https to public hosts always; http and private/loopback hosts only when allowed."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ForbiddenUrl("webhook url must be an absolute http(s) URL, "
                           "e.g. https://example.org/hook")
    private = any(_is_private(a) for a in await resolve(parts.hostname))
    if private and not allow_private:
        raise ForbiddenUrl(
            f"webhook url {url!r} points to a private or loopback address; "
            "set SIMGATE_ALLOW_PRIVATE_WEBHOOKS=true to allow local receivers"
        )
    if parts.scheme == "http" and not private:
        raise ForbiddenUrl(f"webhook url {url!r} must use https (http is only for local "
                           "receivers)")
