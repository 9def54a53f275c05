"""Per-SIM rate limits under load: 16 emulated SIMs each limited to N messages a minute.

`simgate run --sims 16` with routing.sims."1".."16".rate_per_minute = N and RoundRobin;
2 x 16 x N messages are posted at once. Every message's Sent time and SIM come from the
API. Printed: messages Sent in each minute from the first send (the aggregate should be
16 x N a minute), and each SIM's most sends in any 60-second window (never above N).

    python bench/routing.py [--sims 16] [--per-minute 3] [--minutes 2]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from collections import defaultdict
from datetime import datetime
from pathlib import Path

import httpx

from simgate.testing import SimgateProcess

USER, PASSWORD = "bench", "bench-password"
ENV = {"SIMGATE_USERNAME": USER, "SIMGATE_PASSWORD": PASSWORD, "SIMGATE_LOG_LEVEL": "warning",
       "SIMGATE_MAX_QUEUED_PER_DEVICE": "0"}
FINAL = {"Sent", "Delivered", "Failed"}


async def main(sims: int, per_minute: int, minutes: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        process = SimgateProcess(["run", "--sims", str(sims)], Path(tmp), env=ENV).start()
        try:
            async with httpx.AsyncClient(base_url=f"{process.url}/3rdparty/v1",
                                         auth=(USER, PASSWORD), timeout=30) as api:
                await measure(api, sims, per_minute, minutes)
        finally:
            process.stop()


async def poll(ready, every: float = 0.2, limit: float = 120.0) -> None:
    for _ in range(int(limit / every)):
        if await ready():
            return
        await asyncio.sleep(every)
    raise SystemExit(f"gave up waiting for {ready.__name__}")


async def measure(api: httpx.AsyncClient, sims: int, per_minute: int, minutes: int) -> None:
    async def registered() -> bool:
        devices = (await api.get("/devices")).json()
        return bool(devices and devices[0]["simCards"])

    await poll(registered)
    async def routing_logs() -> int:
        return sum(e["module"] == "routing" for e in (await api.get("/logs")).json())

    before = await routing_logs()
    answer = await api.patch("/settings", json={
        "messages": {"sim_selection_mode": "RoundRobin"},
        "routing": {"sims": {str(n): {"rate_per_minute": per_minute}
                             for n in range(1, sims + 1)}}})
    answer.raise_for_status()
    async def applied() -> bool:  # the agent says it applied the routing settings
        return await routing_logs() > before

    await poll(applied)
    total = minutes * sims * per_minute
    ids = []
    for n in range(total):
        posted = await api.post("/messages", json={
            "textMessage": {"text": f"rate {n}"}, "phoneNumbers": ["+19162255887"],
            "withDeliveryReport": False})  # so every message is stamped Sent
        posted.raise_for_status()
        ids.append(posted.json()["id"])
    states: dict[str, dict] = {}
    while len(states) < total:
        await asyncio.sleep(2)
        for message_id in ids:
            if message_id not in states:
                state = (await api.get(f"/messages/{message_id}")).json()
                if state["state"] in FINAL:
                    states[message_id] = state
    failed = [s for s in states.values() if s["state"] == "Failed"]
    sent = sorted((datetime.fromisoformat(s["states"]["Sent"]), s["simNumber"])
                  for s in states.values() if "Sent" in s["states"])
    start = sent[0][0]
    per_window: dict[int, int] = defaultdict(int)
    by_sim: dict[int, list[datetime]] = defaultdict(list)
    for at, sim in sent:
        per_window[int((at - start).total_seconds() // 60)] += 1
        by_sim[sim].append(at)
    worst = {sim: max(sum(0 <= (t - a).total_seconds() < 60 for t in times) for a in times)
             for sim, times in by_sim.items()}
    print(f"{sims} SIMs x {per_minute}/min = {sims * per_minute}/min allowed; "
          f"{total} messages, {len(sent)} Sent, {len(failed)} failed")
    for state in failed[:5]:
        print(f"  failed: {state['recipients'][0].get('error')}")
    for minute in sorted(per_window):
        print(f"  minute {minute + 1}: {per_window[minute]} Sent")
    print(f"  most sends by one SIM in any 60 s: {max(worst.values())} "
          f"(limit {per_minute}); SIMs used: {len(by_sim)}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sims", type=int, default=16)
    parser.add_argument("--per-minute", type=int, default=3)
    parser.add_argument("--minutes", type=int, default=2)
    args = parser.parse_args()
    asyncio.run(main(args.sims, args.per_minute, args.minutes))
