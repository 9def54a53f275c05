"""`simgate run` as a user runs it: real HTTP, the agent, the emulated modem on real ptys.

The evidence that a SIM sent a message comes from the emulated network itself: an SMS
sent to the number of an emulated SIM arrives there as an incoming SMS whose sender is
the number of the SIM that sent it.
"""

from __future__ import annotations

import json
from collections import Counter

from android_sms_gateway.client import APIClient
from android_sms_gateway.domain import DeviceSettings, SettingsMessages
from android_sms_gateway.enums import SimSelectionMode

from tests.conftest import wait_until
from tests.e2e.gateway import (
    OUTSIDE,
    PASSWORD,
    SIM1,
    SIM2,
    USER,
    client,
    final_state,
    inbox,
    looks_random,
    ready_device,
    send,
    start_run,
)
from tests.receiver import Receiver


async def test_seed_curl_goes_out_through_sim_2(run):
    async with client(run) as api:
        device = await ready_device(api)
        assert [s["simNumber"] for s in device["simCards"]] == [1, 2]
        assert [s["phoneNumber"] for s in device["simCards"]] == [SIM1, SIM2]
        # the seed's exact request, on the legacy path
        response = await api.post("/message", json={
            "message": "Hello from SIM2, Dr. Turk!", "phoneNumbers": [SIM1], "simNumber": 2})
        assert response.status_code == 202
        state = await final_state(api, response.json()["id"])
        assert state["state"] in ("Sent", "Delivered") and state["simNumber"] == 2
        assert {"Pending", "Processed", "Sent"} <= set(state["states"])
        received = await wait_until(lambda: _from(api, SIM2))
        assert received[0]["simNumber"] == 1 and received[0]["recipient"] == SIM1


async def _from(api, sender):
    return [m for m in await inbox(api) if m["sender"] == sender]


async def test_explicit_sim_numbers_use_the_right_sim(run):
    async with client(run) as api:
        await ready_device(api)
        via1 = await send(api, "via SIM 1", SIM2, sim=1)
        via2 = await send(api, "via SIM 2", SIM1, sim=2)
        for message_id, sim in [(via1, 1), (via2, 2)]:
            assert (await final_state(api, message_id))["simNumber"] == sim
        messages = await wait_until(lambda: _both(api), timeout=10)
        by_text = {m["contentPreview"]: m for m in messages}
        assert by_text["via SIM 1"]["sender"] == SIM1 and by_text["via SIM 1"]["simNumber"] == 2
        assert by_text["via SIM 2"]["sender"] == SIM2 and by_text["via SIM 2"]["simNumber"] == 1
        bad = await api.post("/messages", json={"message": "x", "phoneNumbers": [OUTSIDE],
                                                "simNumber": 3})
        assert bad.status_code == 400
        assert "valid simNumber values: 1, 2" in bad.json()["message"]


async def _both(api):
    messages = await inbox(api)
    return messages if len(messages) >= 2 else None


async def sims_used(api, count: int) -> list[int]:
    """Send one at a time, each after the previous one went out: the SIMs, in order."""
    used = []
    for i in range(count):
        state = await final_state(api, await send(api, f"rotation {i}", OUTSIDE))
        assert state["state"] in ("Sent", "Delivered"), state
        used.append(state["simNumber"])
    return used


async def test_selection_modes_change_with_settings(run):
    async with client(run) as api:
        await ready_device(api)
        assert await sims_used(api, 3) == [1, 1, 1]  # OSDefault: the modem default, SIM 1
        # the official client patches the setting, as a user of sms-gate.app would
        with APIClient(USER, PASSWORD, base_url=f"{run.url}/3rdparty/v1") as official:
            official.patch_settings(DeviceSettings(messages=SettingsMessages(
                sim_selection_mode=SimSelectionMode.ROUND_ROBIN)))
        await applied(run, "RoundRobin")  # the push reached the agent, which took it
        rotation = await sims_used(api, 8)
        assert rotation in ([1, 2] * 4, [2, 1] * 4), rotation
        await api.patch("/settings", json={"messages": {"sim_selection_mode": "Random"}})
        await applied(run, "Random")
        picked = await sims_used(api, 30)  # one after another, as the rotation was
        assert looks_random(picked), picked


async def applied(process, mode: str) -> None:
    """Wait until the agent says it applied settings with this SIM selection mode."""
    line = f"settings applied: SIM selection {mode},"
    await wait_until(lambda: line in process.output(), timeout=20)


async def test_pin_locked_sim_fails_with_a_readable_error(tmp_path):
    process = start_run(tmp_path, "--fault", "2:pin")
    try:
        async with client(process) as api:
            device = await ready_device(api)
            assert device["simCards"][1]["state"] == "PinRequired"
            state = await final_state(api, await send(api, "locked", OUTSIDE, sim=2))
            assert state["state"] == "Failed"
            error = state["recipients"][0]["error"]
            assert "SIM 2" in error and "PIN" in error, error
            # SIM 1 still works, and the health check says what to do about SIM 2
            ok = await final_state(api, await send(api, "fine", OUTSIDE, sim=1))
            assert ok["state"] in ("Sent", "Delivered")
            health = (await api.get("/health")).json()
            check = health["checks"][f"devices:{device['id']}:sim:2"]
            assert check["status"] == "warn" and "PIN" in check["description"]
    finally:
        process.stop()


