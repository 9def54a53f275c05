"""Helpers for driving `simgate run` and `serve` as a user does, over HTTP."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import httpx

from simgate.testing import SimgateProcess
from tests.conftest import wait_until

USER, PASSWORD = "runner", "runner-secret"
SIM1, SIM2 = "+12025550101", "+12025550102"
OUTSIDE = "+19162255887"
FINAL = {"Sent", "Delivered", "Failed", "Cancelled"}


def start_run(tmp_path, *args: str, env: dict[str, str] | None = None) -> SimgateProcess:
    return SimgateProcess(["run", *args], tmp_path / "run", env={
        "SIMGATE_USERNAME": USER, "SIMGATE_PASSWORD": PASSWORD, **(env or {})}).start()


def start_serve(tmp_path, user: str, password: str) -> SimgateProcess:
    """`simgate serve` alone, with `user` made at start: agents are the test's own."""
    return SimgateProcess(["serve"], tmp_path / "server",
                          env={"SIMGATE_USERNAME": user, "SIMGATE_PASSWORD": password}).start()


def start_modem_agent(server: SimgateProcess, ports: Sequence[str], data_dir: Path,
                      user: str, password: str) -> subprocess.Popen[bytes]:
    """`simgate agent --modem PORT ...` against a running server, its log in data_dir."""
    data_dir.mkdir(parents=True, exist_ok=True)
    with (data_dir / "agent.log").open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "simgate", "agent", "--server", server.url,
             *(option for port in ports for option in ("--modem", port)),
             "--username", user, "--password", password, "--data-dir", str(data_dir)],
            stdout=subprocess.DEVNULL, stderr=log)


def client(process: SimgateProcess) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=f"{process.url}/3rdparty/v1", auth=(USER, PASSWORD),
                             timeout=10)


async def ready_device(api: httpx.AsyncClient) -> dict:
    async def registered():
        devices = (await api.get("/devices")).json()
        return devices[0] if devices and devices[0]["simCards"] else None

    return await wait_until(registered, timeout=60)


async def send(api: httpx.AsyncClient, text: str, to: str, sim: int | None = None) -> str:
    body = {"textMessage": {"text": text}, "phoneNumbers": [to]}
    if sim is not None:
        body["simNumber"] = sim
    response = await api.post("/messages", json=body)
    assert response.status_code == 202, response.text
    return response.json()["id"]


async def final_state(api: httpx.AsyncClient, message_id: str, within: float = 15) -> dict:
    async def done():
        state = (await api.get(f"/messages/{message_id}")).json()
        return state if state["state"] in FINAL else None

    return await wait_until(done, timeout=within)


async def inbox(api: httpx.AsyncClient) -> list[dict]:
    return (await api.get("/inbox", params={"limit": 500})).json()


def looks_random(sims: Sequence[int]) -> bool:
    """Whether SIMs picked one message after another look like Random mode over two SIMs:
    both used, at least one SIM taken twice in a row and at least one change. RoundRobin's
    strict alternation fails it, and so does one SIM stuck; 30 truly random picks fail it
    with a chance of 2 * 0.5**29 + 2 * 0.5**30 (about 6e-9)."""
    pairs = list(zip(sims, sims[1:], strict=False))
    return (set(sims) == {1, 2} and any(a == b for a, b in pairs)
            and any(a != b for a, b in pairs))
