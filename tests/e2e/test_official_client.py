"""The official sms-gate.app Python client against a real `simgate serve` process."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from android_sms_gateway import client, domain
from android_sms_gateway.enums import (
    MessagePriority,
    ProcessState,
    SimSelectionMode,
    WebhookEvent,
)
from android_sms_gateway.errors import BadRequestError, ForbiddenError, UnauthorizedError

from simgate.testing import SimgateProcess

SERVER_KEY = secrets.token_urlsafe(16)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One server for the module (it is slow to start); each test has a user of its own."""
    process = SimgateProcess(["serve"], tmp_path_factory.mktemp("serve"),
                             env={"SIMGATE_PRIVATE_TOKEN": SERVER_KEY,
                                  "SIMGATE_ALLOW_PRIVATE_WEBHOOKS": "true"})
    process.start()
    yield process
    process.stop()


@pytest.fixture
def account(server) -> dict:
    """A dual-SIM device that joined with the server key, so with a new user of its own:
    no test sees another's messages, webhooks or settings, whatever their order."""
    response = httpx.post(f"{server.url}/mobile/v1/device", timeout=30, json={
        "name": "dual-sim phone",
        "simCards": [{"slotIndex": 0, "phoneNumber": "+12025550101"},
                     {"slotIndex": 1, "phoneNumber": "+12025550102"}]},
        headers={"Authorization": f"Bearer {SERVER_KEY}"})
    assert response.status_code == 201, response.text
    return response.json()


@pytest.fixture
def api(server, account):
    with client.APIClient(account["login"], account["password"],
                          base_url=f"{server.url}/3rdparty/v1") as api:
        yield api


def test_send_with_sim_number_and_follow(api, account):
    sent = api.send(domain.Message(phone_numbers=["+19162255887"], sim_number=2,
                                   text_message=domain.TextMessage("Hello from SIM2")))
    assert sent.state is ProcessState.Pending
    assert sent.device_id == account["id"]
    assert sent.recipients[0].phone_number == "+19162255887"
    state = api.get_state(sent.id)
    assert state.id == sent.id and state.state is ProcessState.Pending
    assert state.created_at is not None


def test_send_without_sim_number_and_with_client_id(api):
    sent = api.send(domain.Message(phone_numbers=["+19162255888"], id="client-chosen-1",
                                   text_message=domain.TextMessage("no SIM given")))
    assert sent.id == "client-chosen-1"


def test_bad_sim_number_raises_bad_request(api):
    with pytest.raises(BadRequestError) as error:
        api.send(domain.Message(phone_numbers=["+19162255887"], sim_number=3,
                                text_message=domain.TextMessage("nope")))
    assert error.value.status_code == 400
    assert "valid simNumber values: 1, 2" in error.value.response["message"]


def test_every_field_the_client_sends_is_taken(api):
    """What the client puts on the wire (ints, booleans, enums, isoformat times) passes the
    strict typing of the send route; a time without its zone is refused, as the original
    refuses it."""
    future = datetime.now(UTC) + timedelta(days=1)
    for message in [
        domain.Message(phone_numbers=["+19162255887"], sim_number=1, ttl=3600,
                       priority=MessagePriority.BYPASS_THRESHOLD, with_delivery_report=False,
                       text_message=domain.TextMessage("every field")),
        domain.Message(phone_numbers=["+19162255887"], valid_until=future, is_encrypted=False,
                       data_message=domain.DataMessage.with_bytes(b"\x00\x01", 53739)),
    ]:
        assert api.send(message).state is ProcessState.Pending
    with pytest.raises(BadRequestError) as error:
        api.send(domain.Message(phone_numbers=["+19162255887"],
                                valid_until=future.replace(tzinfo=None),
                                text_message=domain.TextMessage("no zone")))
    assert "validUntil: needs a time zone" in error.value.response["message"]


def test_list_cancel_devices_health(api, account):
    sent = api.send(domain.Message(phone_numbers=["+19162255887"],
                                   text_message=domain.TextMessage("to cancel")))
    listed = api.get_messages(pagination=domain.QueryPagination(limit=100),
                              sort="-created_at")
    assert listed[0].id == sent.id
    api.cancel_message(sent.id)  # the device may hold it: it must confirm
    assert api.get_state(sent.id).state is ProcessState.Cancelling
    cancelled = api.get_messages(query=domain.MessagesQueryFilter(state="Cancelling"))
    assert [m.id for m in cancelled] == [sent.id]
    devices = api.list_devices()
    assert [d.id for d in devices] == [account["id"]]
    assert devices[0].last_seen is not None
    health = api.health_check()
    assert health.status.value == "pass" and health.checks


def test_wrong_password_is_unauthorized(server, account):
    with client.APIClient(account["login"], "wrong", base_url=f"{server.url}/3rdparty/v1") as api, \
            pytest.raises(UnauthorizedError):
        api.list_devices()


def test_webhooks_create_list_delete(api):
    created = api.create_webhook(domain.Webhook(id=None, url="http://127.0.0.1:9/hook",
                                                event=WebhookEvent.SMS_RECEIVED))
    assert created.id and created.event is WebhookEvent.SMS_RECEIVED
    assert created.id in [w.id for w in api.get_webhooks()]
    api.delete_webhook(created.id)
    assert created.id not in [w.id for w in api.get_webhooks()]
    with pytest.raises(BadRequestError):
        api.create_webhook(domain.Webhook(id=None, url="ftp://127.0.0.1/x",
                                          event=WebhookEvent.SMS_SENT))


def test_settings_read_patch_and_logs(api):
    settings = api.get_settings()
    assert settings.messages.sim_selection_mode is SimSelectionMode.OS_DEFAULT
    api.patch_settings(domain.DeviceSettings(messages=domain.SettingsMessages(
        sim_selection_mode=SimSelectionMode.ROUND_ROBIN)))
    assert api.get_settings().messages.sim_selection_mode is SimSelectionMode.ROUND_ROBIN
    logs = api.get_logs()
    assert any(entry.module == "settings" for entry in logs)
    assert all(entry.created_at is not None for entry in logs)


def test_health_probes(api):
    for probe in (api.liveness_check, api.readiness_check, api.startup_check):
        assert probe().status.value == "pass"


def test_tokens_generate_use_refresh_revoke(api, server):
    """A client that asks for a token once, then works with it instead of the password."""
    base = f"{server.url}/3rdparty/v1"
    issued = api.generate_token(domain.TokenRequest(scopes=["messages:send", "messages:read"],
                                                    ttl=600))
    assert issued.token_type == "Bearer" and issued.id and issued.refresh_token
    with client.APIClient(None, issued.access_token, base_url=base) as by_token:
        sent = by_token.send(domain.Message(phone_numbers=["+19162255887"], sim_number=2,
                                            text_message=domain.TextMessage("by token")))
        assert by_token.get_state(sent.id).id == sent.id
        with pytest.raises(ForbiddenError) as refused:
            by_token.list_devices()
        assert "devices:list" in refused.value.response["message"]

    renewed = api.refresh_token(issued.refresh_token)
    assert renewed.id != issued.id
    with client.APIClient(None, issued.access_token, base_url=base) as old, \
            pytest.raises(UnauthorizedError):
        old.get_state(sent.id)  # a refresh retires the pair it came with
    with pytest.raises(UnauthorizedError):
        api.refresh_token(issued.refresh_token)  # and a refresh token works once

    with client.APIClient(None, renewed.access_token, base_url=base) as by_token:
        assert by_token.get_state(sent.id).id == sent.id
        api.revoke_token(renewed.id)
        with pytest.raises(UnauthorizedError):
            by_token.get_state(sent.id)
