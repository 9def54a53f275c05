"""Logs: what the server records and what devices send, read back as the client does."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.conftest import register_device


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
