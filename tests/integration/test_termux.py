"""The Termux backend against fake termux-* commands that answer as the real ones do
(tests/termux_phone.py says where each answer comes from)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from datetime import UTC, datetime

import pytest

from simgate.agent.backends.base import SendError, SimState
from simgate.agent.backends.termux import TermuxBackend
from tests.conftest import wait_until
from tests.termux_phone import ALL_PERMISSIONS, FakePhone


@pytest.fixture
def phone(tmp_path, monkeypatch):
    directory = tmp_path / "bin"
    directory.mkdir()
    monkeypatch.setenv("PATH", f"{directory}:/usr/bin:/bin")
    return FakePhone(directory)


# -- sending: handed to the phone, not confirmed --------------------------------------

async def test_a_send_is_handed_to_the_phone_with_the_text_on_stdin(phone):
    text = '-n +1 "quoted" $(rm -rf /) `x`\nsecond line; ünïcode ✓'
    result = await TermuxBackend().send(1, "+19162255887", text=text)
    assert result.parts == 1 and not result.confirmed and result.references == []
    (sent,) = phone.sent
    assert sent["argv"] == ["-n", "+19162255887", "-s", "1"]  # the text is not an argument
    assert (sent["recipients"], sent["slot"], sent["text"]) == (["+19162255887"], 1, text)


async def test_the_default_sim_is_left_to_the_phone(phone):
    await TermuxBackend().send(None, "+19162255887", text="default SIM")
    assert phone.sent[-1]["argv"] == ["-n", "+19162255887"] and phone.sent[-1]["slot"] == -1


async def test_a_slot_the_phone_does_not_have_is_refused_before_sending(phone):
    with pytest.raises(SendError, match="SIM 3 not found; this phone has 2 SIM slot"):
        await TermuxBackend().send(2, "+19162255887", text="x")
    assert phone.sent == []


async def test_a_list_of_numbers_is_not_one_recipient(phone):
    with pytest.raises(SendError, match="not one phone number"):
        await TermuxBackend().send(0, "+1555,+1666", text="x")
    assert phone.sent == []


# -- the permission answer, recognised everywhere --------------------------------------

async def test_a_missing_send_permission_fails_the_send_saying_what_to_grant(phone):
    phone.set(granted=["READ_PHONE_STATE", "READ_SMS", "READ_CONTACTS"])
    with pytest.raises(SendError, match=r"lacks the permission SEND_SMS: grant SMS in Android "
                                        r"Settings -> Apps -> Termux:API") as error:
        await TermuxBackend().send(None, "+19162255887", text="x")
    assert error.value.permanent and phone.sent == []


async def test_a_missing_phone_permission_shows_on_every_slot(phone):
    phone.set(granted=["SEND_SMS", "READ_SMS", "READ_CONTACTS"])
    sims = await TermuxBackend(sims=2).sims()
    assert [s.state for s in sims] == [SimState.ERROR, SimState.ERROR]
    assert all("READ_PHONE_STATE: grant Phone" in s.detail for s in sims)
    assert "SIM state None" not in sims[0].detail
    with pytest.raises(SendError, match="READ_PHONE_STATE"):  # -s needs it to find the slot
        await TermuxBackend().send(1, "+19162255887", text="x")


async def test_a_missing_sms_permission_does_not_stop_the_inbox_poll(phone, tmp_path, caplog):
    phone.set(granted=["READ_PHONE_STATE", "SEND_SMS"])
    phone.receive(7, "+12025550101", "waiting", datetime.now(UTC))
    state = tmp_path / "inbox.json"
    events = TermuxBackend(state_path=state, poll_interval=0.05).events()
    task = asyncio.ensure_future(anext(events))
    await wait_until(lambda: "READ_SMS, READ_CONTACTS: grant Contacts and SMS" in caplog.text,
                     timeout=10)
    assert not task.done()  # still polling, no TypeError
    phone.set(granted=ALL_PERMISSIONS)
    await wait_until(state.exists, timeout=10)  # the first answer: id 7 is history
    phone.receive(8, "+12025550101", "after the grant", datetime.now(UTC))
    sms = await asyncio.wait_for(task, 10)
    assert (sms.ident, sms.text) == ("termux:8", "after the grant")


# -- SIM state: only what Termux:API can tell ------------------------------------------

async def test_a_multi_sim_phone_reports_unknown_per_slot_not_ready(phone):
    sims = await TermuxBackend().sims()
    assert [(s.slot, s.state) for s in sims] == [(0, SimState.UNKNOWN), (1, SimState.UNKNOWN)]
    assert "default SIM only (ready, Carrier A)" in sims[0].detail


@pytest.mark.parametrize(("reported", "state"), [
    ("ready", SimState.READY), ("pin_required", SimState.PIN_REQUIRED),
    ("absent", SimState.ABSENT), ("unknown", SimState.UNKNOWN), ("7", SimState.UNKNOWN)])
async def test_a_single_sim_phone_reports_the_state_of_its_slot(phone, reported, state):
    phone.set(phone_count=1, active_slots=[0], sim_state=reported)
    (sim,) = await TermuxBackend().sims()
    assert sim.state is state
    if state is SimState.READY:
        assert sim.operator == "Carrier A"


# -- incoming: no SIM rather than a wrong one, local times -----------------------------

@pytest.fixture
def phone_timezone(monkeypatch):
    """The phone (and this agent) in New York: `received` is local time there."""
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


async def test_incoming_sms_have_no_sim_and_the_right_instant(phone, tmp_path, phone_timezone):
    state = tmp_path / "inbox.json"
    phone.receive(5, "+12025550101", "old", datetime(2026, 11, 25, 7, 0, tzinfo=UTC))
    events = TermuxBackend(state_path=state, poll_interval=0.05).events()
    task = asyncio.ensure_future(anext(events))
    await wait_until(state.exists, timeout=10)  # the first poll: id 5 is history
    assert json.loads(state.read_text()) == {"last_id": 5}
    at = datetime(2026, 11, 25, 7, 1, 30, tzinfo=UTC)
    phone.receive(6, "+12025550101", "new one", at, contact="Alice")
    sms = await asyncio.wait_for(task, 10)
    assert (sms.ident, sms.text, sms.sender, sms.slot) == ("termux:6", "new one",
                                                           "+12025550101", None)
    assert sms.received_at == at  # 02:01:30 in New York, read back as 07:01:30 UTC
    # the mark moves once the consumer comes back for more: a crash before that re-emits
    # id 6 (same ident, so the server keeps one), never skips it
    assert json.loads(state.read_text()) == {"last_id": 5}
    following = asyncio.ensure_future(anext(events))
    await wait_until(lambda: json.loads(state.read_text()) == {"last_id": 6}, timeout=10)
    following.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await following
    restarted = TermuxBackend(state_path=state, poll_interval=0.05).events()
    phone.receive(9, "+12025550102", "third", at)
    sms = await asyncio.wait_for(anext(restarted), 10)  # id 6 is not emitted again
    assert sms.ident == "termux:9"


# -- a Termux:API that does not answer --------------------------------------------------

async def test_every_call_times_out_saying_what_to_check(phone, tmp_path, caplog):
    phone.set(hang=True)
    backend = TermuxBackend(sims=2, timeout=0.5, state_path=tmp_path / "inbox.json",
                            poll_interval=0.05)
    sims = await backend.sims()
    assert all(s.state is SimState.ERROR and "no answer within 0.5 s" in s.detail
               and "Termux:API app" in s.detail for s in sims)
    with pytest.raises(SendError, match="termux-sms-send gave no answer within 0.5 s.*battery"):
        await backend.send(0, "+19162255887", text="x")
    events = backend.events()
    task = asyncio.ensure_future(anext(events))
    await wait_until(lambda: "termux-sms-list gave no answer" in caplog.text, timeout=10)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def test_missing_termux_api_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    sims = await TermuxBackend(sims=2).sims()
    assert all(s.state is SimState.ERROR and "pkg install termux-api" in s.detail for s in sims)
    with pytest.raises(SendError, match="pkg install termux-api"):
        await TermuxBackend().send(None, "+19162255887", text="x")
