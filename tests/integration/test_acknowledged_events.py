"""Nothing is let go before it is taken: an SMS stays on the SIM, and a status report owed
by the network, until the consumer acknowledges it, and a crash in between (the emulated
network and its SIMs keep their memory in a file, as real ones outlive the host) brings
it back after the restart, with the same identity."""

from __future__ import annotations

import asyncio
import contextlib

from simgate.agent.backends.at import AtBackend
from simgate.agent.backends.base import DeliveryReport, IncomingSms
from simgate.agent.backends.emulated_memory import NetworkMemory
from simgate.agent.backends.emulator import EmulatedNetwork
from tests.conftest import wait_until

OUTSIDE = "+19162255887"
SIM2 = "+12025550102"
WAIT = 15.0


@contextlib.asynccontextmanager
async def gateway_host(state, faults=None):
    """The emulated modems and the driver on them; leaving it is the crash: nothing
    is acknowledged or cleaned up on the way out."""
    network = EmulatedNetwork(2, faults, state_path=state)
    network.start()
    backend = AtBackend(network.ports)
    await backend.start()
    try:
        yield network, backend
    finally:
        await backend.close()
        network.close()


def remembered(state, what, slot):
    """What the network's file holds for `slot`: its "stored" SMS or "owed" reports."""
    memory = NetworkMemory(state)
    try:
        return getattr(memory, what)(slot)
    finally:
        memory.close()


async def next_event(backend, kind):
    events = backend.events()
    async with asyncio.timeout(WAIT):
        while not isinstance(event := await anext(events), kind):
            pass
    return event


async def test_an_sms_leaves_the_sim_only_once_acknowledged(tmp_path):
    async with gateway_host(tmp_path / "network.db") as (network, backend):
        await network.deliver(0, OUTSIDE, "keep me")
        sms = await next_event(backend, IncomingSms)
        assert sms.text == "keep me"
        assert len(network.sims[0].storage["SM"]) == 1  # read, still on the SIM
        await sms.acknowledge()
        assert network.sims[0].storage["SM"] == {}


async def test_an_sms_not_acknowledged_at_a_crash_is_read_again_with_its_identity(tmp_path):
    state = tmp_path / "network.db"
    async with gateway_host(state) as (network, backend):
        await network.deliver(0, OUTSIDE, "across the crash")
        before = await next_event(backend, IncomingSms)
    async with gateway_host(state) as (network, backend):
        again = await next_event(backend, IncomingSms)
        assert (again.text, again.ident) == ("across the crash", before.ident)
        await again.acknowledge()
    assert remembered(state, "stored", 0) == []  # taken at last: a third start finds none


async def test_a_report_not_acknowledged_at_a_crash_comes_again(tmp_path):
    state = tmp_path / "network.db"
    async with gateway_host(state) as (network, backend):
        sent = await backend.send(1, SIM2, text="report me", delivery_report=True)
        report = await next_event(backend, DeliveryReport)
        assert report.reference == sent.references[0] and report.delivered
        assert len(remembered(state, "owed", 1)) == 1  # passed on, not acknowledged
    async with gateway_host(state) as (network, backend):
        again = await next_event(backend, DeliveryReport)
        assert (again.slot, again.reference, again.delivered) == (1, report.reference, True)
        await again.acknowledge()
        assert remembered(state, "owed", 1) == []


async def test_a_report_still_in_the_network_at_a_crash_comes_after_the_restart(tmp_path):
    state = tmp_path / "network.db"
    async with gateway_host(state, {0: {"report_delay": 600}}) as (network, backend):
        sent = await backend.send(0, SIM2, text="slow network", delivery_report=True)
        assert len(remembered(state, "owed", 0)) == 1  # owed from the send's answer on
    async with gateway_host(state) as (network, backend):
        report = await next_event(backend, DeliveryReport)
        assert (report.slot, report.reference) == (0, sent.references[0])
        await report.acknowledge()
        await wait_until(lambda: remembered(state, "owed", 0) == [], timeout=WAIT)
