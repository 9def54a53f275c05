"""SIM faults seen the ways a user looks: health, logs, send errors, doctor and sims."""

from __future__ import annotations

import subprocess
import sys

import pytest

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
                          text=True, timeout=60, env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"})


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
    assert wrong.returncode == 1 and "refused by the server" in wrong.stdout

    sims = cli("sims", "--server", faulty.url, "--username", USER, "--password", PASSWORD)
    assert sims.returncode == 0, sims.stderr
    for text in ("+12025550101", "PinRequired", "NoNetwork", "Absent", "simgate Mobile"):
        assert text in sims.stdout


def test_doctor_on_a_missing_port():
    result = cli("doctor", "--modem", "/dev/ttyUSB99")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "does not exist" in result.stdout and "ls /dev/ttyUSB" in result.stdout
