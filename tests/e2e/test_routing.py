"""Routing beyond the original on `simgate run`: failover to the next SIM,
per-SIM daily and distinct-recipient limits, waiting pinned messages, Sticky."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys

import httpx
from android_sms_gateway.client import APIClient

from simgate.testing import start_agent
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
    ready_device,
    send,
    start_run,
)
from tests.receiver import Receiver

OTHER_A, OTHER_B = "+19162255881", "+19162255882"
SENT = {"Sent", "Delivered"}


async def apply_routing(api: httpx.AsyncClient, routing: dict) -> None:
    """PUT the routing group and wait until the agent says it applied it."""
    before = len(await routing_logs(api))
    answer = await api.patch("/settings", json={"routing": None})
    assert answer.status_code == 200, answer.text
    answer = await api.patch("/settings", json={"routing": routing})
    assert answer.status_code == 200, answer.text

    async def applied():
        entries = await routing_logs(api)
        return len(entries) > before and entries[-1]

    await wait_until(applied, timeout=30)


async def routing_logs(api: httpx.AsyncClient) -> list[dict]:
    entries = (await api.get("/logs")).json()
    return sorted((e for e in entries if e["module"] == "routing"
                   and e["message"].startswith("routing applied")),
                  key=lambda e: (e["createdAt"], e["id"]))


async def test_failover_sends_through_sim_2_unless_pinned_or_turned_off(tmp_path):
    process = start_run(tmp_path, "--fault", "1:fail=1.0")
    try:
        async with client(process) as api:
            await ready_device(api)
            ids = [await send(api, f"failover {n}", OUTSIDE) for n in range(3)]
            for message_id in ids:
                state = await final_state(api, message_id, within=30)
                assert state["state"] in ("Sent", "Delivered") and "Sent" in state["states"]
                assert state["simNumber"] == 2
                failed, sent = state["attempts"]
                assert failed["simNumber"] == 1 and "CMS ERROR 38" in failed["error"]
                assert sent["simNumber"] == 2 and sent.get("error") is None
                assert failed["deviceId"] == sent["deviceId"] == state["deviceId"]
                assert failed["at"] <= sent["at"]

            # three failed sends in a row: SIM 1 is paused, shown so, and left out
            device_id = state["deviceId"]

            async def paused():
                usage = {u["simNumber"]: u for u in (await api.get("/routing/usage")).json()}
                return usage[1] if usage[1].get("pausedUntil") else None

            sim1 = await wait_until(paused, timeout=30)
            assert "3 failed sends in a row" in sim1["pauseReason"], sim1
            health = (await api.get(f"{process.url}/health")).json()["checks"]
            check = health[f"devices:{device_id}:sim:1"]
            assert check["status"] == "warn" and "paused by routing" in check["description"]
            direct = await final_state(api, await send(api, "while paused", OUTSIDE), 30)
            assert direct["state"] in SENT and [a["simNumber"] for a in direct["attempts"]] == [2]

            # pinned: tried on its SIM even while paused, and fails with the SIM's error
            pinned = await final_state(api, await send(api, "pinned", OUTSIDE, sim=1), 30)
            assert pinned["state"] == "Failed"
            assert "CMS ERROR 38" in pinned["recipients"][0]["error"]
            assert [a["simNumber"] for a in pinned["attempts"]] == [1]

            await apply_routing(api, {"failover": False, "cooldown_seconds": 0})
            alone = await final_state(api, await send(api, "no failover", OUTSIDE), 30)
            assert alone["state"] == "Failed" and len(alone["attempts"]) == 1
    finally:
        process.stop()


async def test_a_sim_that_loses_its_network_raises_sim_changed_and_routing_follows(tmp_path):
    receiver = await Receiver().start()
    process = start_run(tmp_path, "--sim-selection", "RoundRobin",
                        "--fault", "2:lose-network=1",
                        env={"SIMGATE_ALLOW_PRIVATE_WEBHOOKS": "true"})
    try:
        async with client(process) as api:
            await ready_device(api)
            hook = await api.post("/webhooks", json={"url": receiver.url,
                                                    "event": "sim:changed"})
            assert hook.status_code == 201, hook.text
            assert "sim:changed" in [h["event"] for h in (await api.get("/webhooks")).json()]
            # the official client cannot read simgate's own event: it is not listed to it
            with APIClient(USER, PASSWORD, base_url=f"{process.url}/3rdparty/v1") as official:
                assert hook.json()["id"] not in [w.id for w in official.get_webhooks()]

            # SIM 2 sends once, then its network is gone: the modem says so (+CREG: 0),
            # and the agent reports the change at once, without a send failing first
            sent = await final_state(api, await send(api, "last one", OUTSIDE, sim=2), 30)
            assert sent["state"] in SENT
            await wait_until(lambda: receiver.events("sim:changed"), timeout=20)
            event = receiver.events("sim:changed")[0]
            assert event["deviceId"] == sent["deviceId"]
            assert event["payload"]["simNumber"] == 2
            assert event["payload"]["change"] == "network-lost"
            assert (event["payload"]["previousState"], event["payload"]["state"]) == (
                "Ready", "NoNetwork")

            lost = await final_state(api, await send(api, "no network", OUTSIDE, sim=2), 30)
            assert lost["state"] == "Failed" and lost.get("attempts", []) == []
            assert "SIM 2 is not ready (NoNetwork)" in lost["recipients"][0]["error"]

            # round robin now rotates over SIM 1 alone: no attempt on SIM 2
            for n in range(2):
                state = await final_state(api, await send(api, f"after {n}", OUTSIDE), 30)
                assert state["state"] in SENT, state
                assert [a["simNumber"] for a in state["attempts"]] == [1], state
    finally:
        process.stop()
        await receiver.stop()


async def test_two_devices_one_failing_the_other_sends(tmp_path):
    """Both SIMs of `simgate run` fail; a second agent's do not. A message on the failing
    device goes to the other one, every attempt listed; never when deviceId is pinned."""
    process = start_run(tmp_path, "--fault", "1:fail=1.0", "--fault", "2:fail=1.0")
    healthy = None
    try:
        async with client(process) as api:
            failing = (await ready_device(api))["id"]
            await apply_routing(api, {"cooldown_seconds": 0})  # every send tries its SIMs
            healthy = start_agent(process, tmp_path / "healthy", USER, PASSWORD)

            async def both():
                devices = (await api.get("/devices")).json()
                ready = [d for d in devices if d["simCards"]]
                return {d["id"]: d for d in ready} if len(ready) == 2 else None

            other = next(i for i in await wait_until(both, timeout=60) if i != failing)

            async def pinned_to_failing() -> dict:
                response = await api.post("/messages", json={
                    "textMessage": {"text": "pinned"}, "phoneNumbers": [OUTSIDE],
                    "deviceId": failing})
                assert response.status_code == 202, response.text
                return await final_state(api, response.json()["id"], 30)

            # deviceId pinned: both of its SIMs tried, then Failed, not handed on
            pinned = await pinned_to_failing()
            assert pinned["state"] == "Failed" and pinned["deviceId"] == failing
            assert [(a["deviceId"], a["simNumber"]) for a in pinned["attempts"]] == [
                (failing, 1), (failing, 2)]

            # a message without deviceId goes to the device seen last. The healthy agent is
            # paused (it would keep being seen) until the failing one, made to call again by
            # pinned messages, is the one seen last; it takes the message, fails both SIMs,
            # and the resumed healthy agent gets it handed on.
            healthy.send_signal(signal.SIGSTOP)
            try:
                for _ in range(20):
                    seen = await both()
                    if seen[failing]["lastSeen"] > seen[other]["lastSeen"]:
                        break
                    await pinned_to_failing()
                    await asyncio.sleep(1)
                else:
                    raise AssertionError("the failing device never became the one seen last")
                handed_on = await send(api, "handed on", OUTSIDE)
            finally:
                healthy.send_signal(signal.SIGCONT)
            moved = await final_state(api, handed_on, 60)
            assert moved["state"] in SENT and moved["deviceId"] == other, moved
            tried = [(a["deviceId"], a["simNumber"], bool(a.get("error")))
                     for a in moved["attempts"]]
            assert tried[:2] == [(failing, 1, True), (failing, 2, True)], tried
            assert len(tried) == 3 and tried[2][0] == other and not tried[2][2], tried
            assert all("CMS ERROR 38" in a["error"] for a in moved["attempts"][:2])
            assert moved["attempts"][1]["at"] <= moved["attempts"][2]["at"]
    finally:
        if healthy is not None:
            healthy.terminate()
            healthy.wait(15)
        process.stop()


async def test_limits_waiting_and_sticky(tmp_path):
    process = start_run(tmp_path)
    try:
        async with client(process) as api:
            await ready_device(api)

            # daily_limit 3 on SIM 1: of 10 messages at most 3 go through it
            await apply_routing(api, {"sims": {"1": {"daily_limit": 3}}})
            ids = [await send(api, f"daily {n}", OUTSIDE) for n in range(10)]
            states = [await final_state(api, i, within=60) for i in ids]
            assert all(s["state"] in SENT for s in states), states
            through = [s["simNumber"] for s in states]
            assert through.count(1) == 3 and through.count(2) == 7, through
            await usage_is_shown(process, api)
    finally:
        process.stop()

    # the counters are in the store: after a restart SIM 1 is still at its limit
    process = start_run(tmp_path)
    try:
        async with client(process) as api:
            await wait_until(lambda: ready(process), timeout=60)
            after = await final_state(api, await send(api, "after restart", OUTSIDE), 30)
            assert after["state"] in SENT and after["simNumber"] == 2, after

            # pinned to the exhausted SIM: waits, said in the logs, fails at its ttl;
            # priority 100 bypasses the limit
            waiting = (await api.post("/messages", json={
                "textMessage": {"text": "waits"}, "phoneNumbers": [OUTSIDE],
                "simNumber": 1, "ttl": 10})).json()["id"]

            async def waits():
                state = (await api.get(f"/messages/{waiting}")).json()
                return state if state.get("reason") else None

            shown = await wait_until(waits, timeout=30)
            assert shown["state"] == "Pending", shown
            assert shown["reason"] == "SIM 1 reached its daily limit of 3"
            urgent = await send_urgent(api, OUTSIDE)
            assert (await final_state(api, urgent, 30))["simNumber"] == 1
            expired = await final_state(api, waiting, within=60)
            assert expired["state"] == "Failed" and "reason" not in expired
            assert expired["recipients"][0]["error"] == "TTL expired"
            logs = (await api.get("/logs")).json()
            assert any(e["message"] == f"message {waiting} waits: SIM 1 reached its daily "
                       "limit of 3" for e in logs)

            # unique_recipients_monthly 2 on SIM 1: OUTSIDE is one already; a second new
            # one fits, a third goes through SIM 2, a known one still uses SIM 1
            await apply_routing(api, {"sims": {"1": {"unique_recipients_monthly": 2}}})
            for to, sim in ((OTHER_A, 1), (OTHER_B, 2), (OUTSIDE, 1), (OTHER_A, 1)):
                state = await final_state(api, await send(api, "unique", to), 30)
                assert state["state"] in SENT and state["simNumber"] == sim, (to, state)

            # Sticky: SIM 1's number writes to SIM 2; the answer to it goes out on SIM 2
            await apply_routing(api, {"strategy": "Sticky"})
            await final_state(api, await send(api, "hello", SIM2, sim=1), 30)

            async def arrived():
                return any(m["sender"] == SIM1 and m["simNumber"] == 2 for m in await inbox(api))

            await wait_until(arrived, timeout=30)
            answer = await final_state(api, await send(api, "answer", SIM1), 30)
            assert answer["state"] in SENT and answer["simNumber"] == 2, answer
            other = await final_state(api, await send(api, "other", "+19162255883"), 30)
            assert other["simNumber"] == 1  # no exchange with it yet: the default SIM

            # a device's own group overrides the rules for every device, key by key; the
            # group of another device does not apply here
            device_id = (await api.get("/devices")).json()[0]["id"]
            await apply_routing(api, {"sims": {
                "2": {"enabled": False, "daily_limit": 1000},
                device_id: {"1": {"enabled": False}, "2": {"enabled": True}},
                "someOtherDevice12345": {"2": {"enabled": False}}}})
            own = await final_state(api, await send(api, "own rules", OUTSIDE), 30)
            assert own["state"] in SENT and own["simNumber"] == 2, own
    finally:
        process.stop()


async def ready(process) -> bool:
    async with httpx.AsyncClient() as anonymous:
        return (await anonymous.get(f"{process.url}/health/ready")).status_code == 200


async def usage_is_shown(process, api: httpx.AsyncClient) -> None:
    """SIM 1 at its daily limit of 3, SIM 2 with 7: in the usage API, in the owner's
    health checks (not in the anonymous answer), and in `simgate sims`."""
    usage = {u["simNumber"]: u for u in (await api.get("/routing/usage")).json()}
    assert (usage[1]["sentToday"], usage[2]["sentToday"]) == (3, 7), usage
    assert usage[1]["limits"]["dailyLimit"] == 3 and usage[2]["limits"]["dailyLimit"] is None
    assert usage[1]["atLimit"] == "reached its daily limit of 3"
    assert usage[2]["atLimit"] is None and usage[1]["recipientsThisMonth"] == 1

    device_id = usage[1]["deviceId"]
    health = (await api.get(f"{process.url}/health")).json()["checks"]
    check = health[f"devices:{device_id}:sim:1:usage"]
    assert check["status"] == "warn" and "today 3/3" in check["description"], check
    assert "reached its daily limit of 3" in check["description"]
    assert health[f"devices:{device_id}:sim:2:usage"]["status"] == "pass"
    async with httpx.AsyncClient() as anonymous:
        answer = (await anonymous.get(f"{process.url}/health")).json()
    assert answer["status"] in {"pass", "warn"}
    assert not any(key.startswith("devices:") for key in answer["checks"])

    listed = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "simgate", "sims", "--server", process.url, "--username",
         USER, "--password", PASSWORD], capture_output=True, text=True, timeout=60,
        env={**os.environ, "COLUMNS": "250"})
    assert listed.returncode == 0, listed.stderr
    rows = [line for line in listed.stdout.splitlines() if "3/3" in line]
    assert len(rows) == 1 and "reached its daily limit of 3" in rows[0], listed.stdout


async def send_urgent(api: httpx.AsyncClient, to: str) -> str:
    response = await api.post("/messages", json={
        "textMessage": {"text": "urgent"}, "phoneNumbers": [to], "simNumber": 1,
        "priority": 100})
    assert response.status_code == 202, response.text
    return response.json()["id"]
