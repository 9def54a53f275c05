"""Email to SMS, the pure parts: whom an address names, and the text of an email."""

from __future__ import annotations

from email.message import EmailMessage

import pytest

from simgate.mail.recipients import BadRecipient, Recipient, parse
from simgate.mail.text import NoText, sms_text


@pytest.mark.parametrize(("address", "expected"), [
    ("19162255887@sms.example.org", Recipient("+19162255887", None)),
    ("+19162255887+sim2@gw", Recipient("+19162255887", 2)),
    ("<9162255887+SIM1@gw>", Recipient("+19162255887", 1)),
])
def test_the_mailbox_is_the_number_and_the_subaddress_the_sim(address, expected):
    assert parse(address, "US") == expected


@pytest.mark.parametrize("address", ["alerts@gw", "19162255887", "19162255887+sim0@gw",
                                     "19162255887+work@gw"])
def test_an_address_naming_no_number_is_refused_with_the_form_to_use(address):
    with pytest.raises(BadRecipient, match="PHONE"):
        parse(address, "US")


def _email(plain: str | None, html: str | None, subject: str = "Disk") -> bytes:
    message = EmailMessage()
    message["Subject"] = subject
    if plain is not None:
        message.set_content(plain)
        if html is not None:
            message.add_alternative(html, subtype="html")
    elif html is not None:
        message.set_content(html, subtype="html")
    return message.as_bytes()


def test_the_plain_part_is_the_text_and_html_only_when_alone():
    assert sms_text(_email("db1 is full\n", "<p>ignored</p>")) == "db1 is full"
    html = "<style>p{}</style><p>db1 &amp; db2</p><p>are <b>full</b></p>"
    assert sms_text(_email(None, html)) == "db1 & db2\nare full"
    assert sms_text(_email("db1 is full", None), with_subject=True) == "Disk: db1 is full"


def test_an_email_without_text_is_refused():
    with pytest.raises(NoText):
        sms_text(_email("  \n", None))
