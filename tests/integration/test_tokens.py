"""API tokens over HTTP: issuing, scopes on every route, expiry, refresh, revoking."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import jwt
import pytest

from simgate.server.routers import inbox, logs, settings, thirdparty, tokens, webhooks
from simgate.services.tokens import ALL, SCOPES, signing_key
from tests.conftest import PASSWORD, USER, register_device

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


# Every user route and the scope it asks of a token; Basic credentials hold them all.
ROUTE_SCOPES = {
    ("POST", "/messages"): "messages:send",
    ("POST", "/message"): "messages:send",
    ("GET", "/messages/{id}"): "messages:read",
    ("GET", "/message/{id}"): "messages:read",
    ("GET", "/messages"): "messages:list",
    ("GET", "/message"): "messages:list",
    ("DELETE", "/messages/{id}"): "messages:cancel",
    ("DELETE", "/message/{id}"): "messages:cancel",
    ("GET", "/devices"): "devices:list",
    ("GET", "/device"): "devices:list",
    ("DELETE", "/devices/{id}"): "devices:delete",
    ("DELETE", "/device/{id}"): "devices:delete",
    ("GET", "/webhooks"): "webhooks:list",
    ("POST", "/webhooks"): "webhooks:write",
    ("DELETE", "/webhooks/{webhook_id}"): "webhooks:delete",
    ("GET", "/webhooks/deliveries"): "webhooks:list",
    ("POST", "/webhooks/{webhook_id}/redrive"): "webhooks:write",
    ("GET", "/settings"): "settings:read",
    ("PUT", "/settings"): "settings:write",
    ("PATCH", "/settings"): "settings:write",
    ("GET", "/inbox"): "inbox:list",
    ("GET", "/inbox/{message_id}/attachments/{part_id}"): "inbox:read",
    ("POST", "/inbox/refresh"): "inbox:refresh",
    ("POST", "/messages/inbox/export"): "messages:export",
    ("POST", "/message/inbox/export"): "messages:export",
    ("GET", "/logs"): "logs:read",
    ("POST", "/auth/token"): "tokens:manage",
    ("DELETE", "/auth/token/{jti}"): "tokens:manage",
}


def test_the_scope_table_covers_every_user_route():
    routes = {(method, route.path)
              for module in (thirdparty, webhooks, settings, inbox, logs, tokens)
              for route in module.router.routes for method in route.methods}
    refresh = ("POST", "/auth/token/refresh")  # takes a refresh token, not a scope
    assert routes - {refresh} == ROUTE_SCOPES.keys()


@pytest.mark.parametrize("route, scope", ROUTE_SCOPES.items(), ids=lambda v: str(v))
async def test_each_route_asks_its_scope(api, route, scope):
    method, path = route
    for prefix in ("/3rdparty/v1", "/api/3rdparty/v1"):
        url = prefix + path.replace("{id}", "x").replace("{webhook_id}", "x").replace(
            "{jti}", "x")
        others = await issue(api, sorted(SCOPES - {scope, ALL}))
        refused = await api.request(method, url, json={}, auth=None,
                                    headers=bearer(others["accessToken"]))
        assert refused.status_code == 403, refused.text
        assert refused.json()["message"].startswith(f"scope required: {scope}")
        holder = await issue(api, [scope])
        allowed = await api.request(method, url, json={}, auth=None,
                                    headers=bearer(holder["accessToken"]))
        # past the scope check the token gets the route's own answer: what the password
        # (which holds every scope) gets for the same request, and never a server error
        plain = await api.request(method, url, json={})
        assert allowed.status_code == plain.status_code, (allowed.text, plain.text)
        assert allowed.status_code < 500, allowed.text


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
    assert "refreshToken" not in narrower  # it lives no longer than the token it came from
    wider = await api.post("/3rdparty/v1/auth/token", json={"scopes": ["messages:send"]},
                           headers=headers, auth=None)
    assert wider.status_code == 403
    assert wider.json()["message"].startswith("scope required: messages:send")


async def test_expired_tampered_and_foreign_tokens_are_refused(api, gateway):
    token = await issue(api, ["messages:list"])
    claims = jwt.decode(token["accessToken"], options={"verify_signature": False})
    key = await signing_key(gateway.sessions)
    expired = jwt.encode({**claims, "exp": datetime.now(UTC) - timedelta(seconds=5)}, key)
    foreign = jwt.encode(claims, "not the key of this server, long enough for HS256")
    header, _, signature = token["accessToken"].split(".")
    wider = jwt.encode({**claims, "scopes": ["all:any"]}, key).split(".")[1]
    tampered = f"{header}.{wider}.{signature}"  # claims changed, signature kept
    unsigned = jwt.encode(claims, None, algorithm="none")
    other_algorithm = jwt.encode(claims, key, algorithm="HS384")
    resigned = jwt.encode({**claims, "scopes": ["all:any"]}, key)  # the key alone is not enough
    for bad, says in [(expired, "token expired"), (foreign, "invalid token"),
                      (tampered, "invalid token"), (unsigned, "invalid token"),
                      (other_algorithm, "invalid token"), (resigned, "invalid token"),
                      ("not-a-jwt", "invalid token")]:
        response = await api.get("/3rdparty/v1/messages", headers=bearer(bad), auth=None)
        assert response.status_code == 401
        assert response.json()["message"].startswith(says)
        assert response.headers["www-authenticate"].startswith("Bearer")


async def test_refresh_rotates_the_pair_once(api):
    token = await issue(api, ["messages:list"], ttl=120)
    refresh = bearer(token["refreshToken"])
    renewed = await api.post("/3rdparty/v1/auth/token/refresh", headers=refresh, auth=None)
    assert renewed.status_code == 201, renewed.text
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
    assert wrong.status_code == 403 and "not a refresh token" in wrong.json()["message"]
    basic = await api.post("/3rdparty/v1/auth/token/refresh")  # a password: 403 too
    assert basic.status_code == 403 and "refresh token" in basic.json()["message"]
    misuse = await api.get("/3rdparty/v1/messages", headers=bearer(fresh["refreshToken"]),
                           auth=None)
    assert misuse.status_code == 401 and "only gets new tokens" in misuse.json()["message"]


async def test_revoke_ends_both_tokens_and_only_the_owner_may(api, gateway):
    token = await issue(api, ["messages:list"])
    await gateway.users.add("mallory", "mallory-secret")
    foreign = await api.delete(f"/3rdparty/v1/auth/token/{token['id']}",
                               auth=("mallory", "mallory-secret"))
    assert foreign.status_code == 204  # as for an unknown id, as the original: nothing done
    unknown = await api.delete("/3rdparty/v1/auth/token/no-such-token")
    assert unknown.status_code == 204
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


async def test_a_token_minted_with_a_token_ends_with_it(api):
    parent = await issue(api, ["tokens:manage", "messages:list"], ttl=60)
    child = await issue(api, ["tokens:manage", "messages:list"], ttl=3600, auth=None,
                        headers=bearer(parent["accessToken"]))
    assert datetime.fromisoformat(child["expiresAt"]) <= (
        datetime.fromisoformat(parent["expiresAt"]) + timedelta(seconds=1))
    grandchild = await issue(api, ["messages:list"], auth=None,
                             headers=bearer(child["accessToken"]))
    minted = [bearer(child["accessToken"]), bearer(grandchild["accessToken"])]
    for headers in minted:
        assert (await api.get("/3rdparty/v1/messages", headers=headers,
                              auth=None)).status_code == 200
    assert (await api.delete(f"/3rdparty/v1/auth/token/{parent['id']}")).status_code == 204
    for headers in minted:
        assert (await api.get("/3rdparty/v1/messages", headers=headers,
                              auth=None)).status_code == 401


async def test_a_new_password_ends_the_users_tokens(api, gateway):
    token = await issue(api, ["messages:list"])
    headers = bearer(token["accessToken"])
    assert (await api.get("/3rdparty/v1/messages", headers=headers, auth=None)).status_code == 200
    await gateway.users.set_password(USER, PASSWORD + "-new")
    assert (await api.get("/3rdparty/v1/messages", headers=headers, auth=None)).status_code == 401
    refresh = await api.post("/3rdparty/v1/auth/token/refresh",
                             headers=bearer(token["refreshToken"]), auth=None)
    assert refresh.status_code == 401
