"""`Darkroom-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<body>">`.

Receivers check it with `verify` (or the same three lines in their language): the
timestamp inside the signed text makes a captured request useless after the tolerance.
"""

from __future__ import annotations

import hashlib
import hmac
import time

SIGNATURE_HEADER = "Darkroom-Signature"


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The `Darkroom-Signature` header value for `body` sent at `timestamp`."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify(
    secret: str, header: str, body: bytes, tolerance_s: float = 300, now: float | None = None
) -> bool:
    """Whether `header` signs `body` under `secret`, sent within `tolerance_s` of now."""
    fields = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    try:
        timestamp = int(fields["t"])
    except (KeyError, ValueError):
        return False
    if abs((now or time.time()) - timestamp) > tolerance_s:
        return False
    expected = sign(secret, timestamp, body).split("v1=", 1)[1]
    return hmac.compare_digest(expected, fields.get("v1", ""))
