"""SIMGATE_LOG_LEVEL holds for simgate's own lines, not only the HTTP server's."""

from __future__ import annotations

import time

import httpx

from simgate.testing import SimgateProcess

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


def test_at_warning_the_agent_of_run_writes_no_info_line_per_send(tmp_path):
    run = SimgateProcess(["run"], tmp_path, env={
        "SIMGATE_USERNAME": USER, "SIMGATE_PASSWORD": PASSWORD,
        "SIMGATE_LOG_LEVEL": "warning"}).start()
    try:
        with httpx.Client(base_url=f"{run.url}/3rdparty/v1", auth=(USER, PASSWORD),
                          timeout=30) as http:
            deadline = time.monotonic() + 60
            while not any(d["simCards"] for d in http.get("/devices").json()):
                assert time.monotonic() < deadline, "the agent did not register in 60 s"
                time.sleep(0.1)
            sent = http.post("/messages", json={
                "textMessage": {"text": "hush"}, "phoneNumbers": ["+19162255887"]})
            assert sent.status_code == 202, sent.text
            message_id = sent.json()["id"]
            deadline = time.monotonic() + 30
            while http.get(f"/messages/{message_id}").json()["state"] not in ("Sent",
                                                                            "Delivered"):
                assert time.monotonic() < deadline, "the message was not Sent in 30 s"
                time.sleep(0.1)
        assert f"message {message_id} through SIM" not in run.output()
    finally:
        run.stop()
