"""Settings the original accepts, honoured by a real `simgate run` (server, agent, modem)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from android_sms_gateway import client, domain

from simgate.testing import SimgateProcess
from tests.conftest import wait_until
from tests.receiver import Receiver

USER, PASSWORD = "run-parity", "run-parity-secret"
TO = "+19162255887"
FINAL = {"Sent", "Delivered", "Failed"}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    process = SimgateProcess(["run", "--access-log"], tmp_path_factory.mktemp("run-parity"), env={
        "SIMGATE_USERNAME": USER, "SIMGATE_PASSWORD": PASSWORD, "TZ": "UTC",
        "SIMGATE_HEARTBEAT_SECONDS": "0.5"}).start()
    yield process
    process.stop()


def api(run: SimgateProcess) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=f"{run.url}/3rdparty/v1", auth=(USER, PASSWORD), timeout=10)


async def send(http: httpx.AsyncClient, text: str, sim: int | None = None) -> str:
    body = {"textMessage": {"text": text}, "phoneNumbers": [TO]}
    if sim:
        body["simNumber"] = sim
    response = await http.post("/messages", json=body)
    assert response.status_code == 202, response.text
    return response.json()["id"]


async def final(http: httpx.AsyncClient, message_id: str) -> dict:
    async def done():
        state = (await http.get(f"/messages/{message_id}")).json()
        return state if state["state"] in FINAL else None

    return await wait_until(done, timeout=30)


def count(run: SimgateProcess, text: str) -> int:
    return run.output().count(text)


async def test_banner_access_log_and_one_info_line_per_batch_and_send(run):
    await wait_until(lambda: "/3rdparty/v1/messages -d" in run.output(), timeout=30)  # plural
    with client.APIClient(USER, PASSWORD, base_url=f"{run.url}/3rdparty/v1") as official:
        sent = official.send(domain.Message(phone_numbers=[TO],
                                            text_message=domain.TextMessage("logged")))
    async with api(run) as http:
        state = await final(http, sent.id)
    await wait_until(lambda: f"message {sent.id} through SIM 1: Sent" in run.output(),
                     timeout=15)
    assert state["state"] in ("Sent", "Delivered")
    assert f"accepted 1 message(s) as Pending: {sent.id}" in run.output()
    assert '"POST /3rdparty/v1/messages HTTP/1.1" 202' in run.output()


async def test_no_sends_outside_work_hours(run):
    now = datetime.now(UTC)
    start, end = (now + timedelta(hours=2)).strftime("%H:00"), (now + timedelta(hours=3)).strftime(
        "%H:00")
    async with api(run) as http:
        response = await http.patch("/settings", json={"messages": {
            "work_hours_enabled": True, "work_hours_start": start, "work_hours_end": end}})
        assert response.status_code == 200, response.text
        await wait_until(lambda: f"work hours {start}-{end}" in run.output(), timeout=15)
        waiting = count(run, f"outside work hours ({start}-{end})")
        message_id = await send(http, "after hours")
        await wait_until(lambda: count(run, f"outside work hours ({start}-{end})") > waiting,
                         timeout=15)
        assert (await http.get(f"/messages/{message_id}")).json()["state"] == "Pending"

        await http.patch("/settings", json={"messages": {"work_hours_enabled": False}})
        assert (await final(http, message_id))["state"] in ("Sent", "Delivered")


async def test_system_ping_only_when_ping_interval_is_set(run):
    receiver = await Receiver().start()
    try:
        async with api(run) as http:
            created = await http.post("/webhooks", json={"url": receiver.url,
                                                         "event": "system:ping"})
            assert created.status_code == 201, created.text
            # the agent's heartbeat goes on (every 0.5 s here) and raises no event
            beats = count(run, '"GET /mobile/v1/device HTTP/1.1" 200')
            await wait_until(lambda: count(run, '"GET /mobile/v1/device HTTP/1.1" 200')
                             >= beats + 3, timeout=15)
            assert receiver.events("system:ping") == []

            await http.patch("/settings", json={"ping": {"interval_seconds": 1}})
            await wait_until(lambda: receiver.events("system:ping"), timeout=20)
            assert receiver.events("system:ping")[0]["payload"]["health"]["status"] == "pass"
            await http.patch("/settings", json={"ping": {"interval_seconds": None}})
            await http.delete(f"/webhooks/{created.json()['id']}")
    finally:
        await receiver.stop()


async def test_settings_the_original_accepts_are_kept_and_dropped_keys_named(run):
    async with api(run) as http:
        response = await http.patch("/settings", json={
            "messages": {"limit_period": "Per30Minutes", "limit_value": 1,
                         "processing_order": "FIFO", "work_hours_start": "08:30"},
            "gateway": {"notification_channel": "SSE_ONLY", "cloud_url": "https://x.example"},
            "receiver": {"content_provider_enabled": False},
            "extra": {"a": 1}})
        assert response.status_code == 200, response.text
        warning = response.headers["Warning"]
        for name in ("messages.processing_order", "gateway.cloud_url", "extra"):
            assert name in warning
        shown = (await http.get("/settings")).json()
        assert shown["messages"]["limit_period"] == "Per30Minutes"
        assert shown["messages"]["work_hours_start"] == "08:30"
        assert "processing_order" not in shown["messages"] and "extra" not in shown
        assert shown["gateway"] == {"notification_channel": "SSE_ONLY"}
        assert shown["receiver"] == {"content_provider_enabled": False}
        bad = await http.patch("/settings", json={"gateway": {"notification_channel": "FCM"}})
        assert bad.status_code == 400
        assert "allowed values: 'AUTO' or 'SSE_ONLY'" in bad.json()["message"]

        # Per30Minutes is honoured by the agent: one message per 30 minutes on SIM 2
        first = await send(http, "first of the half hour", sim=2)
        assert (await final(http, first))["state"] in ("Sent", "Delivered")
        second = await send(http, "waits for the next half hour", sim=2)
        await wait_until(lambda: "send limit of 1 message(s) per 1800 s" in run.output(),
                         timeout=15)
        assert (await http.get(f"/messages/{second}")).json()["state"] == "Processed"
        await http.patch("/settings", json={"messages": {"limit_period": None,
                                                         "limit_value": None}})
        assert (await final(http, second))["state"] in ("Sent", "Delivered")
    with client.APIClient(USER, PASSWORD, base_url=f"{run.url}/3rdparty/v1") as official:
        official.patch_settings(domain.DeviceSettings(
            gateway=domain.SettingsGateway(notification_channel="AUTO")))
        assert official.get_settings().gateway.notification_channel == "AUTO"
