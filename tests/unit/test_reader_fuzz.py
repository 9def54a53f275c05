"""The AT reader over whatever a modem, or a network, or anyone who knows the SIM's
number, may hand it: arbitrary SMS-DELIVER and status-report PDUs, garbled ones, and
arbitrary lines.

Nothing raises out of the reader, and every SMS is either forwarded (with text any JSON
and store can hold) or set aside with its reason. SIMGATE_DECODER_FUZZ_EXAMPLES sets the
examples per property (default 300; a deeper run: 5000).
"""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simgate.agent.backends.at import AtModem
from simgate.agent.backends.base import DeliveryReport, IncomingSms, Unreadable
from simgate.sms import pdu

EXAMPLES = settings(max_examples=int(os.environ.get("SIMGATE_DECODER_FUZZ_EXAMPLES", "300")),
                    deadline=None, suppress_health_check=[HealthCheck.too_slow])
SENDER = "+12025550101"


def octets(size: int) -> st.SearchStrategy[bytes]:
    return st.binary(min_size=size, max_size=size)


@st.composite
def address(draw: st.DrawFn) -> bytes:
    """An address field: digits (a length in semi-octets), a type, and BCD or junk."""
    digits = draw(st.integers(0, 20))
    kind = draw(st.sampled_from([0x91, 0x81, 0xD0, 0xA1]) | st.integers(0, 255))
    return bytes([digits, kind]) + draw(octets((digits + 1) // 2))


@st.composite
def deliver(draw: st.DrawFn) -> str:
    """An SMS-DELIVER (MTI 00) built field by field, any DCS, UDH flag and user data."""
    smsc = draw(st.sampled_from([b"\x00", bytes.fromhex("07912120550500F0")]))
    first = draw(st.integers(0, 255)) & ~0x03
    dcs = draw(st.sampled_from([0x00, 0x04, 0x08, 0xF2, 0x18]) | st.integers(0, 255))
    user = draw(st.binary(max_size=140))
    if dcs == 0x08 and draw(st.booleans()):  # UCS-2 with half pairs among the units
        units = draw(st.lists(st.sampled_from([0xD800, 0xDBFF, 0xDC00, 0xDFFF, 0x0041])
                              | st.integers(0, 0xFFFF), max_size=70))
        user = b"".join(u.to_bytes(2, "big") for u in units)
    udl = draw(st.sampled_from([len(user), len(user) * 8 // 7]) | st.integers(0, 255))
    tpdu = (bytes([first]) + draw(address()) + bytes([draw(st.integers(0, 255)), dcs])
            + draw(octets(7)) + bytes([udl]) + user)
    return (smsc + tpdu).hex().upper()


@st.composite
def status_report(draw: st.DrawFn) -> str:
    """An SMS-STATUS-REPORT (MTI 10): reference, recipient, two timestamps, a status."""
    first = (draw(st.integers(0, 255)) & ~0x03) | 0x02
    tpdu = (bytes([first, draw(st.integers(0, 255))]) + draw(address()) + draw(octets(14))
            + bytes([draw(st.integers(0, 255))]) + draw(st.binary(max_size=8)))
    return ("00" + tpdu.hex()).upper()


@st.composite
def mangled(draw: st.DrawFn) -> str:
    """A well-formed DELIVER of some text, then cut, stretched or with octets changed."""
    text = draw(st.text(max_size=80))
    raw = bytearray(bytes.fromhex(pdu.encode_deliver(
        SENDER, text=text, at=datetime(2026, 1, 1, tzinfo=UTC), reference=0)[0]))
    for position, value in draw(st.lists(st.tuples(st.integers(0, len(raw) - 1),
                                                   st.integers(0, 255)), max_size=4)):
        raw[position] = value
    raw = raw[:draw(st.integers(1, len(raw)))] + draw(st.binary(max_size=4))
    return raw.hex().upper()


any_pdu = deliver() | status_report() | mangled() | st.binary(min_size=1, max_size=60).map(
    lambda b: b.hex().upper())
# what else a modem may say, and what a bad cable may make of it
LINE_HEADS = ["+CMT: ,", "+CDS: ", "+CMTI: \"SM\",", "+CDSI: \"SR\",", "+CREG: ", "+CMGL: ",
              "RDY", "+CFUN: 1", "OK", "ERROR", "+CMS ERROR: ", "> ", "AT", ""]
lines = st.tuples(st.sampled_from(LINE_HEADS), st.text(max_size=40)).map("".join) | st.binary(
    max_size=60).map(lambda b: b.decode("latin-1"))


def read(data: bytes) -> tuple[list[object], list[BaseException]]:
    """Feed `data` to a modem's reader as its port would; the events it passed on, and
    what escaped any task the reader started (its reads of stored SMS, its restarts)."""
    async def run() -> tuple[list[object], list[BaseException]]:
        loop = asyncio.get_running_loop()
        started: list[asyncio.Task] = []

        def factory(loop, coro, **options):
            task = asyncio.Task(coro, loop=loop, **options)
            started.append(task)
            return task

        loop.set_task_factory(factory)
        modem = AtModem("fuzz", 0, reopen_after=3600)
        reader = asyncio.StreamReader()
        reader.feed_data(data)
        reader.feed_eof()
        await modem._read_loop(reader)  # raises if anything escapes the reader
        for _ in range(20):  # the work it started runs, and fails quietly: no port
            await asyncio.sleep(0)
        await modem.close()
        await asyncio.sleep(0)
        escaped = [t.exception() for t in started
                   if t.done() and not t.cancelled() and t.exception() is not None]
        events = []
        while not modem.events.empty():
            events.append(modem.events.get_nowait())
        return events, escaped

    return asyncio.run(run())


def sendable(text: str | None) -> bool:
    """What the outbox can put on the wire: no UTF-16 half pair left."""
    try:
        return text is None or bool(text.encode("utf-8") or True)
    except UnicodeEncodeError:
        return False


@EXAMPLES
@given(any_pdu)
def test_every_pdu_routed_to_the_reader_is_forwarded_or_set_aside(hex_pdu):
    events, escaped = read(f"+CMT: ,{len(hex_pdu) // 2}\r\n{hex_pdu}\r\n".encode())
    assert escaped == []
    try:
        decoded = pdu.decode(hex_pdu)
    except Exception:  # noqa: BLE001 - what the reader must set aside
        decoded = None
    if decoded is not None and decoded.kind == "SMS-DELIVER" and decoded.concat and \
            decoded.concat[1] > 1 and not any(isinstance(e, Unreadable) for e in events):
        assert events == []  # one part of several: it waits for the others
        return
    assert len(events) == 1, events
    [event] = events
    assert isinstance(event, IncomingSms | DeliveryReport | Unreadable)
    if isinstance(event, IncomingSms):
        assert sendable(event.text)  # any JSON, any UTF-8, any store holds it
        assert event.sender == decoded.number
    if isinstance(event, Unreadable):
        assert event.reason and event.raw == hex_pdu


@EXAMPLES
@given(st.lists(lines, max_size=12))
def test_no_line_from_the_modem_raises_out_of_the_reader(said):
    events, escaped = read("".join(f"{line}\r\n" for line in said).encode("latin-1",
                                                                           "replace"))
    assert escaped == []
    for event in events:
        if isinstance(event, IncomingSms):
            assert sendable(event.text)


@EXAMPLES
@given(st.text(min_size=71, max_size=300), st.data())
def test_a_long_sms_with_a_half_pair_in_a_part_is_forwarded_whole(text, data):
    parts = pdu.encode_deliver(SENDER, text=text + "Ж", reference=7)  # UCS-2
    damaged = data.draw(st.integers(0, len(parts) - 1))
    parts[damaged] = parts[damaged][:-4] + "D800"  # its last unit: half a pair, alone
    events, escaped = read("".join(f"+CMT: ,{len(p) // 2}\r\n{p}\r\n" for p in parts).encode())
    assert escaped == []
    assert len(events) == 1 and isinstance(events[0], IncomingSms), events
    assert sendable(events[0].text) and events[0].sender == SENDER
