"""Public mode (SIMGATE_MODE=public): a phone joins a real `simgate serve` with no
credentials and gets a user of its own, a few per address."""

from __future__ import annotations

import httpx
import pytest
from android_sms_gateway import client

from simgate.services.enrolment import JOINS_PER_ADDRESS
from simgate.testing import SimgateProcess
from simgate.testing_android import Phone


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    process = SimgateProcess(["serve"], tmp_path_factory.mktemp("serve"),
                             env={"SIMGATE_MODE": "public"})
    process.start()
    yield process
    process.stop()


async def test_a_phone_joins_with_no_credentials_and_its_login_works_on_the_api(server):
    assert "public mode (SIMGATE_MODE=public)" in server.output()
    phone = Phone(f"{server.url}/mobile/v1")
    try:
        account = await phone.register()  # no Authorization header at all
        assert phone.registered.status_code == 201
        assert account["login"] and account["password"]
        with client.APIClient(account["login"], account["password"],
                              base_url=f"{server.url}/3rdparty/v1") as api:
            assert [d.id for d in api.list_devices()] == [phone.device_id]
        # the phone is its user's: it works as one joined any other way
        await phone.sync_webhooks()
        assert any(h["event"] == "sms:received" for h in phone.hooks)
    finally:
        await phone.close()


async def test_open_joins_are_limited_per_address(server):
    answers = []
    async with httpx.AsyncClient(timeout=30) as http:
        for _ in range(JOINS_PER_ADDRESS + 1):
            answers.append(await http.post(f"{server.url}/mobile/v1/device",
                                           json={"name": "one more"}))
    statuses = [a.status_code for a in answers]
    joined = statuses.count(201)  # another test's phone may have taken one of the joins
    assert joined in (JOINS_PER_ADDRESS - 1, JOINS_PER_ADDRESS)
    assert statuses == [201] * joined + [429] * (len(statuses) - joined)
    refused = answers[-1]
    assert refused.status_code == 429 and int(refused.headers["retry-after"]) > 0
    assert "at most" in refused.json()["message"]


async def test_in_private_mode_no_credentials_is_a_401(tmp_path):
    process = SimgateProcess(["serve"], tmp_path).start()
    try:
        async with httpx.AsyncClient(timeout=30) as http:
            answer = await http.post(f"{process.url}/mobile/v1/device", json={"name": "x"})
        assert answer.status_code == 401
        assert "public mode" not in process.output()
    finally:
        process.stop()
