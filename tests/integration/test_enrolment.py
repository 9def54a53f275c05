"""Devices joining without the user's password, as the Android app does with a private
server: a one-time user code, or the server key (which makes a user for the device)."""

from __future__ import annotations

import httpx
import pytest

from simgate.config import Settings
from simgate.server.app import create_app
from simgate.services.gateway import Gateway
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
    assert joined.json()["login"] == USER and joined.json()["password"] == ""
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


async def test_guessing_codes_is_cut_short(api):
    real = (await api.get("/mobile/v1/user/code")).json()["code"]
    guesses = [f"{n:06d}" for n in range(1_000_000) if f"{n:06d}" != real][:10]
    for guess in guesses:
        wrong = await api.post("/mobile/v1/device", json={"name": "x"}, auth=None,
                               headers={"Authorization": f"Code {guess}"})
        assert wrong.status_code == 401
    # the eleventh try within the minute is refused, even with the right code
    blocked = await api.post("/mobile/v1/device", json={"name": "x"}, auth=None,
                             headers={"Authorization": f"Code {real}"})
    assert blocked.status_code == 429 and blocked.headers["retry-after"] == "60"
    assert "wait a minute" in blocked.json()["message"]
