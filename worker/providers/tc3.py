"""TC3-HMAC-SHA256, Tencent Cloud's API signature v3 (PROVIDERS.md 5.5), for the client and the simulator.

Only what Tencent's own SDK signs is supported: the headers `content-type;host` and a hashed
payload. The client signs with `sign`; the provider simulator checks a received request with
`parse_authorization` (to find the SecretId and the date) and `verify`.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from datetime import datetime, timezone

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


@attrs.frozen(slots=True)
class Tc3Credential:
    """The parts of a received Authorization header."""

    secret_id: str
    date: str
    service: str
    signed_headers: str
    signature: str


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
    date = datetime.fromtimestamp(timestamp, tz=timezone.utc).strftime("%Y-%m-%d")
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


_AUTHORIZATION = re.compile(
    r"^TC3-HMAC-SHA256 Credential=(?P<secret_id>[^/,\s]+)/(?P<date>\d{4}-\d{2}-\d{2})/(?P<service>[^/,\s]+)"
    r"/tc3_request,\s*SignedHeaders=(?P<signed>[^,\s]+),\s*Signature=(?P<signature>[0-9a-f]{64})$"
)


def parse_authorization(header: str) -> Tc3Credential:
    """Split a received Authorization header; ValueError when it is not TC3-HMAC-SHA256."""
    match = _AUTHORIZATION.match(header.strip())
    if match is None:
        raise ValueError("not a TC3-HMAC-SHA256 Authorization header")
    return Tc3Credential(
        match["secret_id"], match["date"], match["service"], match["signed"], match["signature"]
    )


def verify(
    authorization: str,
    *,
    secret_key: str,
    host: str,
    payload: bytes,
    timestamp: int,
    content_type: str,
    method: str = "POST",
    canonical_uri: str = "/",
    canonical_query: str = "",
) -> bool:
    """True when `authorization` is the signature of this request under `secret_key`.

    Checks the signature only: the caller compares `timestamp` with its clock (Tencent allows
    five minutes, answering AuthFailure.SignatureExpire) and maps the SecretId to the key.
    """
    try:
        credential = parse_authorization(authorization)
    except ValueError:
        return False
    if credential.signed_headers != SIGNED_HEADERS:
        return False
    expected = sign(
        secret_id=credential.secret_id,
        secret_key=secret_key,
        host=host,
        payload=payload,
        timestamp=timestamp,
        content_type=content_type,
        service=credential.service,
        method=method,
        canonical_uri=canonical_uri,
        canonical_query=canonical_query,
    )
    # A date in the header other than the timestamp's UTC date is a different (wrong) signature.
    return credential.date == expected.date and hmac.compare_digest(expected.signature, credential.signature)
