"""The Twilio-compatible Messages API, /2010-04-01/Accounts/{AccountSid}/: what Twilio's
SDKs call once their base URL points here. Form-encoded in, Twilio's JSON out, errors
as Twilio writes them; AccountSid is the simgate login (or an API token's id) and the
AuthToken its password (or that API token)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from email.utils import format_datetime
from functools import wraps
from typing import Any
from urllib.parse import parse_qsl, urlencode

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse, Response

from simgate.server.auth import basic_credentials, client_address
from simgate.services.errors import ServiceError
from simgate.services.tokens import InvalidToken
from simgate.services.twilio import (
    API_VERSION,
    TwilioDoor,
    TwilioRefusal,
    TwilioSend,
    TwilioView,
    ext_id_of,
    refusal_of,
)

router = APIRouter(tags=["twilio"])

SEND_PARAMETERS = {"To", "From", "Body", "StatusCallback", "ValidityPeriod", "SendAt",
                   "ScheduleType", "MessagingServiceSid"}
LIST_PARAMETERS = {"To", "From", "PageSize", "Page", "PageToken"}
UPDATE_PARAMETERS = {"Status"}
MAX_PAGE_SIZE = 1000
DEFAULT_PAGE_SIZE = 50
_CHALLENGE = {"WWW-Authenticate": 'Basic realm="simgate"'}

Handler = Callable[..., Awaitable[Response]]


def _error(refusal: TwilioRefusal, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"code": refusal.code, "message": refusal.message,
                         "more_info": f"https://www.twilio.com/docs/errors/{refusal.code}",
                         "status": refusal.status}, status_code=refusal.status,
                        headers=headers)


def twilio_errors(handler: Handler) -> Handler:
    """Every refusal of the route in Twilio's error format."""

    @wraps(handler)
    async def guarded(*args: Any, **kwargs: Any) -> Response:
        try:
            return await handler(*args, **kwargs)
        except TwilioRefusal as refusal:
            headers = _CHALLENGE if refusal.status == 401 else None
            return _error(refusal, headers)
        except ServiceError as exc:
            return _error(refusal_of(exc), exc.headers)

    return guarded


def _door(request: Request) -> TwilioDoor:
    return request.app.state.twilio.door


async def _account(request: Request, account_sid: str, scope: str) -> tuple[int, str]:
    """The user behind the Basic credentials, and the AuthToken they gave."""
    try:
        credentials = basic_credentials(request)
    except HTTPException as exc:
        raise TwilioRefusal(20003, f"Authenticate: {exc.detail}", 401) from None
    if credentials is None:
        raise TwilioRefusal(20003, "Authenticate: use Basic auth with your login (or an API"
                                   " token's id) as AccountSid and your password (or the"
                                   " API token) as AuthToken", 401)
    username, secret = credentials
    if username != account_sid:
        raise TwilioRefusal(20003, f"Authenticate: the account in the URL ({account_sid})"
                                   f" is not the one of the credentials ({username})", 401)
    gateway = request.app.state.gateway
    if secret.count(".") == 2:  # a token: tried first, a password guess would count
        try:
            claims = await gateway.tokens.authenticate(secret)
        except InvalidToken:
            claims = None
        if claims is not None and username in (claims.token_id,
                                               await gateway.users.name_of(claims.user_id)):
            if not claims.allows(scope):
                raise TwilioRefusal(20003, f"Authenticate: the token lacks the {scope}"
                                           " scope: ask for a token with it", 403)
            return claims.user_id, secret
    user_id = await gateway.users.authenticate(username, secret, client_address(request))
    if user_id is None:
        raise TwilioRefusal(20003, "Authenticate: wrong AccountSid or AuthToken", 401)
    return user_id, secret


async def _form(request: Request, allowed: set[str]) -> dict[str, str]:
    """The form-encoded body (or query), refused when it holds a parameter not known."""
    raw = await request.body() if request.method == "POST" else request.url.query.encode()
    try:
        pairs = parse_qsl(raw.decode("utf-8"), keep_blank_values=True)
    except (UnicodeDecodeError, ValueError):
        raise TwilioRefusal(20001, "the parameters are not form-encoded UTF-8") from None
    unknown = sorted({name for name, _ in pairs} - allowed)
    if unknown:
        raise TwilioRefusal(20001, f"Unknown parameter {unknown[0]!r}: this resource takes"
                                   f" {', '.join(sorted(allowed))}")
    return dict(pairs)


