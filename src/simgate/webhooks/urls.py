"""Which webhook URLs and receiver addresses are allowed: the server must not become an
SSRF tool.

Two checks, at two times. When a webhook is registered, only the URL's form: scheme,
host, port, no control characters, no private address written as a literal (in any of
the IPv6 forms that carry an IPv4 address), and one that the deliveries' HTTP client
parses. No DNS: a registration must not depend on a resolver answering at that moment.
At each delivery, the address actually connected to (see `simgate.webhooks.transport`):
a name that resolves to a private address later, or only for a moment, is still refused.
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import SplitResult, urlsplit

import httpx

from simgate.mail.relay import is_mailto, mailto_address

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # RFC 6052: the last 32 bits are IPv4
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")  # RFC 8215: local use only
_COMPATIBLE = ipaddress.ip_network("::/96")  # the deprecated IPv4-compatible form
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_LABEL = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)$")
_ALLOW_HINT = "set SIMGATE_ALLOW_PRIVATE_WEBHOOKS=true to allow local receivers"


class ForbiddenUrl(ValueError):
    """The URL or address is not acceptable for a webhook receiver; the text says why."""


def embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for, in the forms that route to one:
    IPv4-mapped, IPv4-compatible, NAT64 (64:ff9b::/96) and 6to4 (2002::/16)."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _NAT64 or (ip in _COMPATIBLE and int(ip) > 1):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def is_private(ip: Address) -> bool:
    """Anything not reachable on the public internet: loopback, private, link-local,
    shared, reserved; for IPv6 also what embeds such an IPv4 address, local-use NAT64
    and Teredo (whose client address is hidden)."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.teredo is not None or ip in _NAT64_LOCAL:
            return True
        inner = embedded_ipv4(ip)
        if inner is not None:
            return is_private(inner)
    return not ip.is_global


def _literal(host: str) -> Address | None:
    try:
        return ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None


def _parts(url: str) -> SplitResult:
    if _CONTROL.search(url):
        raise ForbiddenUrl("webhook url must not contain control characters (CR, LF, tab, "
                           "NUL, ...): send it as one plain line")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ForbiddenUrl("webhook url must be an absolute http(s) URL, "
                           "e.g. https://example.org/hook")
    try:
        port = parts.port
    except ValueError:  # not a number, or past 65535
        port = -1
    if port is not None and not 1 <= port <= 65535:
        raise ForbiddenUrl("webhook url has a port outside 1-65535: give a valid port "
                           "or none (443 for https, 80 for http)")
    return parts


def _check_name(host: str) -> None:
    try:
        ascii_host = host.encode("idna").decode("ascii")
    except UnicodeError:
        raise ForbiddenUrl(f"webhook host {host[:80]!r} is not a valid host name "
                           "(each label at most 63 characters)") from None
    labels = ascii_host.rstrip(".").split(".")
    if len(ascii_host) > 253 or not all(_LABEL.match(label) for label in labels):
        raise ForbiddenUrl(f"webhook host {host[:80]!r} is not a valid host name: letters, "
                           "digits and hyphens, labels of 1-63 characters, 253 in all")


def check_form(url: str, allow_private: bool) -> None:
    """What registration checks, without DNS: https always; http and private or
    loopback addresses only when local receivers are allowed; `mailto:ADDRESS` for
    events sent as emails through the admin's SMTP relay."""
    if is_mailto(url):
        if _CONTROL.search(url) or mailto_address(url) is None:
            raise ForbiddenUrl(f"webhook url {url!r} must be mailto: and one email address,"
                               " e.g. mailto:me@example.org")
        return
    if url[:7].lower() == "twilio+":  # Twilio's form POST to the URL after the prefix
        url = url[7:]
    parts = _parts(url)
    host = parts.hostname or ""
    literal = _literal(host)
    if literal is None:
        _check_name(host)
    elif is_private(literal):
        if not allow_private:
            raise ForbiddenUrl(f"webhook url host {host} is a private or loopback address "
                               f"(or stands for one); {_ALLOW_HINT}")
    elif parts.scheme == "http":
        raise ForbiddenUrl(f"webhook url {url!r} must use https (http is only for local "
                           "receivers)")
    if parts.scheme == "http" and not allow_private:
        raise ForbiddenUrl("webhook url must use https: http is only for local receivers, "
                           f"and those are not allowed here ({_ALLOW_HINT})")
    try:
        httpx.URL(url)  # what the deliveries' client makes of it
    except httpx.InvalidURL as exc:
        raise ForbiddenUrl(f"webhook url is not one an HTTP client can use ({exc}): write "
                           "the host as a DNS name or an IP address in its usual form, "
                           "e.g. https://hooks.example.org/hook or https://203.0.113.7/hook"
                           ) from None


def check_address(address: str, host: str, https: bool, allow_private: bool) -> None:
    """What each delivery checks, on the address it is about to connect to."""
    ip = _literal(address)
    if ip is None:
        raise ForbiddenUrl(f"webhook host {host} gave {address!r}, which is not an address")
    private = is_private(ip)
    if private and not allow_private:
        raise ForbiddenUrl(f"webhook host {host} resolves to {ip}, a private or loopback "
                           f"address; {_ALLOW_HINT}")
    if not https and not private:
        raise ForbiddenUrl(f"webhook host {host} resolves to {ip}, a public address: "
                           "use https (http is only for local receivers)")
