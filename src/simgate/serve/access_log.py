"""The access log without secrets that live in paths.

A phone's ingest hook is a URL whose last part is the device's secret: anyone who reads
it may post as that phone. The access log (`--access-log`) writes the path of every
request, so that part is masked there.
"""

from __future__ import annotations

import logging
import re

ACCESS_LOGGER = "uvicorn.access"
_HOOK_SECRET = re.compile(r"(/ingest/[^/?\s]*/)[^/?\s]+")
MASK = "***"


def masked(path: str) -> str:
    """A request path as the access log may show it."""
    return _HOOK_SECRET.sub(rf"\g<1>{MASK}", path)


class MaskSecrets(logging.Filter):
    """Masks the ingest secret in each access line (uvicorn passes the path as an arg)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(masked(arg) if isinstance(arg, str) and "/ingest/" in arg
                                else arg for arg in record.args)
        return True


def install() -> None:
    """Mask secrets in the access log of this process (once, however often called)."""
    logger = logging.getLogger(ACCESS_LOGGER)
    if not any(isinstance(f, MaskSecrets) for f in logger.filters):
        logger.addFilter(MaskSecrets())
