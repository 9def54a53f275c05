"""Where sms-gate.app answers, simgate answers the same: checked against a real `simgate serve`
with the official Python client where it has the call, and raw HTTP where it has not."""

from __future__ import annotations

import base64
import hashlib

import httpx
import pytest
from android_sms_gateway import client, domain
from android_sms_gateway.errors import BadRequestError

from simgate.testing import SimgateProcess
from tests.conftest import wait_until

USER, PASSWORD = "parity-user", "parity-secret"
TO = "+19162255887"


def start_serve(path, **env: str) -> SimgateProcess:
    process = SimgateProcess(["serve"], path, env={
        "SIMGATE_USERNAME": USER, "SIMGATE_PASSWORD": PASSWORD, **env}).start()
    process.device = httpx.post(f"{process.url}/mobile/v1/device", auth=(USER, PASSWORD), json={
        "name": "phone", "simCards": [{"slotIndex": 0}, {"slotIndex": 1}]}).json()
    return process


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    process = start_serve(tmp_path_factory.mktemp("parity"))
    yield process
    process.stop()


@pytest.fixture
def api(server):
    with client.APIClient(USER, PASSWORD, base_url=f"{server.url}/3rdparty/v1") as api:
        yield api


def http(server: SimgateProcess) -> httpx.Client:
    return httpx.Client(base_url=f"{server.url}/3rdparty/v1", auth=(USER, PASSWORD), timeout=10)


def deliver(server: SimgateProcess, message_id: str, phones: list[str]) -> None:
    """The device reports the message Delivered to every recipient."""
    response = httpx.patch(
        f"{server.url}/mobile/v1/message",
        headers={"Authorization": f"Bearer {server.device['token']}"},
        json=[{"id": message_id, "state": "Delivered", "recipients": [
            {"phoneNumber": p, "state": "Delivered"} for p in phones]}])
    assert response.status_code < 300, response.text


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def test_a_list_limit_above_100_is_brought_to_100(api, server):
    with http(server) as raw:
        for i in range(101):
            assert raw.post("/messages", json={"textMessage": {"text": f"bulk {i}"},
                                               "phoneNumbers": [TO]}).status_code == 202
        listed = raw.get("/messages", params={"limit": 500})
        assert listed.status_code == 200 and len(listed.json()) == 100
        assert int(listed.headers["X-Total-Count"]) >= 101
    messages = api.get_messages(pagination=domain.QueryPagination(limit=1000))
    assert len(messages) == 100


def test_list_content_only_with_include_content(server):
    with http(server) as raw:
        text_id = raw.post("/messages", json={"textMessage": {"text": "content please"},
                                              "phoneNumbers": [TO]}).json()["id"]
        data = base64.b64encode(b"\x01\x02payload").decode()
        data_id = raw.post("/messages", json={"dataMessage": {"data": data, "port": 53739},
                                              "phoneNumbers": [TO]}).json()["id"]
        plain = {m["id"]: m for m in raw.get("/messages", params={"limit": 5}).json()}
        assert not {"textMessage", "dataMessage", "hashedMessage"} & set(plain[text_id])
        full = {m["id"]: m for m in raw.get(
            "/messages", params={"limit": 5, "includeContent": "true"}).json()}
        assert full[text_id]["textMessage"] == {"text": "content please"}
        assert full[data_id]["dataMessage"] == {"data": data, "port": 53739}
        assert "dataMessage" not in full[text_id] and "textMessage" not in full[data_id]
        # one message is read with its content, as the original's GetState
        assert raw.get(f"/messages/{text_id}").json()["textMessage"] == {"text": "content please"}


def test_finished_messages_stay_readable_until_the_hashing_round(server):
    with http(server) as raw:
        sent = raw.post("/messages", json={"textMessage": {"text": "readable for a minute"},
                                           "phoneNumbers": [TO]}).json()
        deliver(server, sent["id"], [TO])
        state = raw.get(f"/messages/{sent['id']}").json()
    assert state["state"] == "Delivered"
    # the default hashing interval is 60 s (HashingIntervalSeconds): not hashed yet
    assert state["isHashed"] is False
    assert state["textMessage"] == {"text": "readable for a minute"}
    assert state["recipients"][0]["phoneNumber"] == TO


async def test_hashing_runs_on_its_interval_as_the_original_writes_hashes(tmp_path):
    server = start_serve(tmp_path / "hashing", SIMGATE_HASHING_INTERVAL_SECONDS="1")
    try:
        with http(server) as raw:
            sent = raw.post("/messages", json={"textMessage": {"text": "hash me"},
                                               "phoneNumbers": [TO]}).json()
            deliver(server, sent["id"], [TO])

            def hashed():
                state = raw.get(f"/messages/{sent['id']}").json()
                return state if state["isHashed"] else None

            state = await wait_until(hashed, timeout=30)
            listed = raw.get("/messages", params={"includeContent": "true"}).json()
    finally:
        server.stop()
    assert state["hashedMessage"] == {"hash": sha256("hash me")}
    assert "textMessage" not in state
    assert state["recipients"][0]["phoneNumber"] == sha256(TO)[:16]
    assert listed[0]["hashedMessage"] == {"hash": sha256("hash me")}


def test_ttl_below_five_seconds_is_refused_as_the_original(api):
    with pytest.raises(BadRequestError) as error:
        api.send(domain.Message(phone_numbers=[TO], ttl=4,
                                text_message=domain.TextMessage("too short")))
    assert "ttl must be at least 5" in error.value.response["message"]
    sent = api.send(domain.Message(phone_numbers=[TO], ttl=5,
                                   text_message=domain.TextMessage("just enough")))
    assert sent.id
