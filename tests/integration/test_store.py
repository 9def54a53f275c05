"""The store and services on SQLite and on the real PostgreSQL server."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from typing import Literal

import pytest
from alembic.script import ScriptDirectory
from argon2 import PasswordHasher
from sqlalchemy import text

from simgate.config import Settings
from simgate.domain.sims import SimSlot, SimStatus
from simgate.domain.states import ProcessState
from simgate.services import messages as messages_module
from simgate.services import passwords
from simgate.services.devices import DeviceIdentity
from simgate.services.errors import BadRequest, Conflict, QueueFull
from simgate.services.gateway import Gateway
from simgate.services.ids import sha256_hex
from simgate.services.messages import MessageQuery, NewMessage, RecipientUpdate, StateUpdate
from simgate.services.passwords import Passwords
from simgate.services.queue_limit import QueueLimit
from simgate.services.tokens import InvalidToken
from simgate.services.users import Users
from simgate.store.db import alembic_config


@pytest.fixture
async def store(store_url, tmp_path):
    gateway = await Gateway.open(Settings(data_dir=tmp_path, database_url=store_url))
    yield gateway
    await gateway.close()


async def _user_and_device(store):
    user = await store.users.add("carol", "carol-secret")
    registration = await store.devices.register(user.id, "phone", None,
                                                [SimSlot(0), SimSlot(1)])
    return user.id, registration.device.id


async def test_migrations_are_idempotent(store, store_url, tmp_path):
    user_id, _ = await _user_and_device(store)
    await store.messages.enqueue(user_id, NewMessage(phone_numbers=["+19162255887"], text="kept",
                                                     id="before"))
    again = await Gateway.open(Settings(data_dir=tmp_path, database_url=store_url))
    try:
        # migrating a store already at the newest revision keeps it there and keeps its rows
        async with again.engine.connect() as connection:
            revision = (await connection.execute(
                text("SELECT version_num FROM alembic_version"))).scalars().all()
        head = ScriptDirectory.from_config(alembic_config(store_url)).get_current_head()
        assert revision == [head]
        assert await again.users.authenticate("carol", "carol-secret") == user_id
        assert (await again.messages.get(user_id, "before")).state == "Pending"
    finally:
        await again.close()


async def test_message_lifecycle(store):
    user_id, device_id = await _user_and_device(store)
    message = await store.messages.enqueue(user_id, NewMessage(
        phone_numbers=["+19162255887", "+19162255888"], text="hi", sim_number=2, id="x-1"))
    assert message.state == "Pending"
    pending = await store.messages.pending(device_id)
    assert [m.ext_id for m in pending] == ["x-1"]

    result = await store.messages.apply_updates(DeviceIdentity(device_id, user_id), [StateUpdate(
        id="x-1", state=ProcessState.PROCESSED, sim_number=2)])
    assert result == {"x-1": ProcessState.PROCESSED}
    assert await store.messages.pending(device_id) == []

    await store.messages.apply_updates(DeviceIdentity(device_id, user_id), [StateUpdate(id="x-1", state=ProcessState.SENT, recipients=[
        RecipientUpdate("+19162255887", ProcessState.DELIVERED),
        RecipientUpdate("+19162255888", ProcessState.FAILED, "no network")])])
    stored = await store.messages.get(user_id, "x-1")
    assert stored.state == "Delivered" and stored.sim_used == 2
    assert not stored.is_hashed and stored.text == "hi"  # readable until the hashing round
    assert await store.messages.hash_finished(None) == 1
    stored = await store.messages.get(user_id, "x-1")
    assert stored.is_hashed and stored.text == sha256_hex("hi")
    assert stored.recipients[0].phone_number == sha256_hex("+19162255887")[:16]
    assert [r.state for r in stored.recipients] == ["Delivered", "Failed"]
    assert stored.recipients[1].error == "no network"
    listed = await store.messages.list(user_id, MessageQuery(state=ProcessState.DELIVERED))
    assert [m.ext_id for m in listed] == ["x-1"]


async def test_the_hashing_sweep_pages_past_messages_it_must_leave(store, monkeypatch):
    user_id, device_id = await _user_and_device(store)
    monkeypatch.setattr(messages_module, "HASH_BATCH", 2)
    for n in range(4):  # Sent, a delivery report still due: not finished, left as is
        await store.messages.enqueue(user_id, NewMessage(
            phone_numbers=["+19162255887"], text=f"t{n}", id=f"s-{n}"))
    await store.messages.enqueue(user_id, NewMessage(
        phone_numbers=["+19162255887"], text="done", id="d-1"))
    device = DeviceIdentity(device_id=device_id, user_id=user_id)
    await store.messages.apply_updates(device, [
        *[StateUpdate(id=f"s-{n}", state=ProcessState.SENT) for n in range(4)],
        StateUpdate(id="d-1", state=ProcessState.DELIVERED)])
    assert await store.messages.hash_finished(None) == 1
    assert (await store.messages.get(user_id, "d-1")).is_hashed
    assert not (await store.messages.get(user_id, "s-0")).is_hashed


async def test_duplicate_id_and_bad_sim_store_nothing(store):
    user_id, _ = await _user_and_device(store)
    await store.messages.enqueue(user_id, NewMessage(phone_numbers=["+19162255887"], text="a", id="dup"))
    with pytest.raises(Conflict):
        await store.messages.enqueue(user_id, NewMessage(phone_numbers=["+19162255887"], text="b", id="dup"))
    with pytest.raises(BadRequest, match="out of range"):
        await store.messages.enqueue(user_id, NewMessage(phone_numbers=["+19162255887"], text="c", sim_number=3))
    assert len(await store.messages.list(user_id, MessageQuery())) == 1


async def test_users_authenticate(store):
    await store.users.add("dave", "dave-secret")
    assert await store.users.authenticate("dave", "dave-secret") is not None
    assert await store.users.authenticate("dave", "wrong") is None
    with pytest.raises(Conflict):
        await store.users.add("dave", "other-secret")
    await store.users.ensure("dave", "new-secret-1")
    assert await store.users.authenticate("dave", "new-secret-1") is not None
    assert await store.users.authenticate("dave", "dave-secret") is None


class RecordingHasher(PasswordHasher):
    """The real argon2 hasher, noting each password it checks (from its worker thread)."""

    checked: list[str] = []
    on_check: Callable[[], None] = staticmethod(lambda: None)

    def verify(self, hash: str | bytes, password: str | bytes) -> Literal[True]:
        RecordingHasher.checked.append(str(password))
        RecordingHasher.on_check()
        return super().verify(hash, password)


async def test_logins_arriving_together_share_one_password_check(store, monkeypatch):
    """A client opening many connections at once must not start one slow hash each."""
    users = Users(store.sessions, store.stamps, passwords=Passwords(RecordingHasher()))
    monkeypatch.setattr(RecordingHasher, "checked", [])
    try:
        user = await users.add("erin", "erin-secret")
        crowd = [users.authenticate("erin", "erin-secret") for _ in range(16)]
        assert await asyncio.gather(*crowd) == [user.id] * 16
        assert RecordingHasher.checked == ["erin-secret"]
        wrong = [users.authenticate("erin", "not-it") for _ in range(4)]
        assert await asyncio.gather(*wrong) == [None] * 4
        assert RecordingHasher.checked == ["erin-secret", "not-it"]
    finally:
        await users.close()


async def test_close_waits_for_a_password_check_whose_request_went_away(store_url, tmp_path,
                                                                       monkeypatch):
    """A client hanging up mid-login leaves its check running; closing must not cut it off."""
    started = asyncio.Event()
    loop = asyncio.get_running_loop()
    monkeypatch.setattr(passwords, "PasswordHasher", RecordingHasher)
    monkeypatch.setattr(RecordingHasher, "on_check",
                        staticmethod(lambda: loop.call_soon_threadsafe(started.set)))
    gateway = await Gateway.open(Settings(data_dir=tmp_path, database_url=store_url))
    await gateway.users.add("fay", "fay-secret")
    before = asyncio.all_tasks()
    login = asyncio.ensure_future(gateway.users.authenticate("fay", "fay-secret"))
    await asyncio.wait_for(started.wait(), 10)  # the check is under way
    login.cancel()
    await gateway.close()
    running = [t for t in asyncio.all_tasks() - before if not t.done()]
    assert running == [], "a password check outlived the store"


async def test_tokens_issue_refresh_revoke(store):
    user = await store.users.add("gus", "gus-secret")
    issued = await store.tokens.issue(user.id, ["messages:read", "messages:read"], ttl=60)
    claims = await store.tokens.authenticate(issued.access_token)
    assert (claims.user_id, claims.scopes) == (user.id, frozenset({"messages:read"}))
    renewed = await store.tokens.refresh(issued.refresh_token)
    with pytest.raises(InvalidToken):
        await store.tokens.authenticate(issued.access_token)
    with pytest.raises(InvalidToken):
        await store.tokens.refresh(issued.refresh_token)
    assert (await store.tokens.authenticate(renewed.access_token)).user_id == user.id
    await store.tokens.revoke(user.id, renewed.id)
    with pytest.raises(InvalidToken):
        await store.tokens.authenticate(renewed.access_token)


async def test_a_user_code_joins_one_device_even_when_several_try_at_once(store):
    user = await store.users.add("hal", "hal-secret")
    issued = await store.enrolment.issue_code(user.id)
    tries = await asyncio.gather(*[store.enrolment.redeem(issued.code, f"10.0.0.{n}")
                                   for n in range(4)])
    assert sorted(tries, key=str) == [user.id, None, None, None]
    older = await store.enrolment.issue_code(user.id)
    newer = await store.enrolment.issue_code(user.id)  # a new code ends the one before
    assert await store.enrolment.redeem(older.code, "10.0.1.1") is None
    assert await store.enrolment.redeem(newer.code, "10.0.1.1") == user.id


def _message(ident: str | None = None) -> NewMessage:
    return NewMessage(phone_numbers=["+19162255887"], text="hi", id=ident)


async def _blind(session, batch) -> set:
    """In place of AcceptBatcher._taken_ids: the batch does not see an id taken by
    another process."""
    return set()


async def test_a_batch_that_clashes_is_judged_again_request_by_request(store_url, tmp_path,
                                                                       monkeypatch):
    """Another process takes a client id after the batch looked: the write fails, and each
    request is stored alone; one refused in the batch (a full queue) may now fit."""
    from simgate.services.accept import AcceptBatcher

    gateway = await Gateway.open(Settings(data_dir=tmp_path, database_url=store_url,
                                          max_queued_per_device=3), background=False)
    try:
        user_id, _ = await _user_and_device(gateway)
        await gateway.messages.enqueue(user_id, _message("clash"))  # "the other process"
        monkeypatch.setattr(AcceptBatcher, "_taken_ids", staticmethod(_blind))
        answers = await asyncio.gather(
            *[gateway.messages.enqueue(user_id, _message(i)) for i in ("clash", None, None)],
            return_exceptions=True)
        assert isinstance(answers[0], Conflict)
        assert [a.state for a in answers[1:]] == ["Pending", "Pending"]  # 1 + 2 = the limit
    finally:
        await gateway.close()


async def test_a_request_failing_when_judged_again_fails_alone(store_url, tmp_path,
                                                               monkeypatch):
    """In the request-by-request pass after a clash, a store error answers its own caller:
    the requests after it are still stored, and the next send is still taken."""
    from simgate.services.accept import AcceptBatcher

    gateway = await Gateway.open(Settings(data_dir=tmp_path, database_url=store_url),
                                 background=False)
    try:
        user_id, _ = await _user_and_device(gateway)
        await gateway.messages.enqueue(user_id, _message("clash"))
        monkeypatch.setattr(AcceptBatcher, "_taken_ids", staticmethod(_blind))
        batcher = gateway.messages._batcher
        build, built = batcher._build, Counter()

        async def failing_when_alone(session, request):
            built[request.ext_id] += 1
            if request.ext_id == "boom" and built["boom"] > 1:
                raise RuntimeError("the store went away")
            return await build(session, request)

        monkeypatch.setattr(batcher, "_build", failing_when_alone)
        answers = await asyncio.wait_for(asyncio.gather(
            *[gateway.messages.enqueue(user_id, _message(i)) for i in ("clash", "boom", "after")],
            return_exceptions=True), timeout=10)
        assert isinstance(answers[0], Conflict)
        assert isinstance(answers[1], RuntimeError)
        assert answers[2].state == "Pending"
        later = await asyncio.wait_for(gateway.messages.enqueue(user_id, _message("later")), 10)
        assert later.ext_id == "later"
    finally:
        await gateway.close()


async def test_sim_counters_are_kept_in_the_store(store, store_url, tmp_path):
    """Claims count on the SIM they name (sends per minute, day, month; distinct
    recipients; the contact's last SIM), failovers count on the SIM tried, a cancelled
    claim counts nothing, and another process on the same store reads the same."""
    user_id, device_id = await _user_and_device(store)
    device = DeviceIdentity(device_id, user_id)
    a, b = "+19162255887", "+19162255888"
    for n, phones in enumerate(([a], [a, b], [b])):
        await store.messages.enqueue(user_id, NewMessage(phone_numbers=phones, text="t",
                                                         id=f"u-{n}"))
    await store.messages.cancel(user_id, "u-2")
    await store.messages.apply_updates(device, [
        StateUpdate(id=f"u-{n}", state=ProcessState.PROCESSED, sim_number=1)
        for n in range(3)])
    await store.messages.apply_updates(device, [StateUpdate(
        id="u-0", state=ProcessState.SENT, sim_number=2, attempts=[
            {"sim_number": 1, "device_id": device_id, "error": "CMS ERROR 38", "at": "x"},
            {"sim_number": 2, "device_id": device_id, "error": None, "at": "y"}])])
    other = await Gateway.open(Settings(data_dir=tmp_path, database_url=store_url),
                               background=False)
    try:
        found = await other.usage.for_routing(user_id, device_id, [a, b, "+19162255889"])
    finally:
        await other.close()
    first, second = found.sims[0], found.sims[1]
    assert (first.minute, first.day, first.month, first.recipients_month) == (2, 2, 2, 2)
    assert first.known == {a, b}
    assert (second.day, second.recipients_month) == (1, 0)
    assert found.contacts == {a: 0, b: 0}


async def test_a_message_no_sim_of_its_device_could_send_moves_to_another(store):
    """A Failed report with failover hands the message to another device with a ready
    SIM, attempts kept; not when simNumber or deviceId was pinned, nor once
    routing.max_attempts are used, nor to a device whose SIMs cannot send."""
    user_id, first = await _user_and_device(store)
    down = (await store.devices.register(user_id, "down", None,
                                         [SimSlot(0, SimStatus.NO_NETWORK)])).device.id
    second = (await store.devices.register(user_id, "spare", None, [SimSlot(0)])).device.id
    await store.device_settings.patch(user_id, {"routing": {"max_attempts": 3}})
    await store.devices.touch(first)  # seen last: new messages go to it
    tried = [{"sim_number": n, "device_id": first, "error": "CMS ERROR 38", "at": "x"}
             for n in (1, 2)]
    asks = {"free": {}, "sim": {"sim_number": 1}, "device": {"device_id": first}}
    for name, pinned in asks.items():
        await store.messages.enqueue(user_id, NewMessage(
            phone_numbers=["+19162255887"], text=name, id=name, **pinned))
    device = DeviceIdentity(first, user_id)
    await store.messages.apply_updates(device, [
        StateUpdate(id=name, state=ProcessState.PROCESSED, sim_number=1) for name in asks])
    result = await store.messages.apply_updates(device, [StateUpdate(
        id=name, state=ProcessState.FAILED, attempts=tried, failover=True,
        recipients=[RecipientUpdate("+19162255887", ProcessState.FAILED, "CMS ERROR 38")])
        for name in asks])
    assert result == {"free": ProcessState.PENDING, "sim": ProcessState.FAILED,
                      "device": ProcessState.FAILED}
    moved = await store.messages.get(user_id, "free")
    assert moved.device_id == second != down and moved.sim_used is None
    assert [r.state for r in moved.recipients] == ["Pending"]
    assert [a["device_id"] for a in moved.attempts] == [first, first]
    assert [m.ext_id for m in await store.messages.pending(second)] == ["free"]

    # the spare fails it too: three attempts used, it fails where it is
    await store.messages.apply_updates(DeviceIdentity(second, user_id), [
        StateUpdate(id="free", state=ProcessState.PROCESSED, sim_number=1)])
    last = await store.messages.apply_updates(DeviceIdentity(second, user_id), [StateUpdate(
        id="free", state=ProcessState.FAILED, failover=True, attempts=[
            {"sim_number": 1, "device_id": second, "error": "CMS ERROR 38", "at": "y"}])])
    assert last == {"free": ProcessState.FAILED}


async def test_the_queue_limit_counts_again_near_the_limit_and_estimates_well_below(
        store_url, tmp_path):
    """Well below the limit a count stands for a second, plus what this process accepted;
    messages another process queued meanwhile are seen once the count is due or the
    limit is near, so the limit itself holds."""
    gateway = await Gateway.open(Settings(data_dir=tmp_path, database_url=store_url),
                                 background=False)
    try:
        user_id, device_id = await _user_and_device(gateway)

        async def place(limit: QueueLimit) -> int:
            async with gateway.sessions() as session:
                await limit.take_place(session, device_id)
                return session.info["queued"][device_id]

        async def queue(count: int) -> None:  # "another process"
            for _ in range(count):
                await gateway.messages.enqueue(user_id, _message())

        await queue(3)
        far = QueueLimit(10_000)
        assert await place(far) == 4  # counted: 3 waiting, and this one
        far.accepted([device_id])
        await queue(2)
        assert await place(far) == 5  # the estimate: 3 counted + 1 accepted, and this one

        near = QueueLimit(6)
        assert await place(near) == 6  # counted every time near the limit: 5 + this one
        await queue(1)
        with pytest.raises(QueueFull, match="already has 6 messages waiting"):
            await place(near)
    finally:
        await gateway.close()
