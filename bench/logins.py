"""Password guessing against `simgate serve`: does it slow everyone else down?

Starts `simgate serve` behind a pretended local proxy (so each guess can come from an
address of its own and is not throttled: the worst case for the server, every guess an
argon2 check), then measures the latency of a user's requests (Basic credentials checked
lately, and /health/live) alone and while GUESSERS clients send wrong passwords as fast
as they can. Prints the figures and how many guesses were checked, refused (429) or
failed (401).

    python bench/logins.py [--guessers 32] [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx

from simgate.testing import SimgateProcess

USER, PASSWORD = "bench", "bench-password"


async def latencies(url: str, seconds: float, **kwargs) -> list[float]:
    """One request after another for `seconds`, on one kept-alive connection."""
    took = []
    async with httpx.AsyncClient(timeout=60) as api:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            start = time.perf_counter()
            response = await api.get(url, **kwargs)
            took.append(time.perf_counter() - start)
            assert response.status_code == 200, response.text
    return took


async def guess(url: str, index: int, until: float, answers: Counter[int]) -> None:
    async with httpx.AsyncClient(timeout=60) as api:
        n = 0
        while time.monotonic() < until:
            n += 1
            address = f"10.{index}.{n // 250 % 250}.{n % 250 + 1}"
            response = await api.get(url, auth=(USER, f"guess-{n}"),
                                     headers={"X-Forwarded-For": address})
            answers[response.status_code] += 1


def summary(name: str, took: list[float]) -> str:
    took = sorted(took)
    p99 = took[min(len(took) - 1, int(len(took) * 0.99))]
    return (f"{name:<44} {len(took):>6} requests  p50 {statistics.median(took) * 1000:7.1f} ms"
            f"  p99 {p99 * 1000:7.1f} ms")


async def measure(server: SimgateProcess, guessers: int, seconds: float) -> None:
    messages = f"{server.url}/3rdparty/v1/messages"
    probes = {"GET /health/live": ({"url": f"{server.url}/health/live"}),
              "GET /3rdparty/v1/messages (Basic, checked)": (
                  {"url": messages, "auth": (USER, PASSWORD)})}
    for name, probe in probes.items():
        print(summary(f"alone: {name}", await latencies(seconds=seconds / 2, **probe)))
    answers: Counter[int] = Counter()
    until = time.monotonic() + seconds + 1
    attack = [asyncio.create_task(guess(messages, i, until, answers)) for i in range(guessers)]
    await asyncio.sleep(1)  # the guessers are under way
    for name, probe in probes.items():
        took = await latencies(seconds=seconds / 2, **probe)
        print(summary(f"{guessers} guessing: {name}", took))
    await asyncio.gather(*attack)
    print(f"guesses answered: {dict(answers)} ({sum(answers.values()) / (seconds + 1):.0f}/s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--guessers", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as data_dir:
        server = SimgateProcess(["serve"], Path(data_dir),
                                env={"SIMGATE_USERNAME": USER, "SIMGATE_PASSWORD": PASSWORD,
                                     "SIMGATE_FORWARDED_ALLOW_IPS": "127.0.0.1"}).start()
        try:
            asyncio.run(measure(server, args.guessers, args.seconds))
        finally:
            server.stop()


if __name__ == "__main__":
    main()
