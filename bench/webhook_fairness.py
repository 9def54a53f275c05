"""Webhook fairness: how late one user's event arrives while another user's receiver hangs.

Starts `simgate serve` (webhook timeout 30 s, as by default), a receiver that never
answers and one that answers at once; user A forwards N incoming SMS whose webhook goes to
the hanging receiver, then user B forwards one whose webhook goes to the healthy one.
Prints how long B's event took, and how many of A's requests were hanging meanwhile.

    python bench/webhook_fairness.py [--events 200]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import uvicorn

from simgate.testing import SimgateProcess, free_port

TOKEN = "bench-private-token"


class Receivers:
    """Two receivers in this process, on two ports: /hang never answers, /ok answers at
    once."""

    def __init__(self) -> None:
        self.hanging = 0
        self.arrived = asyncio.Event()
        self.ports = free_port(), free_port()
        self._release = asyncio.Event()

    async def app(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body"):
            pass
        if scope["path"] == "/hang":
            self.hanging += 1
            await self._release.wait()
        else:
            self.arrived.set()
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    def release(self) -> None:
        self._release.set()


async def user(http: httpx.AsyncClient) -> tuple[tuple[str, str], str]:
    body = (await http.post("/mobile/v1/device", headers={"Authorization": f"Bearer {TOKEN}"},
                            json={"name": "phone", "simCards": [{"slotIndex": 0}]})).json()
    return (body["login"], body["password"]), body["token"]


async def forward(http: httpx.AsyncClient, token: str, count: int, tag: str) -> None:
    now = datetime.now(UTC).isoformat()
    response = await http.post("/mobile/v1/inbox", headers={"Authorization": f"Bearer {token}"},
                               json=[{"id": f"{tag}:{n}", "sender": "+12025550101",
                                      "simNumber": 1, "message": tag, "receivedAt": now}
                                     for n in range(count)])
    response.raise_for_status()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200)
    args = parser.parse_args()

    receivers = Receivers()
    servers = [uvicorn.Server(uvicorn.Config(receivers.app, host="127.0.0.1", port=port,
                                             log_level="warning", interface="asgi3"))
               for port in receivers.ports]
    serving = [asyncio.create_task(server.serve()) for server in servers]
    gateway = SimgateProcess(["serve"], Path(tempfile.mkdtemp()), env={
        "SIMGATE_PRIVATE_TOKEN": TOKEN, "SIMGATE_ALLOW_PRIVATE_WEBHOOKS": "true"}).start()
    try:
        async with httpx.AsyncClient(base_url=gateway.url, timeout=60) as http:
            (a_auth, a_token), (b_auth, b_token) = await user(http), await user(http)
            for auth, port, path in ((a_auth, receivers.ports[0], "/hang"),
                                     (b_auth, receivers.ports[1], "/ok")):
                (await http.post("/3rdparty/v1/webhooks", auth=auth, json={
                    "url": f"http://127.0.0.1:{port}{path}", "event": "sms:received"})
                 ).raise_for_status()
            await forward(http, a_token, args.events, "a")
            while receivers.hanging == 0:  # noqa: ASYNC110 - a counter, no event to wait on
                await asyncio.sleep(0.05)
            started = time.monotonic()
            await forward(http, b_token, 1, "b")
            await asyncio.wait_for(receivers.arrived.wait(), 120)
            took = time.monotonic() - started
        print(f"{args.events} events of user A to a receiver that hangs; "
              f"{receivers.hanging} of its requests hanging when B's event arrived")
        print(f"user B's event arrived after {took * 1000:.0f} ms")
    finally:
        receivers.release()
        gateway.stop()
        for server in servers:
            server.should_exit = True
        await asyncio.gather(*serving)


if __name__ == "__main__":
    asyncio.run(main())
