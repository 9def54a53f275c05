"""Crafted PDUs, as anyone who knows a SIM's number can send them, byte by byte."""

from __future__ import annotations

from gsmmodem import pdu as codec

# "poison A", a lone UTF-16 high surrogate (half of a pair), "B"
POISON_UD = "0070006F00690073006F006E00200041D8000042"
POISON_TEXT = "poison A\ufffdB"  # how it reads once the half pair is replaced


def ucs2_submit(number: str, user_data_hex: str) -> tuple[str, int]:
    """An SMS-SUBMIT with DCS 08 (UCS-2) carrying `user_data_hex` as it is: its hex (with
    an empty SMSC field) and the TPDU length AT+CMGS wants."""
    address = bytes(codec._encodeAddressField(number)).hex().upper()
    tpdu = f"0100{address}0008{len(user_data_hex) // 2:02X}{user_data_hex}"
    return "00" + tpdu, len(tpdu) // 2
