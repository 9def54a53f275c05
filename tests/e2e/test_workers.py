"""`simgate serve --workers 2`: two processes on one port, one gateway seen from outside."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from simgate.testing import SimgateProcess, start_agent
from tests.conftest import wait_until
from tests.e2e.gateway import SIM2, final_state, ready_device, send
from tests.integration.test_dashboard import log_in
from tests.receiver import Receiver

USER, PASSWORD = "workers-user", "workers-secret"


@pytest.fixture
def server(tmp_path):
    process = SimgateProcess(
        ["serve", "--workers", "2"], tmp_path / "server",
        env={"SIMGATE_USERNAME": USER, "SIMGATE_PASSWORD": PASSWORD,
             "SIMGATE_ALLOW_PRIVATE_WEBHOOKS": "true"},
    ).start()
    yield process
    assert process.stop() == 0, process.output()


def workers_of(process: SimgateProcess) -> set[int]:
    pid = process.process.pid
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return {int(child) for child in children
            if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes()}


def connections_served(process: SimgateProcess) -> dict[int, int]:
    """Established connections to the server's port held by each worker, from /proc: which
    worker answers a kept-alive connection, seen from outside."""
    port = f"{process.port:04X}"
    inodes: dict[str, int] = {}
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(path).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[1].endswith(f":{port}") and fields[3] == "01":  # ESTABLISHED
                inodes[fields[9]] = 0
    counts = {}
    for worker in workers_of(process):
        links = [os.readlink(fd) for fd in Path(f"/proc/{worker}/fd").iterdir()
                 if fd.name.isdigit()]
        counts[worker] = sum(1 for link in links if link[8:-1] in inodes)
    return counts


def kept_connections(process: SimgateProcess, count: int) -> list[httpx.AsyncClient]:
    """Clients with one kept-alive connection each, to tell the workers apart."""
    return [httpx.AsyncClient(base_url=f"{process.url}/3rdparty/v1", auth=(USER, PASSWORD),
                              timeout=10, limits=httpx.Limits(max_connections=1))
            for _ in range(count)]


async def both_serve(process: SimgateProcess, clients: list[httpx.AsyncClient]) -> None:
    """Open each client's connection and check that each worker holds some of them."""
    for api in clients:
        assert (await api.get("/devices")).status_code == 200
    served = connections_served(process)
    assert len(served) == 2 and min(served.values()) >= 1, served


def fresh_connections() -> httpx.AsyncClient:
    """A new connection per request, so the kernel spreads them over the workers."""
    return httpx.AsyncClient(limits=httpx.Limits(max_keepalive_connections=0),
                             auth=(USER, PASSWORD), timeout=10)


async def test_messages_and_webhooks_go_through_whichever_worker_took_them(server, tmp_path):
    """The agent's event stream lives in one worker; messages accepted by the other reach
    it at once (the agent would otherwise wait for its 30 s poll), and the webhooks of
    states reported to either worker are delivered."""
    assert len(workers_of(server)) == 2
    receiver = await Receiver().start()
    agent = start_agent(server, tmp_path / "agent", USER, PASSWORD)
    clients = kept_connections(server, 12)
    try:
        async with fresh_connections() as api:
            api.base_url = f"{server.url}/3rdparty/v1"
            await ready_device(api)
            response = await api.post("/webhooks", json={"url": receiver.url,
                                                         "event": "sms:sent"})
            assert response.status_code == 201, response.text
            await both_serve(server, clients)  # so both workers take some of the sends
            ids = []
            for i, through in enumerate(clients):  # one at a time: each needs its own push
                ids.append(await send(through, f"via any worker {i}", SIM2, sim=1 + i % 2))
                await final_state(api, ids[-1], within=10)
            assert min(connections_served(server).values()) >= 1
            states = [(await api.get(f"/messages/{i}")).json() for i in ids]
            assert [s["simNumber"] for s in states] == [1 + i % 2 for i in range(12)]

            def sent_ids() -> set[str]:
                return {e["payload"]["messageId"] for e in receiver.events("sms:sent")}

            await wait_until(lambda: sent_ids() >= set(ids), timeout=15)
    finally:
        for through in clients:
            await through.aclose()
        agent.kill()
        agent.wait(5)
        await receiver.stop()


