"""EngageLab: request building, the status API, both webhook signature schemes, tables, fixtures."""

from __future__ import annotations

import base64
import hashlib
import hmac
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
from worker.model import EventType, Provider, Reason, Scope
from worker.providers import engagelab
from worker.providers.base import AccountContext, HttpRequest, PollQuery, RejectedRow, WebhookRequest

NOW = datetime(2024, 1, 1, 17, 0, tzinfo=UTC)   # 2024-01-02 in China
SECRET = "my_app_secret"
TS = "1676615711325"
MD5_VECTOR = "a9d5ea2634e13031de0d3ececed4ec7a"
HMAC_VECTOR = "51c64ca815791ca810776a2d6a8c36e6088d8ca60b757c4f79b9d60336bc0dee"
HOOK_NOW = datetime(2023, 2, 17, 6, 40, tzinfo=UTC)
MESSAGE_ID = "1676615711309_104117_18546_8821.sc-10_43_7_16-inbound"
EMAIL_ID = MESSAGE_ID + "0$12345@hotmail.com"


def account(**fields: Any) -> AccountContext:
    return AccountContext(**{"name": "acct", "provider": engagelab.NAME, "base_url": engagelab.DEFAULTS.base_url,
                             "api_user": "zymtest4", "api_key": "secret-key", **fields})


def row(**fields: Any) -> dict[str, Any]:
    return {"email_id": EMAIL_ID, "api_user": "zymtest4", "email": "12345@hotmail.com",
            "request_time": "2022-11-10T15:39:01+0800", "update_time": "2022-11-10T17:34:16+0800", "status": 1,
            "sub_status": None, "status_desc": "Delivered", "sub_status_desc": None, "response_message": "250 OK",
            **fields}


def answer(*rows: dict[str, Any], total: str | None = None) -> bytes:
    return orjson.dumps({"result": list(rows), "total": str(len(rows)) if total is None else total,
                         "count": len(rows)})


def parse(body: bytes, *, status: int = 200, headers: dict[str, str] | None = None,
          acct: AccountContext | None = None, query: PollQuery = PollQuery()):
    return engagelab.parse_poll_response(acct or account(), query, status, headers or {}, body, NOW)


def one(record: dict[str, Any], acct: AccountContext | None = None):
    (obs,) = parse(answer(record), acct=acct).observations
    return obs


# -- fixtures -----------------------------------------------------------------------------------


def test_fixture_folder_covers_the_required_cases() -> None:
    stems = {p.stem for p in fixture_cases("engagelab")}
    assert {"poll_seed", "poll_page_1", "poll_page_2", "poll_http_429", "poll_auth_failed_401",
            "webhook_bad_signature", "webhook_replayed_timestamp", "webhook_malformed", "webhook_target",
            "webhook_sent", "webhook_delivered_md5", "webhook_invalid_email_hmac", "webhook_soft_bounce_hmac_itime",
            "webhook_open", "webhook_click", "webhook_unsubscribe", "webhook_report_spam", "webhook_route"} <= stems


# -- request building ---------------------------------------------------------------------------


def test_defaults() -> None:
    d = engagelab.DEFAULTS
    assert (d.base_url, d.quota_per_minute, d.cache_ttl_secs, d.retention_days, d.page_limit, d.polling) == (
        "https://email.api.engagelab.cc", 60, 600, 30, 100, "date")
    assert d.tz.utcoffset(None) == timedelta(hours=8)
    assert d.status_filters == (EventType.INVALID, EventType.SOFT_BOUNCE, EventType.DELIVERED)
    assert engagelab.OPTIONS["signature"].default == "any"
    assert engagelab.OPTIONS["signature"].choices == ("any", "md5", "hmac")


def test_default_request_is_a_basic_auth_get_dated_in_china() -> None:
    token = base64.b64encode(b"zymtest4:secret-key").decode()
    assert engagelab.build_poll_request(account(), PollQuery(), NOW) == HttpRequest(
        "GET",
        "https://email.api.engagelab.cc/v1/email_status",
        params=(("send_date", "2024-01-02"), ("offset", "0"), ("limit", "100")),
        headers=(("Authorization", f"Basic {token}"),),
    )


