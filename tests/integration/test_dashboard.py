"""The dashboard over HTTP: login, sessions, CSRF, and each user seeing only their own."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx
import pytest

from simgate.server.app import create_app
from simgate.services.logins import FAILURES_PER_ADDRESS
from simgate.services.messages import MessageQuery
from tests.conftest import PASSWORD, USER, register_device

PAGES = ["/", "/devices", "/messages", "/send", "/inbox", "/webhooks", "/settings", "/logs",
         "/tokens", "/messages/rows", "/devices/part", "/overview/part", "/inbox/rows"]
BOB, BOB_PASSWORD = "bob", "bob-secret-1"


def _csrf(page: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', page)
    assert match, "the page holds no CSRF token"
    return match.group(1)


@pytest.fixture
async def web(gateway) -> AsyncIterator[httpx.AsyncClient]:
    """A browser-like client of the app: cookies kept, no credentials of its own."""
    app = create_app(gateway.settings, gateway)
    app.state.gateway = gateway
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://simgate") as client:
        yield client


async def log_in(client: httpx.AsyncClient, username: str = USER,
                 password: str = PASSWORD) -> str:
    """Log in through the form; returns the session's CSRF token."""
    token = _csrf((await client.get("/login")).text)
    response = await client.post("/login", data={"csrf": token, "username": username,
                                                 "password": password, "next": "/"})
    assert response.status_code == 303, response.text
    return _csrf((await client.get("/send")).text)


async def test_pages_need_login(web):
    for page in PAGES:
        response = await web.get(page)
        assert response.status_code == 303, page
        assert response.headers["location"].startswith("/login?next="), page
    assert (await web.get("/events")).status_code == 401
    assert (await web.post("/send", data={"text": "x"})).status_code == 401


async def test_htmx_requests_without_a_session_lead_the_page_to_login(web):
    response = await web.get("/messages/rows", headers={"HX-Request": "true"})
    assert response.status_code == 401 and response.headers["hx-redirect"] == "/login"


async def test_a_wrong_password_keeps_where_the_login_leads(web):
    page = await web.get("/login", params={"next": "/webhooks"})
    response = await web.post("/login", data={"csrf": _csrf(page.text), "username": USER,
                                              "password": "wrong-password", "next": "/webhooks"})
    assert response.status_code == 401
    assert 'name="next" value="/webhooks"' in response.text


async def test_login_leads_back_only_within_the_site(web):
    for target, landing in (("/inbox", "/inbox"), ("//evil.example/x", "/"),
                            ("https://evil.example/", "/"), ("/\\evil.example", "/")):
        web.cookies.clear()
        token = _csrf((await web.get("/login")).text)
        response = await web.post("/login", data={"csrf": token, "username": USER,
                                                  "password": PASSWORD, "next": target})
        assert response.headers["location"] == landing, target


async def test_login_opens_every_page_and_the_api_stays_as_it_was(web, api):
    await log_in(web)
    for page in PAGES:
        response = await web.get(page)
        assert response.status_code == 200, page
        assert "Log out" in response.text or page.endswith(("rows", "part"))
    assert (await api.get("/3rdparty/v1/devices")).status_code == 200
    assert (await web.get("/3rdparty/v1/devices")).status_code == 401  # no cookie auth
    assert (await web.get("/health")).status_code == 200


async def test_wrong_password_is_refused_and_limited_like_the_api(web):
    token = _csrf((await web.get("/login")).text)
    for _ in range(FAILURES_PER_ADDRESS):
        response = await web.post("/login", data={"csrf": token, "username": USER,
                                                  "password": "wrong-password"})
        assert response.status_code == 401
        assert "Invalid username or password" in response.text
    response = await web.post("/login", data={"csrf": token, "username": USER,
                                              "password": PASSWORD})
    assert response.status_code == 429
    assert "too many failed logins" in response.text
    assert int(response.headers["retry-after"]) >= 1


