"""Incoming SMS to a Twilio-style webhook (a webhook URL `twilio+https://...`): the SMS
as Twilio's form POST, signed with X-Twilio-Signature, and the TwiML answer's
`<Response><Message>` sent back to the sender through the SIM the SMS arrived on."""

from __future__ import annotations

import hashlib
import logging
import xml.etree.ElementTree as ElementTree
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from simgate.domain.phones import InvalidPhoneNumber, normalize
from simgate.services.errors import Conflict, ServiceError
from simgate.services.messages import Messages, NewMessage
from simgate.services.twilio import API_VERSION
from simgate.sms.pdu import segment_count
from simgate.store.models import WebhookDelivery
from simgate.webhooks.twilio_signing import twilio_signature

log = logging.getLogger(__name__)

MAX_TWIML_BYTES = 65_536


def twiml_messages(body: bytes) -> list[tuple[str | None, str]]:
    """The (to, text) of each <Message> of a TwiML <Response>; none for anything else."""
    if not body.strip() or len(body) > MAX_TWIML_BYTES or b"<!DOCTYPE" in body.upper():
        return []  # no entity declarations: nothing to expand
    try:
        root = ElementTree.fromstring(body)
    except ElementTree.ParseError:
        return []
    if root.tag != "Response":
        return []
    found = []
    for element in root.iter("Message"):
        body_element = element.find("Body")
        text = (body_element.text if body_element is not None else element.text) or ""
        if text.strip():
            found.append((element.get("to"), text.strip()))
    return found


class TwilioInbound:
    def __init__(self, messages: Messages, account_of: Callable[[int], Awaitable[str | None]],
                 region: str) -> None:
        self._messages = messages
        self._account_of = account_of
        self._region = region

    async def deliver(self, http: httpx.AsyncClient, url: str, signing_key: str | None,
                      delivery: WebhookDelivery) -> int:
        """POST the event to `url` (the part after twilio+); the receiver's status. A
        TwiML reply is accepted before the attempt counts as delivered; its id comes from
        the event's, so a retried event never sends the reply twice."""
        payload: dict[str, Any] = delivery.payload
        sid = "SM" + hashlib.sha256(str(payload.get("messageId") or delivery.event_id)
                                    .encode()).hexdigest()[:32]
        text = str(payload.get("message") or "")
        try:
            segments = segment_count(text) if text else 1
        except (ValueError, TypeError):
            segments = 1
        params = {"MessageSid": sid, "SmsSid": sid, "SmsMessageSid": sid,
                  "AccountSid": await self._account_of(delivery.user_id) or "",
                  "From": str(payload.get("phoneNumber") or payload.get("sender") or ""),
                  "To": str(payload.get("recipient") or ""), "Body": text,
                  "NumSegments": str(segments), "NumMedia": "0", "ApiVersion": API_VERSION,
                  "SmsStatus": "received"}
        headers = {"User-Agent": "simgate-webhooks"}
        if signing_key:
            headers["X-Twilio-Signature"] = twilio_signature(signing_key, url, params)
        response = await http.post(url, data=params, headers=headers)
        if 200 <= response.status_code < 300:
            await self._reply(delivery, params["From"], twiml_messages(response.content))
        return response.status_code

    async def _reply(self, delivery: WebhookDelivery, sender: str,
                     replies: list[tuple[str | None, str]]) -> None:
        sim = delivery.payload.get("simNumber")
        for index, (to, text) in enumerate(replies):
            if to:
                try:
                    to = normalize(to, self._region)
                except InvalidPhoneNumber as exc:
                    log.warning("TwiML reply not sent: %s", exc)
                    continue
            reply_id = hashlib.sha256(f"{delivery.event_id}/{index}".encode()).hexdigest()[:36]
            try:
                await self._messages.enqueue(delivery.user_id, NewMessage(
                    phone_numbers=[to or sender], text=text, device_id=delivery.device_id,
                    sim_number=sim if isinstance(sim, int) else None, id=reply_id))
            except Conflict:
                continue  # sent on an earlier attempt of this event
            except ServiceError as exc:  # a reply that cannot be sent fails no delivery
                log.warning("TwiML reply to %s not sent: %s", to or sender, exc.message)
