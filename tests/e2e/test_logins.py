"""Passwords against `simgate serve --workers 2`: changes seen at once, guesses throttled."""

from __future__ import annotations

import subprocess
import sys

import httpx
import pytest

from simgate.testing import SimgateProcess

USER, PASSWORD, NEW_PASSWORD = "login-user", "login-secret", "login-secret-2"


def simgate_cli(*args: str, env: dict[str, str] | None = None,
                ) -> subprocess.CompletedProcess[str]:
    """The CLI on a server's data directory: with the server's `env`, on its store too."""
    result = subprocess.run([sys.executable, "-m", "simgate", *args], capture_output=True,
                            text=True, timeout=60, env=env)
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


def statuses(server: SimgateProcess, count: int = 20, network: str = "198.18.0",
             **kwargs) -> list[int]:
    """One request per new connection, so the kernel spreads them over both workers, each
    from an address of its own (failures from one would be throttled)."""
    answers, extra = [], kwargs.pop("headers", {})
    for n in range(count):
        with httpx.Client(base_url=server.url, timeout=30) as fresh:
            headers = {"X-Forwarded-For": f"{network}.{n}", **extra}
            answers.append(fresh.get("/3rdparty/v1/messages", headers=headers,
                                     **kwargs).status_code)
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
                "--data-dir", str(server.data_dir), env=server.env)

    assert statuses(server, auth=(USER, PASSWORD)) == [401] * 20
    assert statuses(server, headers=bearer) == [401] * 20
    refreshed = httpx.post(f"{server.url}/3rdparty/v1/auth/token/refresh",
                           headers={"Authorization": f"Bearer {token['refresh_token']}"})
    assert refreshed.status_code == 401
    # (from addresses that have not just failed a login for that user: those wait)
    assert statuses(server, 4, network="192.0.2", auth=(USER, NEW_PASSWORD)) == [200] * 4


def add_user(server: SimgateProcess, name: str, password: str) -> None:
    simgate_cli("users", "add", name, "--password", password,
                "--data-dir", str(server.data_dir), env=server.env)


def from_address(address: str) -> dict[str, str]:
    """As the trusted proxy says: the request came from `address`."""
    return {"X-Forwarded-For": address}


def test_wrong_passwords_from_an_address_are_throttled_with_429(server):
    add_user(server, "guessed", "guessed-secret")
    # one kept-alive connection: one worker, whose counts the test watches
    with httpx.Client(base_url=server.url, timeout=30) as api:
        answers = [api.get("/3rdparty/v1/messages", auth=("guessed", f"guess-{n}"),
                           headers=from_address("198.51.100.7"))
                   for n in range(11)]
        assert [a.status_code for a in answers] == [401] * 10 + [429]
        refused = answers[-1]
        assert 1 <= int(refused.headers["Retry-After"]) <= 60
        assert refused.json()["code"] == 429
        assert "too many failed logins from your address" in refused.json()["message"]
        # that address waits, even with the right password; others do not
        assert api.get("/3rdparty/v1/messages", auth=("guessed", "guessed-secret"),
                       headers=from_address("198.51.100.7")).status_code == 429
        assert api.get("/3rdparty/v1/messages", auth=("guessed", "guessed-secret"),
                       headers=from_address("192.0.2.20")).status_code == 200


def test_a_user_under_attack_still_gets_in_from_an_address_that_did_not_err(server):
    """Failures for one user from many addresses: those addresses wait, the user does not."""
    add_user(server, "targeted", "targeted-secret")
    with httpx.Client(base_url=server.url, timeout=30) as api:
        for n in range(10):
            wrong = api.get("/3rdparty/v1/messages", auth=("targeted", "nope"),
                            headers=from_address(f"203.0.{n}.1"))
            assert wrong.status_code == 401
        # an address that erred waits, with the right password too
        assert api.get("/3rdparty/v1/messages", auth=("targeted", "targeted-secret"),
                       headers=from_address("203.0.3.1")).status_code == 429
        # a fresh address is still checked: a wrong password is a 401, the right one gets in
        assert api.get("/3rdparty/v1/messages", auth=("targeted", "still-nope"),
                       headers=from_address("100.64.0.1")).status_code == 401
        assert api.get("/3rdparty/v1/messages", auth=("targeted", "targeted-secret"),
                       headers=from_address("100.64.9.9")).status_code == 200


def test_wrong_current_passwords_at_the_device_api_are_throttled(server):
    add_user(server, "changer", "changer-secret")
    with httpx.Client(base_url=server.url, timeout=30) as api:
        device = api.post("/mobile/v1/device", auth=("changer", "changer-secret"),
                          json={"name": "phone"}).json()
        headers = {"Authorization": f"Bearer {device['token']}", **from_address("10.9.9.9")}
        answers = [api.patch("/mobile/v1/user/password", headers=headers,
                             json={"currentPassword": f"wrong-{n}",
                                   "newPassword": "changer-secret-2"}).status_code
                   for n in range(11)]
        assert answers == [401] * 10 + [429]
        # they count with wrong Basic passwords: that address waits for both
        assert api.get("/3rdparty/v1/messages", auth=("changer", "changer-nope"),
                       headers=from_address("10.9.9.9")).status_code == 429
