"""The crash loop: under a steady load, the server and (separately) the agent are killed
with SIGKILL at random moments and started again. Afterwards every accepted message is
in one final state, each SMS reached the emulated network once, and every webhook event
was delivered at least once.

The emulated network runs apart (`simgate emulator`), so it outlives both and is the
witness of what was sent. SIMGATE_CRASH_ROUNDS sets the kills (default 2, half of them
the server's); `SIMGATE_CRASH_ROUNDS=50 python -m pytest tests/e2e/test_crash_loop.py`
is the long run.
"""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from simgate.testing import SimgateProcess
from tests.conftest import wait_until
from tests.e2e.gateway import FINAL, start_modem_agent
from tests.receiver import Receiver

USER, PASSWORD = "crash-user", "crash-secret"
ROUNDS = int(os.environ.get("SIMGATE_CRASH_ROUNDS", "2"))
EVENTS = ("sms:sent", "sms:delivered", "sms:failed")


def start_network(data_dir: Path) -> tuple[subprocess.Popen, list[tuple[str, str]]]:
    """`simgate emulator --sims 2`: its (pty, number) per SIM once it printed them."""
    data_dir.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen([sys.executable, "-m", "simgate", "emulator", "--sims", "2"],
                               stdout=subprocess.PIPE, text=True,
                               stderr=(data_dir / "emulator.log").open("ab"))
    sims = []
    while len(sims) < 2:
        line = process.stdout.readline()
        if not line:
            raise RuntimeError(f"the emulator exited: {(data_dir / 'emulator.log').read_text()}")
        if line.startswith("SIM "):
            _, _, pty, number = line.split()
            sims.append((pty, number))
    return process, sims


def kill(process: subprocess.Popen) -> None:
    process.kill()
    process.wait(10)


@pytest.fixture
def sims(tmp_path) -> Iterator[list[tuple[str, str]]]:
    """The emulated network, apart from everything the test kills; its SIMs."""
    network, sims = start_network(tmp_path / "network")
    try:
        yield sims
    finally:
        network.terminate()
        network.wait(10)


@pytest.fixture
def server(tmp_path) -> Iterator[SimgateProcess]:
    process = SimgateProcess(["serve"], tmp_path / "server", env={
        "SIMGATE_USERNAME": USER, "SIMGATE_PASSWORD": PASSWORD,
        "SIMGATE_ALLOW_PRIVATE_WEBHOOKS": "true", "SIMGATE_WEBHOOK_RETRY_BASE": "0.5",
        "SIMGATE_WEBHOOK_TIMEOUT": "5"})
    try:
        yield process.start()
    finally:
        process.stop()


@pytest.fixture
def agents(server, sims, tmp_path) -> Iterator[Callable[[], subprocess.Popen]]:
    """Start the agent (again after each kill); whatever runs at the end is killed."""
    started: list[subprocess.Popen] = []

    def start() -> subprocess.Popen:
        started.append(agent := start_modem_agent(server, [pty for pty, _ in sims],
                                                  tmp_path / "agent", USER, PASSWORD))
        return agent

    yield start
    for agent in started:
        if agent.poll() is None:
            kill(agent)


