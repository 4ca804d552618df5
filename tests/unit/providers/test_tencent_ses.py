"""Tencent Cloud SES: mapping tables, signed request building, recorded fixtures, fuzzing."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tencentcloud.common.abstract_client import AbstractClient
from tencentcloud.common.http.request import RequestInternal

from tests.support import hook_acct
from tests.unit.providers import test_conformance as conformance
from worker.errors import BadRequest, FatalConfig, MalformedPayload, PollError, Retriable, Throttled
from worker.model import EventType, Provider, Reason
from worker.providers import tencent_ses
from worker.providers.base import AccountContext, PollQuery, WebhookRequest

NOW = datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)  # 1700000000
ACCT = AccountContext(   # the China site's host: the literal signatures below were worked out for it
    name="acct", provider=tencent_ses.NAME, base_url="https://ses.tencentcloudapi.com",
    secret_id="AKIDEXAMPLE", secret_key="SECRETKEYEXAMPLE",
)
D, I, S, C, U = (
    EventType.DELIVERED,
    EventType.INVALID,
    EventType.SOFT_BOUNCE,
    EventType.COMPLAINT,
    EventType.UNSUBSCRIBED,
)
R = Reason
SENDER = "sender"  # a sender-side row: not emitted by default, emitted under an explicit policy
POLICIES = [EventType.INVALID, EventType.SOFT_BOUNCE]


def _acct(policy: EventType = EventType.INVALID, **kw: Any) -> AccountContext:
    return AccountContext(
        name="acct", provider=tencent_ses.NAME, base_url=kw.pop("base_url", tencent_ses.DEFAULTS.base_url),
        secret_id="AKIDEXAMPLE", secret_key="SECRETKEYEXAMPLE", sender_rejection=policy, **kw,
    )


def _expand(type_: Any, policy: EventType) -> Any:
    # docs/mapping.md: a rejection of the sender never makes an address invalid: under either explicit
    # policy (`sender_rejection: invalid` included) a sender-side row is a soft bounce.
    return S if type_ == SENDER else type_


# -- tables, written out from PROVIDERS.md 5.3 / 5.6 independently of the module ----------------
# As docs/mapping.md's Tencent tables read them (type, reason, final), rows without SMTP text.
# `final` is the tracking column (the status can no longer change); a soft bounce that is not
# final is one Tencent is still retrying.

EXPECTED_SEND_STATUSES = {
    1001: (None, R.PROVIDER_ERROR, True),
    1002: (None, R.PROVIDER_ERROR, True),
    1003: (None, R.PROVIDER_ERROR, True),
    1005: (None, R.PROVIDER_ERROR, True),
    1009: (None, R.PROVIDER_ERROR, True),
    1004: (S, R.SERVER_UNREACHABLE, True),
    1006: (S, R.DEFERRED, True),
    1007: (I, R.SUPPRESSED, True),          # on Tencent's blocklist: not sent (scope provider)
    1008: (SENDER, R.SENDER_REJECTED, True),
    1010: (None, R.OTHER, True),
    1011: (None, R.OTHER, True),
    1013: (U, R.UNSUBSCRIBED, True),
    2001: (None, None, False),
    3007: (None, R.OTHER, True),
    3008: (S, R.SENDER_REJECTED, True),     # sender domain blocked for a while
    3009: (None, R.OTHER, True),
    3010: (None, R.OTHER, True),
    3014: (None, R.OTHER, True),
    3020: (I, R.SUPPRESSED, True),          # mailbox type blocklisted by Tencent (scope provider)
    3024: (I, R.BAD_ADDRESS, True),
    3030: (S, R.SUPPRESSED, True),          # account paused for its bounce rate (scope provider)
    3033: (None, R.OTHER, True),
    9999: (None, None, False),  # unknown
    -1: (None, None, False),  # unknown
}
EXPECTED_DELIVER_STATUSES = {
    0: (None, None, False),
    1: (D, None, True),
    2: (S, R.SUPPRESSED, True),   # dropped: Tencent did not send, never invalid
    3: (S, R.OTHER, True),        # ESP refusal without SMTP evidence: not about a known address
    8: (S, R.DEFERRED, False),
    4: (None, None, False),  # unknown
    99: (None, None, False),  # unknown
}
# event name -> (type, reason, final); bounce is covered by EXPECTED_BOUNCES.
EXPECTED_EVENTS = {
    "processed": (None, None, False),
    "delivering": (None, None, False),
    "deferred": (S, R.DEFERRED, False),
    "delivered": (D, None, True),
    "dropped": (S, R.SUPPRESSED, True),  # as DeliverStatus 2
    "open": (None, None, False),
    "click": (None, None, False),
    "spamreport": (C, None, True),
    "unsubscribe": (U, R.UNSUBSCRIBED, True),
    "complaint_v2": (None, None, False),  # unknown
}
# A bounce is the ESP's answer after Tencent's attempts: final. A hard bounce is the invalid class
# with scope unknown: without SMTP evidence (none here) a soft bounce, reason other (docs/mapping.md).
EXPECTED_BOUNCES = {
    "hard_bounce": (S, R.OTHER, True),
    "hard": (S, R.OTHER, True),
    "soft_bounce": (S, R.OTHER, True),
    "soft": (S, R.OTHER, True),
    None: (S, R.OTHER, True),  # no bounceType, no SMTP text: not suppressed on a guess
    "transient": (S, R.OTHER, True),
}
EXPECTED_EVENT_IDS = {1: "delivered", 2: "dropped", 3: "bounce", 4: "open", 5: "click", 6: "spamreport",
                      7: "unsubscribe", 8: "deferred"}


def test_tables_are_fully_covered() -> None:
    assert set(tencent_ses.SEND_STATUSES) <= set(EXPECTED_SEND_STATUSES)
    assert set(tencent_ses.DELIVER_STATUSES) <= set(EXPECTED_DELIVER_STATUSES)
    assert set(tencent_ses.EVENTS) <= set(EXPECTED_EVENTS)
    assert set(tencent_ses.BOUNCE_TYPES) <= set(EXPECTED_BOUNCES)
    assert tencent_ses.EVENT_IDS == EXPECTED_EVENT_IDS


def _row(send: int, deliver: int, message: str = "", **extra: Any) -> dict[str, Any]:
    return {"MessageId": "m-1", "ToEmailAddress": "Rcpt@Example.com", "SendStatus": send, "DeliverStatus": deliver,
            "DeliverMessage": message, "RequestTime": 1700000000, "DeliverTime": 1700000005, **extra}


def _page(rows: list[dict[str, Any]], acct: AccountContext = ACCT, limit: int = 100, offset: int = 0):
    body = orjson.dumps({"Response": {"EmailStatusList": rows, "RequestId": "r"}})
    return tencent_ses.parse_poll_response(
        acct, PollQuery(send_date=date(2023, 11, 14), offset=offset, limit=limit), 200, {}, body, NOW
    )


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("code", sorted(EXPECTED_SEND_STATUSES))
def test_send_status_mapping(code: int, policy: EventType) -> None:
    (obs,) = _page([_row(code, 1)], _acct(policy)).observations  # DeliverStatus is ignored then
    type_, reason, final = EXPECTED_SEND_STATUSES[code]
    assert (obs.type, obs.reason, obs.final) == (_expand(type_, policy), reason, final)
    assert (obs.provider_status, obs.provider_sub_status) == (str(code), "1")


@pytest.mark.parametrize("code", sorted(EXPECTED_DELIVER_STATUSES))
def test_deliver_status_mapping(code: int) -> None:
    (obs,) = _page([_row(0, code)]).observations
    assert (obs.type, obs.reason, obs.final) == EXPECTED_DELIVER_STATUSES[code]
    assert obs.email_id == "m-1:rcpt@example.com" and obs.message_id == "m-1" and obs.recipient == "Rcpt@Example.com"
    assert obs.occurred_at == datetime(2023, 11, 14, 22, 13, 25, tzinfo=UTC)
    assert obs.sent_at == NOW


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize(
    "deliver, message, expected",
    [
        # docs/mapping.md: a drop is scope provider, its text changes nothing; on 3 and 8 the SMTP table
        # sets the reason, and an invalid not about recipient/domain is a soft bounce. The
        # account's policy plays no part (no sender-side table row here).
        (2, "554 5.7.1 blocked using Spamhaus", (S, R.SUPPRESSED)),
        (3, "550 5.7.606 Access denied, banned sending IP", (S, R.POLICY_REJECTED)),  # subject 7: policy
        (2, "550 5.1.1 user unknown", (S, R.SUPPRESSED)),
        (3, "550 5.1.2 bad destination system", (I, R.DOMAIN_INVALID)),
        (3, "550 5.2.1 mailbox disabled", (I, R.MAILBOX_DISABLED)),
        (3, "552 5.2.2 mailbox full", (S, R.MAILBOX_FULL)),   # full: temporary, never invalid
        (3, "550 mailbox unavailable", (S, R.OTHER)),        # basic 550 alone is no evidence
        (8, "452 4.2.2 over quota", (S, R.MAILBOX_FULL)),
        (8, "421 4.7.0 greylisted", (S, R.POLICY_REJECTED)),  # X.7.0: policy, still a retrying soft bounce
        (1, "250 2.1.5 ok", (D, None)),
    ],
)
def test_smtp_refinement(deliver: int, message: str, expected, policy: EventType) -> None:
    (obs,) = _page([_row(0, deliver, message)], _acct(policy)).observations
    assert (obs.type, obs.reason) == (_expand(expected[0], policy), expected[1])
    assert obs.provider_message == message and obs.smtp is not None


def test_engagement_flags_add_events_at_the_row_time() -> None:
    obs = _page([_row(0, 1, UserUnsubscribed=True, UserComplainted=True, UserOpened=True)]).observations
    assert [(o.type, o.provider_status, o.occurred_at, o.email_id) for o in obs] == [
        (D, "0", datetime(2023, 11, 14, 22, 13, 25, tzinfo=UTC), "m-1:rcpt@example.com"),
        (U, "UserUnsubscribed", datetime(2023, 11, 14, 22, 13, 25, tzinfo=UTC), "m-1:rcpt@example.com"),
        (C, "UserComplainted", datetime(2023, 11, 14, 22, 13, 25, tzinfo=UTC), "m-1:rcpt@example.com"),
    ]


def test_times_fall_back_to_request_time_then_now() -> None:
    (a,) = _page([_row(0, 0, DeliverTime=0)]).observations
    (b,) = _page([_row(0, 0, DeliverTime=0, RequestTime=0)]).observations
    assert (a.occurred_at, a.sent_at) == (NOW, NOW)
    assert (b.occurred_at, b.sent_at) == (NOW, None)


@pytest.mark.parametrize("rows, limit, offset, expected", [(3, 3, 0, 3), (3, 3, 300, 303), (2, 3, 0, None), (0, 3, 6, None)])
def test_pagination(rows: int, limit: int, offset: int, expected) -> None:
    page = _page([_row(0, 1)] * rows, limit=limit, offset=offset)
    assert (page.rows, page.next_offset, page.total) == (rows, expected, None)


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("event", sorted(EXPECTED_EVENTS))
def test_event_mapping(event: str, policy: EventType) -> None:
    record = {"event": event, "email": "A@B.c", "bulkId": "m-2", "timestamp": 1654064683}
    type_, reason, final = EXPECTED_EVENTS[event]
    if type_ is None:   # no status: nothing observed (the receiver counts it as ignored)
        assert tencent_ses.webhook_observations(_acct(policy), record) == []
        return
    (obs,) = tencent_ses.webhook_observations(_acct(policy), record)
    assert (obs.type, obs.reason, obs.final) == (_expand(type_, policy), reason, final)
    assert (obs.email_id, obs.recipient, obs.message_id, obs.provider_status) == ("m-2:a@b.c", "A@B.c", "m-2", event)
    assert obs.occurred_at == datetime(2022, 6, 1, 6, 24, 43, tzinfo=UTC)


@pytest.mark.parametrize("bounce_type", list(EXPECTED_BOUNCES))
def test_bounce_type_mapping(bounce_type) -> None:
    record = {"event": "bounce", "email": "a@b.c", "bulkId": "m", "timestamp": 1654064683}
    if bounce_type is not None:
        record["bounceType"] = bounce_type
    (obs,) = tencent_ses.webhook_observations(ACCT, record)
    assert (obs.type, obs.reason, obs.final) == EXPECTED_BOUNCES[bounce_type]
    assert obs.provider_sub_status == bounce_type


# 5xx is the hard class: invalid only when the SMTP evidence is about the recipient or domain
# (docs/mapping.md); a bare 550 says nothing, but "no such user" in its text does; "550 rejected" says nothing.
@pytest.mark.parametrize("reason, expected", [("550 5.1.1 x", I), ("550 no such user", I), ("550 rejected", S),
                                              ("452 4.2.2 x", S), ("x", S)])
def test_bounce_without_type_goes_by_smtp_class(reason: str, expected: EventType) -> None:
    record = {"event": "bounce", "email": "a@b.c", "bulkId": "m", "timestamp": 1654064683, "reason": reason}
    assert tencent_ses.webhook_observations(ACCT, record)[0].type == expected


@pytest.mark.parametrize("eventid", sorted(EXPECTED_EVENT_IDS) + [0, 42])
def test_eventid_without_event(eventid: int) -> None:
    record = {"eventid": eventid, "bounceType": "hard_bounce", "email": "a@b.c", "BULKID": "m", "timestamp": 1654064683}
    name = EXPECTED_EVENT_IDS.get(eventid, f"eventid:{eventid}")
    expected = EXPECTED_BOUNCES["hard_bounce"] if name == "bounce" else EXPECTED_EVENTS.get(name, (None, None, False))
    if expected[0] is None:   # no status (an open, a click, an unknown id): nothing observed
        assert tencent_ses.webhook_observations(ACCT, record) == []
        return
    (obs,) = tencent_ses.webhook_observations(ACCT, record)
    assert obs.provider_status == name
    assert (obs.type, obs.reason, obs.final) == expected


EXPECTED_ERRORS = {
    "RequestLimitExceeded": Throttled,
    "RequestLimitExceeded.IPLimitExceeded": Throttled,
    "RequestLimitExceeded.UinLimitExceeded": Throttled,
    "RequestLimitExceeded.GlobalRegionUinLimitExceeded": Throttled,
    "AuthFailure.SignatureExpire": Retriable,
    "AuthFailure.SignatureFailure": FatalConfig,
    "AuthFailure.InvalidSecretId": FatalConfig,
    "AuthFailure.SecretIdNotFound": FatalConfig,
    "AuthFailure.InvalidAuthorization": FatalConfig,
    "AuthFailure.MFAFailure": FatalConfig,
    "AuthFailure.TokenFailure": FatalConfig,
    "AuthFailure.UnauthorizedOperation": FatalConfig,
    "UnauthorizedOperation": FatalConfig,
    "UnauthorizedOperation.NotAllowed": FatalConfig,
    "OperationDenied": FatalConfig,
    "IpInBlacklist": FatalConfig,
    "IpNotInWhitelist": FatalConfig,
    "UnsupportedRegion": FatalConfig,
    "InternalError": Retriable,
    "InternalError.DbError": Retriable,
    "ServiceUnavailable": Retriable,
    "ResourceUnavailable": Retriable,
    "ResourceInsufficient": Retriable,
    "FailedOperation.InvalidLimit": BadRequest,
    "FailedOperation.NotSupportDate": BadRequest,
    "InvalidParameter": BadRequest,
    "InvalidParameterValue": BadRequest,
    "InvalidParameterValue.WrongDate": BadRequest,
    "MissingParameter": BadRequest,
    "UnknownParameter": BadRequest,
    "InvalidAction": BadRequest,
    "ActionOffline": BadRequest,
    "NoSuchVersion": BadRequest,
    "NoSuchProduct": BadRequest,
    "UnsupportedOperation": BadRequest,
    "UnsupportedProtocol": BadRequest,
    "RequestSizeLimitExceeded": BadRequest,
    "ResponseSizeLimitExceeded": BadRequest,
    "DryRunOperation": BadRequest,
    "FailedOperation": Retriable,
    "FailedOperation.FrequencyLimit": Retriable,
    "LimitExceeded": Retriable,
    "ResourceNotFound": Retriable,
    "RequestLimitExceededSoon": Retriable,  # a prefix match needs the dot
    "SomethingNew": Retriable,
}


@pytest.mark.parametrize("code", sorted(EXPECTED_ERRORS))
def test_error_codes(code: str) -> None:
    body = orjson.dumps({"Response": {"Error": {"Code": code, "Message": "m"}, "RequestId": "r"}})
    with pytest.raises(PollError) as info:
        tencent_ses.parse_poll_response(ACCT, PollQuery(send_date=date(2023, 11, 14)), 200, {}, body, NOW)
    assert type(info.value) is EXPECTED_ERRORS[code]


def test_error_in_body_wins_over_http_status() -> None:
    body = b'{"Response":{"Error":{"Code":"RequestLimitExceeded","Message":"m"},"RequestId":"r"}}'
    with pytest.raises(Throttled):
        tencent_ses.parse_poll_response(ACCT, PollQuery(send_date=date(2023, 11, 14)), 500, {}, body, NOW)


# -- request building ---------------------------------------------------------------------------


def _sdk_signature(host: str, body: bytes, timestamp: int, uri: str = "/") -> str:
    """Tencent's SDK computes the signature of exactly these bytes (see test_tc3_oracle)."""
    req = RequestInternal(host, "POST", uri, {"Content-Type": "application/json; charset=utf-8", "Host": host,
                                              "X-TC-Timestamp": str(timestamp)}, body)
    date_ = datetime.fromtimestamp(timestamp, tz=UTC).strftime("%Y-%m-%d")
    return AbstractClient._get_tc3_signature(None, {}, req, date_, "ses", "SECRETKEYEXAMPLE")


