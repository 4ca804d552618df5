"""The TC3-HMAC-SHA256 signer against Tencent's own SDK (tencentcloud-sdk-python-common) as oracle."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tencentcloud.common.abstract_client import AbstractClient
from tencentcloud.common.credential import Credential
from tencentcloud.common.http.request import RequestInternal
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile
from tencentcloud.common.sign import Sign

from tests.unit.providers import tc3_check
from worker.providers import tc3

# -- the oracle -----------------------------------------------------------------------------------


def sdk_signature(
    *, secret_key: str, host: str, payload: bytes, timestamp: int, content_type: str, service: str,
    method: str = "POST", uri: str = "/", query: str = "",
) -> str:
    """The SDK's canonical request, string to sign and key derivation (AbstractClient._get_tc3_signature)."""
    data = query if method == "GET" else payload
    req = RequestInternal(host, method, uri, {"Content-Type": content_type, "Host": host, "X-TC-Timestamp": str(timestamp)}, data)
    # The SDK's own date rule: datetime.utcfromtimestamp(timestamp).
    date = datetime.fromtimestamp(timestamp, tz=UTC).strftime("%Y-%m-%d")
    # `self` is not used by the method; calling it unbound drives exactly the SDK's code.
    return AbstractClient._get_tc3_signature(None, {}, req, date, service, secret_key)


class _SesClient(AbstractClient):
    _apiVersion = "2020-10-02"
    _endpoint = "ses.tencentcloudapi.com"
    _service = "ses"


def sdk_request(secret_id: str, secret_key: str, host: str, params: dict, timestamp: float) -> RequestInternal:
    """A whole request as the SDK builds it (body bytes, headers, Authorization), clock frozen."""
    profile = ClientProfile(httpProfile=HttpProfile(endpoint=host))
    client = _SesClient(Credential(secret_id, secret_key), "ap-singapore", profile)
    req = RequestInternal(host, "POST", "/")
    with mock.patch("tencentcloud.common.abstract_client.time.time", return_value=timestamp):
        client._build_req_with_tc3_signature("GetSendEmailStatus", params, req)
    return req


# -- the fixed vector (PROVIDERS.md 5.5) -----------------------------------------------------------

VECTOR_BODY = b'{"RequestDate":"2023-11-14","Offset":0,"Limit":100}'
VECTOR_SIGNATURE = "199ad5e26062789dffbb8d24e5e06a52da1dbe3f5bd201902b0cabdc0d801ef6"


def test_providers_md_vector() -> None:
    assert hashlib.sha256(VECTOR_BODY).hexdigest() == "557be1660a9c91924a7eaedce16554c687294e3773192b62db0bd786bf4d4d64"
    sig = tc3.sign(
        secret_id="AKIDEXAMPLE",
        secret_key="SECRETKEYEXAMPLE",
        host="ses.tencentcloudapi.com",
        payload=VECTOR_BODY,
        timestamp=1700000000,
        content_type="application/json; charset=utf-8",
    )
    assert sig.date == "2023-11-14"
    assert sig.credential_scope == "2023-11-14/ses/tc3_request"
    assert (
        hashlib.sha256(sig.canonical_request.encode()).hexdigest()
        == "0ed7d70bd1ac30306a6bb1c036600a108c7d349ff83095faec743bf42272e10c"
    )
    assert sig.canonical_request == (
        "POST\n/\n\ncontent-type:application/json; charset=utf-8\nhost:ses.tencentcloudapi.com\n\n"
        "content-type;host\n557be1660a9c91924a7eaedce16554c687294e3773192b62db0bd786bf4d4d64"
    )
    assert sig.signature == VECTOR_SIGNATURE
    assert sig.authorization == (
        "TC3-HMAC-SHA256 Credential=AKIDEXAMPLE/2023-11-14/ses/tc3_request, "
        f"SignedHeaders=content-type;host, Signature={VECTOR_SIGNATURE}"
    )
    # The oracle agrees on the vector too, so the two are checking the same thing.
    assert (
        sdk_signature(
            secret_key="SECRETKEYEXAMPLE", host="ses.tencentcloudapi.com", payload=VECTOR_BODY,
            timestamp=1700000000, content_type="application/json; charset=utf-8", service="ses",
        )
        == VECTOR_SIGNATURE
    )


def test_sign_tc3_key_derivation_matches_sdk() -> None:
    sig = tc3.sign(
        secret_id="id", secret_key="k", host="h", payload=b"", timestamp=86400, content_type="c"
    )
    assert Sign.sign_tc3("k", "1970-01-02", "ses", sig.string_to_sign) == sig.signature


# -- generated inputs -----------------------------------------------------------------------------

header_text = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E, exclude_characters="\n"), min_size=1, max_size=40
)
secret_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=64)
hosts = st.one_of(
    st.sampled_from(
        ["ses.tencentcloudapi.com", "ses.intl.tencentcloudapi.com", "ses.ap-guangzhou.tencentcloudapi.com", "127.0.0.1:8443"]
    ),
    st.from_regex(r"[a-z0-9]{1,10}(\.[a-z0-9-]{1,10}){0,3}(:[0-9]{1,5})?", fullmatch=True),
)
timestamps = st.integers(min_value=0, max_value=2**33)


