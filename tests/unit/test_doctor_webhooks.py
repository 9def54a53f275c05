"""`simgate doctor` on webhooks that are no plain HTTP URL."""

from __future__ import annotations

from simgate.agent.doctor import _webhook_finding


async def test_a_mailto_webhook_is_not_reported_unreachable():
    finding = await _webhook_finding({"event": "sms:received", "url": "mailto:me@example.org"})
    assert finding.status == "pass" and "SMTP relay" in finding.detail


async def test_a_twilio_style_webhook_is_tried_at_its_http_url():
    finding = await _webhook_finding({"event": "sms:received",
                                      "url": "twilio+http://127.0.0.1:9/sms"})
    assert finding.status == "fail" and finding.detail.startswith("http://127.0.0.1:9/sms")
    assert "UnsupportedProtocol" not in finding.detail