def test_filters_ids_and_a_regional_host() -> None:
    query = PollQuery(send_date=date(2023, 12, 31), status=EventType.INVALID, offset=300, limit=100,
                      email_ids=("a$x@y.com", "b$z@y.com"))
    req = engagelab.build_poll_request(account(base_url="https://emailapi-tr.engagelab.com/"), query, NOW)
    assert req.url == "https://emailapi-tr.engagelab.com/v1/email_status"
    assert req.params == (("send_date", "2023-12-31"), ("offset", "300"), ("limit", "100"), ("status", "4"),
                          ("email_ids", "a$x@y.com;b$z@y.com"))
    assert req.body is None


@pytest.mark.parametrize(("status", "code"), [(EventType.DELIVERED, "1"), (EventType.INVALID, "4"),
                                              (EventType.SOFT_BOUNCE, "5")])
def test_status_filter_codes(status: EventType, code: str) -> None:
    assert ("status", code) in engagelab.build_poll_request(account(), PollQuery(status=status), NOW).params


@pytest.mark.parametrize(("now", "day"), [
    (datetime(2024, 1, 1, 15, 59, 59, tzinfo=UTC), "2024-01-01"),
    (datetime(2024, 1, 1, 16, 0, tzinfo=UTC), "2024-01-02"),
])
def test_day_boundary(now: datetime, day: str) -> None:
    assert engagelab.build_poll_request(account(), PollQuery(), now).params[0] == ("send_date", day)


def test_bad_queries_and_missing_credentials() -> None:
    with pytest.raises(BadRequest):
        engagelab.build_poll_request(account(), PollQuery(status=EventType.COMPLAINT), NOW)
    with pytest.raises(FatalConfig):
        engagelab.build_poll_request(account(api_key=None), PollQuery(), NOW)
    assert ("limit", "100") in engagelab.build_poll_request(account(), PollQuery(limit=1000), NOW).params


# -- mapping tables -----------------------------------------------------------------------------


@pytest.mark.parametrize(("status", "expected", "final"),
                         sorted((s, v[0], v[2]) for s, v in literal.ENGAGELAB_STATUSES.items()))
@pytest.mark.parametrize("as_text", [False, True], ids=["int", "string"])
def test_every_status_code(status: int, expected: EventType | None, final: bool, as_text: bool) -> None:
    obs = one(row(status=str(status) if as_text else status))
    assert (obs.type, obs.provider_status) == (expected, str(status))
    assert obs.reason is (literal.DEFAULT_REASON.get(expected) if expected else None)
    assert obs.final is final


def test_unknown_status_is_not_emitted() -> None:
    assert one(row(status=2)).type is None


@pytest.mark.parametrize(("code", "expected"), sorted((c, v[:2]) for c, v in literal.SUB_STATUS.items()))
def test_every_sub_status_row(code: int, expected: tuple[EventType, Reason]) -> None:
    obs = one(row(status=4 if code < 500 else 5, sub_status=code, sub_status_desc="desc", response_message=None))
    assert (obs.type, obs.reason, obs.provider_sub_status, obs.provider_message) == (*expected, str(code), "desc")


# Status 4 with no known sub-status and no SMTP evidence ("250 OK" is none) is the invalid class
# about nothing known: a final soft bounce (docs/mapping.md, like 409).
@pytest.mark.parametrize(("status", "sub", "expected"), [
    (4, 499, (EventType.SOFT_BOUNCE, Reason.OTHER)),          # unknown 4xx: like 409
    (5, 501, (EventType.SOFT_BOUNCE, Reason.OTHER)),
    (4, 506, (EventType.SOFT_BOUNCE, Reason.UNKNOWN_USER)),   # the sub-status wins
    (4, None, (EventType.SOFT_BOUNCE, Reason.OTHER)),
    (5, 0, (EventType.SOFT_BOUNCE, Reason.OTHER)),
])
def test_sub_status_fallbacks(status: int, sub: int | None, expected: tuple[Any, Any]) -> None:
    obs = one(row(status=status, sub_status=sub))
    assert (obs.type, obs.reason) == expected


