"""Server CPU per message, in one process and without sockets: accept, claim, report.

On a shared machine rates follow the share of the cores each run gets; the CPU a process
spends per message moves much less. This drives the app by ASGI calls in its own process
(SQLite in a temporary directory, a registered dual-SIM device): N sends, 32 at a time,
each answered only once stored (the group commit as under load), then the device's claim
(PATCH Processed) and report (PATCH Sent) of them in batches, and prints the process CPU
per message of each step, the least of the rounds (the first round, a warm-up, is not
counted). Compare two checkouts by running it with each on PYTHONPATH, back to back.

    python bench/server_cpu.py [--messages 1000] [--rounds 3] [--batch 32]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from simgate.config import Settings
from simgate.server.app import create_app
from simgate.services.gateway import Gateway

CONCURRENCY = 32
USER, PASSWORD = "bench", "bench-password"


async def call(app: Any, method: str, path: str, body: bytes,
               headers: list[tuple[bytes, bytes]]) -> tuple[int, bytes]:
    """One request through the ASGI app; its status and body."""
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": method, "scheme": "http", "path": path, "raw_path": path.encode(),
             "query_string": b"", "root_path": "", "client": ("127.0.0.1", 5000),
             "server": ("127.0.0.1", 80), "state": {},
             "headers": [(b"host", b"bench"), (b"content-type", b"application/json"),
                         (b"content-length", str(len(body)).encode()), *headers]}
    delivered = False
    status, chunks = 0, []

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if delivered:
            await asyncio.Event().wait()  # the client stays connected
        delivered = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(scope, receive, send)
    return status, b"".join(chunks)


async def measure(messages: int, rounds: int, batch: int) -> dict[str, float]:
    settings = Settings(data_dir=Path(tempfile.mkdtemp(prefix="simgate-cpu-")),
                        username=USER, password=PASSWORD)
    gateway = await Gateway.open(settings)
    app = create_app(settings, gateway)
    app.state.gateway = gateway  # the lifespan is not run here
    user = (b"authorization", b"Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()))
    status, body = await call(app, "POST", "/mobile/v1/device", json.dumps(
        {"name": "bench", "simCards": [{"slotIndex": 0}, {"slotIndex": 1}]}).encode(), [user])
    if status != 201:
        raise SystemExit(f"registering the device failed: {status} {body!r}")
    device = (b"authorization", f"Bearer {json.loads(body)['token']}".encode())
    best: dict[str, float] = {}
    counter = 0
    try:
        for round_ in range(rounds + 1):
            ids: list[str] = []

            async def one(ids: list[str] = ids) -> None:
                nonlocal counter
                counter += 1
                status, body = await call(app, "POST", "/3rdparty/v1/messages", json.dumps(
                    {"message": "cpu bench", "phoneNumbers": [f"+1916{2000000 + counter:07d}"],
                     "withDeliveryReport": False}).encode(), [user])
                if status != 202:
                    raise SystemExit(f"a send was refused: {status} {body!r}")
                ids.append(json.loads(body)["id"])

            started = time.process_time()
            for _ in range(0, messages, CONCURRENCY):
                await asyncio.gather(*[one() for _ in range(CONCURRENCY)])
            steps = {"accept": time.process_time() - started}
            for state in ("Processed", "Sent"):
                started = time.process_time()
                for i in range(0, len(ids), batch):
                    status, body = await call(app, "PATCH", "/mobile/v1/message", json.dumps([
                        {"id": m, "state": state, "simNumber": 1, "recipients": [],
                         "states": {state: "2030-01-01T00:00:00Z"}} for m in ids[i:i + batch]
                    ]).encode(), [device])
                    if status != 200:
                        raise SystemExit(f"a report was refused: {status} {body!r}")
                steps[state] = time.process_time() - started
            if round_:  # the first round warms up
                for step, seconds in steps.items():
                    each = seconds / len(ids)
                    best[step] = min(best.get(step, each), each)
    finally:
        await gateway.close()
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=32, help="messages per PATCH")
    args = parser.parse_args()
    best = asyncio.run(measure(args.messages, args.rounds, args.batch))
    print(f"server CPU per message (least of {args.rounds} rounds): accept"
          f" {1e6 * best['accept']:.0f} us, claim (Processed, {args.batch} a PATCH)"
          f" {1e6 * best['Processed']:.0f} us, report (Sent) {1e6 * best['Sent']:.0f} us")


if __name__ == "__main__":
    main()
