"""Errors a use case raises; adapters map them to HTTP statuses or CLI messages."""

from __future__ import annotations

import math
from typing import Any


class ServiceError(Exception):
    """A failure to tell the caller about, with a message saying what to do."""

    status = 400

    def __init__(self, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.data = data

    @property
    def headers(self) -> dict[str, str] | None:
        """HTTP headers the answer needs beside the status."""
        return None


class BadRequest(ServiceError):
    status = 400


class Forbidden(ServiceError):
    status = 403


class NotFound(ServiceError):
    status = 404


class Conflict(ServiceError):
    status = 409


class TooLarge(ServiceError):
    status = 413


class Unavailable(ServiceError):
    status = 503


class QueueFull(Unavailable):
    """A device already has as many waiting messages as it may: most likely offline."""


class TooManyRequests(ServiceError):
    """Too many tries lately: the caller waits `retry_after` seconds (whole, at least 1)."""

    status = 429

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = max(1, math.ceil(retry_after))

    @property
    def headers(self) -> dict[str, str] | None:
        return {"Retry-After": str(self.retry_after)}
