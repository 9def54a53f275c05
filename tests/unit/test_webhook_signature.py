"""Known answers for the webhook signature, as the official app makes it
(PayloadSingingPlugin.kt: `X-Signature` = lowercase hex of HmacSHA256, keyed with the
signing key's UTF-8 bytes, over the UTF-8 bytes of body text + `X-Timestamp`, the Unix
seconds in decimal). Receivers written for sms-gate.app check exactly that.

Each expected hex was computed apart from this code, with OpenSSL:

    printf '%s' "$BODY$TIMESTAMP" | openssl dgst -sha256 -hmac "$KEY"

so a change to the algorithm made in `sign` and `verify` alike still fails here.
"""

from __future__ import annotations

import pytest

from simgate.webhooks.signing import sign, verify

VECTORS = [
    # key, body, timestamp, X-Signature
    ("k3y", '{"event":"sms:received","payload":{"message":"hi"}}', 1700000000,
     "d5a5aef530b599d1734dfaa37fd2ba398636cf34471aedfb75da5ac6ad6d84af"),
    # non-ASCII key and body: both taken as UTF-8 bytes, as Kotlin's toByteArray() does
    ("ключ-key", '{"message":"Привет, мир €"}', 1767225600,
     "3df49ecbdb69ab114ceaaeecc29c7841f65427f7909af07f70b79280c48232b9"),
    # an empty body: the timestamp alone is signed
    ("k3y", "", 1700000000,
     "89394f7083442a1131666afa69fbc1c7e20fb97916d7660b8b6bb8975408f9b1"),
]
FOREVER = 10**10  # seconds of tolerance: the vectors' timestamps are long past


@pytest.mark.parametrize(("key", "body", "timestamp", "signature"), VECTORS)
def test_sign_gives_the_known_signature(key, body, timestamp, signature):
    assert sign(key, body.encode(), timestamp) == {"X-Timestamp": str(timestamp),
                                                  "X-Signature": signature}


@pytest.mark.parametrize(("key", "body", "timestamp", "signature"), VECTORS)
def test_verify_takes_the_known_signature_and_nothing_near_it(key, body, timestamp,
                                                              signature):
    stamp = str(timestamp)
    assert verify(key, body.encode(), stamp, signature, tolerance_seconds=FOREVER)
    assert not verify(key + "x", body.encode(), stamp, signature, tolerance_seconds=FOREVER)
    assert not verify(key, body.encode() + b" ", stamp, signature, tolerance_seconds=FOREVER)
    assert not verify(key, body.encode(), str(timestamp + 1), signature,
                      tolerance_seconds=FOREVER)
    other = signature[:-1] + ("1" if signature[-1] == "0" else "0")
    assert not verify(key, body.encode(), stamp, other, tolerance_seconds=FOREVER)
