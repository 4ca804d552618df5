"""Aurora SendCloud: what differs from SendCloud China, every table row, and the recorded fixtures."""

from __future__ import annotations

import hashlib
import hmac
import urllib.parse
from datetime import UTC, date, datetime, timedelta
from typing import Any

import orjson
import pytest

from tests.support import hook_acct
from tests.unit.providers import test_mappings_literal as literal
from tests.unit.providers.test_sendcloud import fixture_cases
from worker.errors import (
    BadRequest,
    BadSignature,
    FatalConfig,
    MalformedPayload,
    ProviderError,
    Retriable,
    Throttled,
)
from worker.model import EventType, Provider, Reason
from worker.providers import aurora_sendcloud as aurora
from worker.providers.base import AccountContext, HttpRequest, PollQuery, WebhookRequest

NOW = datetime(2024, 1, 1, 17, 0, tzinfo=UTC)   # 2024-01-02 in China
HOOK_NOW = datetime(2022, 5, 9, 17, 30, tzinfo=UTC)
KEY = "test_appkey"
TOKEN = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWX"
EMAIL_ID = "1652117389552_218362_2287_3497.sc-10_9_13_213-inbound0$alice@example.com"


def account(**fields: Any) -> AccountContext:
    return AccountContext(**{"name": "acct", "provider": aurora.NAME, "base_url": aurora.DEFAULTS.base_url,
                             "api_user": "u", "api_key": "k", **fields})


def row(**fields: Any) -> dict[str, Any]:
    return {"emailId": "1704164400000_300118_4417_2201.sc-10_20_3_17-inbound0$ana@gmail.com", "status": "Delivered",
            "subStatus": None, "subStatusDesc": None, "apiUser": "u", "recipients": "ana@gmail.com",
            "requestTime": "2024-01-02 11:00:00", "modifiedTime": "2024-01-02 11:00:04", "sendLog": "250 OK", **fields}


def parse(body: bytes, *, status: int = 200, acct: AccountContext | None = None):
    return aurora.parse_poll_response(acct or account(), PollQuery(), status, {}, body, NOW)


def one(record: dict[str, Any], acct: AccountContext | None = None):
    body = orjson.dumps({"result": True, "statusCode": 200, "info": {"total": "1", "voList": [record]}})
    (obs,) = parse(body, acct=acct).observations
    return obs


def hook_event(**fields: Any) -> dict[str, Any]:
    return {"event": "delivered", "emailId": EMAIL_ID, "recipient": "alice@example.com",
            "timestamp": 1652117390000, **fields}


# -- fixtures -----------------------------------------------------------------------------------


def test_fixture_folder_covers_every_event_alias_in_both_encodings() -> None:
    stems = {p.stem for p in fixture_cases("aurora_sendcloud")}
    for event in aurora.EVENTS:
        name = event.replace("-", "_")
        assert {f"webhook_{name}_form", f"webhook_{name}_json"} <= stems
    assert {"poll_throttled", "poll_auth_failed", "poll_page_1", "poll_page_2", "webhook_bad_signature",
            "webhook_replayed_timestamp", "webhook_malformed_no_event"} <= stems


# -- what differs from SendCloud China ----------------------------------------------------------


def test_defaults() -> None:
    d = aurora.DEFAULTS
    assert (d.base_url, d.quota_per_minute, d.cache_ttl_secs, d.retention_days, d.page_limit, d.polling) == (
        "https://api.aurorasendcloud.com", 3000, 600, 30, 100, "date")
    assert d.max_window_days == 3
    assert d.tz.utcoffset(None) == timedelta(hours=8)
    assert d.status_filters == (EventType.INVALID, EventType.SOFT_BOUNCE, EventType.DELIVERED)
    assert (aurora.OPTIONS["method"].default, aurora.OPTIONS["auth_params"].default) == ("POST", "apiUser")


def test_default_request() -> None:
    assert aurora.build_poll_request(account(), PollQuery(), NOW) == HttpRequest(
        "POST",
        "https://api.aurorasendcloud.com/api/data/emailStatus",
        headers=(("Content-Type", "application/x-www-form-urlencoded"),),
        body=b"apiUser=u&apiKey=k&startDate=2024-01-02&endDate=2024-01-02&start=0&limit=100",
    )


