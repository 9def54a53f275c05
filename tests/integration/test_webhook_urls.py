"""Webhook URLs: the form is checked at registration without DNS; the address at each
delivery, on the address actually connected to."""

from __future__ import annotations

import asyncio

import pytest

from simgate.config import Settings
from simgate.services.gateway import Gateway
from simgate.services.webhooks import WebhookEvent, Webhooks
from simgate.store.models import Webhook
from simgate.webhooks.dispatcher import Dispatcher
from simgate.webhooks.urls import ForbiddenUrl, check_form
from tests.conftest import PASSWORD, USER, wait_until
from tests.receiver import Receiver

REFUSED_UNDER_SERVE = [
    ("https://[::127.0.0.1]/hook", "private or loopback"),  # IPv4-compatible
    ("https://[::ffff:127.0.0.1]/hook", "private or loopback"),  # IPv4-mapped
    ("https://[::ffff:10.0.0.1]/hook", "private or loopback"),
    ("https://[64:ff9b::7f00:1]/hook", "private or loopback"),  # NAT64 of 127.0.0.1
    ("https://[64:ff9b::c0a8:101]/hook", "private or loopback"),  # NAT64 of 192.168.1.1
    ("https://[64:ff9b:1::a00:1]/hook", "private or loopback"),  # local-use NAT64
    ("https://[2002:7f00:1::1]/hook", "private or loopback"),  # 6to4 of 127.0.0.1
    ("https://[2002:a00:1::1]/hook", "private or loopback"),  # 6to4 of 10.0.0.1
    ("https://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/hook", "private or loopback"),  # Teredo
    ("https://[fe80::1]/hook", "private or loopback"),
    ("https://0.0.0.0/hook", "private or loopback"),
    ("https://example.org:70000/hook", "port outside 1-65535"),
    ("https://example.org:0/hook", "port outside 1-65535"),
    ("https://example.org:http/hook", "port outside 1-65535"),
    ("https://example.org/hook\r\nX-Injected: 1", "control characters"),
    ("https://example.org/ho\nok", "control characters"),
    ("https://exam\tple.org/hook", "control characters"),
    ("https://example.org/\x00", "NUL"),  # the API refuses NUL in any text first
    (f"https://{'a' * 64}.example.org/hook", "not a valid host name"),
    ("https://exa mple.org/hook", "not a valid host name"),
    ("http://example.org/hook", "must use https"),
    ("http://127.0.0.1:8080/hook", "private or loopback"),
    # forms only the HTTP client refuses: each died at delivery, never counted as tried
    ("https://0177.0.0.1:18999/", "not one an HTTP client can use"),  # octal 127.0.0.1
    ("https://\u24dbocalhost:18999/", "not one an HTTP client can use"),  # circled l
]


@pytest.mark.parametrize(("url", "fragment"), REFUSED_UNDER_SERVE)
def test_registration_refuses_url_forms_under_serve(url, fragment):
    with pytest.raises(ForbiddenUrl, match=fragment):
        check_form(url, allow_private=False)


async def test_refused_forms_answer_400_saying_why(api):
    for url, fragment in REFUSED_UNDER_SERVE:
        response = await api.post("/3rdparty/v1/webhooks",
                                  json={"url": url, "event": "sms:received"})
        assert response.status_code == 400, (url, response.text)
        assert fragment in response.json()["message"], (url, response.json())
    assert (await api.get("/3rdparty/v1/webhooks")).json() == []


def test_public_forms_pass_and_local_ones_only_when_allowed():
    check_form("https://[2606:4700::1111]/hook", allow_private=False)
    check_form("https://[2002:808:808::1]:8443/hook", allow_private=False)  # 6to4 of public
    check_form("https://hooks.example.org:8443/a?b=c", allow_private=False)
    check_form("http://127.0.0.1:8080/hook", allow_private=True)
    check_form("http://[::ffff:127.0.0.1]:8080/hook", allow_private=True)
    with pytest.raises(ForbiddenUrl, match="must use https"):
        check_form("http://8.8.8.8/hook", allow_private=True)


@pytest.mark.parametrize("url", ["http://0177.0.0.1:18999/", "http://\u24dbocalhost:18999/"])
def test_forms_the_http_client_refuses_are_refused_with_local_receivers_too(url):
    with pytest.raises(ForbiddenUrl, match="not one an HTTP client can use"):
        check_form(url, allow_private=True)


async def test_registration_does_not_ask_dns(api):
    """A name nobody can resolve now is registered: its address is checked at delivery."""
    response = await api.post("/3rdparty/v1/webhooks", json={
        "url": "https://receiver.invalid/hook", "event": "sms:received"})
    assert response.status_code == 201, response.text


async def _first_attempt(gateway: Gateway, user_id: int) -> object:
    async def attempted():
        rows = [delivery for delivery, _ in await gateway.webhooks.deliveries(user_id)]
        return rows[0] if rows and rows[0].attempts >= 1 else None

    return await wait_until(attempted, timeout=20)


