"""Errors a use case raises; adapters map them to HTTP statuses or CLI messages."""

from __future__ import annotations

from typing import Any


class ServiceError(Exception):
    """A failure to tell the caller about, with a message saying what to do."""

    status = 400

    def __init__(self, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.data = data


class BadRequest(ServiceError):
    status = 400


class Forbidden(ServiceError):
    status = 403


class NotFound(ServiceError):
    status = 404


class Conflict(ServiceError):
    status = 409


class Unavailable(ServiceError):
    status = 503
