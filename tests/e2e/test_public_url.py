"""SIMGATE_PUBLIC_URL: the base of every URL simgate hands out, and the doctor's warning
when phones are handed plain-HTTP hooks their app refuses."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import httpx
import pytest

from simgate.testing import SimgateProcess
from simgate.testing_android import Phone

USER, PASSWORD = "public-owner", "public-owner-secret"


def start(tmp_path, name: str, public_url: str | None) -> SimgateProcess:
    env = {"SIMGATE_USERNAME": USER, "SIMGATE_PASSWORD": PASSWORD}
    if public_url is not None:
        env["SIMGATE_PUBLIC_URL"] = public_url
    return SimgateProcess(["serve"], tmp_path / name, env=env).start()


@pytest.fixture
async def served(tmp_path):
    servers: list[SimgateProcess] = []
    phones: list[Phone] = []

    async def serve(name: str, public_url: str | None) -> tuple[SimgateProcess, Phone]:
        server = await asyncio.to_thread(start, tmp_path, name, public_url)
        servers.append(server)
        phone = Phone(f"{server.url}/mobile/v1")
        phones.append(phone)
        await phone.register(login=USER, password=PASSWORD)
        return server, phone

    yield serve
    for phone in phones:
        await phone.close()
    for server in servers:
        server.stop()


async def doctor(server: SimgateProcess) -> str:
    done = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "simgate", "doctor", "--server", server.url,
                         "--username", USER, "--password", PASSWORD],
        capture_output=True, text=True, timeout=60, env={**os.environ, "COLUMNS": "400"})
    return done.stdout


async def test_every_ingest_hook_and_location_start_with_the_public_url(served):
    server, phone = await served("https", "https://gw.example.org/sms/")
    hooks = await phone.sync_webhooks()
    assert hooks and all(h["url"].startswith("https://gw.example.org/sms/mobile/v1/ingest/")
                         for h in hooks), hooks
    async with httpx.AsyncClient(base_url=server.url, auth=(USER, PASSWORD)) as api:
        sent = await api.post("/3rdparty/v1/messages", json={
            "textMessage": {"text": "hi"}, "phoneNumbers": ["+19162255887"]})
        assert sent.headers["Location"] == (
            f"https://gw.example.org/sms/3rdparty/v1/messages/{sent.json()['id']}")
        catalog = (await api.get("/.well-known/api-catalog")).json()
        assert catalog["linkset"][0]["anchor"] == "https://gw.example.org/sms/api/3rdparty/v1"
        health = (await api.get("/health")).json()["checks"]
    assert f"devices:{phone.device_id}:ingest" not in health
    assert "ingest hooks" not in await doctor(server)


async def test_the_doctor_warns_of_plain_http_hooks_to_a_host_the_app_refuses(served):
    server, phone = await served("http", "http://gw.example.org")
    await phone.sync_webhooks()
    async with httpx.AsyncClient(base_url=server.url, auth=(USER, PASSWORD)) as api:
        health = (await api.get("/health")).json()["checks"]
    check = health[f"devices:{phone.device_id}:ingest"]
    assert check["status"] == "warn" and "SIMGATE_PUBLIC_URL" in check["description"]
    assert "/ingest/" not in check["description"]  # the secret part stays out
    report = await doctor(server)
    assert "ingest hooks" in report and "SIMGATE_PUBLIC_URL" in report, report


async def test_without_a_public_url_a_loopback_phone_gets_the_requests_own_base(served):
    server, phone = await served("plain", None)
    hooks = await phone.sync_webhooks()
    assert all(h["url"].startswith(f"{server.url}/mobile/v1/ingest/") for h in hooks)
    async with httpx.AsyncClient(base_url=server.url, auth=(USER, PASSWORD)) as api:
        health = (await api.get("/health")).json()["checks"]
    assert f"devices:{phone.device_id}:ingest" not in health  # 127.0.0.1: allowed
