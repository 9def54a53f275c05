"""SMS to email: webhook events whose URL is `mailto:ADDRESS` go out as emails through
the SMTP relay the admin configures (SIMGATE_SMTP_RELAY). They ride the webhook outbox:
written with the SMS, retried with the same backoff, listed with the deliveries."""

from __future__ import annotations

import json
import re
from email.message import EmailMessage
from typing import Any
from urllib.parse import unquote, urlsplit

import aiosmtplib

MAILTO = "mailto:"
_ADDRESS = re.compile(r"[^@\s<>,;:\"]+@[^@\s<>,;:\"]+\.[^@\s<>,;:\"]+")


class NoRelay(RuntimeError):
    """A mailto: webhook with no relay to send through."""


def is_mailto(url: str) -> bool:
    return url[:len(MAILTO)].lower() == MAILTO


def mailto_address(url: str) -> str | None:
    """The address of `mailto:ADDRESS`, or None when it is not one plain address."""
    address = unquote(url[len(MAILTO):])
    return address if _ADDRESS.fullmatch(address) else None


def compose(sender: str, to: str, event: str, payload: dict[str, Any]) -> EmailMessage:
    """An SMS as an email: from whom in the subject, its text as the body. Other events
    carry their payload as JSON."""
    message = EmailMessage()
    message["From"], message["To"] = sender, to
    if event == "sms:received":
        sim = payload.get("simNumber")
        message["Subject"] = f"SMS from {payload.get('phoneNumber') or payload.get('sender')}"
        footer = f"Received {payload.get('receivedAt')}"
        if payload.get("recipient") or sim:
            footer += f" by {payload.get('recipient') or 'SIM'}"
            footer += f" (SIM {sim})" if sim else ""
        message.set_content(f"{payload.get('message', '')}\n\n-- \n{footer}\n")
    else:
        message["Subject"] = f"simgate {event}"
        message.set_content(json.dumps(payload, indent=2, ensure_ascii=False) + "\n")
    return message


class MailRelay:
    """The admin's relay: smtp://[user:password@]host[:port] (STARTTLS when offered),
    or smtps:// for TLS from the first byte."""

    def __init__(self, url: str, sender: str, timeout: float) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise ValueError(f"SIMGATE_SMTP_RELAY {url!r} must be smtp://[user:password@]"
                             "host[:port] or smtps://...")
        self._tls = parts.scheme == "smtps"
        self._host = parts.hostname
        self._port = parts.port or (465 if self._tls else 25)
        self._username = unquote(parts.username) if parts.username else None
        self._password = unquote(parts.password) if parts.password else None
        self._sender = sender
        self._timeout = timeout

    async def send(self, to: str, event: str, payload: dict[str, Any]) -> None:
        """Raises on any failure: the delivery is then retried as a webhook's is."""
        await aiosmtplib.send(
            compose(self._sender, to, event, payload), hostname=self._host, port=self._port,
            username=self._username, password=self._password, use_tls=self._tls,
            timeout=self._timeout)
