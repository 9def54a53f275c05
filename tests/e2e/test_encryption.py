"""End-to-end encryption: the official client encrypts, only the device decrypts."""

from __future__ import annotations

import httpx
from android_sms_gateway import client, domain
from android_sms_gateway.encryption import Encryptor
from android_sms_gateway.enums import ProcessState

from tests.conftest import wait_until
from tests.e2e.gateway import PASSWORD, SIM1, SIM2, USER, final_state, ready_device

PASSPHRASE = "correct horse battery staple"


async def test_encrypted_message_is_sent_in_clear_and_stored_encrypted(run):
    async with httpx.AsyncClient(base_url=f"{run.url}/3rdparty/v1", auth=(USER, PASSWORD),
                                 timeout=10) as api:
        await ready_device(api)
        await api.patch("/settings", json={"encryption": {"passphrase": PASSPHRASE}})
        with client.APIClient(USER, PASSWORD, base_url=f"{run.url}/3rdparty/v1",
                              encryptor=Encryptor(PASSPHRASE)) as official:
            sent = official.send(domain.Message(
                phone_numbers=[SIM2], sim_number=1,
                text_message=domain.TextMessage("secret from SIM 1")))
            raw = (await api.get(f"/messages/{sent.id}")).json()
            assert raw["isEncrypted"] is True
            assert raw["recipients"][0]["phoneNumber"].startswith("$aes-256-cbc/pbkdf2-sha1$")
            done = await final_state(api, sent.id, within=30)
            assert done["state"] in ("Sent", "Delivered") and done["simNumber"] == 1
            state = official.get_state(sent.id)  # the client decrypts the numbers
            assert state.recipients[0].phone_number == SIM2
            assert state.state in (ProcessState.Sent, ProcessState.Delivered)

        async def arrived():
            inbox = (await api.get("/inbox")).json()
            return [m for m in inbox if m["sender"] == SIM1]

        received = await wait_until(arrived, timeout=15)
        assert received[0]["contentPreview"] == "secret from SIM 1"
        assert received[0]["simNumber"] == 2


async def test_wrong_passphrase_fails_readably(run):
    async with httpx.AsyncClient(base_url=f"{run.url}/3rdparty/v1", auth=(USER, PASSWORD),
                                 timeout=10) as api:
        await ready_device(api)
        await api.patch("/settings", json={"encryption": {"passphrase": "the device's"}})
        with client.APIClient(USER, PASSWORD, base_url=f"{run.url}/3rdparty/v1",
                              encryptor=Encryptor("a different one")) as official:
            sent = official.send(domain.Message(phone_numbers=[SIM2],
                                                text_message=domain.TextMessage("x")))
        done = await final_state(api, sent.id, within=30)
        assert done["state"] == "Failed"
        assert "passphrase" in done["recipients"][0]["error"]
