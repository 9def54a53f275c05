"""Logins, tokens, health and client addresses against a real `simgate serve`."""

from __future__ import annotations

import json
import socket

import httpx
import pytest

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
