"""`simgate.toml` in the working directory, and `simgate users` beside a running server."""

from __future__ import annotations

import subprocess
import sys

import httpx

from simgate.testing import SimgateProcess


def simgate(*args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "simgate", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def test_settings_from_simgate_toml_and_users_added_from_the_cli(tmp_path):
    (tmp_path / "simgate.toml").write_text(
        'username = "toml-user"\npassword = "toml-secret-1"\nmax_queued_per_device = 1\n')
    (tmp_path / "simgate.toml").chmod(0o600)  # it holds a password: others may not read it
    data_dir = tmp_path / "data"
    server = SimgateProcess(["serve"], data_dir, cwd=tmp_path).start()
    try:
        auth = ("toml-user", "toml-secret-1")
        with httpx.Client(base_url=server.url, timeout=30) as http:
            assert http.get("/3rdparty/v1/devices", auth=auth).status_code == 200
            assert http.get("/3rdparty/v1/devices", auth=("toml-user", "wrong")
                            ).status_code == 401
            device = http.post("/mobile/v1/device", auth=auth, json={
                "name": "phone", "simCards": [{"slotIndex": 0}]})
            assert device.status_code == 201, device.text
            body = {"message": "hi", "phoneNumbers": ["+19162255887"]}
            assert http.post("/3rdparty/v1/messages", auth=auth, json=body).status_code == 202
            full = http.post("/3rdparty/v1/messages", auth=auth, json=body)
            assert full.status_code == 503, full.text  # the file's queue limit of one

            added = simgate("users", "add", "cli-user", "--password", "cli-secret-12",
                            "--data-dir", str(data_dir), cwd=tmp_path)
            assert added.returncode == 0, added.stderr
            assert http.get("/3rdparty/v1/devices", auth=("cli-user", "cli-secret-12")
                            ).status_code == 200
        listed = simgate("users", "list", "--data-dir", str(data_dir), cwd=tmp_path)
        assert listed.returncode == 0, listed.stderr
        assert "toml-user" in listed.stdout and "cli-user" in listed.stdout
        twice = simgate("users", "add", "cli-user", "--password", "other-secret-1",
                        "--data-dir", str(data_dir), cwd=tmp_path)
        assert twice.returncode != 0 and "Traceback" not in twice.stderr + twice.stdout
    finally:
        server.stop()
