"""Every error leaves as JSON {"code", "message"} with the status the original uses."""

from __future__ import annotations

import json
import logging
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


def _field(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    name = ""
    for part in parts:
        name += f"[{part}]" if part.isdigit() else (f".{part}" if name else part)
    return name


def describe_validation(errors: list[dict[str, Any]]) -> str:
    """One readable sentence per problem, naming the field as the client wrote it."""
    sentences = []
    for error in errors[:5]:
        if error.get("type") == "json_invalid":
            return "request body is not valid JSON: " + str(error.get("ctx", {}).get("error", ""))
        field = _field(tuple(error.get("loc", ())))
        text = str(error.get("msg", "invalid")).removeprefix("Value error, ")
        sentences.append(f"{field}: {text}" if field else text)
    return "; ".join(sentences)


def _plain(value: Any) -> str:
    """What an error's input was, as text (a raw body arrives as bytes)."""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def install(app: FastAPI) -> None:
    @app.exception_handler(ServiceError)
    async def _service(_: Request, exc: ServiceError) -> JSONResponse:
        return error_response(exc.status, exc.message, exc.data)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = list(exc.errors())
        return error_response(400, describe_validation(errors),
                              json.loads(json.dumps(errors, default=_plain)))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else json.dumps(exc.detail)
        return error_response(exc.status_code, message, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return error_response(500, "internal error: see the server log")
