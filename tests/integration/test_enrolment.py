"""Devices joining without the user's password, as the Android app does with a private
server: a one-time user code, or the server key (which makes a user for the device)."""

from __future__ import annotations

import asyncio
import itertools

import httpx
import pytest

from simgate.config import Settings
from simgate.server.app import create_app
from simgate.services.enrolment import TRIES_PER_ADDRESS, TooManyAttempts
from simgate.services.gateway import Gateway
from simgate.services.users import CHANGE_WINDOW, CHANGES_PER_USER
from tests.conftest import PASSWORD, USER, register_device

SERVER_KEY = "server-key-for-private-mode"


@pytest.fixture
async def private(tmp_path):
    """A server with a server key, and a client of it without credentials."""
    settings = Settings(data_dir=tmp_path, username=USER, password=PASSWORD,
                        private_token=SERVER_KEY)
    gateway = await Gateway.open(settings, background=False)
    app = create_app(settings, gateway)
    app.state.gateway = gateway
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://simgate") as client:
        client.gateway = gateway
        yield client
    await gateway.close()


async def test_the_server_key_makes_a_user_for_the_device(private):
    joined = await private.post("/mobile/v1/device", json={"name": "android app"},
                                headers={"Authorization": f"Bearer {SERVER_KEY}"})
    assert joined.status_code == 201, joined.text
    body = joined.json()
    assert body["login"] and len(body["password"]) >= 8 and body["token"]
    # the app shows login and password: they work on the user API, and see that device
    devices = await private.get("/3rdparty/v1/devices", auth=(body["login"], body["password"]))
    assert [d["id"] for d in devices.json()] == [body["id"]]
    # and the configured user does not see it
    mine = await private.get("/3rdparty/v1/devices", auth=(USER, PASSWORD))
    assert mine.json() == []


async def test_a_wrong_server_key_or_none_configured_is_refused(private, api):
    wrong = await private.post("/mobile/v1/device", json={"name": "x"},
                               headers={"Authorization": "Bearer not-the-key"})
    assert wrong.status_code == 401
    unset = await api.post("/mobile/v1/device", json={"name": "x"}, auth=None,
                           headers={"Authorization": f"Bearer {SERVER_KEY}"})
    assert unset.status_code == 401


async def test_a_user_code_joins_a_device_to_that_user_once(api):
    issued = await api.get("/mobile/v1/user/code")
    assert issued.status_code == 200
    code = issued.json()["code"]
    assert code.isdigit() and len(code) == 6 and issued.json()["validUntil"]
    joined = await api.post("/mobile/v1/device", json={"name": "by code"}, auth=None,
                            headers={"Authorization": f"Code {code}"})
    assert joined.status_code == 201, joined.text
    assert joined.json()["login"] == USER and joined.json()["password"] is None
    assert [d["id"] for d in (await api.get("/3rdparty/v1/devices")).json()] == [
        joined.json()["id"]]
    again = await api.post("/mobile/v1/device", json={"name": "again"}, auth=None,
                           headers={"Authorization": f"Code {code}"})
    assert again.status_code == 401 and "ask for a new one" in again.json()["message"]


async def test_device_info_and_password_change(api):
    device = await register_device(api)
    anonymous = await api.get("/mobile/v1/device", auth=None)
    assert anonymous.status_code == 200 and "device" not in anonymous.json()
    assert anonymous.json()["externalIp"]
    headers = {"Authorization": f"Bearer {device['token']}"}
    mine = await api.get("/mobile/v1/device", auth=None, headers=headers)
    assert mine.json()["device"]["id"] == device["id"]
    assert len(mine.json()["device"]["simCards"]) == 2

    wrong = await api.patch("/mobile/v1/user/password", auth=None, headers=headers,
                            json={"currentPassword": "nope", "newPassword": "brand-new-pw"})
    assert wrong.status_code == 401
    changed = await api.patch("/mobile/v1/user/password", auth=None, headers=headers,
                              json={"currentPassword": PASSWORD, "newPassword": "brand-new-pw"})
    assert changed.status_code == 204
    assert (await api.get("/3rdparty/v1/devices", auth=(USER, "brand-new-pw"))).status_code == 200
    assert (await api.get("/3rdparty/v1/devices")).status_code == 401  # the old password


async def test_a_device_changing_its_users_password_over_and_over_gets_429(api, gateway):
    """Each change ends the user's tokens and sessions and costs a slow hash: a few in ten
    minutes, then 429 with Retry-After, before any password is checked."""
    device = await register_device(api)
    headers = {"Authorization": f"Bearer {device['token']}"}
    passwords = [PASSWORD] + [f"new-password-{n}" for n in range(CHANGES_PER_USER + 1)]
    for current, new in itertools.pairwise(passwords[:CHANGES_PER_USER + 1]):
        changed = await api.patch("/mobile/v1/user/password", auth=None, headers=headers,
                                  json={"currentPassword": current, "newPassword": new})
        assert changed.status_code == 204, changed.text
    current = passwords[CHANGES_PER_USER]
    refused = await api.patch("/mobile/v1/user/password", auth=None, headers=headers,
                              json={"currentPassword": current, "newPassword": "one-more-pw"})
    assert refused.status_code == 429, refused.text
    assert 0 < int(refused.headers["Retry-After"]) <= CHANGE_WINDOW
    assert "password changed" in refused.json()["message"]
    # the password stays the last one set; another user's device may still change theirs
    assert (await api.get("/3rdparty/v1/devices", auth=(USER, current))).status_code == 200
    # (changes asked all at once, with the right password: no more get through)
    await gateway.users.add("bob", "bob-secret-1")
    bobs = await register_device(api, auth=("bob", "bob-secret-1"))
    changes = await asyncio.gather(*[api.patch(
        "/mobile/v1/user/password", auth=None,
        headers={"Authorization": f"Bearer {bobs['token']}"},
        json={"currentPassword": "bob-secret-1", "newPassword": f"bob-new-pw-{n}"})
        for n in range(CHANGES_PER_USER + 3)])
    assert sorted(c.status_code for c in changes) == [204] * CHANGES_PER_USER + [429] * 3


