"""Every error leaves as JSON {"code", "message"} with the status the original uses."""

from __future__ import annotations

import json
import logging
import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from simgate.services.errors import ServiceError

log = logging.getLogger("simgate.server")


def error_response(status: int, message: str, data: Any = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    body: dict[str, Any] = {"code": status, "message": message}
    if data is not None:
        body["data"] = data
    return JSONResponse(body, status_code=status, headers=headers)


ECHO_CHARS = 64  # of a wrong value, quoted back: enough to recognise it, never the body
MAX_ERRORS = 10  # problems listed in `data`; the message names the first five


def _cut(text: str, limit: int = ECHO_CHARS) -> str:
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} characters)"


def _echo(value: Any) -> Any:
    """A wrong value as it may be quoted back: short, and always encodable as JSON."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    if isinstance(value, str):
        return _cut(value)
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return value if value.bit_length() <= 64 else f"an integer of {value.bit_length()} bits"
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    return _cut(str(value)) if not isinstance(value, dict | list | tuple) else None


def _field(loc: tuple[Any, ...]) -> str:
    parts = [_cut(str(p), 32) for p in loc if p not in ("body", "query", "path", "header")]
    name = ""
    for part in parts:
        name += f"[{part}]" if part.isdigit() else (f".{part}" if name else part)
    return name


# Clearer than the validator's own words for what clients most often get wrong
_HINTS = {
    "int_type": "must be a whole number written as a JSON number, e.g. 2 (not \"2\")",
    "bool_type": "must be true or false, without quotes",
    "string_type": "must be a string (in quotes)",
    "timezone_aware": "needs a time zone (RFC 3339), e.g. 2030-01-01T08:30:00Z",
    "datetime_type": "must be a time as text (RFC 3339), e.g. 2030-01-01T08:30:00Z",
}


def describe_validation(errors: list[dict[str, Any]]) -> str:
    """One readable sentence per problem, naming the field as the client wrote it."""
    sentences = []
    for error in errors[:5]:
        if error.get("type") == "json_invalid":
            return "request body is not valid JSON: " + str(error.get("ctx", {}).get("error", ""))
        field = _field(tuple(error.get("loc", ())))
        text = _HINTS.get(error.get("type", "")) or str(error.get("msg", "invalid")).removeprefix(
            "Value error, ")
        sentences.append(f"{field}: {text}" if field else text)
    return "; ".join(sentences)


def _error_data(error: dict[str, Any]) -> dict[str, Any]:
    """One problem for `data`: the input quoted short (a container not at all)."""
    data: dict[str, Any] = {
        "type": error.get("type"),
        "loc": [_echo(p) for p in error.get("loc", ())],
        "msg": _cut(str(error.get("msg", "")), 512),
    }
    if (echoed := _echo(error.get("input"))) is not None:
        data["input"] = echoed
    if error.get("ctx"):
        data["ctx"] = {k: _echo(v) for k, v in error["ctx"].items()}
    return data


async def _service(_: Request, exc: ServiceError) -> JSONResponse:
    return error_response(exc.status, exc.message, exc.data, exc.headers)


async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
    errors = list(exc.errors())
    return error_response(400, describe_validation(errors),
                          [_error_data(e) for e in errors[:MAX_ERRORS]])


async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
    message = exc.detail if isinstance(exc.detail, str) else json.dumps(exc.detail)
    return error_response(exc.status_code, message, headers=getattr(exc, "headers", None))


async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error", exc_info=exc)
    return error_response(500, "internal error: see the server log")


# By the class of the error, most specific first, as the app's handlers are chosen.
HANDLERS: list[tuple[type[Exception], Any]] = [
    (ServiceError, _service),
    (RequestValidationError, _validation),
    (StarletteHTTPException, _http),
    (Exception, _unexpected),
]


async def response_for(request: Request, exc: Exception) -> JSONResponse:
    """The answer the app's handlers give to `exc`, for a route served outside the app."""
    for kind, handler in HANDLERS:
        if isinstance(exc, kind):
            return await handler(request, exc)
    raise exc  # not reached: Exception is the last kind


def install(app: FastAPI) -> None:
    for kind, handler in HANDLERS:
        app.add_exception_handler(kind, handler)
