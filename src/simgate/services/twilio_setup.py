"""The Twilio-compatible API wired to a gateway: its listener on message changes and
its status-callback deliveries, woken as the webhooks are."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

from simgate.services.gateway import Gateway
from simgate.services.tokens import signing_key
from simgate.services.twilio import Secrets, TwilioDoor
from simgate.services.twilio_callbacks import StatusCallbacks
from simgate.services.twilio_inbound import TwilioInbound


@dataclass
class TwilioApi:
    door: TwilioDoor
    callbacks: StatusCallbacks
    task: asyncio.Task[None]

    async def close(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
        await self.callbacks.close()


async def attach(gateway: Gateway) -> TwilioApi:
    settings = gateway.settings
    secrets = Secrets(await signing_key(gateway.sessions))
    door = TwilioDoor(gateway.sessions, gateway.messages, secrets, settings.default_region,
                      settings.allow_private_webhooks)
    callbacks = StatusCallbacks(gateway.sessions, secrets, settings.allow_private_webhooks,
                                settings.webhook_timeout, settings.webhook_retry_base)
    gateway.messages.listeners.append(door.on_message_change)
    gateway.dispatcher.twilio_inbound = TwilioInbound(gateway.messages, gateway.users.name_of,
                                                      settings.default_region)
    gateway.bus.on("webhooks-due", callbacks.wake)
    return TwilioApi(door, callbacks, asyncio.create_task(callbacks.run()))
