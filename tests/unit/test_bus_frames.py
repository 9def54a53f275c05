"""What crosses the Redis bus between replicas: JSON frames, dates kept, carried messages
left behind, its own frames told apart."""

from datetime import UTC, datetime

import pytest

from simgate.bus.redis import channel_of, decode, encode


def test_a_push_crosses_with_its_dates_and_without_the_messages_it_carried():
    since = datetime(2026, 12, 8, 1, 2, 3, 456000, tzinfo=UTC)
    frame = ("push", "device-1", "MessagesExportRequested",
             {"since": since, "messageTypes": ("SMS",), "messages": [object()]})
    origin, back = decode(encode("me", frame))
    assert origin == "me"
    assert back == ("push", "device-1", "MessagesExportRequested",
                    {"since": since, "messageTypes": ["SMS"]})


def test_a_signal_keeps_its_arguments_as_a_tuple():
    assert decode(encode("x", ("signal", "device-changed", (7, "d"))))[1] == (
        "signal", "device-changed", (7, "d"))


def test_what_json_cannot_carry_is_refused_not_sent_half():
    with pytest.raises(TypeError):
        encode("x", ("signal", "relay", (object(),)))


def test_each_store_has_its_own_channel_and_its_password_stays_out():
    one = channel_of("postgresql+asyncpg://u:secret@db:5432/a")
    assert one == channel_of("postgresql+asyncpg://u:other@db:5432/a")
    assert one != channel_of("postgresql+asyncpg://u:secret@db:5432/b")
    assert "secret" not in one and one.startswith("simgate:bus:")
