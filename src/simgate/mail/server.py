"""The SMTP server: each accepted email is one simgate message to the numbers of its
recipients, sent by the user who logged in with AUTH PLAIN or LOGIN (password or API
token). Nothing is accepted that is not stored: the 250 comes after the message is, with
its id."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import ssl
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from simgate.mail.recipients import BadRecipient, parse
from simgate.mail.text import NoText, sms_text
from simgate.services.errors import ServiceError
from simgate.services.gateway import Gateway
from simgate.services.messages import NewMessage
from simgate.services.tokens import InvalidToken
from simgate.sms.pdu import TooLong, check_fits

log = logging.getLogger(__name__)

MAX_EMAIL_BYTES = 1_048_576  # an SMS text is short: a bigger email is no SMS
INVALID = "535 5.7.8 Authentication credentials invalid: use your simgate login and" \
          " password, or an API token as the password"


def _loopback(peer: Any) -> bool:
    host = peer[0] if isinstance(peer, tuple) else peer
    try:
        return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
    except ValueError:
        return False


class MailHandler:
    """aiosmtpd's hooks: recipients checked at RCPT, the message stored at DATA."""

    def __init__(self, gateway: Gateway, with_subject: bool) -> None:
        self._gateway = gateway
        self._region = gateway.settings.default_region
        self._with_subject = with_subject

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        try:
            recipient = parse(address, self._region)
        except BadRecipient as exc:
            return f"553 5.1.3 {exc}"
        sims = {parse(a, self._region).sim_number for a in envelope.rcpt_tos}
        if sims and sims != {recipient.sim_number}:
            return ("553 5.5.4 one email is one message through one SIM: give every"
                    " recipient the same +simN (or none)")
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        user_id = session.auth_data
        recipients = [parse(a, self._region) for a in envelope.rcpt_tos]
        try:
            text = sms_text(bytes(envelope.original_content or b""), self._with_subject)
            check_fits(text)
        except NoText as exc:
            return f"554 5.6.0 {exc}"
        except TooLong as exc:
            return (f"552 5.3.4 the text does not fit in an SMS, and simgate cuts no text:"
                    f" {exc}; shorten it")
        except (ValueError, LookupError) as exc:  # a body email cannot read
            return f"554 5.6.0 the email cannot be read: {exc}"
        numbers = list(dict.fromkeys(r.phone_number for r in recipients))
        try:
            message = await self._gateway.messages.enqueue(user_id, NewMessage(
                phone_numbers=numbers, text=text, sim_number=recipients[0].sim_number))
        except ServiceError as exc:
            code = "451 4.3.0" if exc.status >= 500 else "550 5.7.0"
            return f"{code} {exc.message}"
        log.info("email accepted as message %s to %d number(s)", message.ext_id, len(numbers))
        return f"250 2.0.0 OK: queued as {message.ext_id}"