async def _hook_and_event(gateway: Gateway, url: str) -> int:
    """A webhook stored as it is (as an older version may have stored it), and an event."""
    user_id = await gateway.users.authenticate(USER, PASSWORD)
    async with gateway.sessions.begin() as session:
        session.add(Webhook(id="stored", ext_id="stored", user_id=user_id, url=url, event="system:ping"))
    async with gateway.sessions.begin() as session:
        await Webhooks.emit(session, user_id, None, WebhookEvent.SYSTEM_PING, {"health": {}})
    return user_id


async def _dispatching(gateway: Gateway, **options) -> Dispatcher:
    return Dispatcher(gateway.sessions, gateway.device_settings.webhooks_of, timeout=5,
                      retry_base=60, **options)


@pytest.mark.parametrize("url", ["https://[::ffff:127.0.0.1]:1/hook",
                                 "https://[2002:7f00:1::1]:1/hook",
                                 "https://127.0.0.1:1/hook\r\nX-Injected: 1"])
async def test_urls_stored_before_these_rules_are_refused_at_delivery(tmp_path, url):
    gateway = await Gateway.open(Settings(data_dir=tmp_path, username=USER, password=PASSWORD),
                                 background=False)
    dispatcher = await _dispatching(gateway, allow_private=False)
    try:
        user_id = await _hook_and_event(gateway, url)
        task = asyncio.create_task(dispatcher.run())
        attempt = await _first_attempt(gateway, user_id)
        task.cancel()
        assert attempt.status == "pending" and attempt.last_status is None
        assert ("private or loopback" in attempt.last_error
                or "control characters" in attempt.last_error), attempt.last_error
    finally:
        await dispatcher.close()
        await gateway.close()


async def test_delivery_connects_to_the_address_it_checked(tmp_path):
    """The name is resolved once, by the resolver that the check used; the connection
    goes to that address with the name kept in Host. (A second resolution of this name
    would fail: it exists nowhere else.)"""
    receiver = await Receiver().start()
    lookups: list[str] = []

    async def resolver(host: str, port: int) -> list[str]:
        lookups.append(host)
        return ["127.0.0.1"] if host == "receiver.invalid" else []

    gateway = await Gateway.open(Settings(data_dir=tmp_path, username=USER, password=PASSWORD),
                                 background=False)
    dispatcher = await _dispatching(gateway, allow_private=True, resolver=resolver)
    task = asyncio.create_task(dispatcher.run())
    try:
        await _hook_and_event(gateway, f"http://receiver.invalid:{receiver.port}/hook")
        dispatcher.wake()
        await wait_until(lambda: receiver.received, timeout=20)
        assert receiver.received[0].headers["host"] == f"receiver.invalid:{receiver.port}"
        assert lookups == ["receiver.invalid"]
    finally:
        task.cancel()
        await dispatcher.close()
        await gateway.close()
        await receiver.stop()


async def test_a_name_resolving_to_a_private_address_is_refused_at_delivery(tmp_path):
    receiver = await Receiver().start()

    async def resolver(host: str, port: int) -> list[str]:
        return ["127.0.0.1"]

    gateway = await Gateway.open(Settings(data_dir=tmp_path, username=USER, password=PASSWORD),
                                 background=False)
    dispatcher = await _dispatching(gateway, allow_private=False, resolver=resolver)
    task = asyncio.create_task(dispatcher.run())
    try:
        user_id = await _hook_and_event(gateway, f"https://rebound.invalid:{receiver.port}/h")
        attempt = await _first_attempt(gateway, user_id)
        assert "resolves to 127.0.0.1, a private or loopback address" in attempt.last_error
        assert receiver.requests_started == 0
    finally:
        task.cancel()
        await dispatcher.close()
        await gateway.close()
        await receiver.stop()


async def test_any_error_of_a_delivery_is_a_failed_attempt(tmp_path):
    """Not only the HTTP client's own errors: whatever a delivery raises is counted,
    retried and in the end given up on, never a task that dies with its delivery pending."""
    async def resolver(host: str, port: int) -> list[str]:
        raise RuntimeError("the resolver broke")

    gateway = await Gateway.open(Settings(data_dir=tmp_path, username=USER, password=PASSWORD),
                                 background=False)
    dispatcher = await _dispatching(gateway, allow_private=False, resolver=resolver)
    task = asyncio.create_task(dispatcher.run())
    try:
        user_id = await _hook_and_event(gateway, "https://hooks.example.org/hook")
        attempt = await _first_attempt(gateway, user_id)
        assert attempt.status == "pending" and attempt.attempts == 1
        assert attempt.last_error == "RuntimeError: the resolver broke"
    finally:
        task.cancel()
        await dispatcher.close()
        await gateway.close()