def test_snake_case_auth_over_get_on_a_regional_host() -> None:
    acct = account(base_url="https://api-us.aurorasendcloud.com", options={"method": "GET", "auth_params": "api_user"})
    query = PollQuery(send_date=date(2024, 1, 1), status=EventType.SOFT_BOUNCE, offset=100, limit=100,
                      email_ids=("id1", "id2"))
    assert aurora.build_poll_request(acct, query, NOW) == HttpRequest(
        "GET", "https://api-us.aurorasendcloud.com/api/data/emailStatus", params=(
            ("api_user", "u"), ("api_key", "k"), ("startDate", "2024-01-01"), ("endDate", "2024-01-01"),
            ("start", "100"), ("limit", "100"), ("status", "5"), ("emailIds", "id1;id2")))


def test_snake_case_auth_in_a_form_body() -> None:
    req = aurora.build_poll_request(account(options={"auth_params": "api_user"}), PollQuery(), NOW)
    assert urllib.parse.parse_qsl(req.body.decode())[:2] == [("api_user", "u"), ("api_key", "k")]


def test_impossible_filter_is_a_bad_request() -> None:
    with pytest.raises(BadRequest):
        aurora.build_poll_request(account(), PollQuery(status=EventType.UNSUBSCRIBED), NOW)


# An invalid word with no sub-status and no SMTP evidence ("250 OK" is none) is the invalid class
# about nothing known: a final soft bounce (docs/mapping.md, like 409).
@pytest.mark.parametrize(("status", "expected"), [
    *((s, v[0]) for s, v in literal.AURORA_STATUS_STRINGS.items()),
    ("DELIVERED", EventType.DELIVERED),
    ("Invalid Email", EventType.SOFT_BOUNCE),
    ("invalid_email", EventType.SOFT_BOUNCE),
    ("Soft Bounce", EventType.SOFT_BOUNCE),
    ("soft_bounce", EventType.SOFT_BOUNCE),
    ("Soft-Bounce", EventType.SOFT_BOUNCE),
    ("Requesting", None),
    ("无效邮件-地址不存在", EventType.SOFT_BOUNCE),
    ("Bounced", None),                   # unknown word, no sub-status: not emitted
    ("deliver", None),                   # only the documented word `delivered`
])
def test_every_status_word_chinese_or_english(status: str, expected: EventType | None) -> None:
    obs = one(row(status=status))
    assert (obs.type, obs.provider_status) == (expected, status)


@pytest.mark.parametrize(("code", "expected"), sorted((c, v[:2]) for c, v in literal.SUB_STATUS.items()))
def test_every_sub_status_row_as_the_declared_integer(code: int, expected: tuple[EventType, Reason]) -> None:
    obs = one(row(status="Unknown wording", subStatus=code))
    assert (obs.type, obs.reason, obs.provider_sub_status) == (*expected, str(code))


@pytest.mark.parametrize(("code", "expected"), [(411, (EventType.SOFT_BOUNCE, Reason.OTHER)),  # like 409
                                                (502, (EventType.SOFT_BOUNCE, Reason.OTHER))])
def test_unknown_sub_status_fallbacks(code: int, expected: tuple[EventType, Reason]) -> None:
    obs = one(row(status="whatever", subStatus=code))
    assert (obs.type, obs.reason) == expected


@pytest.mark.parametrize("code", [405, 407])  # PROVIDERS.md 2.4: IP/domain and content rejections
def test_sender_rejection_switch(code: int) -> None:
    # docs/mapping.md: a rejection of the sender is a soft bounce as documented, and under either setting
    # (`sender_rejection: invalid` included: it never makes the address invalid).
    reason = Reason.SENDER_REJECTED if code == 405 else Reason.SPAM_REJECTED
    for setting in (None, EventType.SOFT_BOUNCE, EventType.INVALID):
        soft = one(row(status="Invalid", subStatus=code), acct=account(sender_rejection=setting))
        # final: the row is in the provider's Invalid status, which it does not retry
        assert (soft.type, soft.reason, soft.final) == (EventType.SOFT_BOUNCE, reason, True)


@pytest.mark.parametrize(("body", "error"), [
    (b'{"result": false, "statuscode": 50000, "message": "interface frequency limited", "info": {}}', Throttled),
    (b'{"result": false, "statusCode": 40005, "message": "auth failed", "info": {}}', FatalConfig),
    (b'{"result": false, "statusCode": 6001, "message": "no permission", "info": {}}', FatalConfig),
    (b'{"result": false, "statusCode": 501, "message": "server exception", "info": {}}', Retriable),
    (b'{"result": false, "statusCode": 40017, "message": "bad parameter", "info": {}}', BadRequest),
    (b"upstream connect error", Retriable),
])
def test_error_codes(body: bytes, error: type[ProviderError]) -> None:
    with pytest.raises(error):
        parse(body)