def test_build_poll_request_exact() -> None:
    req = tencent_ses.build_poll_request(ACCT, PollQuery(send_date=date(2023, 11, 14), offset=0, limit=100), NOW)
    assert req.method == "POST"
    assert req.url == "https://ses.tencentcloudapi.com/"
    assert req.params == ()
    assert req.body == b'{"RequestDate":"2023-11-14","Offset":0,"Limit":100}'
    assert req.headers == (
        ("Authorization", "TC3-HMAC-SHA256 Credential=AKIDEXAMPLE/2023-11-14/ses/tc3_request, "
                          "SignedHeaders=content-type;host, "
                          "Signature=199ad5e26062789dffbb8d24e5e06a52da1dbe3f5bd201902b0cabdc0d801ef6"),
        ("Content-Type", "application/json; charset=utf-8"),
        ("Host", "ses.tencentcloudapi.com"),
        ("X-TC-Action", "GetSendEmailStatus"),
        ("X-TC-Version", "2020-10-02"),
        ("X-TC-Timestamp", "1700000000"),
        ("X-TC-Region", "ap-singapore"),
    )


def test_credential_date_is_utc_not_the_china_date() -> None:
    now = datetime(2024, 1, 1, 17, 0, tzinfo=UTC)  # already 2024-01-02 in UTC+8
    assert now.astimezone(tencent_ses.DEFAULTS.tz).date() == date(2024, 1, 2)
    req = tencent_ses.build_poll_request(ACCT, PollQuery(send_date=date(2024, 1, 2), offset=200, limit=50), now)
    headers = dict(req.headers)
    assert req.body == b'{"RequestDate":"2024-01-02","Offset":200,"Limit":50}'
    assert headers["X-TC-Timestamp"] == "1704128400"
    signature = _sdk_signature("ses.tencentcloudapi.com", req.body, 1704128400)
    assert headers["Authorization"] == (
        "TC3-HMAC-SHA256 Credential=AKIDEXAMPLE/2024-01-01/ses/tc3_request, "
        f"SignedHeaders=content-type;host, Signature={signature}"
    )


