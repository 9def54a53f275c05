"""The gateway's services wired to one store and one bus."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from simgate.bus.local import LocalBus
from simgate.config import Settings
from simgate.services.devices import Devices
from simgate.services.messages import Messages
from simgate.services.users import Users
from simgate.store.db import create_engine, migrate, session_factory


@dataclass
class Gateway:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker
    bus: LocalBus
    users: Users
    devices: Devices
    messages: Messages

    @classmethod
    async def open(cls, settings: Settings) -> Gateway:
        """Migrate the store and build the services; also ensures the env user."""
        url = settings.resolved_database_url
        await migrate(url)
        engine = create_engine(url)
        sessions = session_factory(engine)
        bus = LocalBus()
        devices = Devices(sessions)
        gateway = cls(
            settings=settings,
            engine=engine,
            sessions=sessions,
            bus=bus,
            users=Users(sessions),
            devices=devices,
            messages=Messages(sessions, devices,
                              notify=lambda device_id: bus.notify(device_id, "MessageEnqueued")),
        )
        if settings.username and settings.password:
            await gateway.users.ensure(settings.username, settings.password)
        return gateway

    async def close(self) -> None:
        await self.engine.dispose()
