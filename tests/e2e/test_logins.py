"""Passwords against `simgate serve --workers 2`: changes seen at once, guesses throttled."""

from __future__ import annotations

import subprocess
import sys

import httpx
import pytest

from simgate.testing import SimgateProcess

USER, PASSWORD, NEW_PASSWORD = "login-user", "login-secret", "login-secret-2"


def simgate_cli(*args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([sys.executable, "-m", "simgate", *args], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """Two workers behind a (pretended) local proxy, so a test may speak for any address."""
    data_dir = tmp_path_factory.mktemp("logins")
    simgate_cli("users", "add", USER, "--password", PASSWORD, "--data-dir", str(data_dir))
    process = SimgateProcess(["serve", "--workers", "2"], data_dir,
                             env={"SIMGATE_FORWARDED_ALLOW_IPS": "127.0.0.1"})
    process.start()
    yield process
    assert process.stop() == 0, process.output()


def statuses(server: SimgateProcess, count: int = 20, **kwargs) -> list[int]:
    """One request per new connection, so the kernel spreads them over both workers."""
    answers = []
    for _ in range(count):
        with httpx.Client(base_url=server.url, timeout=10) as fresh:
            answers.append(fresh.get("/3rdparty/v1/messages", **kwargs).status_code)
    return answers


def test_a_new_password_ends_the_old_one_and_its_tokens_at_once_in_every_worker(server):
    """`simgate users passwd` is another process: the workers hear of it through the store,
    on the very next request, not after their caches expire."""
    token = httpx.post(f"{server.url}/3rdparty/v1/auth/token", auth=(USER, PASSWORD),
                       json={"scopes": ["messages:list"]}).json()
    bearer = {"Authorization": f"Bearer {token['access_token']}"}
    # both workers check the password and the token once, and remember them
    assert statuses(server, auth=(USER, PASSWORD)) == [200] * 20
    assert statuses(server, headers=bearer) == [200] * 20

    simgate_cli("users", "passwd", USER, "--password", NEW_PASSWORD,
                "--data-dir", str(server.data_dir))

    assert statuses(server, auth=(USER, PASSWORD)) == [401] * 20
    assert statuses(server, headers=bearer) == [401] * 20
    refreshed = httpx.post(f"{server.url}/3rdparty/v1/auth/token/refresh",
                           headers={"Authorization": f"Bearer {token['refresh_token']}"})
    assert refreshed.status_code == 401
    assert statuses(server, 4, auth=(USER, NEW_PASSWORD)) == [200] * 4