@pytest.mark.parametrize("code", [405, 407])
def test_sender_side_rejections_follow_the_account(code: int) -> None:
    # docs/mapping.md: soft bounces as documented (reason sender_rejected / spam_rejected), and under either
    # setting: a rejection of the sender never makes the address invalid.
    reason = Reason.SENDER_REJECTED if code == 405 else Reason.SPAM_REJECTED
    for setting in (None, EventType.SOFT_BOUNCE, EventType.INVALID):
        soft = one(row(status=4, sub_status=code), acct=account(sender_rejection=setting))
        assert (soft.type, soft.reason) == (EventType.SOFT_BOUNCE, reason)


def test_record_fields() -> None:
    record = row(status=4, sub_status=409, sub_status_desc="Other", response_message="Other(scheduler: deleted)")
    obs = one(record)
    assert obs.email_id == EMAIL_ID and obs.recipient == "12345@hotmail.com" and obs.message_id == MESSAGE_ID
    assert obs.occurred_at == datetime(2022, 11, 10, 9, 34, 16, tzinfo=UTC)
    assert obs.sent_at == datetime(2022, 11, 10, 7, 39, 1, tzinfo=UTC)
    assert obs.provider_message == "Other(scheduler: deleted)" and obs.smtp is None
    # docs/mapping.md worked example 4: 409 without SMTP evidence is a final soft bounce about nothing known.
    assert (obs.type, obs.reason, obs.scope) == (EventType.SOFT_BOUNCE, Reason.OTHER, Scope.UNKNOWN)
    assert obs.raw == record


@pytest.mark.parametrize(("text", "utc"), [
    ("2022-11-10T17:34:16+0800", datetime(2022, 11, 10, 9, 34, 16, tzinfo=UTC)),
    ("2022-11-10T17:34:16+08:00", datetime(2022, 11, 10, 9, 34, 16, tzinfo=UTC)),
    ("2022-11-10T09:34:16Z", datetime(2022, 11, 10, 9, 34, 16, tzinfo=UTC)),
    ("2024-01-01T07:59:59+0800", datetime(2023, 12, 31, 23, 59, 59, tzinfo=UTC)),   # day boundary
])
def test_offset_times(text: str, utc: datetime) -> None:
    assert one(row(update_time=text)).occurred_at == utc


def test_a_row_without_update_time_uses_the_request_time() -> None:
    assert one(row(update_time=None)).occurred_at == datetime(2022, 11, 10, 7, 39, 1, tzinfo=UTC)


@pytest.mark.parametrize(("text", "utc"), [
    # Without an offset: the API's zone, UTC+8, as EngageLab's general-rules page shows a list
    # answer's times (`"create_time": "2022-11-14 14:27:48"`; tests/fixtures/PUBLIC_SOURCES.md).
    ("2022-11-10 17:34:16", datetime(2022, 11, 10, 9, 34, 16, tzinfo=UTC)),
    ("2022-11-10T17:34:16", datetime(2022, 11, 10, 9, 34, 16, tzinfo=UTC)),
    ("2024-01-01 07:59:59", datetime(2023, 12, 31, 23, 59, 59, tzinfo=UTC)),   # day boundary
    ("2022-11-10 17:34:16.250", datetime(2022, 11, 10, 9, 34, 16, 250000, tzinfo=UTC)),
])
def test_times_without_an_offset_are_read_in_utc_plus_8(text: str, utc: datetime) -> None:
    observation = one(row(update_time=text, request_time=text))
    assert (observation.occurred_at, observation.sent_at) == (utc, utc)


@pytest.mark.parametrize("broken", [
    {"update_time": "2022-11-10 25:34:16"}, {"update_time": "10/11/2022 17:34"}, {"update_time": "1899-11-10 17:34:16"},
    {"email_id": None}, {"status": None}, {"request_time": 1668065941}, {"update_time": None, "request_time": None},
])
def test_malformed_rows_are_rejected(broken: dict[str, Any]) -> None:
    page = parse(answer(row(**broken)))
    assert (page.observations, page.rejected, page.rows) == ((), (RejectedRow(0, "malformed"),), 1)


# -- errors and pagination ----------------------------------------------------------------------


