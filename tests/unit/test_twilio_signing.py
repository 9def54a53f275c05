"""Status callbacks carry X-Twilio-Signature as Twilio's SDKs check it."""

from __future__ import annotations

from twilio.request_validator import RequestValidator

from simgate.services.twilio import twilio_status
from simgate.webhooks.twilio_signing import twilio_signature


def test_the_signature_is_the_one_the_sdk_validates():
    url = "https://hooks.example.org/status?tenant=7"
    params = {"MessageSid": "SM" + "a" * 32, "MessageStatus": "sent", "To": "+12025550101",
              "From": "+12025550102", "AccountSid": "runner", "ApiVersion": "2010-04-01"}
    signature = twilio_signature("the-auth-token", url, params)
    assert RequestValidator("the-auth-token").validate(url, params, signature)
    assert not RequestValidator("another-token").validate(url, params, signature)
    assert not RequestValidator("the-auth-token").validate(url, {**params, "To": "+1"},
                                                           signature)


def test_a_failure_after_the_sim_sent_is_undelivered_before_it_failed():
    assert twilio_status("Failed", {"Pending": "x", "Sent": "y"}, None) == "undelivered"
    assert twilio_status("Failed", {"Pending": "x"}, None) == "failed"
    assert twilio_status("Processed", {}, None) == "sending"
    assert twilio_status("Cancelling", {}, None) == "canceled"


def test_twiml_messages_are_read_and_anything_else_sends_nothing():
    from simgate.services.twilio_inbound import twiml_messages

    twiml = (b"<Response><Message>one</Message><Message to='+12025550101'>"
             b"<Body>two</Body></Message><Message>  </Message></Response>")
    assert twiml_messages(twiml) == [(None, "one"), ("+12025550101", "two")]
    assert twiml_messages(b"") == []
    assert twiml_messages(b"ok") == []
    assert twiml_messages(b"<Other><Message>x</Message></Other>") == []
    bomb = b'<!DOCTYPE r [<!ENTITY a "aaaa">]><Response><Message>&a;</Message></Response>'
    assert twiml_messages(bomb) == []