@pytest.mark.parametrize(("status", "error"), [(429, Throttled), (503, Retriable), (401, FatalConfig)])
def test_http_errors(status: int, error: type[ProviderError]) -> None:
    with pytest.raises(error):
        parse(b"{}", status=status)


# -- webhooks -----------------------------------------------------------------------------------


def sign(timestamp: str, token: str = TOKEN, key: str = KEY) -> str:
    return hmac.new(key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()


def test_json_webhook_is_the_default_of_the_new_docs() -> None:
    fields = {**hook_event(), "token": TOKEN, "signature": sign("1652117390000")}
    req = WebhookRequest(orjson.dumps(fields), "application/json")
    assert aurora.verify_webhook(hook_acct(Provider.AURORA_SENDCLOUD, (KEY,)), req, HOOK_NOW, 259200) == "hmac-sha256"
    (record,) = aurora.split_webhook(req)
    (obs,) = aurora.webhook_observations(account(), record)
    assert (obs.type, obs.provider_status, obs.occurred_at) == (
        EventType.DELIVERED, "delivered", datetime(2022, 5, 9, 17, 29, 50, tzinfo=UTC))


def test_form_webhook_of_the_legacy_docs() -> None:
    fields = {**hook_event(event="deliver", timestamp="1652117390000"), "token": TOKEN,
              "signature": sign("1652117390000")}
    req = WebhookRequest(urllib.parse.urlencode(fields).encode(), "application/x-www-form-urlencoded")
    assert aurora.verify_webhook(hook_acct(Provider.AURORA_SENDCLOUD, ("rotated", KEY)), req, HOOK_NOW, 259200) == "hmac-sha256"


def test_replayed_webhook_is_refused() -> None:
    fields = {**hook_event(), "token": TOKEN, "signature": sign("1652117390000")}
    with pytest.raises(BadSignature):
        aurora.verify_webhook(hook_acct(Provider.AURORA_SENDCLOUD, (KEY,)), WebhookRequest(orjson.dumps(fields), "application/json"),
                              HOOK_NOW + timedelta(days=4), 259200)


@pytest.mark.parametrize(("event", "expected"), sorted((e, v and v[0]) for e, v in literal.AURORA_EVENTS.items()))
def test_every_event_alias(event: str, expected: EventType | None) -> None:
    observations = aurora.webhook_observations(account(), hook_event(event=event))
    assert [obs.type for obs in observations] == ([] if expected is None else [expected])


def test_the_aliases_mean_what_the_original_names_mean() -> None:
    pairs = {"delivered": "deliver", "invalid_email": "invalid", "spam-report": "report_spam"}
    for alias, original in pairs.items():
        assert aurora.EVENTS[alias] is aurora.EVENTS[original] is not None


@pytest.mark.parametrize(("code", "expected"), sorted((c, v[:2]) for c, v in literal.SUB_STATUS.items()))
def test_every_sub_status_row_on_webhooks(code: int, expected: tuple[EventType, Reason]) -> None:
    event = "invalid_email" if code < 500 else "soft_bounce"
    (obs,) = aurora.webhook_observations(account(), hook_event(event=event, substat=code, substatdesc="desc"))
    assert (obs.type, obs.reason, obs.provider_sub_status, obs.provider_message) == (*expected, str(code), "desc")


@pytest.mark.parametrize("record", [
    {"event": "delivered", "recipient": "a@b.c", "timestamp": 1652117390000},
    {"event": "delivered", "emailId": EMAIL_ID, "timestamp": 1652117390000},
    {"event": "delivered", "emailId": EMAIL_ID, "recipient": "a@b.c"},
    {"event": "Delivered!", "emailId": EMAIL_ID, "recipient": "a@b.c", "timestamp": 1652117390000},
])
def test_malformed_records(record: dict[str, Any]) -> None:
    with pytest.raises(MalformedPayload):
        aurora.webhook_observations(account(), record)


def test_an_authentic_body_without_an_event_is_dead_lettered_not_refused() -> None:
    fields = {"emailId": EMAIL_ID, "timestamp": 1652117390000, "token": TOKEN, "signature": sign("1652117390000")}
    req = WebhookRequest(orjson.dumps(fields), "application/json")
    assert aurora.verify_webhook(hook_acct(Provider.AURORA_SENDCLOUD, (KEY,)), req, HOOK_NOW, 259200) == "hmac-sha256"
    with pytest.raises(MalformedPayload):
        aurora.split_webhook(req)