async def test_session_cookie_is_signed_http_only_and_lax(gateway):
    app = create_app(gateway.settings, gateway)
    app.state.gateway = gateway
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="https://simgate") as client:
        await log_in(client)
        cookie = client.cookies.jar
        session = next(c for c in cookie if c.name == "simgate_session")
        assert session.secure  # served over HTTPS
        assert session.has_nonstandard_attr("HttpOnly")
        assert session.get_nonstandard_attr("SameSite").lower() == "lax"
        body, _, signature = session.value.partition(".")
        client.cookies.set("simgate_session", f"{body}.{signature[::-1]}",
                           domain=session.domain)
        assert (await client.get("/")).status_code == 303  # a forged signature: no session


async def test_forms_need_the_csrf_token(web, gateway, api):
    await register_device(api)
    token = await log_in(web)
    form = {"recipients": "+12025550123", "text": "hello", "sim": ""}
    assert (await web.post("/send", data=form)).status_code == 403
    assert (await web.post("/send", data={**form, "csrf": "not-the-token"})).status_code == 403
    assert (await web.post("/webhooks", data={"url": "https://example.com/h",
                                              "event": "sms:sent"})).status_code == 403
    assert (await web.post("/logout", data={})).status_code == 403
    alice = await _id_of(gateway, USER)
    assert await gateway.messages.count(alice, _everything()) == 0
    assert await gateway.webhooks.list(alice) == []
    response = await web.post("/send", data={**form, "csrf": token,
                                             "recipients": "+1 202 555 0123,\n+12025550124"})
    assert response.status_code == 303
    assert await gateway.messages.count(alice, _everything()) == 1
    sent = await gateway.messages.get(alice, response.headers["location"].rsplit("/", 1)[1])
    assert [r.phone_number for r in sent.recipients] == ["+12025550123", "+12025550124"]
    # the login form has its own token too
    web.cookies.clear()
    response = await web.post("/login", data={"username": USER, "password": PASSWORD})
    assert response.status_code == 403


def _everything() -> MessageQuery:
    return MessageQuery()


async def _id_of(gateway, username: str) -> int:
    return next(u.id for u in await gateway.users.list() if u.username == username)


async def test_send_form_refuses_bad_input_with_the_api_words(web, api):
    await register_device(api)
    token = await log_in(web)
    response = await web.post("/send", data={"csrf": token, "recipients": "12",
                                             "text": "hi", "sim": ""})
    assert response.status_code == 400
    assert "invalid phone number" in response.text
    assert "hi</textarea>" in response.text  # what was typed stays


async def test_live_counter_uses_the_sms_rules(web):
    token = await log_in(web)
    ucs2 = await web.post("/send/size", data={"text": "ж" * 71},
                          headers={"X-CSRF-Token": token})
    assert 'id="encoding">UCS-2<' in ucs2.text and 'id="parts">2<' in ucs2.text
    gsm = await web.post("/send/size", data={"text": "€" * 80},
                         headers={"X-CSRF-Token": token})
    assert 'id="encoding">GSM-7<' in gsm.text and 'id="parts">1<' in gsm.text
    assert (await web.post("/send/size", data={"text": "x"})).status_code == 403


async def test_one_user_never_sees_another_users_data(web, gateway, api):
    device = await register_device(api, name="alices-phone")
    sent = await api.post("/3rdparty/v1/messages", json={
        "textMessage": {"text": "for alice only"}, "phoneNumbers": ["+12025550123"]})
    message_id = sent.json()["id"]
    hook = await api.post("/3rdparty/v1/webhooks", json={
        "id": "alices-hook", "url": "https://example.com/alice", "event": "sms:sent"})
    assert hook.status_code == 201, hook.text
    await gateway.users.add(BOB, BOB_PASSWORD)
    token = await log_in(web, BOB, BOB_PASSWORD)
    pages = {page: (await web.get(page)).text for page in PAGES}
    for page, text in pages.items():
        for secret in ("alices-phone", device["id"], message_id, "for alice only",
                       "example.com/alice"):
            assert secret not in text, (page, secret)
    assert (await web.get(f"/messages/{message_id}")).status_code == 404
    assert (await web.post(f"/messages/{message_id}/cancel",
                           data={"csrf": token})).status_code == 404
    assert (await web.post("/webhooks/alices-hook/redrive",
                           data={"csrf": token})).status_code == 404
    await web.post("/webhooks/alices-hook/delete", data={"csrf": token})
    alice = await _id_of(gateway, USER)
    assert [w.ext_id for w in await gateway.webhooks.list(alice)] == ["alices-hook"]
    assert (await api.get(f"/3rdparty/v1/messages/{message_id}")).json()["state"] == "Pending"


