"""Webhook delivery: events/s to a local receiver, and latency from event to receipt.

Starts `simgate serve`, a local receiver (uvicorn, in its own process) and registers a
`sms:received` webhook; then forwards N incoming SMS as a device would (in batches) and
measures how fast the signed deliveries arrive, and how long each took from the
`receivedAt` the device reported to its arrival at the receiver.

    python bench/webhooks.py [--events 3000]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx

from simgate.testing import SimgateProcess, free_port

USER, PASSWORD = "bench", "bench-password"

RECEIVER = textwrap.dedent("""
    import json, time
    arrivals = open(LOG_PATH, "a", buffering=1)

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        if body:
            event = json.loads(body)
            arrivals.write(json.dumps([time.time(), event["id"],
                                       event["payload"]["receivedAt"]]) + "\\n")
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})
""")


def first_arrivals(log: Path) -> dict[str, list]:
    """Each event id's first arrival: [time, id, receivedAt]."""
    arrivals: dict[str, list] = {}
    if log.exists():
        for line in log.open():
            if line.endswith("\n"):
                arrival = json.loads(line)
                arrivals.setdefault(arrival[1], arrival)
    return arrivals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=3000)
    parser.add_argument("--batch", type=int, default=100)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp())
    log = work / "arrivals.jsonl"
    (work / "receiver_app.py").write_text(f"LOG_PATH = {str(log)!r}\n" + RECEIVER)
    port = free_port()
    receiver = subprocess.Popen([sys.executable, "-m", "uvicorn", "receiver_app:app", "--port",
                                 str(port), "--log-level", "warning", "--no-access-log"],
                                cwd=work)
    server = SimgateProcess(["serve"], work / "server", env={
        "SIMGATE_USERNAME": USER, "SIMGATE_PASSWORD": PASSWORD,
        "SIMGATE_ALLOW_PRIVATE_WEBHOOKS": "true", "SIMGATE_LOG_LEVEL": "warning"}).start()
    try:
        with httpx.Client(base_url=server.url, auth=(USER, PASSWORD), timeout=60) as http:
            registered = http.post("/mobile/v1/device", json={"name": "bench"})
            if registered.status_code != 201:
                raise SystemExit(f"registering the bench device failed: {registered.text}")
            device = registered.json()
            http.post("/3rdparty/v1/webhooks", json={
                "url": f"http://127.0.0.1:{port}/hook", "event": "sms:received"}
            ).raise_for_status()
            http.patch("/3rdparty/v1/settings", json={"webhooks": {"signing_key": "bench"}})
            started = time.time()
            for first in range(0, args.events, args.batch):
                batch = [{"id": f"bench:{i}", "sender": "+12025550101", "simNumber": 1,
                          "message": f"event {i}", "receivedAt": datetime.now(UTC).isoformat()}
                         for i in range(first, min(first + args.batch, args.events))]
                http.post("/mobile/v1/inbox", json=batch, auth=None, headers={
                    "Authorization": f"Bearer {device['token']}"}).raise_for_status()
            forwarded = time.time()
            # a retried event arrives again with the same id: only distinct ids count
            while len(first_arrivals(log)) < args.events:
                if time.time() - started > 600:
                    raise SystemExit("not delivered in 10 minutes")
                time.sleep(0.05)
        arrivals = first_arrivals(log)
        repeats = sum(1 for _ in log.open()) - len(arrivals)
        done = max(a[0] for a in arrivals.values())
        latencies = sorted((a[0] - datetime.fromisoformat(a[2]).timestamp()) * 1000
                           for a in arrivals.values())
        q = statistics.quantiles(latencies, n=100)
        print(f"{len(arrivals)} distinct events ({repeats} arrived again)")
        print(f"forwarded by the device in {forwarded - started:.2f} s; all delivered after "
              f"{done - started:.2f} s -> {len(arrivals) / (done - started):.0f} events/s")
        print(f"latency event -> receiver: p50 {q[49]:.0f} ms  p90 {q[89]:.0f} ms  "
              f"p99 {q[98]:.0f} ms")
    finally:
        server.stop()
        receiver.terminate()
        receiver.wait()


if __name__ == "__main__":
    main()
