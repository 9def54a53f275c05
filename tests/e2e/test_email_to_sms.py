"""Email to SMS on a real `simgate run --smtp-port`: Python's smtplib logs in with AUTH
and sends; each accepted email is one message, its id in the 250 reply. smtplib is
synchronous: its calls run in a thread."""

from __future__ import annotations

import asyncio
import smtplib
from email import policy
from email.message import EmailMessage

import pytest

from simgate.testing import SimgateProcess, free_port
from tests.conftest import wait_until
from tests.e2e.gateway import (
    OUTSIDE,
    PASSWORD,
    SIM1,
    SIM2,
    USER,
    client,
    final_state,
    inbox,
    ready_device,
    start_run,
)


@pytest.fixture
async def mail_run(tmp_path):
    port = free_port()
    process = start_run(tmp_path, "--smtp-port", str(port))
    process.smtp_port = port
    yield process
    process.stop()


def _email(to: list[str], text: str | None = None, html: str | None = None,
           subject: str = "alert") -> EmailMessage:
    message = EmailMessage()
    message["From"] = "monitor@example.org"
    message["To"] = ", ".join(to)
    message["Subject"] = subject
    if text is not None:
        message.set_content(text)
    if html is not None:
        if text is None:
            message.set_content(html, subtype="html")
        else:
            message.add_alternative(html, subtype="html")
    return message


def _send(port: int, to: list[str], message: EmailMessage, password: str = PASSWORD,
          login: bool = True) -> tuple[int, str]:
    """MAIL, RCPT each, DATA: the DATA reply (or the first refusal) as (code, text)."""
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
        smtp.ehlo()
        if login:
            smtp.login(USER, password)
        code, reply = smtp.mail("monitor@example.org")
        if code != 250:
            return code, reply.decode()
        for address in to:
            code, reply = smtp.rcpt(address)
            if code != 250:
                return code, reply.decode()
        code, reply = smtp.data(message.as_bytes(policy=policy.SMTP))  # CRLF lines
        return code, reply.decode()


async def send_mail(port: int, to: list[str], message: EmailMessage,
                    **kwargs) -> tuple[int, str]:
    return await asyncio.to_thread(_send, port, to, message, **kwargs)


async def test_an_email_to_a_number_plus_sim2_goes_out_through_sim_2(mail_run):
    port = mail_run.smtp_port
    async with client(mail_run) as api:
        await ready_device(api)
        to = ["19162255887+sim2@sms.example.org"]
        code, reply = await send_mail(port, to, _email(to, "Disk full on db1"))
        assert code == 250, reply
        message_id = reply.rsplit(" ", 1)[-1]
        state = await final_state(api, message_id, within=30)
        assert state["state"] in ("Sent", "Delivered") and state["simNumber"] == 2
        assert [r["phoneNumber"] for r in state["recipients"]] == [OUTSIDE]
        stored = (await api.get("/messages", params={"includeContent": "true"})).json()
        assert [m["textMessage"]["text"] for m in stored if m["id"] == message_id] == [
            "Disk full on db1"]

        # two recipients, an HTML-only body: one message to both, the HTML as text
        both = [f"{SIM1.lstrip('+')}+sim2@gw.local", f"{OUTSIDE}+sim2@gw.local"]
        html = "<html><head><style>p {color: red}</style></head><body><p>Backup" \
               " <b>failed</b></p><p>at 03:00</p></body></html>"
        code, reply = await send_mail(port, both, _email(both, html=html))
        assert code == 250, reply
        state = await final_state(api, reply.rsplit(" ", 1)[-1], within=30)
        assert sorted(r["phoneNumber"] for r in state["recipients"]) == sorted([SIM1, OUTSIDE])
        arrived = await wait_until(lambda: _texts_at(api, SIM1), timeout=30)
        assert arrived == ["Backup failed\nat 03:00"]


async def _texts_at(api, recipient):
    return [m["contentPreview"] for m in await inbox(api) if m["recipient"] == recipient
            and m["sender"] == SIM2] or None


