"""Settings API: defaults, merge, replace, null reset, validation, secrets, push."""

from __future__ import annotations

import asyncio

from simgate.store.models import UserSettings
from simgate.testing_android import app_import
from tests.conftest import PASSWORD, USER, register_device


def bearer(device):
    return {"headers": {"Authorization": f"Bearer {device['token']}"}, "auth": None}


async def test_defaults_patch_put_and_reset(api):
    settings = (await api.get("/3rdparty/v1/settings")).json()
    assert settings["messages"]["sim_selection_mode"] == "OSDefault"
    assert "processing_order" not in settings["messages"]  # the original drops it
    assert settings["messages"]["work_hours_enabled"] is False
    assert settings["gateway"] == {"notification_channel": "AUTO"}
    assert settings["receiver"] == {"content_provider_enabled": True}
    assert settings["webhooks"]["retry_count"] == 14

    patched = (await api.patch("/3rdparty/v1/settings", json={
        "messages": {"sim_selection_mode": "RoundRobin", "limit_period": "PerMinute",
                     "limit_value": 10}})).json()
    assert patched["messages"]["sim_selection_mode"] == "RoundRobin"
    assert patched["webhooks"]["retry_count"] == 14

    merged = (await api.patch("/3rdparty/v1/settings", json={
        "webhooks": {"retry_count": 3}})).json()
    assert merged["messages"]["sim_selection_mode"] == "RoundRobin"
    assert merged["webhooks"]["retry_count"] == 3

    reset = (await api.patch("/3rdparty/v1/settings", json={
        "messages": {"sim_selection_mode": None}})).json()
    assert reset["messages"]["sim_selection_mode"] == "OSDefault"
    assert reset["messages"]["limit_value"] == 10

    group_reset = (await api.patch("/3rdparty/v1/settings", json={"messages": None})).json()
    assert group_reset["messages"]["limit_period"] == "Disabled"
    assert group_reset["webhooks"]["retry_count"] == 3  # other groups as they were
    unknown = await api.patch("/3rdparty/v1/settings", json={"bogus": None})
    assert unknown.status_code == 200 and "bogus" in unknown.headers["Warning"]
    keys = "".join(f', "k{n}": {{}}' for n in range(12))
    odd = await api.put("/3rdparty/v1/settings", headers={"Content-Type": "application/json"},
                        content='{"q\\"\\u00e9": [1]' + keys + "}")
    assert odd.status_code == 200, odd.text  # named in plain ASCII, ten at most
    assert odd.headers["Warning"].endswith('q\\"\\u00e9, k0, k1, k2, k3, k4, k5, k6, k7, k8'
                                            ' and 3 more"')

    replaced = (await api.put("/3rdparty/v1/settings", json={
        "messages": {"sim_selection_mode": "Random"}})).json()
    assert replaced["messages"]["sim_selection_mode"] == "Random"
    assert replaced["messages"]["limit_period"] == "Disabled"
    assert replaced["webhooks"]["retry_count"] == 14


async def test_invalid_values_name_the_key_and_allowed_values(api):
    for body, fragments in [
        ({"messages": {"sim_selection_mode": "Sometimes"}},
         ["messages.sim_selection_mode", "'OSDefault', 'RoundRobin' or 'Random'"]),
        ({"messages": {"send_interval_min": 10, "send_interval_max": 5}}, ["send_interval_min"]),
        ({"messages": {"work_hours_start": "9am"}}, ["messages.work_hours_start", "HH:mm"]),
        ({"gateway": {"notification_channel": "FCM"}}, ["'AUTO' or 'SSE_ONLY'"]),
        ({"messages": "RoundRobin"}, ["messages"]),
    ]:
        response = await api.patch("/3rdparty/v1/settings", json=body)
        assert response.status_code == 400, (body, response.text)
        for fragment in fragments:
            assert fragment in response.json()["message"], (fragment, response.json())
    assert (await api.get("/3rdparty/v1/settings")).json()["messages"]["sim_selection_mode"] == "OSDefault"


async def test_a_retry_count_the_app_would_refuse_is_a_400_and_nothing_is_stored(api):
    for method in (api.patch, api.put):
        response = await method("/3rdparty/v1/settings", json={"webhooks": {"retry_count": 0}})
        assert response.status_code == 400, response.text
        message = response.json()["message"]
        assert "webhooks.retry_count" in message and "at least 1" in message, message
    assert (await api.get("/3rdparty/v1/settings")).json()["webhooks"]["retry_count"] == 14


async def test_every_value_accepted_is_one_the_apps_settings_import_takes(api):
    device = await register_device(api)
    for body in [
        {"webhooks": {"retry_count": 1, "internet_required": False, "signing_key": "k"}},
        {"messages": {"send_interval_min": 0, "send_interval_max": 2**31 - 1,
                      "limit_period": "Per30Minutes", "limit_value": 0,
                      "log_lifetime_days": 0, "sim_selection_mode": "Random",
                      "processing_order": "FIFO"}},
        {"messages": {"log_lifetime_days": 1}, "logs": {"lifetime_days": 1},
         "ping": {"interval_seconds": 0}},
        {"gateway": {"notification_channel": "SSE_ONLY", "cloud_url": "http://plain.example",
                     "private_token": "t"}},
        {"encryption": {"passphrase": "p"}, "receiver": {"content_provider_enabled": False}},
    ]:
        response = await api.patch("/3rdparty/v1/settings", json=body)
        assert response.status_code == 200, (body, response.text)
        app_import((await api.get("/mobile/v1/settings", **bearer(device))).json())


