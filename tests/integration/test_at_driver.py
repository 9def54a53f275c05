"""The AT driver against what real modems do, over the emulator's real pseudo-terminals:
echo that stays on, unsolicited codes between a command and its answer, a late '>'
prompt, +CMS ERROR in the middle of a multipart send, a full message store, a modem that
restarts, and a port that vanishes and comes back."""

from __future__ import annotations

import asyncio

import pytest

from simgate.agent.backends.at import AtBackend
from simgate.agent.backends.base import DeliveryReport, IncomingSms, SendError, SimState
from simgate.agent.backends.emulator import EmulatedNetwork, EmulatorBackend
from tests.conftest import wait_until

OUTSIDE = "+19162255887"
WAIT = 15.0  # seconds for an event on a loaded machine


@pytest.fixture
async def modem(request):
    backend = EmulatorBackend(sims=2, faults=getattr(request, "param", None))
    await backend.start()
    yield backend
    await backend.close()


async def collect(backend, kind, count, within=WAIT):
    """The next `count` events of `kind`; those of other kinds are kept for later calls."""
    seen = vars(backend).setdefault("seen_by_tests", [])
    events = backend.events()
    async with asyncio.timeout(within):
        while sum(isinstance(e, kind) for e in seen) < count:
            event = await anext(events)
            seen.append(event)
            acknowledge = getattr(event, "acknowledge", None)  # SimChanged has none
            if acknowledge is not None:  # taken, as the agent does once journaled
                await acknowledge()
    found = [e for e in seen if isinstance(e, kind)][:count]
    for event in found:
        seen.remove(event)
    return found


async def round_trip(backend, earlier=()):
    """A multipart SIM-to-SIM send with a delivery report, and an SMS from outside;
    `earlier`: texts that were delivered to SIM 1 before."""
    text = "Всё в порядке? " * 8
    result = await backend.send(0, "+12025550102", text=text)
    assert result.parts > 1
    reports = await collect(backend, DeliveryReport, 1)
    assert reports[0].delivered and reports[0].reference in result.references
    await backend.network.deliver(0, OUTSIDE, "from outside")
    received = await collect(backend, IncomingSms, 2 + len(earlier))
    assert sorted((s.slot, s.text) for s in received) == sorted(
        [(0, "from outside"), (1, text), *((0, t) for t in earlier)])


@pytest.mark.parametrize("modem", [{0: {"echo": True}, 1: {"echo": True}}], indirect=True)
async def test_a_modem_that_keeps_echoing_is_understood(modem):
    sims = await modem.sims()
    assert [(s.state, s.phone_number) for s in sims] == [
        (SimState.READY, "+12025550101"), (SimState.READY, "+12025550102")]
    await round_trip(modem)


@pytest.mark.parametrize("modem", [{0: {"interleave": True}, 1: {"interleave": True}}],
                         indirect=True)
async def test_unsolicited_codes_between_a_command_and_its_answer(modem):
    # +CMTI / +CDS come right after the echo of the next command, before its answer
    early = [f"early {n}" for n in range(3)]
    for text in early:
        await modem.network.deliver(0, OUTSIDE, text)
    await round_trip(modem, early)
    assert (await modem.sims())[0].state is SimState.READY


@pytest.mark.parametrize("modem", [{0: {"prompt_delay": 1.5}}], indirect=True)
async def test_a_late_prompt_is_waited_for(modem):
    result = await modem.send(0, OUTSIDE, text="late prompt", delivery_report=False)
    assert result.parts == 1
    assert modem.network.sent[-1].text == "late prompt"


@pytest.mark.parametrize("modem", [{0: {"prompt_delay": 1.0}}], indirect=True)
async def test_a_prompt_later_than_the_timeout_fails_that_send_only(modem):
    at = modem.at.modems[0]
    at.timeout = 0.3
    with pytest.raises(SendError, match="timeout"):
        await modem.send(0, OUTSIDE, text="too late", delivery_report=False)
    at.timeout = 10.0
    # the late '>' and its answer do not pass for the next command's
    modem.network.sims[0].faults.prompt_delay = 0
    await modem.send(0, OUTSIDE, text="next one", delivery_report=False)
    assert [r.text for r in modem.network.sent] == ["next one"]
    assert (await modem.sims())[0].state is SimState.READY