async def test_refused_emails_get_an_smtp_error_saying_why_and_store_nothing(mail_run):
    port = mail_run.smtp_port
    to = [f"{OUTSIDE}@sms.example.org"]
    with pytest.raises(smtplib.SMTPAuthenticationError) as wrong:
        await send_mail(port, to, _email(to, "x"), password="wrong-password")
    assert wrong.value.smtp_code == 535
    code, reply = await send_mail(port, to, _email(to, "x"), login=False)
    assert code == 530
    code, reply = await send_mail(port, ["alerts@sms.example.org"], _email(to, "x"))
    assert code == 553 and "PHONE@host" in reply
    code, reply = await send_mail(port, to, _email(to, "x" * 40_000))  # 255 parts at most
    assert code == 552 and "simgate cuts no text" in reply, reply
    code, reply = await send_mail(port, to, _email(to, "   "))
    assert code == 554 and "no text" in reply
    mixed = [f"{OUTSIDE}+sim1@a.org", f"{SIM1}+sim2@a.org"]
    code, reply = await send_mail(port, mixed, _email(mixed, "x"))
    assert code == 553 and "same +simN" in reply
    async with client(mail_run) as api:
        assert (await api.get("/messages")).json() == []


def _own_address() -> str | None:
    """This host's address on its network (not loopback), if it has one."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("203.0.113.1", 9))  # no packet is sent: only a route is chosen
        except OSError:
            return None
        address = probe.getsockname()[0]
    return None if address.startswith("127.") else address


async def test_auth_in_plain_text_from_another_host_is_refused(tmp_path):
    address = _own_address()
    if address is None:
        pytest.skip("this host has no address beside loopback")
    port = free_port()
    run = start_run(tmp_path, "--host", "0.0.0.0", "--smtp-port", str(port))
    try:
        def login() -> tuple[int, bytes]:
            with smtplib.SMTP(address, port, timeout=30) as smtp:
                smtp.ehlo()
                return smtp.docmd("AUTH", "PLAIN AHJ1bm5lcgBydW5uZXItc2VjcmV0")  # runner

        code, reply = await asyncio.to_thread(login)
        assert code == 538 and b"SIMGATE_SMTP_ALLOW_PLAIN_AUTH" in reply
    finally:
        run.stop()


async def test_starttls_and_smtps_carry_auth_from_another_host(tmp_path, monkeypatch):
    import ssl
    import subprocess
    import sys

    address = _own_address()
    if address is None:
        pytest.skip("this host has no address beside loopback")
    made = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "simgate", "tls", "init", "--dir",
                         str(tmp_path / "tls")], capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    trusted = ssl.create_default_context(cafile=str(tmp_path / "tls" / "ca.crt"))
    trusted.check_hostname = False  # the certificate names the host, the test dials its IP
    smtp_port, smtps_port = free_port(), free_port()
    run = SimgateProcess(["run", "--host", "0.0.0.0", "--smtp-port", str(smtp_port),
                          "--smtps-port", str(smtps_port),
                          "--tls-cert", str(tmp_path / "tls" / "server.crt"),
                          "--tls-key", str(tmp_path / "tls" / "server.key")], tmp_path / "run",
                         env={"SIMGATE_USERNAME": USER, "SIMGATE_PASSWORD": PASSWORD})
    run.url = run.url.replace("http://", "https://")
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "tls" / "ca.crt"))  # for its start
    await asyncio.to_thread(run.start)
    try:
        def over_starttls() -> int:
            with smtplib.SMTP(address, smtp_port, timeout=30) as smtp:
                smtp.starttls(context=trusted)
                return smtp.login(USER, PASSWORD)[0]

        def over_smtps() -> int:
            with smtplib.SMTP_SSL(address, smtps_port, timeout=30, context=trusted) as smtp:
                return smtp.login(USER, PASSWORD)[0]

        assert await asyncio.to_thread(over_starttls) == 235
        assert await asyncio.to_thread(over_smtps) == 235
    finally:
        run.stop()
