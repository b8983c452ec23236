"""Standard Webhooks signatures (pure, no I/O).

``webhook-signature`` is ``v1,`` + base64(HMAC-SHA256(key, f"{id}.{timestamp}.{body}")),
keyed with the base64-decoded bytes after ``whsec_``; several, space-separated, while a
secret is being rotated.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import secrets

from hookstream.errors import InvalidSecret as InvalidSecret
from hookstream.errors import SignatureMismatch as SignatureMismatch

PREFIX = "whsec_"
MIN_KEY_BYTES = 24
MAX_KEY_BYTES = 64


def new_secret() -> str:
    """A fresh signing secret: ``whsec_`` + base64 of 32 random bytes."""
    return PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def secret_key(secret: str) -> bytes:
    """The HMAC key inside a ``whsec_`` secret; raises InvalidSecret when malformed."""
    if not secret.startswith(PREFIX):
        raise InvalidSecret("the secret must start with 'whsec_'")
    try:
        key = base64.b64decode(secret[len(PREFIX):], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidSecret("the part after 'whsec_' must be standard base64") from exc
    if not MIN_KEY_BYTES <= len(key) <= MAX_KEY_BYTES:
        raise InvalidSecret(
            f"the secret must hold {MIN_KEY_BYTES} to {MAX_KEY_BYTES} bytes, not {len(key)}"
        )
    return key


def sign(keys: list[bytes], webhook_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header value: one ``v1,`` signature per key."""
    signed = b"%s.%d.%s" % (webhook_id.encode(), timestamp, body)
    # hmac.digest is the one-shot C path: no HMAC object per webhook.
    return " ".join(
        "v1," + base64.b64encode(hmac.digest(key, signed, "sha256")).decode() for key in keys
    )


def verify(
    secret: str, headers: dict[str, str], body: bytes, *, now: int, tolerance: int = 300
) -> str:
    """Check a received webhook's Standard Webhooks headers; returns its webhook-id."""
    lowered = {k.lower(): v for k, v in headers.items()}
    webhook_id = lowered.get("webhook-id", "")
    stamp = lowered.get("webhook-timestamp", "")
    given = lowered.get("webhook-signature", "").split()
    if not webhook_id or not stamp.isdigit() or not given:
        raise SignatureMismatch("webhook-id, webhook-timestamp or webhook-signature is missing")
    if abs(now - int(stamp)) > tolerance:
        raise SignatureMismatch(f"webhook-timestamp is more than {tolerance} s away from now")
    expected = sign([secret_key(secret)], webhook_id, int(stamp), body)
    if not any(hmac.compare_digest(expected, sig) for sig in given):
        raise SignatureMismatch("no signature matches the secret")
    return webhook_id
