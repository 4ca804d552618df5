"""SendCloud (China): request building, response and webhook parsing, tables, recorded fixtures.

The sub-status table and the webhook machinery are shared with Aurora (_sendcloud_family); they
are tested row by row here, and Aurora's tests cover what differs.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import urllib.parse
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from types import ModuleType
from typing import Any

import orjson
import pytest

from tests.support import hook_acct
from tests.unit.providers import test_mappings_literal as literal
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
from worker.providers import _sendcloud_family as family
from worker.providers import _sendcloud_webhooks as sendcloud_webhooks
from worker.providers import aurora_sendcloud, sendcloud
from worker.providers.base import AccountContext, HttpRequest, PollQuery, RejectedRow, WebhookRequest

# 17:00 UTC on Jan 1 is already Jan 2 in China.
NOW = datetime(2024, 1, 1, 17, 0, tzinfo=UTC)
FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"


# -- the recorded fixtures (replayed by test_conformance.py; listed here for coverage checks) ------


def fixture_cases(provider: str) -> list[Path]:
    return sorted((FIXTURES / provider).glob("*.json"))


def test_fixture_folder_covers_the_required_cases() -> None:
    stems = {p.stem for p in fixture_cases("sendcloud")}
    assert {"poll_seed", "poll_throttled", "poll_auth_failed", "poll_page_1", "poll_page_2",
            "webhook_bad_signature", "webhook_replayed_timestamp", "webhook_malformed_list_field"} <= stems
    for event in sendcloud.EVENTS:
        assert {f"webhook_{event}_form", f"webhook_{event}_json"} <= stems


# -- helpers ------------------------------------------------------------------------------------


def account(module: ModuleType = sendcloud, **fields: Any) -> AccountContext:
    spec = {"name": "acct", "provider": module.NAME, "base_url": module.DEFAULTS.base_url,
            "api_user": "u", "api_key": "k", **fields}
    return AccountContext(**spec)


def row(**fields: Any) -> dict[str, Any]:
    base = {
        "emailId": "1704160800000_15_23357_8937.sc-10_10_126_221-inbound0$ann@qq.com",
        "status": "送达",
        "subStatus": None,
        "subStatusDesc": None,
        "apiUser": "u",
        "recipients": "ann@qq.com",
        "requestTime": "2024-01-02 10:00:00",
        "modifiedTime": "2024-01-02 10:00:05",
        "sendLog": "successfully delivered",
    }
    base.update(fields)
    return base


def answer(*rows: dict[str, Any], total: int | str | None = None) -> bytes:
    info = {"total": str(len(rows)) if total is None else total, "voListSize": len(rows), "voList": list(rows)}
    return orjson.dumps({"result": True, "statusCode": 200, "message": "请求成功", "info": info})


def parse(body: bytes, *, module: ModuleType = sendcloud, status: int = 200, headers: dict[str, str] | None = None,
          acct: AccountContext | None = None, query: PollQuery = PollQuery()):
    return module.parse_poll_response(acct or account(module), query, status, headers or {}, body, NOW)


def one(body: bytes, **kw: Any):
    (obs,) = parse(body, **kw).observations
    return obs


KEY = "test_appkey"
TOKEN = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWX"
HOOK_NOW = datetime(2022, 5, 9, 17, 30, tzinfo=UTC)
EMAIL_ID = "1652117389552_218362_2287_3497.sc-10_9_13_213-inbound0$alice@example.com"


def sign(timestamp: str, token: str = TOKEN, key: str = KEY) -> str:
    return hmac.new(key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()


def form_hook(fields: dict[str, Any] | list[tuple[str, str]], content_type: str = sendcloud_webhooks.FORM) -> WebhookRequest:
    return WebhookRequest(urllib.parse.urlencode(fields).encode(), content_type)


def signed_fields(timestamp: str = "1652117390000", **extra: Any) -> dict[str, Any]:
    return {"event": "deliver", "emailId": EMAIL_ID, "recipient": "alice@example.com", **extra,
            "timestamp": timestamp, "token": TOKEN, "signature": sign(timestamp)}


def verify(req: WebhookRequest, keys: tuple[str, ...] = (KEY,), now: datetime = HOOK_NOW, window: float = 259200):
    return sendcloud.verify_webhook(hook_acct(Provider.SENDCLOUD, keys), req, now, window)


def hook_event(**fields: Any) -> dict[str, Any]:
    return {"event": "deliver", "emailId": EMAIL_ID, "recipient": "alice@example.com", "timestamp": "1652117390000",
            **fields}


# -- request building ---------------------------------------------------------------------------


def test_defaults() -> None:
    d = sendcloud.DEFAULTS
    assert (d.base_url, d.quota_per_minute, d.cache_ttl_secs, d.retention_days, d.page_limit, d.polling) == (
        "https://api.sendcloud.net", 3000, 600, 30, 100, "date")
    assert d.tz.utcoffset(None) == timedelta(hours=8)
    assert d.status_filters == (EventType.INVALID, EventType.SOFT_BOUNCE, EventType.DELIVERED)
    assert d.max_window_days == 30
    assert sendcloud.OPTIONS["method"].default == "POST"


def test_default_request_is_a_form_post_dated_in_china() -> None:
    assert sendcloud.build_poll_request(account(), PollQuery(), NOW) == HttpRequest(
        "POST",
        "https://api.sendcloud.net/apiv2/data/emailStatus",
        headers=(("Content-Type", "application/x-www-form-urlencoded"),),
        body=b"apiUser=u&apiKey=k&startDate=2024-01-02&endDate=2024-01-02&start=0&limit=100",
    )


def test_get_option_sends_the_same_parameters_in_the_query() -> None:
    query = PollQuery(send_date=date(2023, 12, 30), status=EventType.INVALID, offset=200, limit=50,
                      email_ids=("a$x@y.com", "b$z@y.com"))
    req = sendcloud.build_poll_request(account(options={"method": "GET"}), query, NOW)
    assert req == HttpRequest("GET", "https://api.sendcloud.net/apiv2/data/emailStatus", params=(
        ("apiUser", "u"), ("apiKey", "k"), ("startDate", "2023-12-30"), ("endDate", "2023-12-30"),
        ("start", "200"), ("limit", "50"), ("status", "4"), ("emailIds", "a$x@y.com;b$z@y.com"),
    ))


@pytest.mark.parametrize(("status", "code"), [(EventType.DELIVERED, "1"), (EventType.INVALID, "4"),
                                              (EventType.SOFT_BOUNCE, "5")])
def test_status_filter_codes(status: EventType, code: str) -> None:
    req = sendcloud.build_poll_request(account(options={"method": "GET"}), PollQuery(status=status), NOW)
    assert ("status", code) in req.params


@pytest.mark.parametrize(("now", "day"), [
    (datetime(2024, 1, 1, 15, 59, 59, tzinfo=UTC), "2024-01-01"),
    (datetime(2024, 1, 1, 16, 0, 0, tzinfo=UTC), "2024-01-02"),
    (datetime(2024, 1, 2, 1, 0, tzinfo=timezone(timedelta(hours=-5))), "2024-01-02"),  # 06:00Z = 14:00 China
])
def test_today_is_the_china_date(now: datetime, day: str) -> None:
    req = sendcloud.build_poll_request(account(options={"method": "GET"}), PollQuery(), now)
    assert ("startDate", day) in req.params and ("endDate", day) in req.params


def test_base_url_override_and_page_size_clamp() -> None:
    req = sendcloud.build_poll_request(account(base_url="http://127.0.0.1:9000/", options={"method": "GET"}),
                                       PollQuery(limit=500), NOW)
    assert req.url == "http://127.0.0.1:9000/apiv2/data/emailStatus"
    assert ("limit", "100") in req.params


@pytest.mark.parametrize("query", [PollQuery(status=EventType.COMPLAINT), PollQuery(offset=-1)])
def test_impossible_queries_are_bad_requests(query: PollQuery) -> None:
    with pytest.raises(BadRequest):
        sendcloud.build_poll_request(account(), query, NOW)


@pytest.mark.parametrize("missing", [{"api_user": None}, {"api_key": ""}])
def test_missing_credentials_are_fatal(missing: dict[str, Any]) -> None:
    with pytest.raises(FatalConfig):
        sendcloud.build_poll_request(account(**missing), PollQuery(), NOW)


# -- mapping tables -----------------------------------------------------------------------------


@pytest.mark.parametrize(("code", "expected"), sorted((c, v[:2]) for c, v in literal.SUB_STATUS.items()))
@pytest.mark.parametrize("as_text", [True, False], ids=["string", "int"])
def test_every_sub_status_row(code: int, expected: tuple[EventType, Reason], as_text: bool) -> None:
    status = "无效邮件" if code < 500 else "软退信"
    obs = one(answer(row(status=status, subStatus=str(code) if as_text else code)))
    assert (obs.type, obs.reason, obs.provider_sub_status) == (*expected, str(code))
    # terminal under the invalid status whatever the row is published as, not under the soft bounce
    assert obs.final is (status == "无效邮件")


def test_the_table_is_the_documented_one() -> None:
    assert sorted(family.SUB_STATUS) == [*range(401, 410), 503, *range(505, 510)]


# An invalid class with no sub-status meaning and no SMTP evidence (the row's sendLog has none) is
# about nothing known, scope unknown: a final soft bounce, not invalid (docs/mapping.md, like 409).
@pytest.mark.parametrize(("status", "sub", "expected"), [
    ("无效邮件", "410", (EventType.SOFT_BOUNCE, Reason.OTHER)),    # unknown 4xx: like 409
    ("软退信", "504", (EventType.SOFT_BOUNCE, Reason.OTHER)),      # 504 is not documented
    ("无效邮件", "599", (EventType.SOFT_BOUNCE, Reason.OTHER)),    # the number wins over the word
    ("无效邮件", "302", (EventType.SOFT_BOUNCE, Reason.OTHER)),    # not a sub-status: the status decides
    ("软退信", "n/a", (EventType.SOFT_BOUNCE, Reason.OTHER)),
    ("无效邮件", "", (EventType.SOFT_BOUNCE, Reason.OTHER)),
    ("某种新状态", "406", (EventType.INVALID, Reason.UNKNOWN_USER)),  # unknown word, known number
    ("某种新状态", None, (None, None)),                              # nothing known: not emitted
])
def test_sub_status_fallbacks(status: str, sub: str | None, expected: tuple[Any, Any]) -> None:
    obs = one(answer(row(status=status, subStatus=sub)))
    assert (obs.type, obs.reason) == expected


# docs/mapping.md: 405/407 are soft bounces as documented (scope sender/content); a sender rejection never
# makes an address invalid, so neither setting (nor an account context asking for invalid) does.
@pytest.mark.parametrize(("code", "setting", "expected"), [
    (405, None, EventType.SOFT_BOUNCE),                    # documented
    (405, EventType.INVALID, EventType.SOFT_BOUNCE),
    (405, EventType.SOFT_BOUNCE, EventType.SOFT_BOUNCE),
    (407, None, EventType.SOFT_BOUNCE),
    (407, EventType.INVALID, EventType.SOFT_BOUNCE),
    (407, EventType.SOFT_BOUNCE, EventType.SOFT_BOUNCE),
    (406, EventType.SOFT_BOUNCE, EventType.INVALID),       # about the address: not sender-side
    (408, EventType.SOFT_BOUNCE, EventType.SOFT_BOUNCE),   # scope policy, no evidence: not invalid either way
    (408, EventType.INVALID, EventType.SOFT_BOUNCE),
    (505, EventType.INVALID, EventType.SOFT_BOUNCE),       # already temporary
    (507, EventType.INVALID, EventType.SOFT_BOUNCE),
])
def test_sender_rejection_setting(code: int, setting: EventType, expected: EventType) -> None:
    obs = one(answer(row(status="无效邮件", subStatus=str(code))), acct=account(sender_rejection=setting))
    assert obs.type is expected
    assert obs.reason is literal.SUB_STATUS[code][1]
    assert obs.final is True   # the provider's invalid status: it will not retry, whatever the type


@pytest.mark.parametrize(("status", "expected", "final"), [
    *((s, v[0], v[2]) for s, v in literal.SENDCLOUD_STATUS_STRINGS.items()),
    ("无效邮件-地址不存在", EventType.SOFT_BOUNCE, True),  # invalid class, no sub-status or evidence
    ("软退信-服务不可达", EventType.SOFT_BOUNCE, False),
    ("Delivered", None, False),     # English is Aurora's, not documented for China
])
def test_every_status_string(status: str, expected: EventType | None, final: bool) -> None:
    obs = one(answer(row(status=status)))
    assert obs.type is expected
    assert obs.provider_status == status
    assert obs.reason is literal.DEFAULT_REASON.get(expected)  # type: ignore[arg-type]
    assert obs.final is final


def test_the_seed_record_fields_become_the_observation() -> None:
    record = row(status="无效邮件", subStatus="406", subStatDesc="地址不存在",
                 sendLog="550 5.1.1 unrouteable address")
    obs = one(answer(record))
    assert obs.email_id == record["emailId"]
    assert obs.recipient == "ann@qq.com"
    assert obs.message_id == "1704160800000_15_23357_8937.sc-10_10_126_221-inbound"
    assert obs.occurred_at == datetime(2024, 1, 2, 2, 0, 5, tzinfo=UTC)
    assert obs.sent_at == datetime(2024, 1, 2, 2, 0, 0, tzinfo=UTC)
    assert obs.provider_message == "550 5.1.1 unrouteable address"
    assert (obs.smtp.code, obs.smtp.enhanced) == (550, "5.1.1")
    assert obs.raw == record


@pytest.mark.parametrize("desc_key", ["subStatDesc", "subStatusDesc"])
def test_either_description_spelling_stands_in_for_a_missing_send_log(desc_key: str) -> None:
    record = row(status="无效邮件", subStatus="406", sendLog=None, subStatusDesc=None)
    record[desc_key] = "地址不存在"
    obs = one(answer(record))
    assert obs.provider_message == "地址不存在"


def test_a_pending_row_without_modified_time_uses_the_request_time() -> None:
    obs = one(answer(row(status="请求中", modifiedTime=None)))
    assert obs.type is None and obs.occurred_at == datetime(2024, 1, 2, 2, 0, tzinfo=UTC)


@pytest.mark.parametrize(("text", "utc"), [
    ("2024-01-02 07:59:59", datetime(2024, 1, 1, 23, 59, 59, tzinfo=UTC)),   # day boundary
    ("2024-01-02 08:00:00", datetime(2024, 1, 2, 0, 0, 0, tzinfo=UTC)),
    ("2024-01-01 00:00:00", datetime(2023, 12, 31, 16, 0, 0, tzinfo=UTC)),   # year boundary
])
def test_naive_times_are_china_time(text: str, utc: datetime) -> None:
    assert one(answer(row(modifiedTime=text))).occurred_at == utc


@pytest.mark.parametrize(("email_id", "message_id"), [
    ("1733391518114_221258_15787_8226.sc-10_9_12_206-inbound0$user@outlook.com",
     "1733391518114_221258_15787_8226.sc-10_9_12_206-inbound"),
    ("1733391518114_221258_15787_8226.sc-10_9_12_206-inbound12$user@outlook.com",
     "1733391518114_221258_15787_8226.sc-10_9_12_206-inbound"),
    ("no-dollar-sign", None),
    ("inbound$user@outlook.com", None),            # no recipient index
    ("123$user@outlook.com", None),                # nothing but an index
])
def test_message_id_is_the_email_id_before_the_recipient_index(email_id: str, message_id: str | None) -> None:
    assert family.message_id_of(email_id) == message_id


# -- errors -------------------------------------------------------------------------------------


def coded(code: int | str, key: str = "statusCode") -> bytes:
    return orjson.dumps({"result": False, key: code, "message": "错误", "info": {}})


@pytest.mark.parametrize(("body", "error"), [
    (coded(50000, "statuscode"), Throttled),
    (coded(50000), Throttled),
    (coded("50000"), Throttled),
    (coded(501), Retriable),
    (coded(40005), FatalConfig),
    (coded(6001), FatalConfig),
    (coded(40301), FatalConfig),                        # 用户不存在: the account's user does not exist
    (coded(40000), Retriable),                          # duplicate request: asked again later
    *[(coded(code), BadRequest) for code in (40001, 40002, 40003, 40004, 40006, 40007, 40008, 40010,
                                             40011, 40012, 40014, 40015, 40016)],
    (coded(12345), Retriable),                          # undocumented: retry, do not stop
    (b'{"result": true, "statusCode": 200}', Retriable),
    (b'{"result": true, "statusCode": 200, "info": {"total": "x", "voList": []}}', Retriable),
    (b'{"result": true, "statusCode": 200, "info": {"total": "1", "voList": {}}}', Retriable),
    (b'{"result": false, "statusCode": 200, "info": {}}', Retriable),
    (b"[]", Retriable),
    (b"<html>busy</html>", Retriable),
    (answer(row())[:-20], Retriable),
    (b"\xff\xfe", Retriable),
])
def test_error_envelopes(body: bytes, error: type[ProviderError]) -> None:
    with pytest.raises(error):
        parse(body)


@pytest.mark.parametrize("broken", [
    {"emailId": None}, {"emailId": ""}, {"recipients": None}, {"status": None}, {"status": ["送达"]},
    {"modifiedTime": "2024/01/02 10:00:05"}, {"modifiedTime": None, "requestTime": None},
    {"requestTime": "yesterday"}, {"modifiedTime": "0001-01-01 00:00:00"}, {"modifiedTime": 1704160805},
])
def test_a_malformed_row_is_rejected_not_a_crash(broken: dict[str, Any]) -> None:
    page = parse(answer(row(**broken)))
    assert (page.observations, page.rejected, page.rows) == ((), (RejectedRow(0, "malformed"),), 1)


def test_a_row_that_is_not_an_object() -> None:
    page = parse(orjson.dumps({"result": True, "statusCode": 200, "info": {"total": "1", "voList": ["x"]}}))
    assert (page.observations, page.rejected, page.rows) == ((), (RejectedRow(0, "malformed"),), 1)


@pytest.mark.parametrize(("status", "error"), [(429, Throttled), (500, Retriable), (502, Retriable),
                                               (503, Retriable), (401, FatalConfig), (403, FatalConfig),
                                               (404, BadRequest), (400, BadRequest), (302, Retriable)])
def test_http_statuses(status: int, error: type[ProviderError]) -> None:
    with pytest.raises(error):
        parse(b"", status=status)


def test_throttle_honours_retry_after() -> None:
    with pytest.raises(Throttled) as http:
        parse(b"", status=429, headers={"retry-after": "7"})
    assert http.value.retry_after == 7
    with pytest.raises(Throttled) as coded_throttle:
        parse(coded(50000, "statuscode"), headers={"retry-after": "Mon, 01 Jan 2024 17:01:00 GMT"})
    assert coded_throttle.value.retry_after == 60
    with pytest.raises(Throttled) as bare:
        parse(coded(50000, "statuscode"))
    assert bare.value.retry_after is None


def test_an_error_code_under_http_error_status_still_counts() -> None:
    with pytest.raises(FatalConfig):
        parse(coded(40005), status=400)


# -- pagination ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("offset", "rows", "total", "expected"), [
    (0, 100, "250", 100), (100, 100, "250", 200), (200, 50, "250", None), (0, 2, "2", None),
    (0, 0, "0", None), (300, 0, "250", None), (0, 1, "48675", 1),
])
def test_next_offset(offset: int, rows: int, total: str, expected: int | None) -> None:
    page = parse(answer(*[row() for _ in range(rows)], total=total), query=PollQuery(offset=offset))
    assert (page.rows, page.next_offset, page.total) == (rows, expected, int(total))


def test_an_empty_day_may_omit_the_list() -> None:
    page = parse(b'{"result":true,"statusCode":200,"info":{"total":"0","voListSize":0}}')
    assert (page.rows, page.next_offset, page.total, page.observations) == (0, None, 0, ())


# -- webhook verification -----------------------------------------------------------------------


def test_the_documented_test_vector() -> None:
    assert sign("1652117390000") == "14905406926ed04854f10caef3e6915336cf974c828794875a9ac682f10b3694"
    assert verify(form_hook(signed_fields())) == "hmac-sha256"


def test_json_body_with_a_numeric_timestamp() -> None:
    fields = {**signed_fields(), "timestamp": 1652117390000}
    req = WebhookRequest(orjson.dumps(fields), "application/json; charset=utf-8")
    assert verify(req) == "hmac-sha256"


def test_any_key_of_a_rotation_and_any_case_of_hex() -> None:
    fields = signed_fields()
    assert verify(form_hook(fields), keys=("new_key", KEY)) == "hmac-sha256"
    fields["signature"] = fields["signature"].upper()
    assert verify(form_hook(fields)) == "hmac-sha256"


@pytest.mark.parametrize("tamper", [
    {"token": TOKEN[:-1] + "Y"}, {"timestamp": "1652117390001"}, {"signature": "0" * 64},
    {"signature": "ü" * 64}, {"signature": ""}, {"token": ""},
])
def test_tampered_fields_are_refused(tamper: dict[str, str]) -> None:
    with pytest.raises(BadSignature):
        verify(form_hook({**signed_fields(), **tamper}))


@pytest.mark.parametrize("missing", ["timestamp", "token", "signature"])
def test_missing_signature_fields_are_refused(missing: str) -> None:
    fields = signed_fields()
    del fields[missing]
    with pytest.raises(BadSignature):
        verify(form_hook(fields))


def test_no_configured_key_refuses_everything() -> None:
    with pytest.raises(BadSignature, match="no webhook key configured"):
        verify(form_hook(signed_fields()), keys=())


def test_wrong_key_is_refused() -> None:
    with pytest.raises(BadSignature):
        verify(form_hook(signed_fields()), keys=("other",))


@pytest.mark.parametrize(("timestamp", "ok"), [
    ("1652117390000", True),
    ("1652117390", True),                        # seconds
    (str(1652117400000 - 259200 * 1000), True),  # exactly the window old
    (str(1652117400000 - 259201 * 1000), False),  # one second more
    (str(1652117400000 + 300 * 1000), True),     # five minutes ahead
    (str(1652117400000 + 301 * 1000), False),
    (str(1652117400 + 301), False),              # seconds, from the future
    ("1e12", False),
    ("-1652117390", False),
    ("99999999999999999", False),
])
def test_replay_window(timestamp: str, ok: bool) -> None:
    req = form_hook(signed_fields(timestamp))
    if ok:
        assert verify(req) == "hmac-sha256"
    else:
        with pytest.raises(BadSignature):
            verify(req)


@pytest.mark.parametrize(("body", "content_type"), [
    (b"\xff\xfeevent=deliver", sendcloud_webhooks.FORM), (b'{"event": ', "application/json"), (b"[1, 2]", "application/json"),
])
def test_unreadable_bodies_cannot_be_verified(body: bytes, content_type: str) -> None:
    with pytest.raises(BadSignature):
        verify(WebhookRequest(body, content_type))


# -- splitting ----------------------------------------------------------------------------------


REQUEST_IDS = [EMAIL_ID, EMAIL_ID.replace("inbound0$alice", "inbound1$bob")]


@pytest.mark.parametrize("req", [
    form_hook([("event", "request"), ("recipientArray", '["alice@example.com","bob@example.com"]'),
               ("emailIds", json.dumps(REQUEST_IDS))]),
    form_hook([("event", "request"), ("recipientArray", "alice@example.com"), ("recipientArray", "bob@example.com"),
               ("emailIds", REQUEST_IDS[0]), ("emailIds", REQUEST_IDS[1])]),
    WebhookRequest(orjson.dumps({"event": "request", "recipientArray": ["alice@example.com", "bob@example.com"],
                                 "emailIds": json.dumps(REQUEST_IDS)}), "application/json"),
    WebhookRequest(orjson.dumps({"event": "request", "recipientArray": ["alice@example.com", "bob@example.com"],
                                 "emailIds": REQUEST_IDS}), ""),                      # sniffed JSON
], ids=["form-json-strings", "form-repeated-keys", "json-string-field", "json-no-content-type"])
def test_list_fields_are_decoded(req: WebhookRequest) -> None:
    (record,) = sendcloud.split_webhook(req)
    assert record["recipientArray"] == ["alice@example.com", "bob@example.com"]
    assert record["emailIds"] == REQUEST_IDS
    assert record["event"] == "request"


def test_a_single_plain_list_value_is_a_one_element_list() -> None:
    (record,) = sendcloud.split_webhook(form_hook({"event": "request", "emailIds": EMAIL_ID}))
    assert record["emailIds"] == [EMAIL_ID]


def test_form_fields_are_kept_as_received_strings() -> None:
    (record,) = sendcloud.split_webhook(form_hook(hook_event(substat="406", labelId="0"), "text/plain"))
    assert record == hook_event(substat="406", labelId="0")


@pytest.mark.parametrize(("body", "content_type"), [
    (b"event=deliver&recipient=%E4", sendcloud_webhooks.FORM),                        # bad UTF-8 in an escape
    (b"event=deliver\xff", sendcloud_webhooks.FORM),
    (b'{"event": "deliver"', "application/json"),
    (b'["deliver"]', "application/json"),
    (b"emailId=x&recipient=y", sendcloud_webhooks.FORM),                               # no event at all
    (b'{"event": 3}', "application/json"),
    (b"event=request&emailIds=%5B%22a%22", sendcloud_webhooks.FORM),                 # truncated JSON list
    (b'{"event": "request", "emailIds": [1, 2]}', "application/json"),
    (b"", sendcloud_webhooks.FORM),
])
def test_unparseable_bodies_are_malformed(body: bytes, content_type: str) -> None:
    with pytest.raises(MalformedPayload):
        sendcloud.split_webhook(WebhookRequest(body, content_type))


# -- webhook records ----------------------------------------------------------------------------


@pytest.mark.parametrize(("event", "expected"), sorted((e, v and v[0]) for e, v in literal.SENDCLOUD_EVENTS.items()))
def test_every_webhook_event(event: str, expected: EventType | None) -> None:
    observations = sendcloud.webhook_observations(account(), hook_event(event=event))
    if expected is None:
        assert observations == []
        return
    (obs,) = observations
    assert obs.type is expected
    assert obs.reason is literal.DEFAULT_REASON.get(expected)
    assert obs.provider_status == event
    assert obs.occurred_at == datetime(2022, 5, 9, 17, 29, 50, tzinfo=UTC)


def test_complaints_carry_no_failure_reason() -> None:
    (obs,) = sendcloud.webhook_observations(account(), hook_event(event="report_spam"))
    assert (obs.type, obs.reason, obs.final) == (EventType.COMPLAINT, None, False)


@pytest.mark.parametrize(("event", "substat", "expected"), [
    ("invalid", 406, (EventType.INVALID, Reason.UNKNOWN_USER)),
    ("invalid", "401", (EventType.INVALID, Reason.SUPPRESSED)),      # on the provider's list, not sent
    ("invalid", "402", (EventType.INVALID, Reason.UNSUBSCRIBED)),
    ("invalid", 418, (EventType.SOFT_BOUNCE, Reason.OTHER)),         # like 409: no evidence, not invalid
    ("invalid", None, (EventType.SOFT_BOUNCE, Reason.OTHER)),
    ("soft_bounce", 507, (EventType.SOFT_BOUNCE, Reason.SPAM_REJECTED)),
    ("soft_bounce", 555, (EventType.SOFT_BOUNCE, Reason.OTHER)),
    ("unsubscribe", 406, (EventType.UNSUBSCRIBED, Reason.UNSUBSCRIBED)),   # substat only refines failures
    ("deliver", 406, (EventType.DELIVERED, None)),
])
def test_substat_refines_failures(event: str, substat: Any, expected: tuple[Any, Any]) -> None:
    (obs,) = sendcloud.webhook_observations(account(), hook_event(event=event, substat=substat))
    assert (obs.type, obs.reason) == expected


def test_webhook_texts_and_ids() -> None:
    record = hook_event(event="soft_bounce", substat="503", substatdesc="服务不可达", message="soft bounce",
                        cause="421 4.4.0 timed out", messageId="explicit-message-id")
    (obs,) = sendcloud.webhook_observations(account(), record)
    assert obs.provider_message == "421 4.4.0 timed out"
    assert (obs.smtp.code, obs.smtp.enhanced) == (421, "4.4.0")
    assert obs.provider_sub_status == "503"
    assert obs.message_id == "explicit-message-id"
    assert obs.sent_at is None
    assert obs.raw is record
    (obs,) = sendcloud.webhook_observations(account(), hook_event(event="invalid", substatdesc="地址不存在"))
    assert obs.provider_message == "地址不存在"
    assert obs.message_id == "1652117389552_218362_2287_3497.sc-10_9_13_213-inbound"


@pytest.mark.parametrize(("timestamp", "utc"), [
    ("1652117390000", datetime(2022, 5, 9, 17, 29, 50, tzinfo=UTC)),
    (1652117390000, datetime(2022, 5, 9, 17, 29, 50, tzinfo=UTC)),
    ("1652117390", datetime(2022, 5, 9, 17, 29, 50, tzinfo=UTC)),
    ("1652117390123", datetime(2022, 5, 9, 17, 29, 50, 123000, tzinfo=UTC)),
])
def test_webhook_timestamps_in_seconds_or_milliseconds(timestamp: Any, utc: datetime) -> None:
    (obs,) = sendcloud.webhook_observations(account(), hook_event(timestamp=timestamp))
    assert obs.occurred_at == utc


@pytest.mark.parametrize("broken", [
    {"emailId": None}, {"emailId": ""}, {"recipient": None}, {"timestamp": None}, {"timestamp": "soon"},
    {"timestamp": True}, {"timestamp": 1e30}, {"event": None}, {"event": "dropped"}, {"event": ["deliver"]},
])
def test_records_missing_what_an_event_needs_are_malformed(broken: dict[str, Any]) -> None:
    with pytest.raises(MalformedPayload):
        sendcloud.webhook_observations(account(), hook_event(**broken))


def test_aurora_names_are_not_sendcloud_china_events() -> None:
    with pytest.raises(MalformedPayload):
        sendcloud.webhook_observations(account(), hook_event(event="invalid_email"))


# -- one parse per request (issue 16) -----------------------------------------------------------


def test_verification_and_splitting_parse_a_body_once(monkeypatch) -> None:
    calls: list[bytes] = []
    real = sendcloud_webhooks._form_fields

    def counting(body: bytes) -> dict[str, Any]:
        calls.append(body)
        return real(body)

    monkeypatch.setattr(sendcloud_webhooks, "_form_fields", counting)
    fields = [*signed_fields().items(), ("emailIds", "a"), ("emailIds", "b")]
    req = form_hook(fields)
    assert verify(req) == "hmac-sha256"
    [record] = sendcloud.split_webhook(req)
    assert len(calls) == 1
    assert record["emailIds"] == ["a", "b"] and record["event"] == "deliver"
    # the split decoded its list fields in a copy: splitting again reads the same record
    assert sendcloud.split_webhook(req) == [record] and len(calls) == 1


def test_a_request_parsed_by_one_edition_is_not_read_as_another() -> None:
    from worker.providers import aurora_sendcloud
    req = form_hook(signed_fields())
    [record] = sendcloud.split_webhook(req)
    assert set(req.parsed) == {"sendcloud"}
    assert aurora_sendcloud.split_webhook(req) == [record] and set(req.parsed) == {"sendcloud", "aurora_sendcloud"}


# Bodies a form parser gets wrong in different ways: escaped separators, '+' and '%2B', NUL raw and
# escaped (the one-call unquoting falls back to each part alone), pairs without '=' or empty.
FORM_BODIES = [
    b"", b"&", b"&&a=1&&", b"a", b"a=", b"=x", b"a=1=2", b"a+b=c+d", b"a%2Bb=c%2Bd", b"k=%26%3D%25",
    b"k=%00&j=2", b"k=a\x00b&j=2", b"k=%e4%bd%a0%E5%A5%BD", b"k=\xe4\xbd\xa0", b"k=%zz&j=%4", b"k=%C3&j=%A9",
    b"emailIds=a&emailIds=b&event=deliver&message=250+2.0.0+OK%3A+queued",
]


@pytest.mark.parametrize("body", FORM_BODIES)
def test_form_pairs_read_a_body_as_the_standard_library_does(body: bytes) -> None:
    try:
        expected = urllib.parse.parse_qsl(body.decode("utf-8"), keep_blank_values=True, encoding="utf-8",
                                          errors="strict")
    except UnicodeDecodeError:
        with pytest.raises(UnicodeDecodeError):
            sendcloud_webhooks._form_pairs(body)
        return
    assert sendcloud_webhooks._form_pairs(body) == expected


def test_form_pairs_hand_worked() -> None:
    assert sendcloud_webhooks._form_pairs(b"a=1&b&=c&d=x+y%2Bz&e=%00%26") == [
        ("a", "1"), ("b", ""), ("", "c"), ("d", "x y+z"), ("e", "\x00&")]
    with pytest.raises(UnicodeDecodeError):
        sendcloud_webhooks._form_pairs(b"k=%C3&j=%A9")       # half a character in each of two values
    # one space, one pair: splitting the unquoted whole on anything but NUL would cut it in two
    assert sendcloud_webhooks._form_pairs(b"a=b+c") == [("a", "b c")]
    assert sendcloud_webhooks._form_pairs(b"a=b%20c&d=e") == [("a", "b c"), ("d", "e")]


def test_splitting_leaves_the_shared_parse_as_read() -> None:
    fields = {**signed_fields(), "emailIds": '["a", "b"]'}      # a list field as one JSON-array string
    req = WebhookRequest(orjson.dumps(fields), sendcloud_webhooks.JSON)
    assert verify(req) == "hmac-sha256"
    [record] = sendcloud.split_webhook(req)
    assert record["emailIds"] == ["a", "b"]
    assert req.parsed["sendcloud"]["emailIds"] == '["a", "b"]'   # decoded in the record, not in the parse


# -- a sub-status beside a status that is not a failure (docs/mapping.md) --------------------------

# (module, status word, subStatus) -> the row's type: the sub-status refines a failure or a word the
# edition does not know; a delivered or pending row is what its status says.
STATUS_BESIDE_SUB = [
    (sendcloud, "请求中", "503", None),           # pending, the last attempt's code beside it: no event yet
    (sendcloud, "请求中", "406", None),
    (sendcloud, "送达", "406", EventType.DELIVERED),
    (sendcloud, "投递成功", "509", EventType.DELIVERED),
    (sendcloud, "无效邮件", "406", EventType.INVALID),
    (sendcloud, "软退信", "406", EventType.INVALID),     # a failure: its sub-status decides, as before
    (sendcloud, "无效邮件", "503", EventType.SOFT_BOUNCE),
    (sendcloud, "退信", "406", EventType.INVALID),       # a word the edition does not know: the sub-status rescues it
    (sendcloud, "退信", None, None),
    (aurora_sendcloud, "sending", "503", None),
    (aurora_sendcloud, "request", "406", None),
    (aurora_sendcloud, "delivered", "406", EventType.DELIVERED),
    (aurora_sendcloud, "invalid", "406", EventType.INVALID),
    (aurora_sendcloud, "bounced", "503", EventType.SOFT_BOUNCE),
]


@pytest.mark.parametrize(("module", "status", "sub", "expected"), STATUS_BESIDE_SUB)
@pytest.mark.parametrize("by_rows", [False, True])
def test_a_sub_status_refines_only_a_failure_or_an_unknown_status(module, status, sub, expected, by_rows) -> None:
    rows = [row(status=status, subStatus=sub, sendLog="550 rejected")]   # a reply that is no evidence
    if by_rows:   # a message that is not text: the page is read row by row, not by columns
        rows.append(row(emailId="1704160800000_15_23357_8937.sc-10_10_126_221-inbound1$bob@qq.com",
                        recipients="bob@qq.com", sendLog=5))
    page = parse(answer(*rows), module=module)
    assert not page.rejected
    assert page.observations[0].type is expected
    assert page.observations[0].provider_sub_status == sub
