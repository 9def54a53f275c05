"""Logins, tokens, health and client addresses against a real `simgate serve`."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

import httpx
import pytest
from android_sms_gateway import client, domain
from android_sms_gateway.errors import UnauthorizedError

from simgate.testing import SimgateProcess

USER, PASSWORD = "auth-user", "auth-secret"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A server as a compose file often starts it: SIMGATE_PRIVATE_TOKEN set but empty."""
    process = SimgateProcess(["serve"], tmp_path_factory.mktemp("auth"),
                             env={"SIMGATE_USERNAME": USER, "SIMGATE_PASSWORD": PASSWORD,
                                  "SIMGATE_PRIVATE_TOKEN": ""})
    process.start()
    yield process
    process.stop()


@pytest.fixture
def api(server):
    with httpx.Client(base_url=server.url, auth=(USER, PASSWORD), timeout=10) as api:
        yield api


def raw_post(server: SimgateProcess, path: str, authorization: bytes, body: bytes) -> bytes:
    """A request as written on the wire (httpx refuses header values ending in blanks)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"POST " + path.encode() + b" HTTP/1.1\r\nHost: simgate\r\n"
                     b"Authorization: " + authorization + b"\r\n"
                     b"Content-Type: application/json\r\nConnection: close\r\n"
                     b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


@pytest.mark.parametrize("authorization", [b"Bearer", b"bearer", b"Bearer ", b"Bearer \t "])
def test_an_empty_server_key_lets_no_device_make_a_user(server, authorization):
    answer = raw_post(server, "/mobile/v1/device", authorization,
                      json.dumps({"name": "intruder", "simCards": [{"slotIndex": 0}]}).encode())
    status, _, rest = answer.partition(b"\r\n")
    assert status.split()[1] == b"401", answer
    assert json.loads(rest.partition(b"\r\n\r\n")[2])["message"]


def test_x_forwarded_for_is_not_believed_by_default(server):
    response = httpx.get(f"{server.url}/mobile/v1/device",
                         headers={"X-Forwarded-For": "203.0.113.9"})
    assert response.json()["externalIp"] == "127.0.0.1"


def test_token_answer_has_the_original_keys_and_the_python_clients(api):
    """The original answers client-go's snake_case keys (the docs use `jq .access_token`);
    the official Python client reads camelCase: both are there."""
    issued = api.post("/3rdparty/v1/auth/token", json={"scopes": ["messages:list"]})
    assert issued.status_code == 201, issued.text
    body = issued.json()
    assert body["token_type"] == body["tokenType"] == "Bearer"
    assert body["access_token"] == body["accessToken"]
    assert body["refresh_token"] == body["refreshToken"]
    assert body["expires_at"] == body["expiresAt"]
    refreshed = httpx.post(f"{api.base_url}/3rdparty/v1/auth/token/refresh",
                           headers={"Authorization": f"Bearer {body['refresh_token']}"})
    assert refreshed.status_code == 201, refreshed.text  # as the original's handler
    renewed = refreshed.json()
    assert renewed["access_token"] == renewed["accessToken"] != body["access_token"]
    listed = httpx.get(f"{api.base_url}/3rdparty/v1/messages",
                       headers={"Authorization": f"Bearer {renewed['access_token']}"})
    assert listed.status_code == 200, listed.text


def test_a_child_token_dies_with_its_parents_refresh_and_revocation(server):
    """A token minted with a token (tokens:manage) ends with its parent: when the parent
    is refreshed, or revoked, and so do the tokens minted with it in turn."""
    base = f"{server.url}/3rdparty/v1"
    scopes = ["tokens:manage", "messages:list"]
    with client.APIClient(USER, PASSWORD, base_url=base) as by_password:
        for end in ("refresh", "revoke"):
            parent = by_password.generate_token(domain.TokenRequest(scopes=scopes, ttl=600))
            with client.APIClient(None, parent.access_token, base_url=base) as by_parent:
                child = by_parent.generate_token(domain.TokenRequest(scopes=scopes))
            assert child.refresh_token is None
            with client.APIClient(None, child.access_token, base_url=base) as by_child:
                grandchild = by_child.generate_token(domain.TokenRequest(scopes=scopes))
                assert by_child.get_messages() == []
            if end == "refresh":
                renewed = by_password.refresh_token(parent.refresh_token)
                with client.APIClient(None, renewed.access_token, base_url=base) as by_new:
                    assert by_new.get_messages() == []  # the parent lives on, renewed
            else:
                by_password.revoke_token(parent.id)
            for token in (parent, child, grandchild):
                with client.APIClient(None, token.access_token, base_url=base) as dead, \
                        pytest.raises(UnauthorizedError):
                    dead.get_messages()


def test_health_without_credentials_is_the_servers_own(server, api):
    device = api.post("/mobile/v1/device", json={
        "name": "secret phone name",
        "simCards": [{"slotIndex": 0, "carrierName": "Secret Carrier", "state": "Absent"}]})
    assert device.status_code == 201, device.text
    other = subprocess.run(
        [sys.executable, "-m", "simgate", "users", "add", "health-other", "--password",
         "other-secret", "--data-dir", str(server.data_dir)], capture_output=True, text=True,
        env=server.env)  # the server's store, whichever it is
    assert other.returncode == 0, other.stderr

    for path in ("/health", "/3rdparty/v1/health", "/api/3rdparty/v1/health"):
        anonymous = httpx.get(f"{server.url}{path}")
        # no SIM of that device is ready, but that is its user's business: a load
        # balancer asking without credentials hears of the server alone
        assert anonymous.status_code == 200, anonymous.text
        body = anonymous.json()
        assert body["status"] == "pass"
        assert set(body["checks"]) == {"database:connection"}
        assert "secret" not in anonymous.text.lower() and device.json()["id"] not in anonymous.text

    own = api.get("/health")
    assert own.status_code == 503
    checks = own.json()["checks"]
    assert checks[f"devices:{device.json()['id']}:sims"]["status"] == "fail"
    stranger = httpx.get(f"{server.url}/health", auth=("health-other", "other-secret"))
    assert stranger.status_code == 200, stranger.text  # none of its devices fail
    assert stranger.json()["status"] == "pass"
    assert not [name for name in stranger.json()["checks"] if name.startswith("devices:")]
    assert httpx.get(f"{server.url}/health", auth=(USER, "wrong-password")).status_code == 401

    # the official client reads both answers; the probes stay about the server itself
    with client.APIClient("health-other", "other-secret",
                          base_url=f"{server.url}/3rdparty/v1") as official:
        assert official.health_check().status.value == "pass"
        for probe in (official.liveness_check, official.readiness_check,
                      official.startup_check):
            assert probe().status.value == "pass"
    assert api.delete(f"/3rdparty/v1/devices/{device.json()['id']}").status_code == 204
    assert httpx.get(f"{server.url}/health").status_code == 200


def test_curl_and_the_official_client_send_json_and_a_form_post_is_refused(server, api):
    """The send route takes only bodies declared application/json, as curl (with the
    header, or --json) and the official client send them; a form (curl -d alone, or a
    cross-site form with remembered credentials) is a 415 and sends nothing."""
    device = api.post("/mobile/v1/device", json={"name": "sender"})
    assert device.status_code == 201, device.text
    body = json.dumps({"textMessage": {"text": "by curl"}, "phoneNumbers": ["+19162255887"]})
    url = f"{server.url}/3rdparty/v1/messages"

    def curl(*args: str) -> tuple[int, dict]:
        result = subprocess.run(["curl", "-s", "-w", "\n%{http_code}", "-u", f"{USER}:{PASSWORD}",
                                 *args, url], capture_output=True, text=True, timeout=30)
        answer, _, code = result.stdout.rpartition("\n")
        return int(code), json.loads(answer)

    form = curl("-d", body)
    assert form[0] == 415 and "application/json" in form[1]["message"], form
    assert api.get("/3rdparty/v1/messages").json() == []
    assert curl("-H", "Content-Type: application/json", "-d", body)[0] == 202
    assert curl("--json", body)[0] == 202
    with client.APIClient(USER, PASSWORD, base_url=f"{server.url}/3rdparty/v1") as official:
        sent = official.send(domain.Message(phone_numbers=["+19162255887"],
                                            text_message=domain.TextMessage(text="by client")))
    assert sent.id
    assert len(api.get("/3rdparty/v1/messages").json()) == 3
    assert api.delete(f"/3rdparty/v1/devices/{device.json()['id']}").status_code == 204