@pytest.mark.parametrize(("status", "body", "error"), [
    (401, b'{"code": 30000, "message": "Authentication failed."}', FatalConfig),
    (200, b'{"code": 30000, "message": "Authentication failed."}', FatalConfig),
    (400, b'{"code": "30000", "message": "Authentication failed."}', FatalConfig),
    (403, b"", FatalConfig),
    (429, b"", Throttled),
    (500, b'{"code": 1, "message": "internal"}', Retriable),
    (502, b"<html>bad gateway</html>", Retriable),
    (400, b'{"code": 30002, "message": "invalid send_date"}', BadRequest),
    (404, b"not found", BadRequest),
    (200, b'{"code": 2002, "message": "unknown"}', Retriable),     # a code and no result
    (200, b"<html>proxy</html>", Retriable),
    (200, b'{"result": {}, "total": "0"}', Retriable),
    (200, b"", Retriable),
    (201, answer(row())[:30], Retriable),
])
def test_errors(status: int, body: bytes, error: type[ProviderError]) -> None:
    with pytest.raises(error):
        parse(body, status=status)


@pytest.mark.parametrize(("header", "seconds"), [("30", 30), ("Mon, 01 Jan 2024 17:02:00 GMT", 120), (None, None)])
def test_http_429_honours_retry_after(header: str | None, seconds: float | None) -> None:
    with pytest.raises(Throttled) as caught:
        parse(b"", status=429, headers={"retry-after": header} if header else {})
    assert caught.value.retry_after == seconds


@pytest.mark.parametrize(("offset", "rows", "total", "expected"), [
    (0, 100, "48675", 100), (48600, 75, "48675", None), (0, 0, "0", None), (100, 0, "48675", None),
])
def test_pagination_with_total_as_a_string(offset: int, rows: int, total: str, expected: int | None) -> None:
    page = parse(answer(*[row() for _ in range(rows)], total=total), query=PollQuery(offset=offset))
    assert (page.rows, page.next_offset, page.total) == (rows, expected, int(total))


# -- webhook verification -----------------------------------------------------------------------


def md5(ts: str, appkey: str = "email", secret: str = SECRET) -> str:
    return hashlib.md5((ts + appkey + secret).encode()).hexdigest()


def hmac_hex(message: str, secret: str = SECRET) -> str:
    return hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()


def hook(signature: str, ts: str | None = TS, body: bytes = b"{}", appkey: str | None = "email") -> WebhookRequest:
    headers = {"x-webhook-signature": signature}
    if ts is not None:
        headers["x-webhook-timestamp"] = ts
    if appkey is not None:
        headers["x-webhook-appkey"] = appkey
    return WebhookRequest(body, "application/json; charset=utf-8", headers)


def verify(req: WebhookRequest, keys: tuple[str, ...] = (SECRET,), now: datetime = HOOK_NOW, **kw: Any) -> str:
    options = {"signature": kw.pop("signature_scheme")} if "signature_scheme" in kw else {}
    return engagelab.verify_webhook(hook_acct(Provider.ENGAGELAB, keys, **options), req, now, 259200, **kw)


def test_the_documented_test_vectors() -> None:
    assert md5(TS) == MD5_VECTOR and hmac_hex(TS) == HMAC_VECTOR
    assert verify(hook(MD5_VECTOR)) == "md5"
    assert verify(hook(HMAC_VECTOR)) == "hmac-sha256"
    assert verify(hook(MD5_VECTOR.upper())) == "md5"


def test_hmac_over_the_body_itime() -> None:
    itime = "1676615900000"
    body = orjson.dumps({"itime": int(itime), "status": {"message_status": "sent", "status_data": {}}})
    assert verify(hook(hmac_hex(itime), ts="1676615900123", body=body)) == "hmac-sha256"


@pytest.mark.parametrize(("scheme", "signature", "ok"), [
    ("any", MD5_VECTOR, True), ("any", HMAC_VECTOR, True),
    ("md5", MD5_VECTOR, True), ("md5", HMAC_VECTOR, False),
    ("hmac", HMAC_VECTOR, True), ("hmac", MD5_VECTOR, False),
])
def test_signature_option(scheme: str, signature: str, ok: bool) -> None:
    if ok:
        assert verify(hook(signature), signature_scheme=scheme)
    else:
        with pytest.raises(BadSignature):
            verify(hook(signature), signature_scheme=scheme)


def test_rotation_and_a_missing_appkey_header() -> None:
    assert verify(hook(MD5_VECTOR), keys=("new_secret", SECRET)) == "md5"
    with pytest.raises(BadSignature):
        verify(hook(MD5_VECTOR, appkey=None))          # MD5 needs the app key header
    assert verify(hook(HMAC_VECTOR, appkey=None)) == "hmac-sha256"
    assert verify(hook(md5(TS, appkey="other"), appkey="other")) == "md5"


