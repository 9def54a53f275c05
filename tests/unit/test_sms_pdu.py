"""PDU round trips: GSM-7, UCS-2 with emoji, multipart, data SMS, status reports."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from simgate.sms import pdu

TEXTS = ["Hello", "Привет 👋", "x" * 300, "Привет, мир! 👋 " * 10, "€ [brackets] ^~"]


def _join(parts):
    return pdu.join_units("".join(p.text for p in parts))


@pytest.mark.parametrize("text", TEXTS)
def test_submit_round_trip(text):
    parts = [pdu.decode(p.hex) for p in pdu.encode_submit("+12025550102", text=text)]
    assert _join(parts) == text
    assert all(p.kind == "SMS-SUBMIT" and p.number == "+12025550102" for p in parts)
    assert len(parts) == pdu.segment_count(text)


@pytest.mark.parametrize("text", TEXTS)
def test_deliver_round_trip(text):
    at = datetime(2026, 11, 25, 7, 0, 5, tzinfo=UTC)
    parts = [pdu.decode(h) for h in pdu.encode_deliver("+12025550101", text=text, at=at)]
    assert _join(parts) == text
    assert parts[0].kind == "SMS-DELIVER" and parts[0].number == "+12025550101"
    assert parts[0].time == at
    if len(parts) > 1:
        references = {p.concat[0] for p in parts}
        assert len(references) == 1
        assert [p.concat[1:] for p in parts] == [(len(parts), i + 1) for i in range(len(parts))]


def test_segments():
    assert pdu.segment_count("a" * 160) == 1
    assert pdu.segment_count("a" * 161) == 2
    assert pdu.segment_count("я" * 70) == 1
    assert pdu.segment_count("я" * 71) == 2


def test_tpdu_length_is_the_pdu_without_smsc():
    for part in pdu.encode_submit("+12025550102", text="x" * 200):
        raw = bytes.fromhex(part.hex)
        assert part.tpdu_length == len(raw) - 1 - raw[0]


def test_data_sms_with_port():
    submit = pdu.encode_submit("+12025550101", data=b"\x00\x01\xff", port=53739)
    decoded = pdu.decode(submit[0].hex)
    assert (decoded.data, decoded.port) == (b"\x00\x01\xff", 53739)
    delivered = pdu.decode(pdu.encode_deliver("+12025550102", data=b"abc", port=53739)[0])
    assert (delivered.kind, delivered.data, delivered.port) == ("SMS-DELIVER", b"abc", 53739)
    with pytest.raises(ValueError, match="too long"):
        pdu.encode_submit("+12025550101", data=b"x" * 200, port=1)


def test_submit_becomes_the_same_deliver():
    for part in pdu.encode_submit("+12025550102", text="Привет 👋 " * 20):
        original = pdu.decode(part.hex)
        framed = pdu.decode(pdu.submit_to_deliver(part.hex, "+12025550101"))
        assert framed.kind == "SMS-DELIVER" and framed.number == "+12025550101"
        assert (framed.text, framed.concat) == (original.text, original.concat)


@pytest.mark.parametrize("delivered", [True, False])
def test_status_report(delivered):
    hex_pdu, length = pdu.encode_status_report(42, "+12025550102", delivered=delivered,
                                               submitted=datetime.now(UTC))
    report = pdu.decode(hex_pdu)
    assert (report.kind, report.reference, report.number) == ("SMS-STATUS-REPORT", 42,
                                                              "+12025550102")
    assert (report.status < 0x20) is delivered
    assert length == len(bytes.fromhex(hex_pdu)) - 1


def test_segment_count_answers_for_any_length_without_encoding():
    assert pdu.segment_count("a" * 65535) == -(-65535 // 153)  # beyond the 255 parts a PDU holds
    assert pdu.segment_count("я" * 65535) == -(-65535 // 67)


def data_coding(hex_pdu: str) -> int:
    """TP-DCS of an SMS-SUBMIT with an SMSC field in front."""
    raw = bytes.fromhex(hex_pdu)
    position = 1 + raw[0] + 2  # SMSC field, first octet, TP-MR
    position += 2 + (raw[position] + 1) // 2  # destination address
    return raw[position + 1]  # after TP-PID


def test_a_text_with_y_diaeresis_goes_as_ucs2():
    parts = pdu.encode_submit("+19162255887", text="naïve ÿ")
    assert len(parts) == pdu.segment_count("naïve ÿ") == 1
    assert data_coding(parts[0].hex) & 0x0C == 0x08  # UCS-2, as GSM-7 has no ÿ
    assert pdu.decode(parts[0].hex).text == "naïve ÿ"
    plain = pdu.encode_submit("+19162255887", text="naive")
    assert data_coding(plain[0].hex) & 0x0C == 0x00  # and GSM-7 where it can


@pytest.mark.parametrize("text", ["§ 5", "`quoted`", "esc \x1b here", "@" * 8, "x" * 152 + "@" * 8])
def test_texts_the_codec_library_got_wrong_come_back_unchanged(text):
    """Found by the property tests: "`" went out as "§" and "§" as UCS-2, the ESC character
    broke decoding, and an "@" ending a full last octet was lost."""
    parts = [pdu.decode(p.hex) for p in pdu.encode_submit("+12025550102", text=text)]
    assert _join(parts) == text
    assert len(parts) == pdu.segment_count(text)
    deliver = [pdu.decode(h) for h in pdu.encode_deliver("+12025550101", text=text,
                                                         at=datetime.now(UTC))]
    assert _join(deliver) == text


def test_a_lone_half_pair_in_ucs2_reads_as_u_fffd_and_says_so():
    from tests.crafted import POISON_TEXT, POISON_UD, ucs2_submit

    submit, _ = ucs2_submit("+12025550102", POISON_UD)
    deliver = pdu.decode(pdu.submit_to_deliver(submit, "+12025550101"))
    assert (deliver.kind, deliver.text, deliver.replaced) == ("SMS-DELIVER", POISON_TEXT, 1)
    deliver.text.encode("utf-8")  # any text holds it now: JSON, UTF-8, the store


def test_whole_text_joins_pairs_and_replaces_only_half_pairs():
    assert pdu.whole_text("\ud83d\udc4b hi") == ("👋 hi", 0)
    assert pdu.whole_text("a\udc4b\ud83d") == ("a\ufffd\ufffd", 2)
    assert pdu.whole_text("plain") == ("plain", 0)


def test_a_pair_split_across_parts_is_joined_after_reassembly():
    text = "x" * 66 + "👋" + "y" * 10  # the emoji's two units fall in two parts
    parts = [pdu.decode(h) for h in pdu.encode_deliver("+12025550101", text=text)]
    assert len(parts) == 2 and all(p.replaced == 0 for p in parts)
    assert pdu.whole_text("".join(p.text for p in parts)) == (text, 0)