def test_build_poll_request_intl_host_region_and_local_simulator() -> None:
    intl = _acct(base_url="https://ses.intl.tencentcloudapi.com", region="ap-hongkong")
    req = tencent_ses.build_poll_request(intl, PollQuery(send_date=date(2023, 11, 14)), NOW)
    headers = dict(req.headers)
    assert (req.url, headers["Host"], headers["X-TC-Region"]) == (
        "https://ses.intl.tencentcloudapi.com/", "ses.intl.tencentcloudapi.com", "ap-hongkong"
    )
    assert headers["Authorization"].endswith(_sdk_signature("ses.intl.tencentcloudapi.com", req.body, 1700000000))

    sim = _acct(base_url="http://127.0.0.1:8443/tencent/")
    req = tencent_ses.build_poll_request(sim, PollQuery(send_date=date(2023, 11, 14)), NOW)
    headers = dict(req.headers)
    assert (req.url, headers["Host"]) == ("http://127.0.0.1:8443/tencent/", "127.0.0.1:8443")
    assert headers["Authorization"].endswith(_sdk_signature("127.0.0.1:8443", req.body, 1700000000, "/tencent/"))


@pytest.mark.parametrize(
    "query",
    [
        PollQuery(send_date=date(2023, 11, 14), limit=101),
        PollQuery(send_date=date(2023, 11, 14), limit=0),
        PollQuery(send_date=date(2023, 11, 14), offset=-1),
        PollQuery(send_date=date(2023, 11, 14), status=EventType.INVALID),
    ],
)
def test_build_poll_request_rejects_bad_queries(query: PollQuery) -> None:
    with pytest.raises(ValueError):
        tencent_ses.build_poll_request(ACCT, query, NOW)