async def test_multipart_and_unicode_arrive_intact_with_signed_webhooks(run):
    receiver = await Receiver().start()
    try:
        async with client(run) as api:
            await ready_device(api)
            await api.patch("/settings", json={"webhooks": {"signing_key": "k3y"}})
            for event in ("sms:received", "sms:sent", "sms:delivered"):
                response = await api.post("/webhooks", json={"url": receiver.url, "event": event})
                assert response.status_code == 201, response.text
            long_text = "".join(f"part {i:03d} of a long message. " for i in range(20))
            unicode_text = "Привет, мир! 👋 Multi-SIM ✓ " * 6
            sent = [await send(api, long_text, SIM2, sim=1),
                    await send(api, unicode_text, SIM2, sim=1)]
            await wait_until(lambda: len(receiver.events("sms:received")) >= 2, timeout=15)
            texts = {e["payload"]["message"]: e for e in receiver.events("sms:received")}
            assert set(texts) == {long_text, unicode_text}
            for event in texts.values():
                assert event["payload"]["simNumber"] == 2
                assert event["payload"]["sender"] == SIM1
            await wait_until(lambda: len(receiver.events("sms:delivered")) >= 2, timeout=15)
            assert {e["payload"]["messageId"] for e in receiver.events("sms:sent")} == set(sent)
            assert all(e["payload"]["simNumber"] == 1 for e in receiver.events("sms:sent"))
            # signed as the official app signs, checked with hmac itself
            assert all(delivery.signed_with("k3y") for delivery in receiver.received)
            assert not any(delivery.signed_with("k3z") for delivery in receiver.received)
    finally:
        await receiver.stop()


async def test_kill_9_loses_nothing_and_sends_nothing_twice(restarts):
    process = restarts()
    async with client(process) as api:
        await ready_device(api)
        # five a minute per SIM: the agent sends five, then holds the rest back
        await api.patch("/settings", json={"messages": {"limit_period": "PerMinute",
                                                        "limit_value": 5}})
        # the agent took the limit (from the push, or from its first fetch if it came later)
        await wait_until(lambda: "send limit 5 PerMinute" in process.output(), timeout=30)
        texts = [f"durable {i}" for i in range(20)]
        ids = [await send(api, text, SIM2, sim=1) for text in texts]

        async def held_back():
            states = [(await api.get(f"/messages/{i}")).json()["state"] for i in ids]
            done = [s for s in states if s in ("Sent", "Delivered")]
            return states if len(done) == 5 else None

        at_kill = await wait_until(held_back, timeout=30)
        # some sent and some still queued when the server dies, mid-way
        assert at_kill.count("Pending") + at_kill.count("Processed") == 15, at_kill
    process.kill()
    process = restarts()
    async with client(process) as api:
        await api.patch("/settings", json={"messages": {"limit_period": "Disabled"}})
        states = [await final_state(api, i, within=60) for i in ids]
        # (a send the kill cut off, if any; test_interrupted_send.py cuts one off for sure)
        interrupted = [s for s in states if s["state"] == "Failed"]
        assert all("interrupted" in s["recipients"][0]["error"] for s in interrupted)
        assert len(interrupted) <= 1, json.dumps(interrupted, indent=1)
        went = {text for text, s in zip(texts, states, strict=True)
                if s["state"] in ("Sent", "Delivered")}
        assert len(went) == len(texts) - len(interrupted)

        async def arrived():
            received = Counter(m["contentPreview"] for m in await inbox(api))
            return received if set(received) >= went else None

        # each message that went arrived at the network once: the five sent before
        # the kill were not sent again, the fifteen held back were sent after it
        received = await wait_until(arrived, timeout=30)
        assert max(received.values()) == 1, received
        assert set(received) <= set(texts)

        async def reported():
            states = [(await api.get(f"/messages/{i}")).json()["state"] for i in ids]
            return states if states.count("Delivered") == len(went) else None

        # and no status report was lost at the kill: every one that went is Delivered
        await wait_until(reported, timeout=30)


async def test_a_report_the_network_owed_at_kill_9_arrives_after_the_restart(restarts):
    # the network takes a minute to report sends of SIM 1: the kill comes before
    process = restarts("--fault", "1:report-delay=60")
    async with client(process) as api:
        await ready_device(api)
        message = await send(api, "report after the crash", SIM2, sim=1)
        assert (await final_state(api, message))["state"] == "Sent"
    process.kill()
    process = restarts()
    async with client(process) as api:
        async def delivered():
            state = (await api.get(f"/messages/{message}")).json()
            return state if state["state"] == "Delivered" else None

        state = await wait_until(delivered, timeout=30)
        assert state["recipients"][0]["state"] == "Delivered"
