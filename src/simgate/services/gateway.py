"""The gateway's services wired to one store and one bus."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from simgate.bus.local import LocalBus, user_channel
from simgate.config import Settings
from simgate.services.device_limits import DeviceRows
from simgate.services.devices import Devices
from simgate.services.enrolment import Enrolment
from simgate.services.inbox import Caps, Inbox
from simgate.services.ingest import Ingest
from simgate.services.logs import Logs
from simgate.services.messages import Messages
from simgate.services.relay import PushRelay, relay_data
from simgate.services.schedule import DueTimer
from simgate.services.settings import SettingsService
from simgate.services.stamps import Stamps
from simgate.services.tokens import Tokens, signing_key
from simgate.services.usage import UsageStore
from simgate.services.users import Users
from simgate.services.webhooks import Webhooks
from simgate.store.db import Sessions, create_engine, migrate, session_factory
from simgate.webhooks.dispatcher import Dispatcher


@dataclass
class Gateway:
    settings: Settings
    engine: AsyncEngine
    sessions: Sessions
    bus: LocalBus
    stamps: Stamps
    users: Users
    tokens: Tokens
    enrolment: Enrolment
    devices: Devices
    messages: Messages
    device_settings: SettingsService
    webhooks: Webhooks
    inbox: Inbox
    logs: Logs
    dispatcher: Dispatcher
    due: DueTimer
    ingest: Ingest
    usage: UsageStore
    relay: PushRelay | None = None
    # checks of the server's own parts beyond the store (the bus between replicas), by
    # name, each answering a /health check
    server_checks: dict[str, Callable[[], dict[str, Any]]] = field(default_factory=dict)
    # what one device may post at once and per minute (per server process)
    inbox_rows: DeviceRows = field(default_factory=lambda: DeviceRows("/mobile/v1/inbox"))
    log_rows: DeviceRows = field(default_factory=lambda: DeviceRows("/mobile/v1/logs"))
    _background: list[asyncio.Task[None]] = field(default_factory=list)

    @classmethod
    async def open(cls, settings: Settings, background: bool = True,
                   prepare: bool = True) -> Gateway:
        """Build the services on the store; `prepare` migrates it and makes sure the
        configured user exists, `background` starts webhook delivery and housekeeping
        (one process of a server does that; the bus wakes it from the others)."""
        url = settings.resolved_database_url
        if prepare:
            await migrate(url)
        engine = create_engine(url)
        sessions = session_factory(engine)
        bus = LocalBus()

        def device_changed(user_id: int, device_id: str) -> None:
            bus.signal("device-changed", user_id, device_id)
            bus.notify(user_channel(user_id), "devices", {"ids": [device_id]})

        devices = Devices(sessions, changed=device_changed, removed=lambda device_id: bus.signal(
            "device-removed", device_id))
        stamps = Stamps(sessions)
        users = Users(sessions, stamps)
        key = await signing_key(sessions)
        tokens = Tokens(sessions, key, stamps)
        def push(device_id: str, event: str, data: dict[str, Any] | None = None) -> None:
            """Tell a device: on its event stream and, with the relay on, by FCM (in the
            process that runs the relay)."""
            bus.notify(device_id, event, data)
            if settings.push_relay:
                bus.signal("relay", device_id, event, relay_data(data or {}))

        device_settings = SettingsService(sessions, push=push,
                                          fcm_reaches_phones=settings.push_relay)
        dispatcher = Dispatcher(
            sessions, device_settings.webhooks_of, allow_private=settings.allow_private_webhooks,
            timeout=settings.webhook_timeout, retry_base=settings.webhook_retry_base,
        )
        bus.on("device-changed", devices.forget)
        bus.on("device-removed", bus.end_streams)  # its token is void: so is its stream
        bus.on("webhooks-due", dispatcher.wake)

        def wake_dispatcher() -> None:
            bus.signal("webhooks-due")

        webhooks = Webhooks(sessions, settings.allow_private_webhooks, wake=wake_dispatcher)
        messages = Messages(sessions, devices,
                            notify=lambda device_id, new: push(
                                device_id, "MessageEnqueued", {"messages": new}),
                            max_queued=settings.max_queued_per_device)
        logs = Logs(sessions)
        messages.listeners.append(webhooks.on_message_change)
        messages.listeners.append(logs.on_message_change)
        messages.committed.append(wake_dispatcher)
        devices.sim_listeners.append(webhooks.on_sims_change)
        devices.sims_committed.append(wake_dispatcher)
        messages.changes.append(lambda user_id, ext_ids: bus.notify(
            user_channel(user_id), "messages", {"ids": ext_ids}))
        messages.cancelling.append(lambda device_id, message_id: push(
            device_id, "MessageCancelled", {"messageId": message_id}))
        webhooks.changed.append(lambda devices: [push(d, "WebhooksUpdated")
                                                 for d in devices])
        due = DueTimer(sessions, notify=lambda device_id: push(
            device_id, "MessageEnqueued", {}))
        bus.on("schedule-changed", due.wake)
        messages.scheduled.append(lambda: bus.signal("schedule-changed"))
        inbox = Inbox(sessions, wake=wake_dispatcher,
                      caps=Caps(settings.mms_max_bytes, settings.mms_max_bytes_per_user))
        inbox.received.append(lambda user_id, ids: bus.notify(
            user_channel(user_id), "inbox", {"ids": ids}))
        inbox.export_requested.append(lambda device_id, request: push(
            device_id, "MessagesExportRequested", request))
        gateway = cls(
            settings=settings, engine=engine, sessions=sessions, bus=bus,
            stamps=stamps, users=users, tokens=tokens,
            enrolment=Enrolment(sessions, users, settings.private_token,
                                open_joins=settings.mode == "public"),
            devices=devices, messages=messages,
            device_settings=device_settings, webhooks=webhooks,
            inbox=inbox, logs=logs, dispatcher=dispatcher,
            due=due, ingest=Ingest(key, devices), usage=UsageStore(sessions),
        )
        if prepare and settings.username and settings.password:
            await gateway.users.ensure(settings.username, settings.password)
        # every process hashes what it finished: its own queue, as the original's worker
        gateway._background.append(asyncio.create_task(
            messages.run_hashing(settings.hashing_interval_seconds)))
        if background:
            gateway._background.append(asyncio.create_task(dispatcher.run()))
            gateway._background.append(asyncio.create_task(gateway._housekeeping()))
            gateway._background.append(asyncio.create_task(due.run()))
            if settings.push_relay:
                relay = PushRelay(sessions, settings.push_relay_url,
                                  settings.push_relay_debounce)
                bus.on("relay", relay.enqueue)
                gateway._background.append(asyncio.create_task(relay.run()))
                gateway.relay = relay
        return gateway

    async def _housekeeping(self, every: float = 3600.0) -> None:
        """Prune old log entries, expired tokens and past SIM counters now and then."""
        while True:
            await self.logs.prune()
            await self.tokens.prune()
            await self.usage.prune()
            await asyncio.sleep(every)

    async def close(self) -> None:
        for task in self._background:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.users.close()
        await self.stamps.close()
        await self.messages.close()
        await self.dispatcher.close()
        if self.relay is not None:
            await self.relay.close()
        self.sessions.close()
        await self.engine.dispose()