async def test_a_value_stored_under_looser_rules_falls_back_to_its_default(api, gateway):
    device = await register_device(api)
    user_id = await gateway.users.authenticate(USER, PASSWORD)
    async with gateway.sessions.begin() as session:  # registering made the row
        row = await session.get(UserSettings, user_id)
        row.values = {"webhooks": {"retry_count": 0, "signing_key": "kept"}}

    for_device = (await api.get("/mobile/v1/settings", **bearer(device))).json()
    assert for_device == {"webhooks": {"signing_key": "kept"}}
    app_import(for_device)
    assert (await api.get("/3rdparty/v1/settings")).json()["webhooks"]["retry_count"] == 14
    patched = await api.patch("/3rdparty/v1/settings", json={"ping": {"interval_seconds": 60}})
    assert patched.status_code == 200, patched.text


async def test_secrets_are_write_only_but_reach_devices(api):
    device = await register_device(api)
    await api.patch("/3rdparty/v1/settings", json={
        "webhooks": {"signing_key": "k1"}, "encryption": {"passphrase": "p1"}})
    shown = (await api.get("/3rdparty/v1/settings")).json()
    assert "signing_key" not in shown["webhooks"] and "passphrase" not in shown["encryption"]
    for_device = (await api.get("/mobile/v1/settings", **bearer(device))).json()
    assert for_device == {"webhooks": {"signing_key": "k1"}, "encryption": {"passphrase": "p1"}}


async def test_changes_are_pushed_to_connected_devices(api, gateway):
    device = await register_device(api)
    await gateway.users.add("oscar", "oscar-secret")
    stranger = await register_device(api, name="oscar's", auth=("oscar", "oscar-secret"))
    async with gateway.bus.subscribe(device["id"]) as events, \
            gateway.bus.subscribe(stranger["id"]) as others:
        await api.patch("/3rdparty/v1/settings", json={"messages": {"sim_selection_mode": "Random"}})
        event = await asyncio.wait_for(events.get(), 10)
        # the Android app's event: no payload, it fetches /mobile/v1/settings on it
        assert event == {"event": "SettingsUpdated", "data": {}}
        # another user's device hears only of its own user's change, which comes after
        await api.patch("/3rdparty/v1/settings", auth=("oscar", "oscar-secret"),
                        json={"messages": {"sim_selection_mode": "RoundRobin"}})
        assert await asyncio.wait_for(others.get(), 10) == event
        assert others.empty() and events.empty()


async def test_dropped_keys_of_any_spelling_are_named_safely(api):
    """Found by schemathesis: a key outside Latin-1 made the Warning header a 500; a quote
    or a line break must not end the quoted-string or the header either."""
    for method in ("PATCH", "PUT"):
        body = '{"ключ": null, "a\\"b\\r\\nX-Evil: 1": 1}'
        response = await api.request(method, "/3rdparty/v1/settings", content=body.encode(),
                                     headers={"Content-Type": "application/json"})
        assert response.status_code == 200, response.text
        warning = response.headers["Warning"]
        assert "\\u043a\\u043b\\u044e\\u0447" in warning and 'a\\"b\\r\\nX-Evil: 1' in warning
        assert "x-evil" not in response.headers
        # a key holding a lone surrogate is no text at all: refused as in any body
        lone = await api.request(method, "/3rdparty/v1/settings", content=b'{"\\udb5f": {}}',
                                 headers={"Content-Type": "application/json"})
        assert lone.status_code == 400 and "\\udb5f" in lone.json()["message"], lone.text


async def test_routing_group_is_validated_merged_and_reset(api):
    """simgate's own group: defaults shown, typos refused with the key named."""
    assert (await api.get("/3rdparty/v1/settings")).json()["routing"] == {
        "strategy": None, "failover": True, "max_attempts": 3, "cooldown_failures": 3,
        "cooldown_seconds": 300, "sims": {}, "timezone": None}
    patched = await api.patch("/3rdparty/v1/settings", json={"routing": {
        "strategy": "Weighted", "sims": {"1": {"daily_limit": 3, "weight": 2,
                                               "prefixes": ["+44"]}}}})
    assert patched.status_code == 200 and "Warning" not in patched.headers
    sim = patched.json()["routing"]["sims"]["1"]
    assert sim["daily_limit"] == 3 and sim["weight"] == 2 and sim["enabled"] is True
    for body, fragments in [
        ({"routing": {"strategy": "Cheapest"}}, ["routing.strategy", "'LeastUsed'"]),
        ({"routing": {"sims": {"1": {"daily": 3}}}}, ["routing.sims.1.daily", "unknown key"]),
        ({"routing": {"sims": {"first": {}}}}, ["routing.sims", "number, such as \"1\""]),
        ({"routing": {"sims": {"1": {"prefixes": ["44x"]}}}}, ["prefixes", "digits"]),
        ({"routing": {"max_attempts": 0}}, ["routing.max_attempts", "greater than"]),
        ({"routing": {"sims": {"2": {"daily_limit": -1}}}}, ["routing.sims.2.daily_limit"]),
    ]:
        answer = await api.patch("/3rdparty/v1/settings", json=body)
        assert answer.status_code == 400, body
        assert all(f in answer.json()["message"] for f in fragments), answer.json()
    reset = (await api.patch("/3rdparty/v1/settings", json={"routing": None})).json()
    assert reset["routing"]["strategy"] is None and reset["routing"]["sims"] == {}


async def test_the_zone_of_the_phones_work_hours_is_an_iana_name(api):
    kept = await api.patch("/3rdparty/v1/settings", json={"routing": {
        "timezone": "Europe/Berlin"}})
    assert kept.status_code == 200 and kept.json()["routing"]["timezone"] == "Europe/Berlin"
    wrong = await api.patch("/3rdparty/v1/settings", json={"routing": {"timezone": "Mars/Base"}})
    assert wrong.status_code == 400
    assert "routing.timezone" in wrong.json()["message"]
    assert "IANA" in wrong.json()["message"]
