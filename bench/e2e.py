"""End-to-end messages/s through emulated zero-delay SIMs, and API -> agent push latency.

Throughput: `simgate serve` holds N queued messages; `simgate agent --emulator K` is
started and the clock runs until every message is Sent (claimed, sent over the AT
driver through a pty, reported back). Repeated for K = 1 .. 64 SIMs with RoundRobin.
"steady" counts from the first claim to the last Sent (the server's timestamps);
"overall" from the agent's process start, so it includes its start-up (~0.5 s).
Latency: with the agent idle and connected, single messages are posted one by one;
the time from acceptance to the agent's claim (Processed) is the push latency.

    python bench/e2e.py [--messages 3000] [--sims 1,2,4,8,16,32,64] [--latency 200]
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import httpx

from simgate.testing import SimgateProcess

USER, PASSWORD = "bench", "bench-password"
# all messages are sent before the agent drains them: the queue limit must not cut in
ENV = {"SIMGATE_USERNAME": USER, "SIMGATE_PASSWORD": PASSWORD, "SIMGATE_LOG_LEVEL": "warning",
       "SIMGATE_MAX_QUEUED_PER_DEVICE": "0"}


def agent(server: SimgateProcess, sims: int, data_dir: Path) -> subprocess.Popen:
    data_dir.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        [sys.executable, "-m", "simgate", "agent", "--server", server.url, "--emulator",
         str(sims), "--sim-selection", "RoundRobin", "--data-dir", str(data_dir),
         "--username", USER, "--password", PASSWORD],
        stdout=subprocess.DEVNULL, stderr=(data_dir / "agent.log").open("ab"),
    )


def stop(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGINT)
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def count(db: Path, states: tuple[str, ...]) -> int:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as connection:
        marks = ",".join("?" * len(states))
        return connection.execute(
            f"SELECT count(*) FROM messages WHERE state IN ({marks})", states
        ).fetchone()[0]


async def post_many(url: str, total: int, concurrency: int = 32) -> None:
    body = {"message": "bench", "phoneNumbers": ["+19162255887"], "withDeliveryReport": False}
    queue = iter(range(total))
    async with httpx.AsyncClient(base_url=url, auth=(USER, PASSWORD), timeout=60) as client:
        async def worker() -> None:
            for _ in queue:
                response = await client.post("/3rdparty/v1/messages", json=body)
                response.raise_for_status()

        await asyncio.gather(*(worker() for _ in range(concurrency)))


def wait_registered(url: str) -> None:
    for _ in range(200):
        devices = httpx.get(f"{url}/3rdparty/v1/devices", auth=(USER, PASSWORD)).json()
        if devices and devices[0]["simCards"]:
            return
        time.sleep(0.05)
    raise SystemExit("the agent did not register")


def first_claim_to_last_sent(db: Path) -> float:
    """Seconds from the first claim to the last send, by the server's own timestamps."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as connection:
        first, last = connection.execute(
            "SELECT min(json_extract(states, '$.Processed')),"
            " max(json_extract(states, '$.Sent')) FROM messages"
        ).fetchone()
    return (datetime.fromisoformat(last) - datetime.fromisoformat(first)).total_seconds()


def throughput(sims: int, messages: int) -> tuple[float, float]:
    """Messages/s from start to drained (agent start-up included) and in steady state."""
    data = Path(tempfile.mkdtemp())
    server = SimgateProcess(["serve"], data / "server", env=ENV).start()
    try:
        first = agent(server, sims, data / "agent")  # registers the device, then goes
        wait_registered(server.url)
        stop(first)
        asyncio.run(post_many(server.url, messages))
        db = data / "server" / "simgate.db"
        started = time.perf_counter()
        running = agent(server, sims, data / "agent")
        # drained means sent: a Failed message is not throughput, it fails the run
        while count(db, ("Sent", "Delivered")) < messages:
            if failed := count(db, ("Failed",)):
                stop(running)
                raise SystemExit(f"{failed} of {messages} messages Failed: no figure")
            if time.perf_counter() - started > 600:
                raise SystemExit("not drained in 10 minutes")
            time.sleep(0.05)
        elapsed = time.perf_counter() - started
        stop(running)
        return messages / elapsed, messages / first_claim_to_last_sent(db)
    finally:
        server.stop()


def latency(samples: int) -> list[float]:
    data = Path(tempfile.mkdtemp())
    server = SimgateProcess(["serve"], data / "server", env=ENV).start()
    running = agent(server, 2, data / "agent")
    try:
        wait_registered(server.url)
        time.sleep(0.5)
        delays = []
        with httpx.Client(base_url=f"{server.url}/3rdparty/v1", auth=(USER, PASSWORD)) as api:
            for _ in range(samples):
                state = api.post("/messages", json={
                    "message": "ping", "phoneNumbers": ["+19162255887"],
                    "withDeliveryReport": False}).json()
                while "Processed" not in state["states"]:
                    time.sleep(0.002)
                    state = api.get(f"/messages/{state['id']}").json()
                created = datetime.fromisoformat(state["states"]["Pending"])
                claimed = datetime.fromisoformat(state["states"]["Processed"])
                delays.append((claimed - created).total_seconds() * 1000)
        return delays
    finally:
        stop(running)
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--sims", default="1,2,4,8,16,32,64")
    parser.add_argument("--latency", type=int, default=200, help="latency samples")
    args = parser.parse_args()
    print(f"end-to-end, {args.messages} messages, zero-delay emulated SIMs, RoundRobin;"
          " steady = first claim to last Sent, overall = agent start to drained")
    for sims in [int(s) for s in args.sims.split(",")]:
        overall, steady = throughput(sims, args.messages)
        print(f"  {sims:>3} SIM(s): steady {steady:6.0f} msg/s   overall {overall:6.0f} msg/s",
              flush=True)
    delays = sorted(latency(args.latency))
    quantiles = statistics.quantiles(delays, n=100)
    print(f"push latency, accepted -> claimed by the agent ({len(delays)} samples): "
          f"p50 {quantiles[49]:.1f} ms  p90 {quantiles[89]:.1f} ms  p99 {quantiles[98]:.1f} ms"
          f"  max {delays[-1]:.1f} ms")


if __name__ == "__main__":
    main()