async def test_a_new_password_ends_the_session(web, gateway):
    await log_in(web)
    assert (await web.get("/")).status_code == 200
    await gateway.users.set_password(USER, "another-secret")
    assert (await web.get("/")).status_code == 303


async def test_a_new_password_ends_only_its_own_users_sessions(web, gateway):
    """One tenant changing their password (a device can do it) logs no one else out."""
    await gateway.users.add(BOB, BOB_PASSWORD)
    await log_in(web)
    async with httpx.AsyncClient(transport=web._transport, base_url="http://simgate") as bob:
        await log_in(bob, BOB, BOB_PASSWORD)
        await gateway.users.set_password(BOB, "bob-secret-2")
        assert (await bob.get("/")).status_code == 303
        assert (await web.get("/")).status_code == 200
        await log_in(bob, BOB, "bob-secret-2")
        await gateway.users.set_password(USER, "another-secret")
        assert (await web.get("/")).status_code == 303
        assert (await bob.get("/")).status_code == 200


async def test_settings_form_saves_sim_selection_and_limits(web, gateway, api):
    await register_device(api)
    token = await log_in(web)
    response = await web.post("/settings", data={
        "csrf": token, "sim_selection_mode": "RoundRobin", "strategy": "",
        "failover": "on", "max_attempts": "2", "sim1_enabled": "on",
        "sim1_daily_limit": "50", "sim2_rate_per_minute": "3"})
    assert response.status_code == 303
    stored = await gateway.device_settings.get(await _id_of(gateway, USER))
    assert stored["messages"]["sim_selection_mode"] == "RoundRobin"
    assert stored["routing"]["max_attempts"] == 2
    assert stored["routing"]["sims"]["1"]["daily_limit"] == 50
    assert stored["routing"]["sims"]["2"] == {"rate_per_minute": 3, "daily_limit": None,
                                              "monthly_limit": None, "enabled": False}
    page = (await web.get("/devices")).text
    assert "today 0/50, month 0" in page  # SIM 1, with its usage against the limit
    assert "minute 0/3, " in page and "disabled in routing.sims" in page  # SIM 2
    assert "settings changed" in (await web.get("/logs")).text  # and the log says so
    bad = await web.post("/settings", data={"csrf": token, "sim_selection_mode": "Nope",
                                            "max_attempts": "2"})
    assert bad.status_code == 400 and "sim_selection_mode" in bad.text


async def test_a_pending_message_is_cancelled_from_its_page(web, gateway, api):
    await register_device(api)  # no agent behind it: the message stays Pending
    token = await log_in(web)
    sent = await web.post("/send", data={"csrf": token, "recipients": "+12025550123",
                                         "text": "never mind", "sim": ""})
    page = sent.headers["location"]
    assert "Cancel this message" in (await web.get(page)).text
    response = await web.post(f"{page}/cancel", data={"csrf": token})
    assert response.status_code == 303
    message_id = page.rsplit("/", 1)[1]
    state = (await api.get(f"/3rdparty/v1/messages/{message_id}")).json()["state"]
    assert state == "Cancelling"  # its device is told, and confirms
    again = await web.post(f"{page}/cancel", data={"csrf": token})
    assert again.status_code == 303  # cancelling twice is no error


