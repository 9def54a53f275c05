"""Logs: what the server records and what devices send, read back as the client does."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import quote

from tests.conftest import PASSWORD, USER, register_device


def bearer(device):
    return {"headers": {"Authorization": f"Bearer {device['token']}"}, "auth": None}


async def test_server_and_device_entries(api):
    device = await register_device(api)
    await api.patch("/3rdparty/v1/settings", json={"messages": {"sim_selection_mode": "Random"},
                                                    "webhooks": {"signing_key": "secret-key"}})
    message = (await api.post("/3rdparty/v1/messages", json={
        "message": "x", "phoneNumbers": ["+19162255887"], "simNumber": 2})).json()
    await api.patch("/mobile/v1/message", **bearer(device), json=[{
        "id": message["id"], "state": "Failed", "simNumber": 2, "recipients": [{
            "phoneNumber": "+19162255887", "state": "Failed",
            "error": "Send result: +CMS ERROR 311 (SIM PIN required)"}]}])
    response = await api.post("/mobile/v1/logs", **bearer(device), json=[{
        "priority": "WARN", "module": "sim", "message": "SIM 2 is PinRequired",
        "context": {"simNumber": 2, "state": "PinRequired"}}])
    assert response.status_code == 204

    entries = (await api.get("/3rdparty/v1/logs")).json()
    by_module = {e["module"]: e for e in entries}
    assert by_module["devices"]["message"] == "device 'phone' registered"
    assert by_module["settings"]["context"]["settings"]["messages"]["sim_selection_mode"] == "Random"
    assert "secret-key" not in str(entries)
    failure = by_module["messages"]
    assert failure["priority"] == "ERROR" and "+CMS ERROR 311" in failure["message"]
    assert failure["context"]["simNumber"] == 2
    assert by_module["sim"]["context"] == {"simNumber": 2, "state": "PinRequired"}

    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert (await api.get("/3rdparty/v1/logs", params={"from": future})).json() == []
    bad = await api.post("/mobile/v1/logs", **bearer(device), json=[{
        "priority": "LOUD", "module": "x", "message": "y"}])
    assert bad.status_code == 400 and "priority" in bad.json()["message"]


async def test_a_hashed_messages_numbers_are_hashed_in_its_log_entries_too(api, gateway):
    """A failed send's entry names the number; the entry lives for weeks, the message's
    number only until it is hashed: both are hashed together. Others' entries stay."""
    device = await register_device(api)
    numbers = ["+19162255887", "+19162255888"]
    message = (await api.post("/3rdparty/v1/messages", json={
        "message": "x", "phoneNumbers": numbers, "id": "to_hash%"})).json()
    other = (await api.post("/3rdparty/v1/messages", json={
        "message": "y", "phoneNumbers": ["+19162255889"]})).json()
    for sent, failing in ((message, numbers), (other, ["+19162255889"])):
        answer = await api.patch("/mobile/v1/message", **bearer(device), json=[{
            "id": sent["id"], "state": "Failed", "recipients": [
                {"phoneNumber": n, "state": "Failed", "error": f"no route to {n}"}
                for n in failing]}])
        assert answer.status_code == 200, answer.text
    entries = (await api.get("/3rdparty/v1/logs")).json()
    assert sum(e["message"].count(n) for e in entries for n in numbers) == 4  # to, and error
    await gateway.messages.hash_finished({(await gateway.messages.get(
        (await _user_id(gateway)), "to_hash%")).pk})

    hashed = (await api.get(f"/3rdparty/v1/messages/{quote(message['id'], safe='')}")).json()
    assert hashed["isHashed"] is True
    digests = {r["phoneNumber"] for r in hashed["recipients"]}
    entries = (await api.get("/3rdparty/v1/logs")).json()
    mine = [e["message"] for e in entries if e["context"].get("messageId") == "to_hash%"]
    assert len(mine) == 2 and not any(n in text for text in mine for n in numbers)
    assert {text.split(" to ")[1].split(" ")[0] for text in mine} == digests
    assert any("+19162255889" in e["message"] for e in entries)  # not hashed yet


async def _user_id(gateway) -> int:
    return await gateway.users.authenticate(USER, PASSWORD)