async def test_kills_at_random_moments_lose_nothing_and_repeat_nothing(sims, server, agents):
    (_, sim1), (_, sim2) = sims
    agent = agents()
    receiver = await Receiver().start()
    accepted: dict[str, str] = {}  # id -> text, for 202 answers only
    # every text sent, answered or not: a kill between the commit and the answer leaves a
    # message accepted whose 202 never came, and sent all the same
    asked: set[str] = set()
    sending = True
    chance = random.Random()
    api = httpx.AsyncClient(base_url=f"{server.url}/3rdparty/v1", auth=(USER, PASSWORD),
                            timeout=30)

    async def load() -> None:
        """A steady stream of sends from SIM 1 to SIM 2; refused or cut ones don't count."""
        count = 0
        while sending:
            count += 1
            text = f"crash loop {count}"
            asked.add(text)
            try:
                response = await api.post("/messages", json={
                    "textMessage": {"text": text}, "phoneNumbers": [sim2], "simNumber": 1})
            except httpx.HTTPError:
                await asyncio.sleep(0.1)  # the server is down: try again shortly
                continue
            if response.status_code == 202:
                accepted[response.json()["id"]] = text
            await asyncio.sleep(0.05)

    try:
        answers: list[tuple[int, str]] = []

        async def registered():
            response = await api.get("/devices")
            answers.append((response.status_code, response.text[:300]))
            devices = response.json() if response.status_code == 200 else None
            return devices and devices[0]["simCards"]

        try:
            await wait_until(registered, timeout=60)
        except AssertionError:
            raise AssertionError(f"no device registered; last answers: {answers[-3:]}") from None
        for event in EVENTS:
            hook = await api.post("/webhooks", json={"url": receiver.url, "event": event})
            assert hook.status_code == 201, hook.text
        loader = asyncio.create_task(load())
        for round_ in range(ROUNDS):
            before = len(accepted)
            await asyncio.sleep(chance.uniform(0.3, 2.0))  # a random moment under load
            if round_ % 2 == 0:
                server.kill()
                server.start()
            else:
                kill(agent)
                agent = agents()
            await wait_until(lambda before=before: len(accepted) > before + 5, timeout=120)
        sending = False
        await loader  # (each round waited for sends accepted after its kill: load went on)

        async def all_final():
            states = {}
            for message_id in accepted:
                state = (await api.get(f"/messages/{message_id}")).json()
                if state["state"] not in FINAL:
                    return None
                states[message_id] = state
            return states

        try:
            states = await wait_until(all_final, timeout=180, interval=0.5)
        except AssertionError:  # say which stayed where, for the one who reads the failure
            stuck = []
            for message_id in accepted:
                state = (await api.get(f"/messages/{message_id}")).json()
                if state["state"] not in FINAL:
                    stuck.append({k: state.get(k) for k in (
                        "id", "state", "states", "simNumber", "reason", "recipients")})
            raise AssertionError(f"{len(stuck)} of {len(accepted)} messages never ended:"
                                 f" {stuck[:5]}") from None
        went = {accepted[i] for i, s in states.items() if s["state"] in ("Sent", "Delivered")}
        # a kill may or may not fall inside a send: test_interrupted_send.py makes sure one
        # does, and that it ends Failed without a second SMS
        interrupted = [s for s in states.values() if s["state"] == "Failed"]
        assert all("interrupted" in s["recipients"][0]["error"] for s in interrupted), interrupted
        assert len(went) + len(interrupted) == len(accepted)

        async def arrived():
            inbox, offset = [], 0
            while page := (await api.get("/inbox", params={"limit": 500,
                                                           "offset": offset})).json():
                inbox += page
                offset += len(page)
            texts = Counter(m["contentPreview"] for m in inbox if m["sender"] == sim1)
            return texts if set(texts) >= went else None

        # each SMS that went reached the network once; the interrupted at most once
        received = await wait_until(arrived, timeout=120, interval=0.5)
        assert max(received.values()) == 1, [t for t, n in received.items() if n > 1]
        assert set(received) <= asked

        async def outbox_delivered():
            for state in ("pending", "failed"):
                if (await api.get("/webhooks/deliveries", params={"state": state})).json():
                    return None
            return (await api.get("/webhooks/deliveries", params={"limit": 1000})).json()

        # every event written is delivered at least once, whatever was killed meanwhile
        outbox = await wait_until(outbox_delivered, timeout=180, interval=0.5)
        assert {r["id"] for r in outbox} <= {e["id"] for e in receiver.events()}
        sent_events = {e["payload"]["messageId"] for e in receiver.events("sms:sent")}
        assert sent_events >= {i for i, s in states.items() if s["state"] in ("Sent",
                                                                               "Delivered")}
    finally:
        sending = False
        await api.aclose()
        await receiver.stop()
