"""SIMGATE_LOG_LEVEL holds for simgate's own lines, not only the HTTP server's."""

from __future__ import annotations

import httpx

from simgate.testing import SimgateProcess
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