class GatewaySMTP(SMTP):
    """aiosmtpd's SMTP with the gateway's logins: password or API token, the password
    through the API's limiter, and AUTH in plain text only from loopback unless allowed."""

    def __init__(self, handler: MailHandler, gateway: Gateway, implicit_tls: bool,
                 **kwargs: Any) -> None:
        super().__init__(handler, auth_required=True, authenticator=self._parsed,
                         hostname="simgate", data_size_limit=MAX_EMAIL_BYTES, **kwargs)
        self._auth_require_tls = False  # decided per peer in _may_authenticate
        self._gateway = gateway
        self._implicit_tls = implicit_tls

    @staticmethod
    def _parsed(server: SMTP, session: Session, envelope: Envelope, mechanism: str,
                auth_data: Any) -> AuthResult:
        """Only hands the parsed credentials on: they are checked (a wait on the store)
        in `_check`, which aiosmtpd's synchronous authenticator cannot do."""
        return AuthResult(success=True, auth_data=auth_data)

    async def auth_PLAIN(self, _: Any, args: list[str]) -> AuthResult:
        if not await self._may_authenticate():
            return AuthResult(success=False, handled=True)
        return await self._check(await super().auth_PLAIN(_, args))

    async def auth_LOGIN(self, _: Any, args: list[str]) -> AuthResult:
        if not await self._may_authenticate():
            return AuthResult(success=False, handled=True)
        return await self._check(await super().auth_LOGIN(_, args))

    async def _may_authenticate(self) -> bool:
        encrypted = self._implicit_tls or self._tls_protocol is not None
        if (encrypted or self._gateway.settings.smtp_allow_plain_auth
                or _loopback(self.session.peer if self.session else None)):
            return True
        starttls = " (STARTTLS first)" if self.tls_context else ""
        await self.push(f"538 5.7.11 Encryption required for AUTH from another host"
                        f"{starttls}; or set SIMGATE_SMTP_ALLOW_PLAIN_AUTH=true")
        return False

    async def _check(self, parsed: AuthResult) -> AuthResult:
        if not parsed.success or not isinstance(parsed.auth_data, LoginPassword):
            return parsed
        login = parsed.auth_data.login.decode("utf-8", "replace")
        secret = parsed.auth_data.password.decode("utf-8", "replace")
        gateway = self._gateway
        if secret.count(".") == 2:  # an API token, tried before a password guess counts
            try:
                claims = await gateway.tokens.authenticate(secret)
            except InvalidToken:
                claims = None
            if claims is not None and claims.allows("messages:send") and login in (
                    claims.token_id, await gateway.users.name_of(claims.user_id)):
                return AuthResult(success=True, auth_data=claims.user_id)
        peer = self.session.peer if self.session else None
        address = peer[0] if isinstance(peer, tuple) else ""
        try:
            user_id = await gateway.users.authenticate(login, secret, str(address))
        except ServiceError as exc:  # the limiter: too many failures lately
            return AuthResult(success=False, handled=False, message=f"535 5.7.8 {exc.message}")
        if user_id is None:
            return AuthResult(success=False, handled=False, message=INVALID)
        return AuthResult(success=True, auth_data=user_id)


def tls_context(cert: Any, key: Any) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


async def start_smtp(gateway: Gateway) -> list[asyncio.Server]:
    """The SMTP listeners: SIMGATE_SMTP_PORT (STARTTLS offered with the server's TLS
    certificate) and SIMGATE_SMTPS_PORT (TLS from the first byte); none when unset."""
    settings = gateway.settings
    if not settings.smtp_port and not settings.smtps_port:
        return []
    # aiosmtpd logs every command at INFO, and a deprecation of its own at each AUTH
    logging.getLogger("mail.log").setLevel(logging.ERROR)
    handler = MailHandler(gateway, settings.smtp_subject)
    context = tls_context(settings.tls_cert, settings.tls_key) if settings.tls_cert else None
    loop = asyncio.get_running_loop()
    servers = []
    for port, implicit in ((settings.smtp_port, False), (settings.smtps_port, True)):
        if not port:
            continue

        def protocol(implicit: bool = implicit) -> GatewaySMTP:
            return GatewaySMTP(handler, gateway, implicit,
                               tls_context=None if implicit else context, loop=loop)

        try:
            servers.append(await loop.create_server(
                protocol, host=settings.host, port=port, ssl=context if implicit else None))
        except OSError as exc:
            await stop_smtp(servers)
            flag = "--smtps-port" if implicit else "--smtp-port"
            raise OSError(f"cannot listen for email on {settings.host}:{port}:"
                          f" {exc.strerror or exc}; choose another {flag}") from None
        log.info("email to SMS on %s://%s:%d", "smtps" if implicit else "smtp",
                 settings.host, port)
    return servers


async def stop_smtp(servers: list[asyncio.Server]) -> None:
    for server in servers:
        server.close()
        await server.wait_closed()
