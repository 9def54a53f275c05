"""Two `simgate serve` replicas (two ports standing for two hosts) on one PostgreSQL
database and the machine's Redis: a message accepted on one reaches the devices of the
other at once, a new password holds on both, webhook events go out once, and per-SIM
limits hold across them."""

from __future__ import annotations

import contextlib

import httpx
import pytest
import redis

from simgate.testing import (
    SimgateProcess,
    create_pg_database,
    drop_pg_database,
    pg_reachable,
    start_agent,
)
from simgate.testing_android import Listening, Phone
from tests.conftest import PG_ADMIN_URL, wait_until
from tests.e2e.gateway import SIM2, final_state, ready_device
from tests.receiver import Receiver

USER, PASSWORD = "replicated", "replicated-secret"
REDIS_URL = "redis://127.0.0.1:6379/0"


def _redis_up() -> bool:
    try:
        return bool(redis.Redis.from_url(REDIS_URL, socket_timeout=2).ping())
    except redis.RedisError:
        return False


@pytest.fixture
def replicas(tmp_path, monkeypatch):
    if not pg_reachable(PG_ADMIN_URL):
        pytest.skip(f"replicas share a PostgreSQL store: none answers at {PG_ADMIN_URL}")
    if not _redis_up():
        pytest.skip(f"replicas talk over Redis: none answers at {REDIS_URL}")
    database = create_pg_database(PG_ADMIN_URL)
    monkeypatch.setenv("SIMGATE_DATABASE_URL", database)
    env = {"SIMGATE_USERNAME": USER, "SIMGATE_PASSWORD": PASSWORD,
           "SIMGATE_BUS_URL": REDIS_URL, "SIMGATE_ALLOW_PRIVATE_WEBHOOKS": "true"}
    started: list[SimgateProcess] = []
    try:
        for name in ("a", "b"):  # one after the other: the first migrates the store
            started.append(SimgateProcess(["serve"], tmp_path / name, env=env).start())
        yield started
    finally:
        for process in started:
            process.stop()
        drop_pg_database(PG_ADMIN_URL, database)


@contextlib.asynccontextmanager
async def api_of(process: SimgateProcess, password: str = PASSWORD):
    async with httpx.AsyncClient(base_url=f"{process.url}/3rdparty/v1", auth=(USER, password),
                                 timeout=30) as client:
        yield client


async def test_a_push_accepted_on_one_replica_reaches_a_stream_on_the_other(replicas):
    a, b = replicas
    phone = Phone(f"{a.url}/mobile/v1")
    await phone.register(login=USER, password=PASSWORD)
    try:
        async with Listening(phone) as stream, api_of(b) as on_b:
            answer = await on_b.post("/messages", json={
                "textMessage": {"text": "across hosts"}, "phoneNumbers": ["+19162255887"],
                "deviceId": phone.device_id})
            assert answer.status_code == 202, answer.text
            event, _ = await stream.next(wait=10)
            assert event == "MessageEnqueued"
        assert [m["id"] for m in await phone.messages()] == [answer.json()["id"]]
        health = (await httpx.AsyncClient().get(f"{a.url}/health")).json()
        assert health["checks"]["bus:redis"]["status"] == "pass"
    finally:
        await phone.close()


async def test_an_agent_on_one_replica_sends_once_what_the_other_accepted(replicas, tmp_path):
    a, b = replicas
    agent = start_agent(a, tmp_path / "agent", USER, PASSWORD)
    receiver = await Receiver().start()
    try:
        async with api_of(a) as on_a, api_of(b) as on_b:
            await ready_device(on_a)
            for event in ("sms:sent", "sms:delivered"):
                hook = await on_b.post("/webhooks", json={"url": receiver.url, "event": event})
                assert hook.status_code == 201, hook.text
            ids = []
            for api in (on_b, on_a, on_b):
                answer = await api.post("/messages", json={
                    "textMessage": {"text": "once"}, "phoneNumbers": [SIM2]})
                assert answer.status_code == 202, answer.text
                ids.append(answer.json()["id"])
            for message_id in ids:
                assert (await final_state(on_b, message_id, within=60))["state"] in (
                    "Sent", "Delivered")

            async def all_delivered():
                got = [e["payload"]["messageId"] for e in receiver.events("sms:delivered")]
                return set(got) == set(ids) and got

            await wait_until(all_delivered, timeout=60)
            # both replicas run a webhook dispatcher on the one store: each event once
            sent = [e["payload"]["messageId"] for e in receiver.events("sms:sent")]
            assert sorted(sent) == sorted(ids)
            assert len({e["id"] for e in receiver.events()}) == len(receiver.events())
            inbox = (await on_a.get("/inbox")).json()
            assert len([m for m in inbox if m["contentPreview"] == "once"]) == len(ids)
    finally:
        agent.terminate()
        agent.wait(15)
        await receiver.stop()


async def test_a_new_password_on_one_replica_is_refused_on_the_other_at_once(replicas):
    a, b = replicas
    phone = Phone(f"{b.url}/mobile/v1")
    await phone.register(login=USER, password=PASSWORD)
    try:
        async with api_of(a) as on_a:
            assert (await on_a.get("/devices")).status_code == 200  # remembered on A
            changed = await phone.http.patch(
                f"{b.url}/mobile/v1/user/password", headers={
                    "Authorization": f"Bearer {phone.token}"},
                json={"currentPassword": PASSWORD, "newPassword": "a-new-secret-passphrase"})
            assert changed.status_code == 204, changed.text
            assert (await on_a.get("/devices")).status_code == 401
        async with api_of(a, "a-new-secret-passphrase") as renewed:
            assert (await renewed.get("/devices")).status_code == 200
    finally:
        await phone.close()


async def test_a_sims_rate_holds_across_replicas(replicas, tmp_path):
    a, b = replicas
    agent = start_agent(a, tmp_path / "agent", USER, PASSWORD)
    try:
        async with api_of(a) as on_a, api_of(b) as on_b:
            await ready_device(on_a)
            answer = await on_b.patch("/settings", json={"routing": {"sims": {
                "1": {"rate_per_minute": 3}, "2": {"enabled": False}}}})
            assert answer.status_code == 200, answer.text

            async def applied():
                logs = (await on_a.get("/logs")).json()
                return any(e["message"].startswith("routing applied") for e in logs)

            await wait_until(applied, timeout=30)
            ids = []
            for n in range(5):
                api = (on_a, on_b)[n % 2]
                posted = await api.post("/messages", json={
                    "textMessage": {"text": f"rate {n}"}, "phoneNumbers": ["+19162255887"]})
                assert posted.status_code == 202, posted.text
                ids.append(posted.json()["id"])

            async def settled():
                states = [(await on_a.get(f"/messages/{i}")).json() for i in ids]
                done = [s for s in states if s["state"] in ("Sent", "Delivered", "Failed")]
                waiting = [s for s in states if s["state"] == "Pending" and s.get("reason")]
                return len(done) + len(waiting) == len(ids) and (done, waiting)

            done, waiting = await wait_until(settled, timeout=60)
            assert len(done) == 3 and all(s["simNumber"] == 1 for s in done)
            assert len(waiting) == 2
            assert all("rate of 3 per minute" in s["reason"] for s in waiting)
    finally:
        agent.terminate()
        agent.wait(15)
