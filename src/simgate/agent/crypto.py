"""End-to-end encrypted messages as sms-gate.app clients make them.

`$aes-256-cbc/pbkdf2-sha1$i=<iterations>$<base64 salt>$<base64 data>`: AES-256-CBC with
PKCS#7 padding, key = PBKDF2-HMAC-SHA1(passphrase, salt, iterations, 32 bytes), IV = salt.
Only the device knows the passphrase; the server never sees the text or the numbers.
"""

from __future__ import annotations

import base64
import binascii
import hashlib

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

PREFIX = "$aes-256-cbc/pbkdf2-sha1$"


class DecryptionError(ValueError):
    """The value is not in the format, or the passphrase does not open it."""


def decrypt(passphrase: str, value: str) -> str:
    chunks = value.split("$")
    if len(chunks) < 5 or chunks[1] != "aes-256-cbc/pbkdf2-sha1":
        raise DecryptionError("not an aes-256-cbc/pbkdf2-sha1 encrypted value")
    params = dict(p.split("=", 1) for p in chunks[2].split(",") if "=" in p)
    try:
        iterations = int(params["i"])
        salt = base64.b64decode(chunks[-2], validate=True)
        data = base64.b64decode(chunks[-1], validate=True)
    except (KeyError, ValueError, binascii.Error):
        raise DecryptionError("malformed encrypted value") from None
    key = hashlib.pbkdf2_hmac("sha1", passphrase.encode(), salt, iterations, 32)
    decryptor = Cipher(algorithms.AES(key), modes.CBC(salt)).decryptor()
    unpadder = padding.PKCS7(128).unpadder()
    try:
        plain = unpadder.update(decryptor.update(data) + decryptor.finalize())
        plain += unpadder.finalize()
        return plain.decode("utf-8")
    except ValueError:
        raise DecryptionError("cannot decrypt: is the passphrase the one the client used?") \
            from None
