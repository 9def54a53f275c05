"""Where sms-gate.app answers, simgate answers the same: checked against a real `simgate serve`
with the official Python client where it has the call, and raw HTTP where it has not."""

from __future__ import annotations

import base64
import hashlib
import re

import httpx
import pytest
from android_sms_gateway import client, domain
from android_sms_gateway.errors import BadRequestError
from prometheus_client.parser import text_string_to_metric_families

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


def deliver(server: SimgateProcess, message_id: str, phones: list[str], sim: int = 1) -> None:
    """The device reports the message Delivered to every recipient."""
    response = httpx.patch(
        f"{server.url}/mobile/v1/message",
        headers={"Authorization": f"Bearer {server.device['token']}"},
        json=[{"id": message_id, "state": "Delivered", "simNumber": sim, "recipients": [
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
    server = start_serve(tmp_path / "hashing", SIMGATE_HASHING_INTERVAL_SECONDS="1",
                         SIMGATE_METRICS_ALLOW_IPS="10.1.2.3")
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
            closed = raw.get(f"{server.url}/metrics")  # it names devices: not open to all
    finally:
        server.stop()
    assert state["hashedMessage"] == {"hash": sha256("hash me")}
    assert "textMessage" not in state
    assert state["recipients"][0]["phoneNumber"] == sha256(TO)[:16]
    assert listed[0]["hashedMessage"] == {"hash": sha256("hash me")}
    assert closed.status_code == 403 and "SIMGATE_METRICS_ALLOW_IPS" in closed.json()["message"]


def test_ttl_below_five_seconds_is_refused_as_the_original(api):
    with pytest.raises(BadRequestError) as error:
        api.send(domain.Message(phone_numbers=[TO], ttl=4,
                                text_message=domain.TextMessage("too short")))
    assert "ttl must be at least 5" in error.value.response["message"]
    sent = api.send(domain.Message(phone_numbers=[TO], ttl=5,
                                   text_message=domain.TextMessage("just enough")))
    assert sent.id


def test_api_docs_as_the_original_and_offline(server):
    moved = httpx.get(f"{server.url}/api")
    assert moved.status_code == 301 and moved.headers["Location"] == "/api/docs"
    for path in ("/api/docs/", "/api/docs/index.html", "/docs", "/redoc"):
        page = httpx.get(f"{server.url}{path}")
        assert page.status_code == 200, path
        scripts = re.findall(r'(?:src|href)="([^"]+)"', page.text)
        assert scripts and all(s.startswith("/api/docs/") for s in scripts), (path, scripts)
        for asset in scripts:  # every asset from this server, none from a CDN
            assert httpx.get(f"{server.url}{asset}").status_code == 200, asset
    spec = httpx.get(f"{server.url}/api/docs/doc.json").json()
    assert "/3rdparty/v1/messages" in spec["paths"]
    link = httpx.get(f"{server.url}/health").headers["Link"]
    assert '</.well-known/api-catalog>; rel="api-catalog"' in link
    assert '</api/docs/doc.json>; rel="service-desc"' in link


def test_api_catalog_as_the_original(server):
    catalog = httpx.get(f"{server.url}/.well-known/api-catalog")
    assert catalog.status_code == 200
    assert catalog.headers["Content-Type"].startswith("application/linkset+json")
    assert catalog.headers["Link"] == '</.well-known/api-catalog>; rel="api-catalog"'
    entry = catalog.json()["linkset"][0]
    assert entry["anchor"] == f"{server.url}/api/3rdparty/v1"
    assert entry["service-desc"][0]["href"] == f"{server.url}/api/docs/doc.json"
    assert entry["status"][0]["href"] == f"{server.url}/api/3rdparty/v1/health/ready"
    for link in (entry["service-desc"][0], entry["status"][0]):
        assert httpx.get(link["href"], auth=(USER, PASSWORD)).status_code == 200
    head = httpx.head(f"{server.url}/.well-known/api-catalog")
    assert head.status_code == 200 and head.headers["Content-Type"].startswith(
        "application/linkset+json")


def test_metrics_per_device_and_sim_slot(server):
    device = server.device["id"]
    with http(server) as raw:
        sent = raw.post("/messages", json={"textMessage": {"text": "counted"},
                                           "phoneNumbers": [TO], "simNumber": 2}).json()
    deliver(server, sent["id"], [TO], sim=2)
    response = httpx.get(f"{server.url}/metrics")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(response.text)
               for s in family.samples}
    assert samples[("simgate_messages", (("device", device), ("sim", "2"),
                                         ("state", "Delivered")))] >= 1
    assert samples[("simgate_messages", (("device", device), ("sim", "none"),
                                         ("state", "Pending")))] >= 1
    for sim in ("1", "2"):
        assert samples[("simgate_sim_ready", (("device", device), ("sim", sim),
                                              ("status", "Ready")))] == 1
    assert ("simgate_device_last_seen_seconds", (("device", device),)) in samples
