"""SIMGATE_LOG_LEVEL holds for simgate's own lines, not only the HTTP server's."""

from __future__ import annotations

import httpx

from simgate.testing import SimgateProcess
from tests.conftest import wait_until
from tests.e2e.gateway import (
    OUTSIDE,
    client,
    final_state,
    ready_device,
    send,
    start_run,
)

USER, PASSWORD = "quiet", "quiet-secret"


def test_at_warning_no_info_line_is_written_per_accepted_batch(tmp_path):
    server = SimgateProcess(["serve"], tmp_path, env={
        "SIMGATE_USERNAME": USER, "SIMGATE_PASSWORD": PASSWORD,
        "SIMGATE_LOG_LEVEL": "warning"}).start()
    try:
        with httpx.Client(base_url=server.url, auth=(USER, PASSWORD), timeout=30) as http:
            device = http.post("/mobile/v1/device", json={"name": "quiet"})
            assert device.status_code == 201, device.text
            sent = http.post("/3rdparty/v1/messages", json={
                "textMessage": {"text": "hush"}, "phoneNumbers": ["+19162255887"]})
            assert sent.status_code == 202, sent.text
        # the line is written before the 202 leaves (AcceptBatcher._store), so it is absent
        assert sent.json()["id"] not in server.output()
        assert "accepted 1 message(s)" not in server.output()
    finally:
        server.stop()


async def test_at_warning_the_agent_of_run_writes_no_info_line_per_send(tmp_path):
    run = start_run(tmp_path, env={"SIMGATE_LOG_LEVEL": "warning"})
    try:
        async with client(run) as api:
            await ready_device(api)
            message_id = await send(api, "hush", OUTSIDE)
            assert (await final_state(api, message_id, 30))["state"] in ("Sent", "Delivered")
        assert f"message {message_id} through SIM" not in run.output()
    finally:
        run.stop()


async def test_the_access_log_masks_the_secret_of_ingest_hooks(tmp_path):
    """An ingest URL lets whoever holds it post as the phone: its secret part is never
    written, while the rest of each request line is."""
    server = SimgateProcess(["serve", "--access-log"], tmp_path, env={
        "SIMGATE_USERNAME": USER, "SIMGATE_PASSWORD": PASSWORD}).start()
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            device = (await http.post("/mobile/v1/device", auth=(USER, PASSWORD),
                                      json={"name": "app"})).json()
            hooks = (await http.get("/mobile/v1/webhooks", headers={
                "Authorization": f"Bearer {device['token']}",
                "User-Agent": "me.capcom.smsgateway/1.68.0"})).json()
            url = hooks[0]["url"]
            secret = url.rsplit("/", 1)[1]
            answer = await http.post(url, json={"id": "x", "event": "system:ping"})
            assert answer.status_code == 401  # unsigned
            await http.post(f"/api/mobile/v1/ingest/{device['id']}/{secret}?x=1", json={})
        line = f'"POST /mobile/v1/ingest/{device["id"]}/*** HTTP/1.1" 401'
        await wait_until(lambda: line in server.output() and "/api/mobile/v1/ingest/" in
                         server.output(), timeout=30)
        assert secret not in server.output()
    finally:
        server.stop()