@pytest.mark.parametrize("req", [
    hook(MD5_VECTOR, ts=None), hook(""), hook(md5(TS, secret="wrong")), hook(MD5_VECTOR, ts="1676615711326"),
    hook("ü" * 32), hook(hmac_hex(TS, secret="wrong")),
])
def test_refused(req: WebhookRequest) -> None:
    with pytest.raises(BadSignature):
        verify(req)


def test_no_keys_refuses() -> None:
    with pytest.raises(BadSignature, match="no webhook key configured"):
        verify(hook(MD5_VECTOR), keys=())


@pytest.mark.parametrize(("now", "ok"), [
    (HOOK_NOW, True),
    (datetime(2023, 2, 20, 6, 35, 11, 325000, tzinfo=UTC), True),     # exactly three days
    (datetime(2023, 2, 20, 6, 35, 12, tzinfo=UTC), False),
    (datetime(2023, 2, 17, 6, 30, 11, 325000, tzinfo=UTC), True),     # five minutes early
    (datetime(2023, 2, 17, 6, 30, 11, tzinfo=UTC), False),
])
def test_replay_window(now: datetime, ok: bool) -> None:
    if ok:
        assert verify(hook(MD5_VECTOR), now=now) == "md5"
    else:
        with pytest.raises(BadSignature):
            verify(hook(MD5_VECTOR), now=now)


def test_seconds_timestamps_and_garbage_timestamps() -> None:
    assert verify(hook(md5("1676615711"), ts="1676615711")) == "md5"
    with pytest.raises(BadSignature):
        verify(hook(md5("yesterday"), ts="yesterday"))


# -- splitting and records ----------------------------------------------------------------------


def status_callback(message_status: str, to: str | None = "12345@hotmail.com", itime: Any = 1676615713250,
                    **data: Any) -> dict[str, Any]:
    record = {"server": "email", "message_id": MESSAGE_ID, "itime": itime, "custom_args": {},
              "status": {"message_status": message_status, "status_data": {"email_id": EMAIL_ID, **data}}}
    if to is not None:
        record["to"] = to
    return record


def response_callback(event: str, to: str | None = "12345@hotmail.com", **data: Any) -> dict[str, Any]:
    record = {"server": "email", "message_id": MESSAGE_ID, "itime": 1676615713250,
              "response": {"event": event, "response_data": {"email_id": EMAIL_ID, **data}}}
    if to is not None:
        record["to"] = to
    return record


def test_split_one_object_or_a_list() -> None:
    record = status_callback("delivered")
    assert engagelab.split_webhook(WebhookRequest(orjson.dumps(record), "application/json")) == [record]
    both = [record, response_callback("open")]
    assert engagelab.split_webhook(WebhookRequest(orjson.dumps(both), "")) == both


@pytest.mark.parametrize("body", [b"", b"{", b"[]", b"3", b'"x"', b"[1]", b'{"server": "email"}',
                                  b'{"status": "delivered"}', b"\xff", b'[{"status": {}}, 2]'])
def test_split_malformed(body: bytes) -> None:
    with pytest.raises(MalformedPayload):
        engagelab.split_webhook(WebhookRequest(body, "application/json"))


STATUS_EVENTS = ("target", "sent", "delivered", "invalid_email", "soft_bounce")


@pytest.mark.parametrize(("event", "expected"), sorted((e, v and v[0]) for e, v in {**literal.ENGAGELAB_STATUS_EVENTS, **literal.ENGAGELAB_RESPONSE_EVENTS}.items()))
def test_every_event(event: str, expected: EventType | None) -> None:
    record = status_callback(event) if event in STATUS_EVENTS else response_callback(event)
    observations = engagelab.webhook_observations(account(), record)
    if expected is None:
        assert observations == []
        return
    (obs,) = observations
    assert (obs.type, obs.reason, obs.provider_status) == (expected, literal.DEFAULT_REASON.get(expected), event)
    assert (obs.email_id, obs.recipient, obs.message_id) == (EMAIL_ID, "12345@hotmail.com", MESSAGE_ID)
    assert obs.occurred_at == datetime(2023, 2, 17, 6, 35, 13, 250000, tzinfo=UTC)
    assert obs.raw is record