@settings(max_examples=300, deadline=None)
@given(
    secret_key=secret_text,
    host=hosts,
    payload=st.binary(max_size=512),
    timestamp=timestamps,
    content_type=st.one_of(st.sampled_from(["application/json", "application/json; charset=utf-8"]), header_text),
    service=st.sampled_from(["ses", "cvm", "sms"]),
)
def test_signature_matches_sdk(secret_key, host, payload, timestamp, content_type, service) -> None:
    ours = tc3.sign(
        secret_id="AKIDEXAMPLE", secret_key=secret_key, host=host, payload=payload, timestamp=timestamp,
        content_type=content_type, service=service,
    )
    expected = sdk_signature(
        secret_key=secret_key, host=host, payload=payload, timestamp=timestamp, content_type=content_type,
        service=service,
    )
    assert ours.signature == expected
    assert ours.date == datetime.fromtimestamp(timestamp, tz=UTC).strftime("%Y-%m-%d")
    assert tc3_check.verify(
        ours.authorization, secret_key=secret_key, host=host, payload=payload, timestamp=timestamp,
        content_type=content_type,
    )


@settings(max_examples=100, deadline=None)
@given(
    secret_key=secret_text,
    query=st.from_regex(r"([A-Za-z]{1,8}=[A-Za-z0-9%]{0,8})(&[A-Za-z]{1,8}=[A-Za-z0-9%]{0,8}){0,4}", fullmatch=True),
    timestamp=timestamps,
)
def test_get_signature_matches_sdk(secret_key, query, timestamp) -> None:
    ours = tc3.sign(
        secret_id="AKID", secret_key=secret_key, host="ses.tencentcloudapi.com", payload=b"", timestamp=timestamp,
        content_type="application/x-www-form-urlencoded", method="GET", canonical_query=query,
    )
    expected = sdk_signature(
        secret_key=secret_key, host="ses.tencentcloudapi.com", payload=b"", timestamp=timestamp,
        content_type="application/x-www-form-urlencoded", service="ses", method="GET", query=query,
    )
    assert ours.signature == expected


@settings(max_examples=150, deadline=None)
@given(
    secret_id=st.from_regex(r"AKID[A-Za-z0-9]{0,32}", fullmatch=True),
    # The SDK's Credential refuses empty keys and keys with surrounding whitespace.
    secret_key=secret_text.filter(lambda k: k.strip() == k and k != ""),
    host=hosts,
    params=st.fixed_dictionaries(
        {
            "RequestDate": st.dates().map(lambda d: d.isoformat()),
            "Offset": st.integers(min_value=0, max_value=10**6),
            "Limit": st.integers(min_value=1, max_value=100),
        },
        optional={"MessageId": st.text(max_size=40), "ToEmailAddress": st.emails()},
    ),
    timestamp=st.floats(min_value=0, max_value=2**33, allow_nan=False),
)
def test_whole_request_matches_sdk(secret_id, secret_key, host, params, timestamp) -> None:
    """The SDK builds body, headers and Authorization itself; signing its bytes must give its header."""
    req = sdk_request(secret_id, secret_key, host, params, timestamp)
    ours = tc3.sign(
        secret_id=secret_id,
        secret_key=secret_key,
        host=req.header["Host"],
        payload=req.data.encode("utf-8"),
        timestamp=int(req.header["X-TC-Timestamp"]),
        content_type=req.header["Content-Type"],
    )
    assert ours.authorization == req.header["Authorization"]
    assert tc3_check.parse_authorization(req.header["Authorization"]) == tc3_check.Tc3Credential(
        secret_id, ours.date, "ses", "content-type;host", ours.signature
    )


# -- verify and parse_authorization --------------------------------------------------------------


def _vector_verify(authorization: str, **overrides) -> bool:
    kwargs = dict(
        secret_key="SECRETKEYEXAMPLE", host="ses.tencentcloudapi.com", payload=VECTOR_BODY, timestamp=1700000000,
        content_type="application/json; charset=utf-8",
    )
    kwargs.update(overrides)
    return tc3_check.verify(authorization, **kwargs)


VECTOR_AUTH = (
    "TC3-HMAC-SHA256 Credential=AKIDEXAMPLE/2023-11-14/ses/tc3_request, "
    f"SignedHeaders=content-type;host, Signature={VECTOR_SIGNATURE}"
)


def test_verify_accepts_the_vector_and_compact_separators() -> None:
    assert _vector_verify(VECTOR_AUTH)
    assert _vector_verify(VECTOR_AUTH.replace(", ", ","))


@pytest.mark.parametrize(
    "overrides",
    [
        {"secret_key": "WRONG"},
        {"payload": VECTOR_BODY.replace(b"100", b"10")},
        {"timestamp": 1700000001},
        {"host": "ses.intl.tencentcloudapi.com"},
        {"content_type": "application/json"},
    ],
)
def test_verify_rejects_any_change(overrides) -> None:
    assert not _vector_verify(VECTOR_AUTH, **overrides)


@pytest.mark.parametrize(
    "header",
    [
        "",
        "Bearer abc",
        VECTOR_AUTH.replace("2023-11-14", "2023-11-15"),  # a date other than the timestamp's UTC date
        VECTOR_AUTH.replace("content-type;host", "content-type;host;x-tc-action"),
        VECTOR_AUTH[:-1],
    ],
)
def test_verify_rejects_bad_headers(header) -> None:
    assert not _vector_verify(header)


def test_parse_authorization_rejects_garbage() -> None:
    with pytest.raises(ValueError):
        tc3_check.parse_authorization("TC3-HMAC-SHA256 Credential=x")
