"""SIM faults seen the ways a user looks: health, logs, send errors, doctor and sims."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from simgate.domain.sims import ADVICE
from simgate.testing import free_port
from tests.conftest import wait_until
from tests.e2e.gateway import (
    OUTSIDE,
    PASSWORD,
    USER,
    client,
    final_state,
    ready_device,
    send,
    start_run,
)


@pytest.fixture
def faulty(tmp_path):
    process = start_run(tmp_path, "--sims", "4", "--fault", "2:pin", "--fault", "3:no-network",
                        "--fault", "4:absent")
    yield process
    process.stop()


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "simgate", *args], capture_output=True,
                          text=True, timeout=60, env={"COLUMNS": "200", "PATH": "/usr/bin:/bin",
                                                      **_this_tree()})


def _this_tree() -> dict[str, str]:
    """The PYTHONPATH the tests run with, so the commands are this tree's too."""
    path = os.environ.get("PYTHONPATH")
    return {"PYTHONPATH": path} if path else {}


async def test_faults_in_health_logs_and_send_errors(faulty):
    async with client(faulty) as api:
        device = await ready_device(api)
        states = [s["state"] for s in device["simCards"]]
        assert states == ["Ready", "PinRequired", "NoNetwork", "Absent"]
        health = (await api.get("/health")).json()
        checks = {k.rsplit(":", 1)[-1]: v for k, v in health["checks"].items()
                  if k.startswith(f"devices:{device['id']}:sim:")}
        assert checks["1"]["status"] == "pass"
        assert "PIN" in checks["2"]["description"]
        assert "not registered" in checks["3"]["description"]
        assert "insert a SIM" in checks["4"]["description"]
        assert {checks[n]["status"] for n in "234"} == {"warn"}

        failed = await final_state(api, await send(api, "no network", OUTSIDE, sim=3))
        assert failed["state"] == "Failed", failed
        assert "SIM 3 is not ready (NoNetwork)" in failed["recipients"][0]["error"]
        empty = await api.post("/messages", json={"message": "x", "phoneNumbers": [OUTSIDE],
                                                  "simNumber": 4})
        assert empty.status_code == 400 and "SIM slot 4" in empty.json()["message"]

        async def sim_logs():
            entries = (await api.get("/logs")).json()
            return {e["context"]["simNumber"]: e for e in entries
                    if e["module"] == "sim" and e["context"] and "state" in e["context"]}

        logged = await wait_until(lambda: _three(sim_logs()), timeout=10)
        assert logged[2]["priority"] == "ERROR" and "PIN" in logged[2]["message"]
        assert logged[3]["context"]["state"] == "NoNetwork"
        assert logged[4]["priority"] == "WARN"
        messages = [e for e in (await api.get("/logs")).json() if e["module"] == "messages"]
        assert any("SIM 3" in e["message"] for e in messages)


async def _three(pending):
    found = await pending
    return found if {2, 3, 4} <= set(found) else None


async def test_doctor_and_sims_say_what_to_do(faulty):
    async with client(faulty) as api:
        await ready_device(api)
    doctor = cli("doctor", "--server", faulty.url, "--username", USER, "--password", PASSWORD)
    assert doctor.returncode == 1
    assert "Traceback" not in doctor.stderr
    out = doctor.stdout
    assert "credentials" in out and "pass" in out
    assert "PinRequired" in out and "unlock the SIM" in out
    assert "NoNetwork" in out and "coverage" in out
    assert "check(s) failed" in doctor.stderr

    wrong = cli("doctor", "--server", faulty.url, "--username", USER, "--password", "nope")
    assert wrong.returncode == 3 and "refused by the server" in wrong.stdout  # as every command

    sims = cli("sims", "--server", faulty.url, "--username", USER, "--password", PASSWORD)
    assert sims.returncode == 0, sims.stderr
    for text in ("+12025550101", "PinRequired", "NoNetwork", "Absent", "simgate Mobile"):
        assert text in sims.stdout