def _date(value: datetime | None) -> str | None:
    return format_datetime(value.astimezone(UTC)) if value is not None else None


def _messages_uri(account_sid: str) -> str:
    return f"/{API_VERSION}/Accounts/{account_sid}/Messages"


def resource(view: TwilioView) -> dict[str, Any]:
    """A message as Twilio's Message resource."""
    uri = f"{_messages_uri(view.account_sid)}/{view.sid}"
    return {
        "account_sid": view.account_sid, "api_version": API_VERSION, "body": view.body,
        "date_created": _date(view.created_at), "date_sent": _date(view.sent_at),
        "date_updated": _date(view.updated_at), "direction": "outbound-api",
        "error_code": view.error_code, "error_message": view.error_message,
        "from": view.sender, "messaging_service_sid": view.messaging_service_sid,
        "num_media": "0", "num_segments": str(view.num_segments), "price": None,
        "price_unit": None, "sid": view.sid, "status": view.status,
        "subresource_uris": {"media": f"{uri}/Media.json"}, "to": view.to,
        "uri": f"{uri}.json",
    }


@router.post("/{account_sid}/Messages.json", status_code=201)
@twilio_errors
async def create_message(account_sid: str, request: Request) -> Response:
    """Send a message: To, Body, and From (a SIM's number) or none for the rotation."""
    user_id, auth_token = await _account(request, account_sid, "messages:send")
    form = await _form(request, SEND_PARAMETERS)
    view = await _door(request).send(user_id, account_sid, auth_token, TwilioSend(
        to=form.get("To"), body=form.get("Body"), sender=form.get("From"),
        messaging_service_sid=form.get("MessagingServiceSid"),
        status_callback=form.get("StatusCallback"),
        validity_period=form.get("ValidityPeriod"), send_at=form.get("SendAt"),
        schedule_type=form.get("ScheduleType")))
    return JSONResponse(resource(view), status_code=201)


def _whole(form: dict[str, str], name: str, default: int, low: int, high: int) -> int:
    value = form.get(name, str(default))
    if not value.isdigit() or not low <= int(value) <= high:
        raise TwilioRefusal(20001, f"{name} must be a whole number from {low} to {high}")
    return int(value)


@router.get("/{account_sid}/Messages.json")
@twilio_errors
async def list_messages(account_sid: str, request: Request) -> Response:
    """The messages sent through this API, newest first, in Twilio's pages."""
    user_id, _ = await _account(request, account_sid, "messages:list")
    form = await _form(request, LIST_PARAMETERS)
    size = _whole(form, "PageSize", DEFAULT_PAGE_SIZE, 1, MAX_PAGE_SIZE)
    page = _whole(form, "Page", 0, 0, 1_000_000)
    views, total = await _door(request).page(user_id, form.get("To"), form.get("From"),
                                             size, page)
    base = _messages_uri(account_sid) + ".json"
    filters = {k: form[k] for k in ("To", "From") if k in form}

    def page_uri(number: int) -> str:
        return f"{base}?{urlencode({**filters, 'PageSize': size, 'Page': number})}"

    start = page * size
    return JSONResponse({
        "messages": [resource(v) for v in views],
        "end": start + max(len(views) - 1, 0), "start": start, "page": page,
        "page_size": size, "uri": page_uri(page), "first_page_uri": page_uri(0),
        "next_page_uri": page_uri(page + 1) if start + len(views) < total else None,
        "previous_page_uri": page_uri(page - 1) if page > 0 else None,
    })


@router.get("/{account_sid}/Messages/{sid}.json")
@twilio_errors
async def fetch_message(account_sid: str, sid: str, request: Request) -> Response:
    user_id, _ = await _account(request, account_sid, "messages:read")
    await _form(request, set())
    return JSONResponse(resource(await _door(request).get(user_id, ext_id_of(sid))))


@router.post("/{account_sid}/Messages/{sid}.json")
@twilio_errors
async def update_message(account_sid: str, sid: str, request: Request) -> Response:
    """Status=canceled cancels a message no SIM has taken yet."""
    user_id, _ = await _account(request, account_sid, "messages:cancel")
    form = await _form(request, UPDATE_PARAMETERS)
    if form.get("Status") != "canceled":
        raise TwilioRefusal(20001, "Status must be canceled: that is the one change a"
                                   " message takes")
    return JSONResponse(resource(await _door(request).cancel(user_id, ext_id_of(sid))))
