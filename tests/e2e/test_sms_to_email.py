"""SMS to email on a real `simgate run`: a `mailto:` webhook sends each received SMS as
an email through the SMTP relay the admin set, here a local aiosmtpd sink."""

from __future__ import annotations

import asyncio
import email
from email import policy

from aiosmtpd.smtp import SMTP

from simgate.testing import free_port
from tests.conftest import wait_until
from tests.e2e.gateway import SIM1, SIM2, client, ready_device, send, start_run


class Sink:
    """An SMTP server that keeps every email it is given."""

    def __init__(self) -> None:
        self.emails: list[tuple[list[str], email.message.EmailMessage]] = []

    async def handle_DATA(self, server, session, envelope) -> str:
        parsed = email.message_from_bytes(envelope.original_content, policy=policy.default)
        self.emails.append((list(envelope.rcpt_tos), parsed))
        return "250 OK"


async def test_a_received_sms_is_forwarded_as_one_email(tmp_path):
    sink, port = Sink(), free_port()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SMTP(sink, hostname="sink", loop=loop),
                                      "127.0.0.1", port)
    run = start_run(tmp_path, env={"SIMGATE_SMTP_RELAY": f"smtp://127.0.0.1:{port}",
                                   "SIMGATE_SMTP_RELAY_FROM": "gateway@example.org"})
    try:
        async with client(run) as api:
            await ready_device(api)
            created = await api.post("/webhooks", json={"url": "mailto:me@example.org",
                                                         "event": "sms:received"})
            assert created.status_code == 201, created.text
            bad = await api.post("/webhooks", json={"url": "mailto:me", "event": "sms:received"})
            assert bad.status_code == 400 and "mailto:" in bad.json()["message"]
            await send(api, "The parcel is at the door", SIM1, sim=2)
            await wait_until(lambda: sink.emails, timeout=30)

            async def delivered():
                rows = (await api.get("/webhooks/deliveries")).json()
                return rows if rows and all(r["status"] == "delivered" for r in rows) else None

            await wait_until(delivered, timeout=30)
            assert len(sink.emails) == 1  # recorded as delivered: never sent again
            recipients, message = sink.emails[0]
            assert recipients == ["me@example.org"]
            assert message["From"] == "gateway@example.org"
            assert message["Subject"] == f"SMS from {SIM2}"
            body = message.get_body(preferencelist=("plain",)).get_content().replace("\r\n", "\n")
            assert body.startswith("The parcel is at the door\n")
            assert f"by {SIM1} (SIM 1)" in body
    finally:
        run.stop()
        server.close()
