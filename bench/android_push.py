"""Push latency to an Android app: official Python client send -> MessageEnqueued on the
app's event stream (the stand-in, simgate.testing_android), over HTTP and over HTTPS with
a certificate from `simgate tls init`.

Each round: the client sends one message (android_sms_gateway.client.APIClient.send, in a
thread, as a script would); the clock stops when the stand-in reads the event. Prints
median, p95 and max per transport.

    python bench/android_push.py [--rounds 200]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from android_sms_gateway import client, domain

from simgate.testing import SimgateProcess
from simgate.testing_android import Listening, Phone

USER, PASSWORD = "bench", "bench-password"
ENV = {"SIMGATE_USERNAME": USER, "SIMGATE_PASSWORD": PASSWORD, "SIMGATE_LOG_LEVEL": "warning"}


async def rounds(server: SimgateProcess, count: int, verify: ssl.SSLContext | bool
                 ) -> list[float]:
    phone = Phone(f"{server.url}/mobile/v1", verify=verify)
    await phone.register(login=USER, password=PASSWORD)
    api = client.APIClient(USER, PASSWORD, base_url=f"{server.url}/3rdparty/v1")
    api.__enter__()
    message = domain.Message(phone_numbers=["+19162255887"], device_id=phone.device_id,
                             text_message=domain.TextMessage("bench"))
    took = []
    try:
        async with Listening(phone) as stream:
            for _ in range(count):
                start = time.perf_counter()
                await asyncio.to_thread(api.send, message)
                event, _ = await stream.next()
                took.append(time.perf_counter() - start)
                assert event == "MessageEnqueued"
    finally:
        api.__exit__(None, None, None)
        await phone.close()
    return took


def report(name: str, took: list[float]) -> None:
    ms = sorted(t * 1000 for t in took)
    print(f"{name:6} rounds {len(ms):4}  median {statistics.median(ms):6.1f} ms  "
          f"p95 {ms[int(len(ms) * 0.95) - 1]:6.1f} ms  max {ms[-1]:6.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        server = SimgateProcess(["serve"], root / "http", env=ENV).start()
        try:
            report("http", asyncio.run(rounds(server, args.rounds, True)))
        finally:
            server.stop()
        subprocess.run([sys.executable, "-m", "simgate", "tls", "init", "--dir",
                        str(root / "tls")], check=True, capture_output=True)
        ca = str(root / "tls" / "ca.crt")
        os.environ["SSL_CERT_FILE"] = ca  # the client trusts the CA, as a phone that installed it
        server = SimgateProcess(["serve", "--tls-cert", str(root / "tls" / "server.crt"),
                                 "--tls-key", str(root / "tls" / "server.key")],
                                root / "https", env=ENV)
        server.url = server.url.replace("http://", "https://")
        server.start()
        try:
            trusted = ssl.create_default_context(cafile=ca)
            report("https", asyncio.run(rounds(server, args.rounds, trusted)))
        finally:
            server.stop()


if __name__ == "__main__":
    main()
