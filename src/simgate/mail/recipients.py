"""Who an email goes to: `PHONE@anything`, or `PHONE+simN@anything` for SIM N (an
RFC 5233 subaddress). The domain is not looked at: the login says whose SIMs send."""

from __future__ import annotations

import re
from dataclasses import dataclass

from simgate.domain.phones import InvalidPhoneNumber, normalize

_ADDRESS = re.compile(r"(?P<phone>\+?[^@+]+)(?:\+sim(?P<sim>\d+))?@[^@]+", re.IGNORECASE)


class BadRecipient(ValueError):
    """An address that names no phone number, with what to write instead."""


@dataclass(frozen=True)
class Recipient:
    phone_number: str  # E.164
    sim_number: int | None


def parse(address: str, region: str) -> Recipient:
    match = _ADDRESS.fullmatch(address.strip().strip("<>"))
    if match is None:
        raise BadRecipient(f"{address} is not PHONE@host or PHONE+simN@host: write the"
                           " number as the mailbox, e.g. 19162255887@sms.example.org")
    try:
        phone = normalize(match["phone"], region)
    except InvalidPhoneNumber as exc:
        raise BadRecipient(f"{address}: {exc}; the mailbox is the number: PHONE@host or"
                           " PHONE+simN@host") from None
    sim = int(match["sim"]) if match["sim"] else None
    if sim == 0:
        raise BadRecipient(f"{address}: SIMs count from 1: PHONE+sim1@host, PHONE+sim2@host, ...")
    return Recipient(phone, sim)
