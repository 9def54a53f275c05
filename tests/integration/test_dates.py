"""Dates at any offset keep their instant through the store, on SQLite and PostgreSQL.

SQLite keeps a date's wall-clock time and drops its offset, so every date is brought to
UTC on its way in; PostgreSQL keeps the instant itself. Both must give back the instant
that went in, through the user API and the device API alike.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simgate.config import Settings
from simgate.server.app import create_app
from simgate.services.gateway import Gateway
from simgate.testing_android import parse_app_date
from tests.conftest import PASSWORD, USER, register_device

# Whole-minute offsets, as RFC 3339 writes them; the widest Python allows.
OFFSETS = st.integers(min_value=-(24 * 60 - 1), max_value=24 * 60 - 1).map(
    lambda minutes: timezone(timedelta(minutes=minutes)))
# The app's precision is the millisecond (its Gson date format).
MILLIS = st.integers(min_value=0, max_value=999).map(lambda ms: ms * 1000)


def instants(start: datetime, end: datetime) -> st.SearchStrategy[datetime]:
    """Aware datetimes at any offset, to the millisecond."""
    return st.builds(
        lambda at, micro, zone: at.replace(microsecond=micro, tzinfo=UTC).astimezone(zone),
        st.datetimes(min_value=start, max_value=end), MILLIS, OFFSETS)


FUTURE = instants(datetime(2031, 1, 1), datetime(2099, 12, 31))
ANY = instants(datetime(2001, 1, 1), datetime(2099, 12, 31))


@pytest.fixture
async def client(store_url, tmp_path) -> AsyncIterator[httpx.AsyncClient]:
    gateway = await Gateway.open(Settings(data_dir=tmp_path, database_url=store_url,
                                          username=USER, password=PASSWORD))
    app = create_app(gateway.settings, gateway)
    app.state.gateway = gateway
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://simgate", auth=(USER, PASSWORD)) as api:
        yield api
    await gateway.close()


@pytest.fixture
async def device(client) -> dict:
    return await register_device(client)


def as_device(device: dict) -> dict:
    return {"headers": {"Authorization": f"Bearer {device['token']}"}, "auth": None}


@settings(max_examples=20, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(valid_until=FUTURE)
async def test_valid_until_at_any_offset_reaches_the_device_as_the_same_instant(
        client, device, valid_until):
    message_id = secrets.token_hex(8)
    sent = await client.post("/3rdparty/v1/messages", json={
        "id": message_id, "textMessage": {"text": "dated"}, "phoneNumbers": ["+19162255887"],
        "deviceId": device["id"], "validUntil": valid_until.isoformat()})
    assert sent.status_code == 202, sent.text

    fetched = (await client.get("/mobile/v1/message", params={"limit": 100},
                                **as_device(device))).json()
    mine = next(m for m in fetched if m["id"] == message_id)
    assert parse_app_date(mine["validUntil"]) == valid_until


@settings(max_examples=20, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(received_at=ANY, asked_in=OFFSETS)
async def test_an_sms_received_at_any_offset_keeps_its_instant_in_the_inbox_and_its_queries(
        client, device, received_at, asked_in):
    ident = secrets.token_hex(8)
    stored = await client.post("/mobile/v1/inbox", **as_device(device), json=[{
        "id": ident, "sender": "+19162255887", "message": ident,
        "receivedAt": received_at.isoformat()}])
    assert stored.status_code == 200, stored.text

    # the same instant written at another offset finds it (and earlier examples at it)
    at = received_at.astimezone(asked_in).isoformat()
    found = (await client.get("/3rdparty/v1/inbox", params={"from": at, "to": at,
                                                             "limit": 500})).json()
    mine = [m for m in found if m["contentPreview"] == ident]
    assert len(mine) == 1, found
    assert {datetime.fromisoformat(m["createdAt"]) for m in found} == {received_at}
