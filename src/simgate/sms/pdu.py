"""SMS PDUs (GSM 03.40) over the `gsmmodem.pdu` codec.

The library encodes SMS-SUBMIT (GSM-7 / UCS-2, concatenation, status-report request)
and decodes every type; what it lacks is added here: SUBMIT of data SMS with port
addressing, and the network side's SMS-DELIVER and SMS-STATUS-REPORT, which the
emulated modem sends.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

from gsmmodem import pdu as codec

# The library's GSM-7 extension table maps "ÿ" to the number 10 (a slip for the page break),
# which makes any text with "ÿ" fail to encode; "ÿ" is not GSM-7 at all: it goes as UCS-2.
codec.GSM7_EXTENDED.pop("\u00ff", None)
# Its basic table has "`" where GSM 03.38 has "§" (0x5F): "`" would reach phones as "§",
# and "§" went as UCS-2. And it encodes the ESC character as 0x1B, the escape to the
# extension table, which no receiver reads back. Put "§" in its place, and in the escape's
# place a character beyond the BMP, which never reaches the codec (_utf16_units).
codec.GSM7_BASIC = (codec.GSM7_BASIC[:0x1B] + "\U0010ffff" + codec.GSM7_BASIC[0x1C:0x5F]
                    + "§" + codec.GSM7_BASIC[0x60:])

DATA_MAX_OCTETS = 140 - 7  # user data minus the 16-bit port UDH
SMSC = "+12025550000"  # the emulated network's service centre


class Part(NamedTuple):
    """One PDU to hand to AT+CMGS: its hex and the TPDU length the command wants."""

    hex: str
    tpdu_length: int


def encode_submit(number: str, *, text: str | None = None, data: bytes | None = None,
                  port: int | None = None, status_report: bool = True,
                  reference: int = 0) -> list[Part]:
    """SMS-SUBMIT PDUs for one recipient, split into parts (with a concat UDH) when long.

    `reference` is the TP-MR and the concatenation reference shared by the parts.
    """
    if data is not None:
        if len(data) > DATA_MAX_OCTETS:
            raise ValueError(f"data SMS too long: {len(data)} bytes, at most {DATA_MAX_OCTETS}")
        first = 0x01 | 0x40 | (0x20 if status_report else 0)  # SUBMIT, UDHI, SRR
        user_data = _port_udh(port or 0) + data
        tpdu = (bytes([first, reference & 0xFF]) + _address(number)
                + bytes([0x00, 0x04, len(user_data)]) + user_data)
        return [Part("00" + tpdu.hex().upper(), len(tpdu))]
    pdus = codec.encodeSmsSubmitPdu(number, _utf16_units(text or ""), reference=reference & 0xFF,
                                    requestStatusReport=status_report)
    return [Part(str(p), p.tpduLength) for p in pdus]


class TextSize(NamedTuple):
    """How a text goes as SMS: its alphabet, its length in that alphabet's units (GSM-7
    septets, an extension character two; UCS-2 code units, an emoji two), and its parts."""

    encoding: str  # "GSM-7" or "UCS-2"
    units: int
    parts: int
    per_part: int  # units a part carries: 160/153 (GSM-7), 70/67 (UCS-2)


def measure(text: str) -> TextSize:
    """The size of `text` as encode_submit() splits it; counted without encoding, so it
    is cheap and answers for any length (the dashboard's live counter asks it)."""
    try:
        septets = len(codec.encodeGsm7(_utf16_units(text)))  # an extension character: two
    except ValueError:  # not GSM-7: UCS-2, 70 units alone, 67 in each part of several
        units = len(_utf16_units(text))
        if units <= 70:
            return TextSize("UCS-2", units, 1, 70)
        return TextSize("UCS-2", units, -(-units // 67), 67)
    if septets <= 160:
        return TextSize("GSM-7", septets, 1, 160)
    return TextSize("GSM-7", septets, len(codec.divideTextGsm7(text)), 153)


def segment_count(text: str) -> int:
    """How many SMS parts `text` takes, as encode_submit() splits it."""
    return measure(text).parts


MAX_PARTS = 255  # the concatenation header counts parts in one octet
# a text this short fits whatever its characters: at most two UTF-16 units each, 67 a part
_ALWAYS_FITS = MAX_PARTS * 67 // 2


class TooLong(ValueError):
    """More than one SMS can carry, even split into parts; the text says the limit."""


def check_fits(text: str | None = None, data: bytes | None = None) -> None:
    """TooLong unless `text` fits in MAX_PARTS parts and `data` in one data SMS (data SMS
    are not split); cheap for the texts people send."""
    if data is not None and len(data) > DATA_MAX_OCTETS:
        raise TooLong(f"dataMessage.data is {len(data)} bytes: a data SMS carries at most"
                      f" {DATA_MAX_OCTETS} bytes (it is not split into parts)")
    if text is not None and len(text) > _ALWAYS_FITS and (
            parts := segment_count(text)) > MAX_PARTS:
        raise TooLong(f"the text needs {parts} SMS parts: at most {MAX_PARTS} can be joined"
                      " into one message (about 39,000 GSM characters, or 17,000 others);"
                      " split it into several messages")


def _utf16_units(text: str) -> str:
    """Characters beyond the BMP (emoji) as UTF-16 surrogate pairs, as UCS-2 SMS carry them."""
    if all(ord(c) <= 0xFFFF for c in text):
        return text
    raw = text.encode("utf-16-be")
    return "".join(chr(int.from_bytes(raw[i:i + 2], "big")) for i in range(0, len(raw), 2))


def join_units(text: str) -> str:
    """Surrogate pairs back to characters; a half pair (a part still missing) stays."""
    try:
        return text.encode("utf-16-be", "surrogatepass").decode("utf-16-be")
    except UnicodeDecodeError:
        return text


REPLACEMENT = "\ufffd"
_LONE = re.compile("[\ud800-\udfff]")


def whole_text(units: str) -> tuple[str, int]:
    """The text of a whole SMS from its UTF-16 units: pairs joined, and each half pair
    left alone (which no text can hold: JSON, UTF-8 and the store refuse it) replaced by
    U+FFFD; with how many were replaced, so the caller can say so."""
    text = join_units(units)
    if not _LONE.search(text):
        return text, 0
    return _LONE.subn(REPLACEMENT, text)


def _address(number: str) -> bytes:
    return bytes(codec._encodeAddressField(number))


def _port_udh(port: int) -> bytes:
    """UDH with one 16-bit application port IE (destination = source = `port`)."""
    return bytes([0x06, 0x05, 0x04, port >> 8, port & 0xFF, port >> 8, port & 0xFF])


def _timestamp(at: datetime) -> bytes:
    return bytes(codec._encodeTimestamp(at.astimezone(UTC)))


def _smsc_field(smsc: str) -> bytes:
    return bytes(codec._encodeAddressField(smsc, smscField=True))


def encode_deliver(sender: str, *, text: str | None = None, data: bytes | None = None,
                   port: int | None = None, at: datetime | None = None,
                   reference: int | None = None, smsc: str = SMSC) -> list[str]:
    """SMS-DELIVER PDUs (hex) as a network hands an SMS to the receiving modem.

    Long texts become parts with a concat UDH whose reference is `reference` (random when
    None); data SMS carry a 16-bit port UDH and 8-bit coding.
    """
    at = at or datetime.now(UTC)
    if data is not None:
        if len(data) > DATA_MAX_OCTETS:
            raise ValueError(f"data SMS too long: {len(data)} bytes, at most {DATA_MAX_OCTETS}")
        user_data = _port_udh(port or 0) + data
        tpdu = (bytes([0x04 | 0x40]) + _address(sender) + bytes([0x00, 0x04])
                + _timestamp(at) + bytes([len(user_data)]) + user_data)
        return [(_smsc_field(smsc) + tpdu).hex().upper()]
    # The codec packs the text (GSM-7 or UCS-2, concat UDH); re-framed as DELIVER.
    concat = random.randint(0, 255) if reference is None else reference
    submits = codec.encodeSmsSubmitPdu("+0", _utf16_units(text or ""), reference=concat & 0xFF,
                                       requestStatusReport=False)
    return [submit_to_deliver(str(p), sender, at, smsc) for p in submits]


def submit_to_deliver(submit_hex: str, sender: str, at: datetime | None = None,
                      smsc: str = SMSC) -> str:
    """The SMS-DELIVER a network makes of one SMS-SUBMIT part: same coding, UDH and text."""
    raw = bytes.fromhex(submit_hex)
    position = 1 + raw[0]  # skip the SMSC field
    first = raw[position]
    position += 2  # first octet, message reference
    position += 2 + (raw[position] + 1) // 2  # destination address
    dcs = raw[position + 1]
    position += 2
    position += {0: 0, 2: 1}.get((first >> 3) & 0x03, 7)  # validity period
    user = raw[position:]  # UDL and UD
    tpdu = (bytes([0x04 | (first & 0x40)]) + _address(sender) + bytes([0x00, dcs])
            + _timestamp(at or datetime.now(UTC)) + user)
    return (_smsc_field(smsc) + tpdu).hex().upper()


def encode_status_report(reference: int, recipient: str, *, delivered: bool,
                         submitted: datetime, done: datetime | None = None) -> tuple[str, int]:
    """SMS-STATUS-REPORT for a sent part: hex and TPDU length (what +CDS announces)."""
    status = 0x00 if delivered else 0x41  # 0x41: permanent error, incompatible destination
    tpdu = (bytes([0x06, reference & 0xFF]) + _address(recipient) + _timestamp(submitted)
            + _timestamp(done or datetime.now(UTC)) + bytes([status]))
    return "00" + tpdu.hex().upper(), len(tpdu)


@dataclass(frozen=True)
class Decoded:
    """What a modem needs from a PDU it read."""

    kind: str  # SMS-DELIVER | SMS-SUBMIT | SMS-STATUS-REPORT
    number: str
    text: str | None = None  # UTF-16 units of this part; join_units() after reassembly
    data: bytes | None = None  # 8-bit payload (data SMS)
    port: int | None = None  # destination port of a data SMS
    concat: tuple[int, int, int] | None = None  # (reference, parts, this part's number)
    reference: int | None = None  # TP-MR (SUBMIT, STATUS-REPORT)
    status: int | None = None  # TP-ST of a status report
    time: datetime | None = None  # SMSC timestamp (DELIVER, STATUS-REPORT)
    tpdu_length: int = 0
    # characters of the text that could not be represented (a UTF-16 half pair in an
    # SMS of one part), each replaced by U+FFFD
    replaced: int = 0


def decode(hex_pdu: str) -> Decoded:
    """Any PDU with an SMSC field in front (as AT+CMGR, +CMT and +CDS give them)."""
    fields: dict[str, Any] = codec.decodeSmsPdu(hex_pdu)
    concat = port = None
    for element in fields.get("udh", []):
        if isinstance(element, codec.Concatenation):
            concat = (element.reference, element.parts, element.number)
        elif isinstance(element, codec.PortAddress):
            port = element.destination
    text, data, replaced = fields.get("text"), None, 0
    raw = bytes.fromhex(hex_pdu)
    coding = _data_coding(raw) if fields["type"] != "SMS-STATUS-REPORT" else None
    if text is not None and (port is not None or coding == 1):
        data, text = bytes(ord(c) & 0xFF for c in text), None
    elif text is not None and coding == 0:
        text += "@" * _lost_at_signs(raw, text)
    elif text is not None and concat is None:
        text, replaced = whole_text(text)
    return Decoded(kind=fields["type"], number=fields.get("number") or "", text=text,
                   data=data, port=port, concat=concat, reference=fields.get("reference"),
                   status=fields.get("status"), time=fields.get("time"),
                   tpdu_length=fields["tpdu_length"], replaced=replaced)


def _dcs_position(raw: bytes) -> int:
    """Where TP-DCS is in a DELIVER or SUBMIT with an SMSC field in front."""
    position = 1 + raw[0]
    first = raw[position]
    position += 1 if first & 0x03 == 0 else 2  # SUBMIT has TP-MR
    position += 2 + (raw[position] + 1) // 2
    return position + 1


def _data_coding(raw: bytes) -> int:
    """0 GSM-7, 1 8-bit data (the codec reads it as text), 2 UCS-2."""
    return codec._decodeDataCoding(raw[_dcs_position(raw)])


def _lost_at_signs(raw: bytes, text: str) -> int:
    """The codec drops a last "@" (septet 0) that ends the last octet: TP-UDL says it was
    there. How many septets the user data holds beyond what the decoded text takes."""
    dcs = _dcs_position(raw)
    first = raw[1 + raw[0]]
    position = dcs + 1
    if first & 0x03 == 0:  # DELIVER: the service centre's timestamp
        position += 7
    else:  # SUBMIT: the validity period, if any
        position += {0x10: 1, 0x08: 7, 0x18: 7}.get(first & 0x18, 0)
    septets = raw[position]
    if first & 0x40:  # a user data header, padded to a septet boundary
        septets -= -(-(raw[position + 1] + 1) * 8 // 7)
    try:
        return max(0, septets - len(codec.encodeGsm7(text)))
    except ValueError:
        return 0