def test_doctor_on_a_missing_port():
    result = cli("doctor", "--modem", "/dev/ttyUSB99")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "does not exist" in result.stdout and "ls /dev/ttyUSB" in result.stdout


def test_doctor_on_a_stopped_server_names_the_command_the_user_starts_it_with(tmp_path):
    """`run` keeps credentials.json beside server.json, `serve` does not: the advice names
    the one that made the data directory, and a stopped server is exit 4, as everywhere."""
    url = f"http://127.0.0.1:{free_port()}"
    for made_by, files in (("simgate run", ("server.json", "credentials.json")),
                           ("simgate serve", ("server.json",))):
        data_dir = tmp_path / made_by.split()[1]
        data_dir.mkdir()
        for name in files:
            (data_dir / name).write_text(json.dumps({"url": url, "username": USER,
                                                     "password": PASSWORD}))
        doctor = cli("doctor", "--data-dir", str(data_dir))
        assert doctor.returncode == 4, doctor.stdout + doctor.stderr
        assert f"start it: `{made_by}`" in doctor.stdout, doctor.stdout
    assert not any("simgate doctor" in advice for advice in ADVICE.values())


class _PostOnly(BaseHTTPRequestHandler):
    """A webhook receiver that takes POST only: http.server answers HEAD with 501."""

    def do_POST(self) -> None:  # noqa: N802 - the name http.server calls
        self.send_response(204)
        self.end_headers()

    def log_message(self, *_: object) -> None:
        pass


async def test_doctor_advice_for_no_credentials_a_dead_device_and_a_post_only_hook(
        tmp_path):
    """No credentials: exit 3 naming where it looked; a device that never reported a SIM
    is named with `simgate devices rm ID`; a receiver that answers HEAD with 501 is no
    "pass"."""
    receiver = ThreadingHTTPServer(("127.0.0.1", 0), _PostOnly)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    process = start_run(tmp_path, env={"SIMGATE_ALLOW_PRIVATE_WEBHOOKS": "true"})
    try:
        async with client(process) as api:
            await ready_device(api)
            hook = await api.post("/webhooks", json={
                "url": f"http://127.0.0.1:{receiver.server_address[1]}/hook",
                "event": "sms:received"})
            assert hook.status_code == 201, hook.text
            dead = await api.post(f"{process.url}/mobile/v1/device",
                                  json={"name": "ttyUSB9", "simCards": []})
            assert dead.status_code == 201, dead.text
        bare = cli("doctor", "--server", process.url, "--data-dir", str(tmp_path / "none"))
        assert bare.returncode == 3, bare.stdout + bare.stderr
        assert "credentials.json" in bare.stdout and "SIMGATE_DATA_DIR" in bare.stdout
        doctor = cli("doctor", "--server", process.url, "--username", USER, "--password",
                     PASSWORD)
        assert doctor.returncode == 1, doctor.stdout + doctor.stderr
        rows = doctor.stdout.splitlines()
        assert any("ttyUSB9" in r and "devices rm" in r for r in rows), doctor.stdout
        [hook_row] = [r for r in rows if "webhook sms:received" in r]
        assert "warn" in hook_row and "501" in hook_row, hook_row
    finally:
        process.stop()
        receiver.shutdown()


def test_a_taken_port_leaves_a_new_data_directory_without_a_pid_file(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        data_dir = tmp_path / "new"
        result = cli("serve", "--data-dir", str(data_dir), "--port", str(port))
        assert result.returncode == 1 and f"port {port}" in result.stderr, result.stderr
        assert not (data_dir / "simgate.pid").exists()


def test_an_agent_whose_modem_cannot_be_opened_exits_with_the_advice():
    """It registers no device: none that never worked is left for doctor to flag."""
    result = cli("agent", "--server", f"http://127.0.0.1:{free_port()}", "--modem",
                 "/dev/ttyUSB99", "--username", USER, "--password", PASSWORD)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "port /dev/ttyUSB99 does not exist" in result.stderr
    assert "ls /dev/ttyUSB" in result.stderr and "Traceback" not in result.stderr