def test_build_poll_request_needs_credentials_and_an_aware_now() -> None:
    with pytest.raises(FatalConfig):
        tencent_ses.build_poll_request(
            AccountContext(name="a", provider=tencent_ses.NAME, base_url="https://x", secret_id="id"),
            PollQuery(send_date=date(2023, 11, 14)), NOW,
        )
    with pytest.raises(ValueError):
        tencent_ses.build_poll_request(ACCT, PollQuery(send_date=date(2023, 11, 14)), datetime(2023, 11, 14))


def test_defaults() -> None:
    d = tencent_ses.DEFAULTS
    assert (d.base_url, d.quota_per_minute, d.cache_ttl_secs, d.retention_days, d.page_limit, d.polling) == (
        "https://ses.tencentcloudapi.com", 1200, 0, 30, 100, "date"   # kept for configs that set only a region
    )
    assert d.status_filters == () and d.max_window_days == 1
    assert d.tz.utcoffset(None).total_seconds() == 8 * 3600


# -- webhooks -----------------------------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(body=st.binary(max_size=100), keys=st.lists(st.text(max_size=5), max_size=2))
def test_verify_never_raises(body: bytes, keys) -> None:
    req = WebhookRequest(body=body, content_type="application/octet-stream")
    assert tencent_ses.verify_webhook(hook_acct(Provider.TENCENT_SES, keys), req, NOW, 0) == "unsigned"


