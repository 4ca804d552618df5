"""TC3-HMAC-SHA256, Tencent Cloud's API signature v3 (PROVIDERS.md 5.5), as the client signs.

Only what Tencent's own SDK signs is supported: the headers `content-type;host` and a hashed
payload. (Checking a received signature is the tests' business: tests/unit/providers/tc3_check.py.)
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime

import attrs

ALGORITHM = "TC3-HMAC-SHA256"
SIGNED_HEADERS = "content-type;host"


@attrs.frozen(slots=True)
class Tc3Signature:
    """A computed signature; the intermediate strings are kept for debugging and tests."""

    authorization: str          # the complete Authorization header value
    signature: str              # lowercase hex
    date: str                   # YYYY-MM-DD, the UTC date of the timestamp
    credential_scope: str       # <date>/<service>/tc3_request
    canonical_request: str
    string_to_sign: str


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode("utf-8"), hashlib.sha256).digest()


def sign(
    *,
    secret_id: str,
    secret_key: str,
    host: str,
    payload: bytes,
    timestamp: int,
    content_type: str,
    service: str = "ses",
    method: str = "POST",
    canonical_uri: str = "/",
    canonical_query: str = "",
) -> Tc3Signature:
    """Sign one request: `payload` must be the exact body bytes sent (b"" for GET).

    `host` and `content_type` must equal the Host and Content-Type headers sent, byte for byte,
    and `timestamp` the X-TC-Timestamp header. For GET, pass the urlencoded query string as
    `canonical_query` (the SDK's convention).
    """
    # The credential date is the UTC date of the same timestamp, even where the local date differs
    # (UTC+8 callers sign with yesterday's date until 08:00 local time).
    date = datetime.fromtimestamp(timestamp, tz=UTC).strftime("%Y-%m-%d")
    canonical_headers = f"content-type:{content_type}\nhost:{host}\n"
    canonical_request = "\n".join(
        (
            method,
            canonical_uri,
            canonical_query,
            canonical_headers,
            SIGNED_HEADERS,
            hashlib.sha256(payload).hexdigest(),
        )
    )
    credential_scope = f"{date}/{service}/tc3_request"
    string_to_sign = "\n".join(
        (
            ALGORITHM,
            str(timestamp),
            credential_scope,
            hashlib.sha256(canonical_request.encode("utf-8")).hexdigest(),
        )
    )
    secret_date = _hmac(("TC3" + secret_key).encode("utf-8"), date)
    secret_service = _hmac(secret_date, service)
    secret_signing = _hmac(secret_service, "tc3_request")
    signature = hmac.new(secret_signing, string_to_sign.encode("utf-8"), hashlib.sha256).hexdigest()
    # ", " separators exactly as the SDK writes them; servers parse either, tests compare bytes.
    authorization = (
        f"{ALGORITHM} Credential={secret_id}/{credential_scope}, "
        f"SignedHeaders={SIGNED_HEADERS}, Signature={signature}"
    )
    return Tc3Signature(authorization, signature, date, credential_scope, canonical_request, string_to_sign)
