"""API tokens over HTTP: issuing, scopes on every route, expiry, refresh, revoking."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import jwt
import pytest

from simgate.services.tokens import signing_key
from tests.conftest import register_device

SEND = {"message": "by token", "phoneNumbers": ["+19162255887"], "simNumber": 2}


async def issue(api, scopes, ttl=None, **kwargs) -> dict:
    body = {"scopes": scopes} | ({"ttl": ttl} if ttl is not None else {})
    response = await api.post("/3rdparty/v1/auth/token", json=body, **kwargs)
    assert response.status_code == 201, response.text
    return response.json()


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


async def test_issued_token_is_shaped_as_the_official_client_reads_it(api):
    before = datetime.now(UTC)
    token = await issue(api, ["messages:send"], ttl=600)
    assert token["tokenType"] == "Bearer"
    assert {"id", "accessToken", "refreshToken", "expiresAt"} <= token.keys()
    expires = datetime.fromisoformat(token["expiresAt"])
    assert before + timedelta(seconds=595) < expires < before + timedelta(seconds=610)


async def test_a_token_does_what_its_scopes_allow_and_nothing_else(api):
    await register_device(api)
    token = await issue(api, ["messages:send", "messages:read"])
    headers = bearer(token["accessToken"])
    sent = await api.post("/3rdparty/v1/messages", json=SEND, headers=headers, auth=None)
    assert sent.status_code == 202, sent.text
    state = await api.get(f"/3rdparty/v1/messages/{sent.json()['id']}", headers=headers,
                          auth=None)
    assert state.status_code == 200 and state.json()["id"] == sent.json()["id"]
    for method, path, scope in [("GET", "/3rdparty/v1/messages", "messages:list"),
                                ("GET", "/3rdparty/v1/devices", "devices:list"),
                                ("GET", "/3rdparty/v1/settings", "settings:read"),
                                ("GET", "/3rdparty/v1/webhooks", "webhooks:list"),
                                ("GET", "/3rdparty/v1/logs", "logs:read"),
                                ("POST", "/3rdparty/v1/auth/token", "tokens:manage")]:
        refused = await api.request(method, path, headers=headers, auth=None,
                                    json={"scopes": ["all:any"]})
        assert refused.status_code == 403, (path, refused.text)
        assert refused.json()["message"].startswith(f"scope required: {scope}")


async def test_all_any_opens_every_route(api):
    token = await issue(api, ["all:any"])
    headers = bearer(token["accessToken"])
    device = await api.post("/mobile/v1/device", json={"name": "p", "simCards": [
        {"slotIndex": 0}]}, headers=headers, auth=None)
    assert device.status_code == 201, device.text
    for path in ("/3rdparty/v1/messages", "/3rdparty/v1/devices", "/3rdparty/v1/logs"):
        assert (await api.get(path, headers=headers, auth=None)).status_code == 200


@pytest.mark.parametrize("body, says", [
    ({"scopes": ["messages:sned"]}, "unknown scope 'messages:sned'"),
    ({"scopes": []}, "at least one scope"),
    ({"scopes": ["tokens:refresh"]}, "refresh tokens only"),
    ({"scopes": ["messages:send"], "ttl": 0}, "ttl: give"),
    ({"scopes": ["messages:send"], "ttl": 31 * 24 * 3600}, "ttl: give"),
    ({"scopes": "messages:send"}, "scopes"),
    ({}, "scopes"),
])
async def test_bad_token_requests_say_what_to_fix(api, body, says):
    response = await api.post("/3rdparty/v1/auth/token", json=body)
    assert response.status_code == 400
    assert says in response.json()["message"]


async def test_a_token_grants_only_scopes_it_holds(api):
    manager = await issue(api, ["tokens:manage", "messages:read"])
    headers = bearer(manager["accessToken"])
    narrower = await issue(api, ["messages:read"], headers=headers, auth=None)
    assert narrower["accessToken"]
    wider = await api.post("/3rdparty/v1/auth/token", json={"scopes": ["messages:send"]},
                           headers=headers, auth=None)
    assert wider.status_code == 403 and "messages:send" in wider.json()["message"]


async def test_expired_tampered_and_foreign_tokens_are_refused(api, gateway):
    token = await issue(api, ["messages:list"])
    claims = jwt.decode(token["accessToken"], options={"verify_signature": False})
    key = await signing_key(gateway.sessions)
    expired = jwt.encode({**claims, "exp": datetime.now(UTC) - timedelta(seconds=5)}, key)
    foreign = jwt.encode(claims, "not the key of this server, long enough for HS256")
    tampered = jwt.encode({**claims, "scopes": ["all:any"]}, "not the key of this server, long enough for HS256")
    for bad, says in [(expired, "token expired"), (foreign, "invalid token"),
                      (tampered, "invalid token"), ("not-a-jwt", "invalid token")]:
        response = await api.get("/3rdparty/v1/messages", headers=bearer(bad), auth=None)
        assert response.status_code == 401
        assert response.json()["message"].startswith(says)
        assert response.headers["www-authenticate"].startswith("Bearer")


async def test_refresh_rotates_the_pair_once(api):
    token = await issue(api, ["messages:list"], ttl=120)
    refresh = bearer(token["refreshToken"])
    renewed = await api.post("/3rdparty/v1/auth/token/refresh", headers=refresh, auth=None)
    assert renewed.status_code == 200, renewed.text
    fresh = renewed.json()
    assert fresh["id"] != token["id"] and fresh["accessToken"] != token["accessToken"]
    again = await api.post("/3rdparty/v1/auth/token/refresh", headers=refresh, auth=None)
    assert again.status_code == 401 and "already used" in again.json()["message"]
    old = await api.get("/3rdparty/v1/messages", headers=bearer(token["accessToken"]),
                        auth=None)
    assert old.status_code == 401 and "revoked" in old.json()["message"]
    new = await api.get("/3rdparty/v1/messages", headers=bearer(fresh["accessToken"]),
                        auth=None)
    assert new.status_code == 200
    # an access token is not a refresh token, and a refresh token opens no route
    wrong = await api.post("/3rdparty/v1/auth/token/refresh",
                           headers=bearer(fresh["accessToken"]), auth=None)
    assert wrong.status_code == 401 and "not a refresh token" in wrong.json()["message"]
    misuse = await api.get("/3rdparty/v1/messages", headers=bearer(fresh["refreshToken"]),
                           auth=None)
    assert misuse.status_code == 403


async def test_revoke_ends_both_tokens_and_only_the_owner_may(api, gateway):
    token = await issue(api, ["messages:list"])
    await gateway.users.add("mallory", "mallory-secret")
    foreign = await api.delete(f"/3rdparty/v1/auth/token/{token['id']}",
                               auth=("mallory", "mallory-secret"))
    assert foreign.status_code == 404
    headers = bearer(token["accessToken"])
    assert (await api.get("/3rdparty/v1/messages", headers=headers, auth=None)).status_code == 200
    revoked = await api.delete(f"/3rdparty/v1/auth/token/{token['id']}")
    assert revoked.status_code == 204
    assert (await api.get("/3rdparty/v1/messages", headers=headers, auth=None)).status_code == 401
    refresh = await api.post("/3rdparty/v1/auth/token/refresh",
                             headers=bearer(token["refreshToken"]), auth=None)
    assert refresh.status_code == 401


async def test_a_users_token_sees_only_that_users_messages(api, gateway):
    await register_device(api)
    sent = (await api.post("/3rdparty/v1/messages", json=SEND)).json()
    await gateway.users.add("trent", "trent-secret")
    token = await issue(api, ["messages:read"], auth=("trent", "trent-secret"))
    response = await api.get(f"/3rdparty/v1/messages/{sent['id']}",
                             headers=bearer(token["accessToken"]), auth=None)
    assert response.status_code == 404