async def test_guessing_codes_is_cut_short_even_all_at_once(api, gateway):
    real = (await api.get("/mobile/v1/user/code")).json()["code"]
    guesses = [f"{n:06d}" for n in range(40) if f"{n:06d}" != real][:30]
    tries = await asyncio.gather(*[
        api.post("/mobile/v1/device", json={"name": "x"}, auth=None,
                 headers={"Authorization": f"Code {guess}"}) for guess in guesses])
    statuses = sorted(t.status_code for t in tries)
    assert statuses == [401] * 10 + [429] * 20
    # now even the right code waits, from that address
    blocked = await api.post("/mobile/v1/device", json={"name": "x"}, auth=None,
                             headers={"Authorization": f"Code {real}"})
    assert blocked.status_code == 429 and blocked.headers["retry-after"] == "60"
    assert "wait a minute" in blocked.json()["message"]
    # but not from another one: the owner of the code is not locked out
    app = create_app(gateway.settings, gateway)
    app.state.gateway = gateway
    other = httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=("10.1.2.3", 5)),
                              base_url="http://simgate")
    async with other:
        joined = await other.post("/mobile/v1/device", json={"name": "mine"},
                                  headers={"Authorization": f"Code {real}"})
    assert joined.status_code == 201, joined.text


async def test_guessing_the_server_key_is_cut_short_as_codes_are(private):
    """Wrong Bearer keys on registration count as wrong codes: ten from an address, then
    429, even for the right key; another address still joins with it."""
    gateway = private.gateway
    guesses = await asyncio.gather(*[
        private.post("/mobile/v1/device", json={"name": "x"},
                     headers={"Authorization": f"Bearer guess-{n}"}) for n in range(30)])
    assert sorted(g.status_code for g in guesses) == [401] * 10 + [429] * 20
    blocked = await private.post("/mobile/v1/device", json={"name": "x"},
                                 headers={"Authorization": f"Bearer {SERVER_KEY}"})
    assert blocked.status_code == 429 and blocked.headers["retry-after"] == "60"
    assert "server key" in blocked.json()["message"]
    before = len(await gateway.users.list())
    app = create_app(gateway.settings, gateway)
    app.state.gateway = gateway
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=("10.1.2.3", 5)),
                                 base_url="http://simgate") as other:
        for _ in range(TRIES_PER_ADDRESS + 1):  # the right key is no guess: never counted
            joined = await other.post("/mobile/v1/device", json={"name": "mine"},
                                      headers={"Authorization": f"Bearer {SERVER_KEY}"})
            assert joined.status_code == 201, joined.text
    assert len(await gateway.users.list()) == before + TRIES_PER_ADDRESS + 1


async def test_a_refused_body_spends_no_code_and_makes_no_user(api, private, gateway):
    code = (await api.get("/mobile/v1/user/code")).json()["code"]
    twice = {"name": "x", "simCards": [{"slotIndex": 0}, {"slotIndex": 0}]}
    refused = await api.post("/mobile/v1/device", json=twice, auth=None,
                             headers={"Authorization": f"Code {code}"})
    assert refused.status_code == 400
    joined = await api.post("/mobile/v1/device", json={"name": "x"}, auth=None,
                            headers={"Authorization": f"Code {code}"})
    assert joined.status_code == 201
    before = len(await private.gateway.users.list())
    refused = await private.post("/mobile/v1/device", json=twice,
                                 headers={"Authorization": f"Bearer {SERVER_KEY}"})
    assert refused.status_code == 400
    assert len(await private.gateway.users.list()) == before


async def test_a_network_of_addresses_counts_as_one_too(gateway):
    user_id = await gateway.users.authenticate(USER, PASSWORD)
    enrolment = gateway.enrolment
    # thirty /64s of one /48: each address is fresh, their network is not
    for n in range(30):
        assert await enrolment.redeem("000000", f"2001:db8:1:{n:x}::1") is None
    with pytest.raises(TooManyAttempts):
        await enrolment.redeem("000000", "2001:db8:1:ff::1")
    # an IPv4 address written as IPv6 is that IPv4 address
    for _ in range(10):
        await enrolment.redeem("000000", "::ffff:192.0.2.7")
    with pytest.raises(TooManyAttempts):
        await enrolment.redeem("000000", "192.0.2.7")
    code = (await enrolment.issue_code(user_id)).code
    assert await enrolment.redeem(code, "198.51.100.1") == user_id  # elsewhere: fine


async def test_past_many_wrong_codes_only_those_who_erred_wait(gateway):
    user_id = await gateway.users.authenticate(USER, PASSWORD)
    enrolment = gateway.enrolment
    for n in range(100):  # wrong codes from a hundred networks
        await enrolment.redeem("000000", f"10.{n}.0.1")
    with pytest.raises(TooManyAttempts):
        await enrolment.redeem("000000", "10.5.0.1")  # erred already: waits
    code = (await enrolment.issue_code(user_id)).code
    assert await enrolment.redeem(code, "172.16.0.9") == user_id  # first try, right code
