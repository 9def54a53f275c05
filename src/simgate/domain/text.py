"""Text that can go anywhere simgate sends or keeps it: JSON on the wire, UTF-8, the store.

A UTF-16 half pair (a lone surrogate) is a valid Python string and none of those: an item
holding one is set aside where it is found, never allowed to stop the loop that sends it.
"""

from __future__ import annotations

import json
from typing import Any


def printable(text: str) -> str:
    """`text` with what no UTF-8 can hold written as an escape (for logs and reasons)."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def unsendable(value: Any) -> str | None:
    """Why `value` cannot go as JSON, as an HTTP client encodes it, or None when it can."""
    try:
        json.dumps(value, ensure_ascii=False, allow_nan=False).encode("utf-8")
    except (ValueError, TypeError) as exc:  # UnicodeEncodeError is a ValueError
        return f"it holds what no JSON can carry ({printable(str(exc))})"
    return None