@pytest.mark.parametrize("field", engagelab.SUB_STATUS_FIELDS)
@pytest.mark.parametrize(("event", "code", "expected"), [
    ("invalid_email", 406, (EventType.INVALID, Reason.UNKNOWN_USER)),
    ("invalid_email", "404", (EventType.INVALID, Reason.BAD_ADDRESS)),
    ("soft_bounce", 508, (EventType.SOFT_BOUNCE, Reason.POLICY_REJECTED)),
    ("delivered", 406, (EventType.DELIVERED, None)),
])
def test_sub_status_field_names(field: str, event: str, code: Any, expected: tuple[Any, Any]) -> None:
    (obs,) = engagelab.webhook_observations(account(), status_callback(event, **{field: code}))
    assert (obs.type, obs.reason) == expected


@pytest.mark.parametrize("field", engagelab.SUB_STATUS_DESC_FIELDS)
def test_sub_status_descriptions_are_the_message_when_there_is_none(field: str) -> None:
    (obs,) = engagelab.webhook_observations(account(), status_callback("invalid_email", sub_stat=406,
                                                                       **{field: "Not Exist"}))
    assert obs.provider_message == "Not Exist"
    (obs,) = engagelab.webhook_observations(account(), status_callback(
        "invalid_email", sub_stat=406, message="550 5.1.1 user unknown", **{field: "Not Exist"}))
    assert (obs.provider_message, obs.smtp.code, obs.smtp.enhanced) == ("550 5.1.1 user unknown", 550, "5.1.1")


def test_recipient_from_the_email_id_when_to_is_empty() -> None:
    (obs,) = engagelab.webhook_observations(account(), response_callback("unsubscribe", to=""))
    assert obs.recipient == "12345@hotmail.com"


@pytest.mark.parametrize(("itime", "utc"), [
    (1676615713250, datetime(2023, 2, 17, 6, 35, 13, 250000, tzinfo=UTC)),
    (1676615713, datetime(2023, 2, 17, 6, 35, 13, tzinfo=UTC)),
    ("1676615713250", datetime(2023, 2, 17, 6, 35, 13, 250000, tzinfo=UTC)),
])
def test_itime_in_seconds_or_milliseconds(itime: Any, utc: datetime) -> None:
    (obs,) = engagelab.webhook_observations(account(), status_callback("delivered", itime=itime))
    assert obs.occurred_at == utc


@pytest.mark.parametrize("record", [
    status_callback("delivered", itime=None),
    status_callback("delivered", itime=-5),
    {**status_callback("delivered"), "status": {"message_status": "delivered", "status_data": {}}},
    {**status_callback("delivered"), "status": {"message_status": "delivered", "status_data": "x"}},
    {**status_callback("delivered"), "status": {"message_status": "delivered"}},
    status_callback("bounced"),
    {**status_callback("delivered", to=None), "status": {"message_status": "delivered",
                                                         "status_data": {"email_id": "no-recipient-in-id"}}},
    response_callback("click_through"),
    {"server": "email", "itime": 1676615713250},
    {"status": {"status_data": {"email_id": EMAIL_ID}}, "itime": 1676615713250},
])
def test_malformed_callbacks(record: dict[str, Any]) -> None:
    with pytest.raises(MalformedPayload):
        engagelab.webhook_observations(account(), record)


# (status, sub_status) -> type: 18 is EngageLab retrying (its last attempt's code may be beside it)
# and 1 delivered, whatever the sub-status; a failure or a status code not documented goes by its
# sub-status (docs/mapping.md).
@pytest.mark.parametrize(("status", "sub", "expected"), [
    (18, 503, None),
    (18, 406, None),
    (1, 406, EventType.DELIVERED),
    (4, 406, EventType.INVALID),
    (5, 503, EventType.SOFT_BOUNCE),
    (4, 503, EventType.SOFT_BOUNCE),
    (7, 406, EventType.INVALID),
    (7, None, None),
])
def test_a_sub_status_refines_only_a_failure_or_an_unknown_status(status, sub, expected) -> None:
    obs = one(row(status=status, sub_status=sub, response_message="550 rejected"))
    assert obs.type is expected
