"""Many phones on one replica: memory per open device event stream, and push latency.

`simgate serve` (one process, SQLite, no connection cap per address) gets --devices
devices registered, then opens their event streams (`GET /mobile/v1/events`, as the app
does without FCM) from --processes client processes, in steps (1,000, then all). At each
step it prints the server's resident memory and its growth per stream, then sends
--samples messages, each to one device picked at random, and prints the push latency
(the accept until that device's stream reads MessageEnqueued): p50, p99, max.

    python bench/streams.py [--devices 10000] [--processes 4] [--samples 200]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import random
import statistics
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from simgate.testing import SimgateProcess

USER, PASSWORD = "bench", "bench-password"
ENV = {"SIMGATE_USERNAME": USER, "SIMGATE_PASSWORD": PASSWORD, "SIMGATE_LOG_LEVEL": "warning",
       "SIMGATE_MAX_CONNECTIONS_PER_ADDRESS": "0", "SIMGATE_MAX_QUEUED_PER_DEVICE": "0"}


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def streams(url: str, devices: list[tuple[int, str]], out: multiprocessing.Queue) -> None:
    """A client process: hold the streams of `devices` ((index, token)), tell `out` each
    one opened ("open", i) and each MessageEnqueued read ("event", i, time)."""
    asyncio.run(_streams(url, devices, out))


async def _streams(url: str, devices: list[tuple[int, str]],
                   out: multiprocessing.Queue) -> None:
    parts = urlsplit(url)
    gate = asyncio.Semaphore(64)  # connections being opened at once

    async def hold(index: int, token: str) -> None:
        async with gate:
            reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
            writer.write((f"GET /mobile/v1/events HTTP/1.1\r\nHost: {parts.netloc}\r\n"
                          f"Authorization: Bearer {token}\r\nAccept: text/event-stream\r\n"
                          "\r\n").encode())
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
            if b" 200 " not in head.split(b"\r\n", 1)[0]:
                raise RuntimeError(f"stream {index}: {head[:80]!r}")
        out.put(("open", index))
        while chunk := await reader.read(65536):
            if b"MessageEnqueued" in chunk:
                out.put(("event", index, time.time()))

    await asyncio.gather(*(hold(i, t) for i, t in devices))


async def register(api: httpx.AsyncClient, count: int) -> list[str]:
    gate = asyncio.Semaphore(16)

    async def one(n: int) -> str:
        async with gate:
            answer = await api.post("/mobile/v1/device", json={
                "name": f"phone {n}", "simCards": [{"slotIndex": 0, "simNumber": 1}]})
            answer.raise_for_status()
            return answer.json()["token"]

    return await asyncio.gather(*(one(n) for n in range(count)))


async def main(count: int, processes: int, samples: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        server = SimgateProcess(["serve"], Path(tmp), env=ENV).start()
        try:
            await measure(server, count, processes, samples)
        finally:
            server.stop()


async def measure(server: SimgateProcess, count: int, processes: int, samples: int) -> None:
    assert server.process is not None
    pid = server.process.pid
    async with httpx.AsyncClient(base_url=server.url, auth=(USER, PASSWORD),
                                 timeout=60) as api:
        started = time.monotonic()
        tokens = await register(api, count)
        print(f"{count} devices registered in {time.monotonic() - started:.0f} s")
        by_name = {d["name"]: d["id"] for d in (await api.get("/3rdparty/v1/devices")).json()}
        device_ids = [by_name[f"phone {n}"] for n in range(count)]
        out: multiprocessing.Queue = multiprocessing.Queue()
        base = rss_kib(pid)
        print(f"server memory before streams: {base / 1024:.0f} MiB")
        opened: set[int] = set()
        workers: list[multiprocessing.Process] = []
        steps = sorted({min(1000, count), count})
        done = 0
        try:
            for step in steps:
                batch = list(enumerate(tokens))[done:step]
                for k in range(processes):
                    mine = batch[k::processes]
                    if mine:
                        worker = multiprocessing.Process(target=streams,
                                                         args=(server.url, mine, out))
                        worker.start()
                        workers.append(worker)
                while len(opened) < step:
                    kind, *rest = await asyncio.to_thread(out.get, True, 120)
                    if kind == "open":
                        opened.add(rest[0])
                done = step
                await asyncio.sleep(2)  # let the server settle after the burst
                now = rss_kib(pid)
                print(f"{step} streams: server {now / 1024:.0f} MiB, "
                      f"{(now - base) / step:.1f} KiB per stream")
                latencies = await pushes(api, out, device_ids[:step], samples)
                print(f"  push latency over {len(latencies)}: p50 "
                      f"{statistics.median(latencies) * 1000:.1f} ms, p99 "
                      f"{quantile(latencies, 0.99) * 1000:.1f} ms, max "
                      f"{max(latencies) * 1000:.1f} ms")
        finally:
            for worker in workers:
                worker.kill()


async def pushes(api: httpx.AsyncClient, out: multiprocessing.Queue, device_ids: list[str],
                 samples: int) -> list[float]:
    latencies = []
    for _ in range(samples):
        index = random.randrange(len(device_ids))
        sent = time.time()
        answer = await api.post("/3rdparty/v1/messages", json={
            "textMessage": {"text": "push"}, "phoneNumbers": ["+19162255887"],
            "deviceId": device_ids[index]})
        answer.raise_for_status()
        while True:
            kind, *rest = await asyncio.to_thread(out.get, True, 30)
            if kind == "event" and rest[0] == index:
                latencies.append(rest[1] - sent)
                break
    return latencies


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--samples", type=int, default=200)
    args = parser.parse_args()
    asyncio.run(main(args.devices, args.processes, args.samples))
