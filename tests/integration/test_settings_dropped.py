"""A settings key that is not kept is named in the answer's body too, where curl shows it,
and the official clients read that answer unchanged."""

from __future__ import annotations

import android_sms_gateway.domain as official


async def test_a_misspelt_key_is_named_in_the_body_and_the_header(api):
    patched = await api.patch("/3rdparty/v1/settings",
                              json={"messages": {"sim_selection": "Random"}})
    assert patched.status_code == 200, patched.text
    assert patched.json()["dropped"] == ["messages.sim_selection"]
    assert "messages.sim_selection" in patched.headers["Warning"]
    clean = await api.patch("/3rdparty/v1/settings",
                            json={"messages": {"sim_selection_mode": "RoundRobin"}})
    assert "dropped" not in clean.json() and "Warning" not in clean.headers


async def test_the_answer_written_back_whole_drops_only_its_own_note(api):
    answer = (await api.patch("/3rdparty/v1/settings", json={"bogus": {}})).json()
    assert answer["dropped"] == ["bogus"]
    again = await api.put("/3rdparty/v1/settings", json=answer)
    assert again.status_code == 200, again.text
    assert "dropped" not in again.json() and "Warning" not in again.headers


async def test_the_official_python_client_reads_an_answer_with_dropped_keys(api):
    answer = (await api.patch("/3rdparty/v1/settings",
                              json={"messages": {"sim_selection": "Random"}})).json()
    settings = official.DeviceSettings.from_dict(answer)  # as it reads GET /settings
    assert settings.messages is not None
