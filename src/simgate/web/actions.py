"""The dashboard's forms (POST, each CSRF-checked): send, cancel, webhooks, settings.

Each goes through the same service as its API call, with the same checks: a send is
validated as a POST /3rdparty/v1/messages body, so the form accepts what the API accepts.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError

from simgate.server.errors import describe_validation
from simgate.server.routers.thirdparty import to_new_message
from simgate.server.schemas import SendRequest
from simgate.services.errors import ServiceError
from simgate.sms.pdu import measure
from simgate.web import pages
from simgate.web.render import Form, FormDep, Viewer, ViewerDep, render

router = APIRouter(include_in_schema=False)

_SEPARATORS = re.compile(r"[,;\r\n]+")  # not spaces: "+1 202 555 0123" is one number


def _send_request(form: Form) -> SendRequest:
    """The form as an API send request; `sim` is "" (automatic) or "<device>:<N>"."""
    body: dict[str, Any] = {
        "phoneNumbers": [n.strip() for n in _SEPARATORS.split(form.get("recipients"))
                         if n.strip()],
        "textMessage": {"text": form.get("text")},
        "withDeliveryReport": form.get("delivery_report", "on") == "on",
    }
    device, _, sim = form.get("sim").rpartition(":")
    if sim:
        if not sim.isdigit() or not device:
            raise ServiceError("pick a SIM from the list, or Automatic")
        body["deviceId"], body["simNumber"] = device, int(sim)
    try:
        return SendRequest.model_validate(body)
    except ValidationError as exc:
        raise ServiceError(describe_validation(list(exc.errors()))) from None


@router.post("/send")
async def send(request: Request, who: ViewerDep, form: FormDep) -> Response:
    gateway = who.gateway
    try:
        new = to_new_message(_send_request(form), False, gateway.settings.default_region)
        message = await gateway.messages.enqueue(who.user_id, new)
    except ServiceError as exc:
        context = {**await pages.send_context(who), "error": exc.message,
                   "form": {k: form.get(k) for k in ("recipients", "text", "sim")}}
        return render(request, "send.html", context, exc.status, who=who)
    return RedirectResponse(f"/messages/{quote(message.ext_id, safe='')}", 303)


@router.post("/send/size")
async def text_size(request: Request, who: ViewerDep, form: FormDep) -> HTMLResponse:
    """The live counter: characters, alphabet and SMS parts, by the rules the agent
    splits the text with."""
    text = form.get("text")
    return render(request, "_size.html", {"size": measure(text), "chars": len(text)}, who=who)


@router.post("/messages/{message_id}/cancel")
async def cancel(request: Request, message_id: str, who: ViewerDep, form: FormDep) -> Response:
    try:
        await who.gateway.messages.cancel(who.user_id, message_id)
    except ServiceError as exc:
        if not await _cancelled_already(who, message_id):  # a second click is no error
            return render(request, "error.html", {"error": exc.message}, exc.status, who=who)
    return RedirectResponse(f"/messages/{quote(message_id, safe='')}", 303)


async def _cancelled_already(who: Viewer, message_id: str) -> bool:
    try:
        message = await who.gateway.messages.get(who.user_id, message_id)
    except ServiceError:
        return False
    return message.state in ("Cancelling", "Cancelled")


async def _webhooks_error(request: Request, who: Viewer, error: ServiceError,
                          form: Form) -> HTMLResponse:
    context = {**await pages.webhooks_context(who), "error": error.message,
               "form": {k: form.get(k) for k in ("url", "event", "device")}}
    return render(request, "webhooks.html", context, error.status, who=who)


@router.post("/webhooks")
async def add_webhook(request: Request, who: ViewerDep, form: FormDep) -> Response:
    try:
        await who.gateway.webhooks.create(who.user_id, form.get("url").strip(),
                                          form.get("event"), form.get("device") or None)
    except ServiceError as exc:
        return await _webhooks_error(request, who, exc, form)
    await who.gateway.webhooks.announce(who.user_id)
    return RedirectResponse("/webhooks", 303)


@router.post("/webhooks/{webhook_id}/delete")
async def delete_webhook(webhook_id: str, who: ViewerDep, form: FormDep) -> Response:
    await who.gateway.webhooks.delete(who.user_id, webhook_id)
    await who.gateway.webhooks.announce(who.user_id)
    return RedirectResponse("/webhooks", 303)


@router.post("/webhooks/{webhook_id}/redrive")
async def redrive(request: Request, webhook_id: str, who: ViewerDep, form: FormDep) -> Response:
    """Queue again the deliveries that ran out of retries (or the one event given)."""
    try:
        count = await who.gateway.webhooks.redrive(who.user_id, webhook_id,
                                                   form.get("event") or None)
    except ServiceError as exc:
        return await _webhooks_error(request, who, exc, form)
    return RedirectResponse(f"/webhooks?redriven={count}", 303)


def _count(value: str) -> int | None:
    """An optional whole number of a form field: empty is none."""
    value = value.strip()
    if not value:
        return None
    if not value.isdigit():
        raise ServiceError(f"{value!r} is not a whole number: leave it empty for no limit")
    return int(value)


def _settings_patch(form: Form, current: dict[str, Any],
                    numbers: list[int]) -> dict[str, Any]:
    """The settings form as a PATCH of the messages and routing groups; per-SIM keys the
    form does not show (weight, prefixes) stay as they were."""
    sims = {name: dict(rules) for name, rules in current["routing"]["sims"].items()}
    for number in numbers:
        rules = sims.setdefault(str(number), {})
        for key in ("rate_per_minute", "daily_limit", "monthly_limit"):
            rules[key] = _count(form.get(f"sim{number}_{key}"))
        rules["enabled"] = form.get(f"sim{number}_enabled") == "on"
    return {
        "messages": {"sim_selection_mode": form.get("sim_selection_mode")},
        "routing": {**{k: v for k, v in current["routing"].items() if k != "sims"},
                    "strategy": form.get("strategy") or None,
                    "failover": form.get("failover") == "on",
                    "max_attempts": _count(form.get("max_attempts")) or 1,
                    "sims": sims},
    }


@router.post("/settings")
async def save_settings(request: Request, who: ViewerDep, form: FormDep) -> Response:
    context = await pages.settings_context(who)
    try:
        patch = _settings_patch(form, context["settings"], context["sim_numbers"])
        await who.gateway.device_settings.patch(who.user_id, patch)
    except ServiceError as exc:
        return render(request, "settings.html", {**context, "error": exc.message,
                                                 "notice": ""}, exc.status, who=who)
    return RedirectResponse("/settings?saved=1", 303)
