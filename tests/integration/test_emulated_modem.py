"""The AT driver against the emulated modem over real pseudo-terminals."""

from __future__ import annotations

import asyncio
import threading

import pytest

from simgate.agent.backends.at import AtBackend
from simgate.agent.backends.base import DeliveryReport, IncomingSms, SendError, SimState
from simgate.agent.backends.emulator import EmulatedNetwork, EmulatorBackend


@pytest.fixture
async def modem(request):
    faults = getattr(request, "param", None)
    backend = EmulatorBackend(sims=2, faults=faults)
    await backend.start()
    yield backend
    await backend.close()


async def next_event(backend, kind, within=3.0):
    events = backend.events()
    async with asyncio.timeout(within):
        while True:
            event = await anext(events)
            if isinstance(event, kind):
                return event


async def test_two_ready_sims_with_numbers_and_operator(modem):
    sims = await modem.sims()
    assert [(s.slot, s.state, s.phone_number, s.operator) for s in sims] == [
        (0, SimState.READY, "+12025550101", "simgate Mobile"),
        (1, SimState.READY, "+12025550102", "simgate Mobile"),
    ]
    assert all(s.signal == 21 and s.iccid for s in sims)
    assert modem.network.ports[0].startswith("/dev/pts/")


async def test_send_goes_through_the_chosen_slot(modem):
    result = await modem.send(1, "+19162255887", text="via SIM 2", delivery_report=False)
    assert result.parts == 1 and result.references
    record = modem.network.sent[-1]
    assert (record.slot, record.destination, record.text) == (1, "+19162255887", "via SIM 2")


async def test_sim_to_sim_arrives_as_incoming_with_its_sender(modem):
    await modem.send(0, "+12025550102", text="hello SIM 2", delivery_report=False)
    sms = await next_event(modem, IncomingSms)
    assert (sms.slot, sms.sender, sms.text) == (1, "+12025550101", "hello SIM 2")


async def test_multipart_unicode_is_reassembled(modem):
    text = "Привет, мир! 👋 " * 12
    result = await modem.send(0, "+12025550102", text=text, delivery_report=False)
    assert result.parts > 1
    sms = await next_event(modem, IncomingSms)
    assert sms.text == text


async def test_data_sms(modem):
    await modem.send(0, "+12025550102", data=b"\x01\x02", port=53739, delivery_report=False)
    sms = await next_event(modem, IncomingSms)
    assert (sms.data, sms.port, sms.text) == (b"\x01\x02", 53739, None)


async def test_delivery_report_matches_the_reference(modem):
    result = await modem.send(0, "+19162255887", text="report me")
    report = await next_event(modem, DeliveryReport)
    assert report.delivered and (report.slot, report.reference) == (0, result.references[0])


async def test_identical_texts_are_two_messages(modem):
    for _ in range(2):
        await modem.network.deliver(0, "+19162255887", "same text")
    first = await next_event(modem, IncomingSms)
    second = await next_event(modem, IncomingSms)
    assert first.text == second.text == "same text"
    assert first.ident != second.ident


@pytest.mark.parametrize("modem", [{1: {"pin": True}}], indirect=True)
async def test_pin_locked_slot(modem):
    sims = await modem.sims()
    assert sims[0].state is SimState.READY
    assert sims[1].state is SimState.PIN_REQUIRED and "PIN" in sims[1].detail
    with pytest.raises(SendError, match="311.*PIN") as error:
        await modem.send(1, "+19162255887", text="x")
    assert error.value.code == 311


@pytest.mark.parametrize("modem", [{1: {"absent": True}}], indirect=True)
async def test_empty_slot(modem):
    sim = (await modem.sims())[1]
    assert sim.state is SimState.ABSENT and "insert a SIM" in sim.detail


@pytest.mark.parametrize("modem", [{0: {"no_network": True}}], indirect=True)
async def test_no_network(modem):
    sim = (await modem.sims())[0]
    assert sim.state is SimState.NO_NETWORK and "not registered" in sim.detail
    with pytest.raises(SendError, match="331") as error:
        await modem.send(0, "+19162255887", text="x")
    assert error.value.code == 331 and not error.value.permanent


@pytest.mark.parametrize("modem", [{0: {"fail": 1.0}}], indirect=True)
async def test_failure_rate(modem):
    with pytest.raises(SendError, match="38 \\(network out of order\\)"):
        await modem.send(0, "+19162255887", text="x")
    assert (await modem.send(1, "+19162255887", text="x", delivery_report=False)).parts == 1


async def test_missing_port_is_an_error_state_not_an_exception():
    backend = AtBackend(["/dev/does-not-exist"])
    await backend.start()
    try:
        sim = (await backend.sims())[0]
        assert sim.state is SimState.ERROR and "/dev/does-not-exist" in sim.detail
        with pytest.raises(SendError):
            await backend.send(0, "+19162255887", text="x")
    finally:
        await backend.close()


def _python_gsmmodem_round_trip(sender_port: str, receiver_port: str) -> tuple:
    """python-gsmmodem, unchanged, on two emulated SIMs (blocking: run in a thread)."""
    from gsmmodem.modem import GsmModem

    received: list = []
    arrived, reported = threading.Event(), threading.Event()
    reports: list = []
    receiver = GsmModem(receiver_port, 115200,
                        smsReceivedCallbackFunc=lambda sms: (received.append(sms), arrived.set()))
    # the sender hears its status report: closed before, its reading thread would time out
    sender = GsmModem(sender_port, 115200, smsStatusReportCallback=lambda report: (
        reports.append(report), reported.set()))
    receiver.connect()
    sender.connect()
    try:
        identity = (sender.manufacturer, sender.model, sender.networkName, sender.signalStrength)
        sent = sender.sendSms("+12025550102", "Hello via python-gsmmodem: ünïcode ✓",
                              waitForDeliveryReport=False)
        arrived.wait(15)
        reported.wait(15)
        return (identity, sent.reference, [(sms.number, sms.text) for sms in received],
                [(r.reference, r.status) for r in reports])
    finally:
        sender.close()
        receiver.close()


async def test_python_gsmmodem_works_unchanged():
    from gsmmodem.modem import StatusReport

    async with EmulatedNetwork(2) as network:
        identity, reference, received, reports = await asyncio.to_thread(
            _python_gsmmodem_round_trip, *network.ports)
    assert identity == ("simgate", "simgate emulated GSM modem", "simgate Mobile", 21)
    assert reference == 1
    assert received == [("+12025550101", "Hello via python-gsmmodem: ünïcode ✓")]
    assert reports == [(1, StatusReport.DELIVERED)]


async def test_a_crafted_ucs2_sms_with_a_half_pair_arrives_with_u_fffd(modem):
    from simgate.sms import pdu
    from tests.crafted import POISON_TEXT, POISON_UD, ucs2_submit

    await modem.at.modems[0].send_pdu(pdu.Part(*ucs2_submit("+12025550102", POISON_UD)))
    sms = await next_event(modem, IncomingSms)
    assert (sms.slot, sms.sender, sms.text) == (1, "+12025550101", POISON_TEXT)
    await modem.send(0, "+12025550102", text="and the next one", delivery_report=False)
    assert (await next_event(modem, IncomingSms)).text == "and the next one"
