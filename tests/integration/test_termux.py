"""The Termux backend against fake termux-* executables that record their arguments."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys

import pytest

from simgate.agent.backends.base import SendError, SimState
from simgate.agent.backends.termux import TermuxBackend
from tests.conftest import wait_until

DEVICEINFO = {"phone_count": 2, "sim_state": "ready", "sim_operator_name": "Carrier A",
              "network_operator_name": "Carrier A"}


def fake(bin_dir, name, *, output="", exit_code=0, stderr=""):
    """A fake command: appends its argv (JSON) to calls.log, prints output, exits."""
    script = bin_dir / name
    script.write_text(
        f"#!{sys.executable}\n"
        "import json, sys, pathlib\n"
        f"log = pathlib.Path({str(bin_dir / 'calls.log')!r})\n"
        "log.open('a').write(json.dumps(sys.argv) + '\\n')\n"
        f"sys.stdout.write({output!r})\n"
        f"sys.stderr.write({stderr!r})\n"
        f"sys.exit({exit_code})\n"
    )
    script.chmod(0o755)


def calls(bin_dir):
    path = bin_dir / "calls.log"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture
def bin_dir(tmp_path, monkeypatch):
    directory = tmp_path / "bin"
    directory.mkdir()
    monkeypatch.setenv("PATH", f"{directory}:/usr/bin:/bin")
    return directory


async def test_dual_sim_state(bin_dir):
    fake(bin_dir, "termux-telephony-deviceinfo", output=json.dumps(DEVICEINFO))
    sims = await TermuxBackend().sims()
    assert [(s.slot, s.state) for s in sims] == [(0, SimState.READY), (1, SimState.READY)]
    assert sims[0].operator == "Carrier A"


async def test_locked_sim(bin_dir):
    fake(bin_dir, "termux-telephony-deviceinfo",
         output=json.dumps({**DEVICEINFO, "sim_state": "pin_required"}))
    assert (await TermuxBackend().sims())[0].state is SimState.PIN_REQUIRED


async def test_send_through_slot_passes_the_text_as_one_argument(bin_dir):
    fake(bin_dir, "termux-sms-send")
    text = 'Hello "quoted" world; $(rm -rf /) `x`'
    result = await TermuxBackend().send(1, "+19162255887", text=text)
    assert result.parts == 1
    assert calls(bin_dir)[-1][1:] == ["-n", "+19162255887", "-s", "1", text]
    await TermuxBackend().send(None, "+19162255887", text="default SIM")
    assert calls(bin_dir)[-1][1:] == ["-n", "+19162255887", "default SIM"]


async def test_failing_send_raises_with_stderr(bin_dir):
    fake(bin_dir, "termux-sms-send", exit_code=1, stderr="Generic failure")
    with pytest.raises(SendError, match="Generic failure"):
        await TermuxBackend().send(0, "+19162255887", text="x")


async def test_missing_termux_api_says_how_to_install(bin_dir):
    sims = await TermuxBackend(sims=2).sims()
    assert all(s.state is SimState.ERROR and "pkg install termux-api" in s.detail for s in sims)
    with pytest.raises(SendError, match="pkg install termux-api"):
        await TermuxBackend().send(0, "+19162255887", text="x")


async def test_permission_denied_says_what_to_grant(bin_dir):
    fake(bin_dir, "termux-telephony-deviceinfo", output="", exit_code=1,
         stderr="Permission denial: READ_PHONE_STATE")
    sim = (await TermuxBackend().sims())[0]
    assert sim.state is SimState.ERROR and "Permissions" in sim.detail


async def test_inbox_polling_emits_only_new_messages_once(bin_dir, tmp_path):
    old = {"_id": 5, "number": "+12025550101", "body": "old", "received": "2026-11-25 07:00:00"}
    new = {"_id": 6, "number": "+12025550101", "body": "new one",
           "received": "2026-11-25 07:01:00"}
    fake(bin_dir, "termux-sms-list", output=json.dumps([old]))
    state = tmp_path / "inbox.json"
    events = TermuxBackend(state_path=state, poll_interval=0.05).events()
    task = asyncio.ensure_future(anext(events))
    await wait_until(state.exists, timeout=5)  # the first poll: id 5 is history
    assert json.loads(state.read_text()) == {"last_id": 5}
    fake(bin_dir, "termux-sms-list", output=json.dumps([old, new]))
    sms = await asyncio.wait_for(task, 5)
    assert (sms.ident, sms.text, sms.sender, sms.slot) == ("termux:6", "new one",
                                                           "+12025550101", 0)
    # the mark moves once the consumer comes back for more: a crash before that re-emits
    # id 6 (same ident, so the server keeps one), never skips it
    assert json.loads(state.read_text()) == {"last_id": 5}
    following = asyncio.ensure_future(anext(events))
    await wait_until(lambda: json.loads(state.read_text()) == {"last_id": 6}, timeout=5)
    following.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await following
    restarted = TermuxBackend(state_path=state, poll_interval=0.05).events()
    with pytest.raises(TimeoutError):  # a restart does not emit id 6 again
        await asyncio.wait_for(anext(restarted), 0.5)
    await asyncio.sleep(0.1)  # let cancelled polls reap their subprocesses