@pytest.mark.parametrize("modem", [{0: {"fail_part": 2}}], indirect=True)
async def test_cms_error_in_the_middle_of_a_multipart_send(modem):
    with pytest.raises(SendError, match=r"38 \(network out of order\).*after 1 of 3 parts"
                       ) as error:
        await modem.send(0, OUTSIDE, text="x" * 400, delivery_report=False)
    assert error.value.code == 38 and not error.value.permanent
    assert modem.network.sent == []  # the network got part 1 only
    assert (await modem.send(0, OUTSIDE, text="short", delivery_report=False)).parts == 1


@pytest.mark.parametrize("modem", [{1: {"capacity": 1}}], indirect=True)
async def test_a_full_store_loses_nothing(modem):
    for n in range(5):  # one fits; the network holds the rest until there is room
        await modem.send(0, "+12025550102", text=f"number {n}", delivery_report=False)
    received = await collect(modem, IncomingSms, 5)
    assert sorted(s.text for s in received) == [f"number {n}" for n in range(5)]
    assert len({s.ident for s in received}) == 5


async def test_messages_stored_while_nobody_listened_fill_the_store_and_all_arrive():
    network = EmulatedNetwork(1, {0: {"capacity": 2}})
    network.start()
    try:
        for n in range(4):
            await network.deliver(0, OUTSIDE, f"while away {n}")
        assert len(network.sims[0].storage["SM"]) == 2 and len(network.sims[0].held) == 2
        backend = AtBackend(network.ports)
        await backend.start()
        try:
            received = await collect(backend, IncomingSms, 4)
            assert sorted(s.text for s in received) == [f"while away {n}" for n in range(4)]
            await wait_until(lambda: network.sims[0].storage["SM"] == {}, timeout=WAIT)
        finally:
            await backend.close()
    finally:
        network.close()


async def test_a_modem_that_restarts_is_set_up_again(modem):
    modem.network.sims[0].reset()  # power blip: echo on, text of +CNMI forgotten, RDY
    await wait_until(lambda: modem.network.sims[0].s.cnmi[3] == 1 and
                     not modem.network.sims[0].s.echo, timeout=WAIT)
    await round_trip(modem)  # the delivery report needs +CNMI set again


async def test_a_restart_during_a_send_fails_it_without_hanging(modem):
    sim = modem.network.sims[0]
    sim.faults.prompt_delay = 5.0
    sending = asyncio.ensure_future(modem.send(0, OUTSIDE, text="lost", delivery_report=False))
    await wait_until(lambda: sim._input is not None, timeout=WAIT)
    sim.faults.prompt_delay = 0
    sim.reset()
    with pytest.raises(SendError, match="restarted"):
        await asyncio.wait_for(sending, WAIT)
    await modem.send(0, OUTSIDE, text="after", delivery_report=False)
    assert [r.text for r in modem.network.sent] == ["after"]


async def test_a_port_that_vanishes_and_returns_is_reopened(tmp_path):
    network = EmulatedNetwork(1)
    network.start()
    link = tmp_path / "ttyUSB0"
    link.symlink_to(network.ports[0])
    backend = AtBackend([str(link)], reopen_after=0.2)
    await backend.start()
    try:
        assert (await backend.sims())[0].state is SimState.READY
        sim = network.sims[0]
        sim.close()  # unplugged
        await wait_until(lambda: backend.modems[0].error is not None, timeout=WAIT)
        gone = (await backend.sims())[0]
        assert gone.state is SimState.ERROR and str(link) in gone.detail
        # the advice of a lost modem, or, once a reopen has found the port gone, of a
        # port that cannot be opened: either says what to check
        with pytest.raises(SendError, match="cable and power|modem is plugged in"):
            await backend.send(0, OUTSIDE, text="x")
        link.unlink()
        link.symlink_to(sim.replug())  # plugged back: a new pty behind the same name
        await wait_until(lambda: backend.modems[0].error is None, timeout=WAIT)
        await network.deliver(0, OUTSIDE, "welcome back")  # noticed without a send
        (sms,) = await collect(backend, IncomingSms, 1)
        assert sms.text == "welcome back"
        assert (await backend.send(0, OUTSIDE, text="y", delivery_report=False)).parts == 1
    finally:
        await backend.close()
        network.close()