async def test_the_message_list_filters_by_sim_and_device_and_keeps_them_live(web, api):
    """With two devices, the list offers each SIM number and each device; a filter holds in
    the live rows' address and in the rows themselves."""
    phone = await register_device(api)
    await register_device(api, name="modem pool",
                          sims=[{"slotIndex": i, "phoneNumber": f"+1202555020{i}"}
                                for i in range(3)])
    for sim in (1, 2):
        sent = await api.post("/3rdparty/v1/messages", json={
            "textMessage": {"text": f"asks SIM {sim}"}, "phoneNumbers": ["+19162255887"],
            "simNumber": sim, "deviceId": phone["id"]})
        assert sent.status_code == 202, sent.text
    await log_in(web)
    page = (await web.get("/messages")).text
    assert re.findall(r'<option value="(\d)"', page) == ["1", "2", "3"]  # pool's 3 slots
    assert "modem pool" in page and f'<option value="{phone["id"]}"' in page
    filtered = (await web.get("/messages", params={"sim": "2", "device": phone["id"]})).text
    assert "asks SIM 2" in filtered and "asks SIM 1" not in filtered
    assert f'data-live="/messages/rows?device={phone["id"]}&amp;sim=2&amp;page=1"' in filtered
    assert '<option value="2" selected>' in filtered
    rows = (await web.get("/messages/rows", params={"sim": "3"})).text
    assert "asks SIM" not in rows and "No messages through SIM 3." in rows
    everything = (await web.get("/messages", params={"sim": "not a number"})).text
    assert "asks SIM 1" in everything and "asks SIM 2" in everything


async def _send_through(api: httpx.AsyncClient, device: dict, sim: int, state: str,
                        error: str | None = None) -> None:
    """A message sent by `device` through SIM `sim`, reported as `state`."""
    sent = await api.post("/3rdparty/v1/messages", json={
        "textMessage": {"text": f"via SIM {sim}"}, "phoneNumbers": ["+19162255887"]})
    assert sent.status_code == 202, sent.text
    auth = {"headers": {"Authorization": f"Bearer {device['token']}"}, "auth": None}
    for step in ("Processed", "Sent", state) if state == "Delivered" else ("Processed", state):
        recipient = {"phoneNumber": "+19162255887", "state": step,
                     **({"error": error} if step == "Failed" else {})}
        answer = await api.patch("/mobile/v1/message", **auth, json=[{
            "id": sent.json()["id"], "state": step, "simNumber": sim,
            "recipients": [recipient]}])
        assert answer.status_code == 200, answer.text


async def test_the_overview_charts_sends_per_sim_failures_and_the_queue(web, api):
    """The overview counts today's messages by state and draws, as inline SVG, the sends
    of each SIM, the failures by reason, the delivery rate and each device's queue."""
    device = await register_device(api)
    for sim, state in ((1, "Delivered"), (1, "Delivered"), (2, "Sent"), (2, "Failed")):
        await _send_through(api, device, sim, state, "+CMS ERROR 331 (no network service)")
    await api.post("/3rdparty/v1/messages", json={  # stays Pending: the queue
        "textMessage": {"text": "waits"}, "phoneNumbers": ["+19162255887"]})
    await log_in(web)
    page = await web.get("/")
    assert page.status_code == 200 and "<script" not in page.text.split("</head>")[1]
    part = (await web.get("/overview/part")).text
    assert re.search(r'id="today-Delivered" data-count="2"', part)
    assert re.search(r'id="today-Pending" data-count="1"', part)
    assert re.search(r'id="tile-online"><strong>1</strong>', part)
    for chart in ("chart-hours", "chart-days"):
        svg = part.split(f'id="{chart}"')[1].split("</ul>")[0]
        assert 'data-series="SIM 1" data-total="2"' in svg, chart
        assert 'data-series="SIM 2" data-total="2"' in svg, chart
    failures = part.split('id="chart-failures"')[1].split("</svg>")[0]
    assert "+CMS ERROR 331 (no network service): 1" in failures
    assert re.search(r'id="delivery-rate"><strong>75%</strong>', part)
    assert 'data-value="1"' in part.split('id="queue-1"')[1].split("</svg>")[0]
    assert 'data-live="/overview/part" data-event="messages devices"' in page.text