@pytest.mark.parametrize(
    "record",
    [
        {"email": "a@b.c", "bulkId": "m", "timestamp": 1},
        {"event": "delivered", "bulkId": "m", "timestamp": 1},
        {"event": "delivered", "email": "a@b.c", "timestamp": 1},
        {"event": "delivered", "email": "a@b.c", "bulkId": "m"},
        {"event": "delivered", "email": "a@b.c", "bulkId": "m", "timestamp": 0},
        {"event": "delivered", "email": "a@b.c", "bulkId": "m", "timestamp": -5},
        {"event": "delivered", "email": "a@b.c", "bulkId": "m", "timestamp": 1.5},
        {"event": "delivered", "email": "a@b.c", "bulkId": "m", "timestamp": True},
        {"event": "delivered", "email": "a@b.c", "bulkId": "m", "timestamp": 10**13},
        {"event": "delivered", "email": "a@b.c", "bulkId": 5, "timestamp": 1},
        {"eventid": "x", "email": "a@b.c", "bulkId": "m", "timestamp": 1},
    ],
)
def test_malformed_records(record: dict[str, Any]) -> None:
    # split_webhook checks only the envelope: a broken event is the receiver's per-record dead letter.
    body = orjson.dumps([record, {"event": "delivered", "email": "a@b.c", "bulkId": "m", "timestamp": 1}])
    bad, good = tencent_ses.split_webhook(WebhookRequest(body=body, content_type="application/json"))
    with pytest.raises(MalformedPayload):
        tencent_ses.webhook_observations(ACCT, bad)
    assert tencent_ses.webhook_observations(ACCT, good)[0].type == EventType.DELIVERED


