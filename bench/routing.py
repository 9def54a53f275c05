"""Per-SIM rate limits under load: 16 emulated SIMs each limited to N messages a minute.

`simgate run --sims 16` with routing.sims."1".."16".rate_per_minute = N and RoundRobin;
2 x 16 x N messages are posted at once. Every message's Sent time and SIM come from the
API. Printed: messages Sent in each minute from the first send (the aggregate should be
16 x N a minute), and each SIM's most sends in any 60-second window (never above N).

With `--phones P` the SIMs are those of P Android phones instead (the app's stand-in,
each with --sims SIMs, polling `GET /mobile/v1/message` every half second and sending
what it is handed at once) on `simgate serve`: the server routes for them, and the
messages are posted to the phones in turn.

    python bench/routing.py [--sims 16] [--per-minute 3] [--minutes 2] [--phones P]
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
from simgate.testing_android import Phone, Sim

USER, PASSWORD = "bench", "bench-password"
ENV = {"SIMGATE_USERNAME": USER, "SIMGATE_PASSWORD": PASSWORD, "SIMGATE_LOG_LEVEL": "warning",
       "SIMGATE_MAX_QUEUED_PER_DEVICE": "0"}
FINAL = {"Sent", "Delivered", "Failed"}


async def main(sims: int, per_minute: int, minutes: int, phones: int) -> None:
    command = ["serve"] if phones else ["run", "--sims", str(sims)]
    with tempfile.TemporaryDirectory() as tmp:
        process = SimgateProcess(command, Path(tmp), env=ENV).start()
        try:
            async with httpx.AsyncClient(base_url=f"{process.url}/3rdparty/v1",
                                         auth=(USER, PASSWORD), timeout=30) as api:
                if phones:
                    await with_phones(api, process.url, phones, sims, per_minute, minutes)
                else:
                    await measure(api, sims, per_minute, minutes)
        finally:
            process.stop()


async def with_phones(api: httpx.AsyncClient, url: str, phones: int, sims: int,
                      per_minute: int, minutes: int) -> None:
    devices = [Phone(f"{url}/mobile/v1", name=f"phone {p + 1}",
                     sims=[Sim(i, f"+1202555{p:02d}{i:02d}") for i in range(sims)])
               for p in range(phones)]
    for device in devices:
        await device.register(login=USER, password=PASSWORD)
        await device.sync_webhooks()
        await device.sync_settings()

    async def keep_sending(device: Phone) -> None:
        while True:
            await device.process("fifo")
            await asyncio.sleep(0.5)

    workers = [asyncio.create_task(keep_sending(d)) for d in devices]
    try:
        await measure(api, sims, per_minute, minutes,
                      [d.device_id for d in devices if d.device_id])
    finally:
        for worker in workers:
            worker.cancel()
        for device in devices:
            await device.close()


async def poll(ready, every: float = 0.2, limit: float = 120.0) -> None:
    for _ in range(int(limit / every)):
        if await ready():
            return
        await asyncio.sleep(every)
    raise SystemExit(f"gave up waiting for {ready.__name__}")


async def measure(api: httpx.AsyncClient, sims: int, per_minute: int, minutes: int,
                  phones: list[str] | None = None) -> None:
    """Post the messages (to `phones` in turn, if given: each then has `sims` SIMs) and
    print what each SIM sent per window."""
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

    if not phones:  # the server routes for phones: nothing to wait for
        await poll(applied)
    total = minutes * sims * per_minute * len(phones or [None])
    ids = []
    for n in range(total):
        posted = await api.post("/messages", json={
            "textMessage": {"text": f"rate {n}"}, "phoneNumbers": ["+19162255887"],
            **({"deviceId": phones[n % len(phones)]} if phones else {}),
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
    sent = sorted((datetime.fromisoformat(s["states"]["Sent"]),
                   (s.get("deviceId"), s["simNumber"]))
                  for s in states.values() if "Sent" in s["states"])
    start = sent[0][0]
    per_window: dict[int, int] = defaultdict(int)
    by_sim: dict[tuple[str | None, int], list[datetime]] = defaultdict(list)
    for at, sim in sent:
        per_window[int((at - start).total_seconds() // 60)] += 1
        by_sim[sim].append(at)
    worst = {sim: max(sum(0 <= (t - a).total_seconds() < 60 for t in times) for a in times)
             for sim, times in by_sim.items()}
    where = f" on {len(phones)} phones" if phones else ""
    print(f"{sims * len(phones or [None])} SIMs{where} x {per_minute}/min = "
          f"{sims * len(phones or [None]) * per_minute}/min allowed; "
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
    parser.add_argument("--phones", type=int, default=0,
                        help="Android phone stand-ins (each with --sims SIMs) instead of modems")
    args = parser.parse_args()
    asyncio.run(main(args.sims, args.per_minute, args.minutes, args.phones))
