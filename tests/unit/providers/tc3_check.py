"""Checking a received TC3-HMAC-SHA256 Authorization header, for the tests of the signer.

The worker only signs (worker.providers.tc3); reading a header back and verifying it is what
test_tc3_oracle.py needs to show that `sign` round-trips, so it lives beside that test.
"""

from __future__ import annotations

import hmac
import re

import attrs

from worker.providers.tc3 import SIGNED_HEADERS, sign


@attrs.frozen(slots=True)
class Tc3Credential:
    """The parts of a received Authorization header."""

    secret_id: str
    date: str
    service: str
    signed_headers: str
    signature: str


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
