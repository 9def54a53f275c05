"""Phone number validation and normalisation to E.164."""

from __future__ import annotations

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberType


class InvalidPhoneNumber(ValueError):
    """A recipient that is not a usable mobile phone number; says which and why."""


_MOBILE_TYPES = {
    PhoneNumberType.MOBILE,
    PhoneNumberType.FIXED_LINE_OR_MOBILE,
    PhoneNumberType.PAGER,
    PhoneNumberType.VOIP,
    PhoneNumberType.PERSONAL_NUMBER,
    PhoneNumberType.UAN,
}


def normalize(raw: str, default_region: str) -> str:
    """Return `raw` in E.164, or raise InvalidPhoneNumber naming the number.

    Fixed-line numbers are rejected as the original server does: they cannot receive SMS.
    The type is UNKNOWN exactly when the number is not valid, so one lookup does both
    checks (`is_valid_number` would repeat the same pattern matching).
    """
    try:
        number = phonenumbers.parse(raw, default_region)
    except NumberParseException as exc:
        raise InvalidPhoneNumber(f"invalid phone number {raw!r}: {exc._msg}") from None
    kind = phonenumbers.number_type(number)
    if kind is PhoneNumberType.UNKNOWN:
        raise InvalidPhoneNumber(
            f"invalid phone number {raw!r}: not a valid number"
            f" (use the international format, e.g. +12025550123)"
        )
    if kind not in _MOBILE_TYPES:
        raise InvalidPhoneNumber(f"invalid phone number {raw!r}: not mobile phone number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
