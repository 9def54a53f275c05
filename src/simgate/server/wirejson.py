"""JSON bodies read as strictly as the original server's Go decoder reads them.

Python's json module takes `NaN`, `Infinity`, numbers too large for any field, the NUL
character and lone UTF-16 surrogates (`"\ud800"`, half of a pair); Go's encoding/json
refuses the first three, and none has a place in the store or in an answer (PostgreSQL
cannot hold NUL in text or JSON, no phone shows it, and a lone surrogate cannot be
written as UTF-8 at all).
They are refused here, before any route sees the body, with a 400 that says what to fix.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
from typing import Any

from fastapi import HTTPException
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response

INT_MIN, INT_MAX = -(2**63), 2**64 - 1  # what fits a Go int64 or uint64
_NUL = b"\\u0000"  # JSON can carry NUL only escaped, so this finds every one
# A surrogate comes escaped (\ud800, \uDC00) or, in a body json reads leniently, as its
# UTF-8 spelling (ED A0..BF ..); these find every one, and a few valid pairs and Hangul
_SURROGATE_HINTS = (b"\\ud", b"\\uD", b"\xed")
_SURROGATE = re.compile("[\ud800-\udfff]")


class BodyRefused(HTTPException):
    """A body no route could use; a 400 saying why (handled as any HTTPException)."""

    def __init__(self, message: str) -> None:
        super().__init__(status_code=400, detail=message)


def _constant(name: str) -> Any:
    raise BodyRefused(f"request body is not valid JSON: {name} is not a JSON number;"
                      " send a finite number, or null")


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise BodyRefused(f"request body: the number {text[:40]} is out of range;"
                          " send a finite number")
    return value


def _int(text: str) -> int:
    # checked on the text first: int() of thousands of digits is slow, then refused
    if len(text.lstrip("-")) > 20 or not INT_MIN <= (value := int(text)) <= INT_MAX:
        raise BodyRefused(f"request body: the integer {text[:24]}{'…' if len(text) > 24 else ''}"
                          " is out of range: whole numbers must fit in 64 bits")
    return value


def _path(path: list[str | int]) -> str:
    name = ""
    for part in path:
        name += f"[{part}]" if isinstance(part, int) else (f".{part}" if name else part)
    return name or "request body"


def _refuse_unwritable(value: Any, path: list[str | int]) -> None:
    if isinstance(value, str):
        if "\x00" in value:
            raise BodyRefused(f"{_path(path)}: the NUL character (\\u0000) cannot be stored or"
                              " sent; remove it")
        if (found := _SURROGATE.search(value)) is not None:
            raise BodyRefused(f"{_path(path)}: \\u{ord(found.group()):04x} is half of a UTF-16"
                              " surrogate pair, not a character; send the whole pair (or the"
                              " character itself, in UTF-8), or remove it")
    elif isinstance(value, dict):
        for key, item in value.items():
            _refuse_unwritable(key, path)
            _refuse_unwritable(item, [*path, _SURROGATE.sub("\ufffd", key[:64])])
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _refuse_unwritable(item, [*path, index])


def _suspect(raw: bytes) -> bool:
    """Whether a body may hold a NUL or a lone surrogate (then its strings are checked)."""
    return _NUL in raw or any(hint in raw for hint in _SURROGATE_HINTS)


def loads(body: bytes | str) -> Any:
    """The JSON value of a body; BodyRefused for NaN, Infinity, numbers beyond 64 bits, NUL
    characters and lone surrogates; json.JSONDecodeError for what is not JSON at all."""
    value = json.loads(body, parse_constant=_constant, parse_float=_float, parse_int=_int)
    raw = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else body
    if _suspect(raw):
        _refuse_unwritable(value, [])
    return value


def screen(body: bytes) -> None:
    """The NUL and surrogate checks of `loads` for a body that another parser reads: nearly
    free when the body has neither, which is the rule."""
    if _suspect(body):
        with contextlib.suppress(ValueError, RecursionError):  # not JSON: the parser says so
            loads(body)


class StrictRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = loads(await self.body())
        return self._json


class StrictJSONRoute(APIRoute):
    """An APIRoute whose JSON body is read by `loads` (FastAPI reads it with `json()`)."""

    def get_route_handler(self) -> Any:
        handler = super().get_route_handler()

        async def strict(request: Request) -> Response:
            return await handler(StrictRequest(request.scope, request.receive, request._send))

        return strict
