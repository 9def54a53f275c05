"""Webhook delivery is shared between users: one user's hanging receiver cannot hold
every delivery slot of a real `simgate serve`."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx

from simgate.testing import SimgateProcess
from tests.conftest import wait_until
from tests.receiver import Receiver

TOKEN = "fairness-private-token"
ENV = {"SIMGATE_PRIVATE_TOKEN": TOKEN, "SIMGATE_ALLOW_PRIVATE_WEBHOOKS": "true",
       # far longer than the test: a hanging receiver stays hanging throughout
       "SIMGATE_WEBHOOK_TIMEOUT": "600"}


async def _user_with_device(http: httpx.AsyncClient) -> tuple[tuple[str, str], str]:
    """A new user and its device, made with the private token as a phone does."""
    response = await http.post("/mobile/v1/device", headers={"Authorization": f"Bearer {TOKEN}"},
                               json={"name": "phone", "simCards": [{"slotIndex": 0}]})
    assert response.status_code == 201, response.text
    body = response.json()
    return (body["login"], body["password"]), body["token"]


async def _incoming(http: httpx.AsyncClient, token: str, idents: list[str]) -> None:
    response = await http.post(
        "/mobile/v1/inbox", headers={"Authorization": f"Bearer {token}"},
        json=[{"id": ident, "sender": "+12025550101", "simNumber": 1, "message": ident,
               "receivedAt": datetime.now(UTC).isoformat()} for ident in idents])
    assert response.status_code == 200, response.text


async def test_a_hanging_receiver_of_one_user_does_not_hold_back_another_user(tmp_path):
    """Both users' webhooks go to one host and port (as to a shared webhook service);
    only the greedy user's requests hang there."""
    receiver = await Receiver(
        hang_when=lambda request: request.query_params.get("user") == "greedy").start()
    hanging = {"started": 0, "finished": 0}
    seen_while: list[tuple[int, int]] = []  # the greedy user's (started, finished)

    def arrived(request) -> None:
        if request.query_params.get("user") == "greedy":
            hanging["started"] += 1
        else:
            seen_while.append((hanging["started"], receiver.requests_finished))

    receiver.on_request = arrived
    server = SimgateProcess(["serve"], tmp_path / "server", env=ENV).start()
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            greedy, greedy_device = await _user_with_device(http)
            modest, modest_device = await _user_with_device(http)
            for auth, who in ((greedy, "greedy"), (modest, "modest")):
                created = await http.post("/3rdparty/v1/webhooks", auth=auth, json={
                    "url": f"{receiver.url}?user={who}", "event": "sms:received"})
                assert created.status_code == 201, created.text
            # more events than the dispatcher has slots (64), all to the hanging endpoint
            await _incoming(http, greedy_device, [f"greedy:{n}" for n in range(80)])
            # alone, a user takes more than its share (16 of 64): only the reserve stays
            await wait_until(lambda: hanging["started"] > 16, timeout=60)
            await _incoming(http, modest_device, ["modest:1"])
            await wait_until(lambda: receiver.received, timeout=60)
        assert receiver.events()[0]["payload"]["message"] == "modest:1"
        started, finished = seen_while[0]
        assert started > 16 and finished == 0  # it arrived while the others hung
    finally:
        receiver.release()
        server.stop()
        await receiver.stop()