async def test_the_dashboard_hears_of_messages_accepted_by_either_worker(server):
    """A dashboard page's event stream lives in one worker; messages accepted by the other
    reach it too (the workers' bus carries the user's events where the stream is)."""
    clients = kept_connections(server, 8)
    try:
        async with fresh_connections() as api:
            await api.post(f"{server.url}/mobile/v1/device", json={
                "name": "phone", "simCards": [{"slotIndex": 0}, {"slotIndex": 1}]})
            await both_serve(server, clients)
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as web:
            await log_in(web, USER, PASSWORD)
            async with web.stream("GET", "/events") as stream:
                lines = stream.aiter_lines()

                async def told(message_id: str) -> None:
                    async for line in lines:
                        if line.startswith("data:") and message_id in json.loads(
                                line[5:])["ids"]:
                            return

                for i, through in enumerate(clients):  # some to each worker
                    message_id = await send(through, f"to the page {i}", SIM2)
                    await asyncio.wait_for(told(message_id), 15)
            assert min(connections_served(server).values()) >= 1
    finally:
        for through in clients:
            await through.aclose()


async def test_a_killed_worker_is_replaced_and_nothing_accepted_is_lost(server):
    async with fresh_connections() as api:
        api.base_url = f"{server.url}/3rdparty/v1"
        await api.post(f"{server.url}/mobile/v1/device",
                       json={"name": "phone", "simCards": [{"slotIndex": 0}, {"slotIndex": 1}]})
        before = [await send(api, f"before {i}", SIM2, sim=2) for i in range(10)]
        victim = min(workers_of(server))
        os.kill(victim, signal.SIGKILL)
        replaced = await wait_until(
            lambda: (w := workers_of(server)) and len(w) == 2 and victim not in w, timeout=20)
        assert replaced
        # the replacement takes connections once its start-up is over (seconds on a busy
        # machine): wait for it to say so rather than time out on its backlog
        await wait_until(lambda: server.output().count("Application startup complete") >= 3,
                         timeout=60)
        after = [await send(api, f"after {i}", SIM2, sim=2) for i in range(10)]
        for message_id in before + after:
            state = (await api.get(f"/messages/{message_id}")).json()
            assert state["state"] == "Pending" and state["recipients"][0]["phoneNumber"] == SIM2
    assert "ended with exit code -9: starting it again" in server.output()


async def test_a_revoked_token_stops_working_in_every_worker_at_once(server):
    """Each worker remembers good tokens for a while; a revocation ends them in every
    worker on the next request (no waiting for word of it)."""
    clients = kept_connections(server, 12)
    try:
        await both_serve(server, clients)
        api = clients[0]
        token = (await api.post("/auth/token", json={"scopes": ["messages:list"]})).json()
        headers = {"Authorization": f"Bearer {token['accessToken']}"}
        # through connections held by both workers: each sees the token (and remembers it)
        before = [(await c.get("/messages", headers=headers, auth=None)).status_code
                  for c in clients]
        assert before == [200] * len(clients)
        assert (await api.delete(f"/auth/token/{token['id']}")).status_code == 204
        after = [(await c.get("/messages", headers=headers, auth=None)).status_code
                 for c in clients]
        assert after == [401] * len(clients)
        assert min(connections_served(server).values()) >= 1
    finally:
        for c in clients:
            await c.aclose()


def test_a_taken_port_is_a_clear_error(tmp_path):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "simgate", "serve", "--workers", "2", "--port", str(port),
             "--data-dir", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert f"port {port} on 127.0.0.1 is already in use" in result.stderr
    assert "--port" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr
