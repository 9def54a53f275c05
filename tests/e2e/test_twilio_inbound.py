"""Incoming SMS to a Twilio-style webhook on a real `simgate run`: Twilio's signed form
POST, and the TwiML answer sent back to the sender through the SIM the SMS arrived on."""

from __future__ import annotations

from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from twilio.request_validator import RequestValidator

from tests.conftest import wait_until
from tests.e2e.gateway import SIM1, SIM2, client, inbox, ready_device, send, start_run
from tests.receiver import serve_on_loopback

KEY = "the-webhook-signing-key"


async def test_a_twiml_answer_goes_back_through_the_sim_the_sms_arrived_on(tmp_path):
    posts: list[tuple[dict[str, str], bool]] = []
    port = 0

    async def sms(request: Request) -> Response:
        params = dict(parse_qsl((await request.body()).decode()))
        url = f"http://127.0.0.1:{port}/sms"
        valid = RequestValidator(KEY).validate(url, params,
                                               request.headers.get("x-twilio-signature", ""))
        posts.append((params, valid))
        return Response("<?xml version='1.0' encoding='UTF-8'?><Response><Message>Thanks,"
                        f" got: {params['Body']}</Message></Response>",
                        media_type="application/xml")

    server, task, port = await serve_on_loopback(Starlette(routes=[
        Route("/sms", sms, methods=["POST"])]))
    run = start_run(tmp_path)
    try:
        async with client(run) as api:
            await ready_device(api)
            patched = await api.patch("/settings", json={"webhooks": {"signing_key": KEY}})
            assert patched.status_code == 200, patched.text
            created = await api.post("/webhooks", json={
                "url": f"twilio+http://127.0.0.1:{port}/sms", "event": "sms:received"})
            assert created.status_code == 201, created.text
            await send(api, "Table for two at eight?", SIM1, sim=2)  # arrives on SIM 1

            await wait_until(lambda: posts, timeout=30)
            params, valid = posts[0]
            assert valid
            assert params["From"] == SIM2 and params["To"] == SIM1
            assert params["Body"] == "Table for two at eight?" and params["NumSegments"] == "1"
            assert params["MessageSid"].startswith("SM") and len(params["MessageSid"]) == 34

            async def answered():
                return [m for m in await inbox(api) if m["recipient"] == SIM2]

            replies = await wait_until(answered, timeout=30)
            assert replies[0]["sender"] == SIM1  # sent by the SIM the SMS arrived on
            assert replies[0]["contentPreview"] == "Thanks, got: Table for two at eight?"
    finally:
        run.stop()
        server.should_exit = True
        await task
