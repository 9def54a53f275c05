"""X-Twilio-Signature, by Twilio's documented algorithm: HMAC-SHA1 keyed with the
AuthToken over the full URL followed by every POST parameter, sorted by name, each as
name then value; base64. Receivers check it with their Twilio SDK's RequestValidator."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping


def twilio_signature(auth_token: str, url: str, params: Mapping[str, str]) -> str:
    payload = url + "".join(name + params[name] for name in sorted(params))
    digest = hmac.new(auth_token.encode(), payload.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()
