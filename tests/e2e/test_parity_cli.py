"""The CLI on first run and beside a running gateway, as a new user meets it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import httpx

from simgate.testing import SimgateProcess, free_port
from tests.conftest import wait_until


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    """The CLI in a terminal wide enough for `simgate sims`'s ten columns unwrapped."""
    return subprocess.run([sys.executable, "-m", "simgate", *args], capture_output=True,
                          text=True, timeout=60, env={**os.environ, "COLUMNS": "200"})


def test_users_list_on_a_fresh_directory_makes_no_store(tmp_path):
    result = cli("users", "list", "--data-dir", str(tmp_path / "fresh"))
    assert result.returncode == 1
    assert "no store yet" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "fresh" / "simgate.db").exists()


def help_of(*command: str) -> str:
    return " ".join(cli(*command, "--help").stdout.split())  # as read, whatever the width


def test_help_shows_switches_as_switches_and_the_defaults():
    run_help = help_of("run")
    assert "<bool>" not in run_help and "--access-log " in run_help
    assert "default: 3000" in run_help and "default: 127.0.0.1" in run_help
    assert "default: ./simgate-data" in run_help and "default: 2" in run_help
    assert "credentials.json" in help_of("sims")
    doctor_help = help_of("doctor")
    assert "local gateway" in doctor_help and "server.json" in doctor_help


async def test_ready_means_the_agent_is_there_and_the_data_dir_is_held(tmp_path):
    data_dir = tmp_path / "run"
    process = SimgateProcess(["run"], data_dir).start()
    try:
        async with httpx.AsyncClient(base_url=process.url, timeout=10) as http:
            async def ready():
                response = await http.get("/health/ready")
                return response if response.status_code == 200 else None

            answer = (await wait_until(ready, timeout=30)).json()
            assert answer["checks"]["agent:registered"]["status"] == "pass"
            # ready: a send right away finds the device and its SIMs
            stored = json.loads((data_dir / "credentials.json").read_text())
            auth = (stored["username"], stored["password"])
            sent = await http.post("/3rdparty/v1/messages", auth=auth, json={
                "textMessage": {"text": "right after ready"},
                "phoneNumbers": ["+19162255887"], "simNumber": 2})
            assert sent.status_code == 202, sent.text

        second = cli("run", "--data-dir", str(data_dir), "--port", str(free_port()))
        assert second.returncode == 1 and "Traceback" not in second.stderr
        assert f"in use by another simgate (pid {process.process.pid})" in second.stderr

        taken = cli("serve", "--data-dir", str(tmp_path / "other"), "--port", str(process.port))
        assert taken.returncode == 1 and "Traceback" not in taken.stderr
        assert len(taken.stderr.strip().splitlines()) == 1
        assert f"port {process.port}" in taken.stderr and "--port" in taken.stderr

        # the server and credentials of a data directory are found without options
        sims = cli("sims", "--data-dir", str(data_dir))
        assert sims.returncode == 0, sims.stderr
        assert "simgate run" in sims.stdout and "Ready" in sims.stdout
        doctor = cli("doctor", "--data-dir", str(data_dir))
        assert doctor.returncode == 0, doctor.stdout + doctor.stderr
        assert f"valid for {stored['username']}" in doctor.stdout.replace("\n", " ")
    finally:
        process.stop()