async def test_the_devices_page_draws_each_sims_usage_against_its_limits(web, gateway, api):
    device = await register_device(api)
    await gateway.device_settings.patch(await _id_of(gateway, USER), {
        "routing": {"sims": {"1": {"daily_limit": 4}}}})
    await _send_through(api, device, 1, "Sent")
    await log_in(web)
    page = (await web.get("/devices")).text
    bar = page.split(f'id="usage-{device["id"]}-1-1"')[1].split("</svg>")[0]
    assert 'data-value="1"' in bar and 'data-limit="4"' in bar
    assert "today: 1 of 4" in page and "today: 0 (no limit)" in page


async def test_a_token_made_on_the_token_page_is_shown_once_and_revoked_there(web, api):
    token = await log_in(web)
    refused = await web.post("/tokens", data={"csrf": token, "ttl": "3600"})
    assert refused.status_code == 400 and "at least one scope" in refused.text
    assert (await web.post("/tokens", data={"scope": "messages:send",
                                            "ttl": "3600"})).status_code == 403
    made = await web.post("/tokens", data={"csrf": token, "scope": ["messages:list",
                                                                    "devices:list"],
                                           "ttl": "86400"})
    assert made.status_code == 201
    access = re.search(r'id="access-token">([^<]+)<', made.text).group(1)
    bearer = {"Authorization": f"Bearer {access}"}
    listed = await api.get("/3rdparty/v1/messages", headers=bearer, auth=None)
    assert listed.status_code == 200
    assert (await api.post("/3rdparty/v1/messages", headers=bearer, auth=None, json={
        "textMessage": {"text": "x"}, "phoneNumbers": ["+19162255887"]})).status_code == 403
    page = (await web.get("/tokens")).text
    assert access not in page  # shown once
    token_id = re.search(r'id="token-([^"]+)"', page).group(1)
    assert "devices:list, messages:list" in page
    revoked = await web.post(f"/tokens/{token_id}/revoke", data={"csrf": token})
    assert revoked.status_code == 303
    assert (await api.get("/3rdparty/v1/messages", headers=bearer,
                          auth=None)).status_code == 401
    assert 'id="no-tokens"' in (await web.get("/tokens")).text


async def test_a_finished_message_says_why_its_text_is_gone_and_its_attempt_is_a_result(
        web, gateway, api):
    device = await register_device(api)
    await _send_through(api, device, 2, "Delivered")
    [message] = await gateway.messages.list(await _id_of(gateway, USER), MessageQuery())
    assert await gateway.messages.hash_finished(None) == 1
    await log_in(web)
    page = (await web.get(f"/messages/{message.ext_id}")).text
    assert "keeps only a hash of its text and numbers" in page
    attempts = page.split("<h2>Attempts</h2>")[1]
    assert "<th>Error</th>" not in attempts and 'data-label="Result">sent<' in attempts
    rows = (await web.get("/messages/rows")).text
    assert "(text not kept after sending)" in rows and "(hashed)" not in rows


def test_a_webhook_answer_is_red_only_when_it_failed():
    """The Webhooks page's "Last answer": a 2xx is no error; a 500 or a refused
    connection is."""
    from types import SimpleNamespace

    from simgate.web.render import _templates

    def delivery(status: int | None, error: str | None) -> SimpleNamespace:
        return SimpleNamespace(status="delivered" if error is None else "failed",
                               created_at=None, event="sms:sent", attempts=1, event_id="e",
                               last_status=status, last_error=error)

    page = _templates.get_template("webhooks.html").render(
        path="/webhooks", who=None, csrf="x", webhooks=[], events=[], devices=[],
        deliveries=[(delivery(200, None), "ok"), (delivery(500, "HTTP 500"), "bad"),
                    (delivery(None, "connection refused"), "down")])
    cells = re.findall(r'<td( class="[^"]+")? data-label="Last answer">', page)
    assert cells == [' class="ok-text"', ' class="error-text"', ' class="error-text"']