def test_millisecond_timestamps_and_bad_sent_timestamp() -> None:
    record = {"event": "delivered", "email": "a@b.c", "bulkId": "m", "timestamp": 1654064683123, "sentTimestamp": "x"}
    (obs,) = tencent_ses.webhook_observations(ACCT, record)
    assert obs.occurred_at == datetime(2022, 6, 1, 6, 24, 43, 123000, tzinfo=UTC)
    assert obs.sent_at is None


def test_empty_array_is_no_records() -> None:
    assert tencent_ses.split_webhook(WebhookRequest(body=b"[]", content_type="application/json")) == []


# -- fuzzing: only the typed errors may come out ------------------------------------------------

json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=20),
    st.sampled_from(["550 5.1.1 x", "554 5.7.1 y", "hard_bounce", "bounce", "1654064683", "9" * 14]),
    st.sampled_from([0, 1, 2, 3, 8, 1008, 1654064683, 10**13 - 1, 10**13]),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)
ROW_FIELDS = ("MessageId", "ToEmailAddress", "SendStatus", "DeliverStatus", "DeliverMessage", "RequestTime",
              "DeliverTime", "UserUnsubscribed", "UserComplainted")
rows = st.fixed_dictionaries({}, optional={k: json_values for k in ROW_FIELDS})
poll_docs = st.one_of(
    json_values,
    st.fixed_dictionaries(
        {"Response": st.fixed_dictionaries(
            {},
            optional={
                "EmailStatusList": st.lists(rows, max_size=3) | json_values,
                "Error": json_values | st.fixed_dictionaries({"Code": json_values | st.sampled_from([c for c, _ in tencent_ses.ERRORS])}),
            },
        ) | json_values}
    ),
)
HOOK_FIELDS = ("event", "eventid", "email", "bulkId", "bulkid", "timestamp", "sentTimestamp", "reason", "bounceType")
hook_records = st.fixed_dictionaries({}, optional={k: json_values for k in HOOK_FIELDS})
hook_docs = st.one_of(json_values, hook_records, st.lists(hook_records, max_size=3))


def _poll_only_typed(body: bytes, status: int, limit: int) -> None:
    # typed errors only; a page that comes out has sane paging and schema-valid events
    query = PollQuery(send_date=date(2023, 11, 14), limit=limit)
    conformance.poll_only_typed(Provider.TENCENT_SES, ACCT, query, status,
                                {"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}, body, NOW)


def _webhook_only_typed(body: bytes) -> None:
    req = WebhookRequest(body=body, content_type="application/json")
    assert tencent_ses.verify_webhook(hook_acct(Provider.TENCENT_SES, []), req, NOW, 0) == "unsigned"
    conformance.webhook_only_typed(Provider.TENCENT_SES, ACCT, req, NOW, 0)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=poll_docs, status=st.sampled_from([200, 200, 200, 400, 404, 429, 500, 502, 302]), limit=st.sampled_from([1, 100]))
def test_fuzz_poll_json(doc, status, limit) -> None:
    _poll_only_typed(orjson.dumps(doc), status, limit)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=hook_docs)
def test_fuzz_webhook_json(doc) -> None:
    _webhook_only_typed(orjson.dumps(doc))
    if isinstance(doc, dict):
        conformance.observations_only_typed(Provider.TENCENT_SES, ACCT, doc)
