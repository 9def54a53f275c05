"""Properties of the PDU codec and segmentation, over texts hypothesis makes up.

Every text a user may send goes out and comes back unchanged, in as many parts as
segment_count() promised (the number the API answers before anything is encoded), each
part within what one SMS holds.
"""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simgate.sms import pdu

# GSM-7 letters, its extension table, Cyrillic, CJK and emoji: every encoding path
GSM = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCXYZÄÖÑÜ§¿abcxyzäöñüà"
EXTENDED = "^{}\\[~]|€"
texts = st.text(alphabet=st.one_of(st.sampled_from(GSM + EXTENDED), st.characters(
    codec="utf-8", exclude_categories=("Cs",))), max_size=400)
gsm_texts = st.text(alphabet=st.sampled_from(GSM + EXTENDED), max_size=700)
EXAMPLES = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])
NUMBER = "+12025550102"


def _data_coding(hex_pdu: str) -> int:
    raw = bytes.fromhex(hex_pdu)
    position = 1 + raw[0] + 2  # SMSC field, first octet, TP-MR
    position += 2 + (raw[position] + 1) // 2  # destination address
    return raw[position + 1]


def _user_data_length(hex_pdu: str) -> int:
    """TP-UDL: septets for GSM-7, octets for UCS-2 (header included)."""
    raw = bytes.fromhex(hex_pdu)
    position = 1 + raw[0] + 2
    position += 2 + (raw[position] + 1) // 2
    first = raw[1 + raw[0]]
    validity = {0x10: 1, 0x18: 7, 0x08: 7}.get(first & 0x18, 0)
    return raw[position + 2 + validity]


@EXAMPLES
@given(texts)
def test_any_text_goes_out_and_comes_back_unchanged(text):
    parts = pdu.encode_submit(NUMBER, text=text)
    decoded = [pdu.decode(p.hex) for p in parts]
    assert pdu.join_units("".join(d.text for d in decoded)) == text
    assert all(d.kind == "SMS-SUBMIT" and d.number == NUMBER for d in decoded)
    assert all(p.tpdu_length == len(bytes.fromhex(p.hex)) - 1 for p in parts)


@EXAMPLES
@given(texts)
def test_parts_are_as_many_as_counted_and_each_fits_one_sms(text):
    parts = pdu.encode_submit(NUMBER, text=text)
    assert len(parts) == pdu.segment_count(text)
    for part in parts:
        ucs2 = _data_coding(part.hex) & 0x0C == 0x08
        limit = 140 if ucs2 else 160  # octets of UCS-2, septets of GSM-7, header included
        assert _user_data_length(part.hex) <= limit
    if len(parts) > 1:
        references = {pdu.decode(p.hex).concat[:2] for p in parts}
        assert len(references) == 1, references
        ((_reference, total),) = references
        assert total == len(parts)
        assert [pdu.decode(p.hex).concat[2] for p in parts] == list(range(1, len(parts) + 1))


@EXAMPLES
@given(gsm_texts)
def test_gsm_text_stays_gsm7_and_is_counted_in_septets(text):
    parts = pdu.encode_submit(NUMBER, text=text)
    assert all(_data_coding(p.hex) & 0x0C == 0x00 for p in parts)
    septets = len(text) + sum(1 for c in text if c in EXTENDED)
    expected = 1 if septets <= 160 else None
    if expected:
        assert len(parts) == 1
    else:  # 153 a part, an extension character never split from its escape
        assert -(-septets // 153) <= len(parts) <= -(-septets // 152)


@EXAMPLES
@given(texts)
def test_what_a_sim_receives_reads_as_what_was_sent(text):
    at = datetime(2026, 11, 25, 7, 0, 5, tzinfo=UTC)
    parts = [pdu.decode(h) for h in pdu.encode_deliver("+12025550101", text=text, at=at)]
    assert pdu.join_units("".join(p.text for p in parts)) == text
    assert all(p.kind == "SMS-DELIVER" and p.number == "+12025550101" for p in parts)


@EXAMPLES
@given(st.binary(max_size=pdu.DATA_MAX_OCTETS), st.integers(0, 65535))
def test_any_data_sms_round_trips_with_its_port(data, port):
    (part,) = pdu.encode_submit(NUMBER, data=data, port=port)
    decoded = pdu.decode(part.hex)
    assert (decoded.data, decoded.port) == (data, port)
