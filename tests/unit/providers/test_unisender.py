"""UniSender classic: mapping tables, request building, webhook auth, recorded fixtures, fuzzing."""

from __future__ import annotations

import hashlib
import urllib.parse
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support import hook_acct
from tests.unit.providers import test_conformance as conformance
from worker.errors import (
    BadRequest,
    BadSignature,
    FatalConfig,
    MalformedPayload,
    PollError,
    Retriable,
    Throttled,
)
from worker.model import EventType, Provider, Reason, Scope, event_scope
from worker.providers import unisender
from worker.providers.base import AccountContext, PollQuery, WebhookRequest

NOW = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
ACCT = AccountContext(
    name="acct", provider=unisender.NAME, base_url=unisender.DEFAULTS.base_url, api_key="APIKEY123",
    webhook_keys=("APIKEY123",),
)

D, I, S, C, U = (
    EventType.DELIVERED,
    EventType.INVALID,
    EventType.SOFT_BOUNCE,
    EventType.COMPLAINT,
    EventType.UNSUBSCRIBED,
)
R = Reason
SENDER = "sender"  # a sender-side row: the account's sender_rejection policy may apply
RC, DM, CO, PO, PR, UN = Scope.RECIPIENT, Scope.DOMAIN, Scope.CONTENT, Scope.POLICY, Scope.PROVIDER, Scope.UNKNOWN

# PROVIDERS.md 4.4 as docs/mapping.md's UniSender table reads it, written out independently of the
# module: status -> (type, reason, final, event scope). `final` is the tracking column (the status
# can no longer change); a soft bounce that is not final is one UniSender retries. The scope is
# the event's (null for a delivery and for what is not emitted; recipient for the recipient's own
# unsubscribe or complaint; provider where UniSender did not send from its own record).
EXPECTED_STATUSES: dict[str, tuple[Any, Reason | None, bool, Scope | None]] = {
    "not_sent": (None, None, False, None),
    "ok_sent": (None, None, False, None),
    "delayed": (None, None, False, None),
    "ok_delivered": (D, None, False, None),
    "ok_read": (D, None, False, None),
    "ok_link_visited": (D, None, False, None),
    "ok_spam_folder": (D, None, True, None),
    "ok_unsubscribed": (U, R.UNSUBSCRIBED, True, RC),
    "ok_fbl": (C, None, True, RC),
    "err_blacklisted": (S, R.BLOCKLISTED, False, PO),     # UniSender re-sends
    "err_will_retry": (S, R.DEFERRED, False, UN),
    "err_resend": (S, R.DEFERRED, False, UN),
    "err_internal": (None, R.PROVIDER_ERROR, True, None),
    "err_user_unknown": (I, R.UNKNOWN_USER, True, RC),
    "err_user_inactive": (I, R.MAILBOX_DISABLED, True, RC),
    "err_mailbox_discarded": (I, R.MAILBOX_DISABLED, True, RC),
    "err_mailbox_full": (S, R.MAILBOX_FULL, True, RC),
    "err_no_dns": (I, R.DOMAIN_INVALID, True, DM),
    "err_no_smtp": (I, R.DOMAIN_INVALID, True, DM),
    "err_domain_inactive": (I, R.DOMAIN_INVALID, True, DM),
    "err_destination_misconfigured": (S, R.OTHER, False, DM),
    "err_spam_rejected": (SENDER, R.SPAM_REJECTED, True, CO),
    "err_spam_may_retry": (SENDER, R.SPAM_REJECTED, True, CO),
    "err_too_large": (None, R.POLICY_REJECTED, True, None),
    "err_giveup": (S, R.OTHER, True, UN),
    "err_spam_removed": (None, R.POLICY_REJECTED, False, None),
    "err_spam_skipped": (None, R.POLICY_REJECTED, False, None),
    "err_delivery_failed": (S, R.OTHER, True, UN),
    "err_skip_letter": (I, R.SUPPRESSED, True, PR),       # UniSender did not send
    "err_dest_invalid": (I, R.BAD_ADDRESS, True, RC),
    "err_not_available": (I, R.SUPPRESSED, True, PR),     # UniSender did not send
    "err_unreachable": (I, R.BAD_ADDRESS, True, RC),
    "skip_dup_unreachable": (I, R.SUPPRESSED, True, PR),  # skipped: UniSender's own record
    "skip_dup_temp_unreachable": (S, R.SERVER_UNREACHABLE, True, PR),
    "skip_dup_mailbox_full": (S, R.MAILBOX_FULL, True, PR),
    "err_unsubscribed": (U, R.UNSUBSCRIBED, True, PR),   # already on UniSender's list, not sent
    "err_src_invalid": (None, R.OTHER, True, None),
    "err_not_allowed": (None, R.POLICY_REJECTED, True, None),
    "err_over_quota": (None, R.OTHER, True, None),
    "err_lost": (None, R.PROVIDER_ERROR, True, None),
    # Fallbacks for values UniSender adds later (the seed's prefix rule).
    "err_brand_new": (S, R.OTHER, False, UN),
    "ok_brand_new": (None, None, False, None),
    "skip_dup_brand_new": (None, None, False, None),
    "": (None, None, False, None),
    "Delivered": (None, None, False, None),
}


def test_every_table_row_has_an_expectation() -> None:
    assert set(unisender.STATUSES) <= set(EXPECTED_STATUSES)
    assert len(unisender.STATUSES) == 40  # the 40 rows of PROVIDERS.md 4.4


@pytest.mark.parametrize("policy", [EventType.INVALID, EventType.SOFT_BOUNCE])
@pytest.mark.parametrize("status", sorted(EXPECTED_STATUSES))
def test_status_mapping(status: str, policy: EventType) -> None:
    # A content rejection is a soft bounce under either policy: it says nothing about the address
    # (docs/mapping.md's invariant; `sender_rejection: invalid` now means soft_bounce).
    acct = AccountContext(name="a", provider=unisender.NAME, base_url="x", sender_rejection=policy)
    type_, reason, final, scope = EXPECTED_STATUSES[status]
    if type_ == SENDER:
        type_ = S
    got_type, got_reason, got_final, got_scope = unisender.classify(status, acct)
    assert (got_type, got_reason, got_final) == (type_, reason, final)
    assert event_scope(got_type, got_scope) is scope


EXPECTED_ERRORS = {
    "api_call_limit_exceeded_for_api_key": Throttled,
    "api_call_limit_exceeded_for_ip": Throttled,
    "invalid_api_key": FatalConfig,
    "access_denied": FatalConfig,
    "not_enough_money": FatalConfig,
    "unknown_method": BadRequest,
    "invalid_arg": BadRequest,
    "retry_later": Retriable,
    "unspecified": Retriable,
    "a_code_added_later": Retriable,
}


@pytest.mark.parametrize("code", sorted(EXPECTED_ERRORS))
def test_error_codes(code: str) -> None:
    body = orjson.dumps({"error": "text", "code": code})
    with pytest.raises(PollError) as info:
        unisender.parse_poll_response(ACCT, PollQuery(email_ids=("1",)), 200, {}, body, NOW)
    assert type(info.value) is EXPECTED_ERRORS[code]
    if type(info.value) is Throttled:
        assert info.value.retry_after == 60


def test_error_envelope_wins_over_result() -> None:
    body = b'{"result":{"statuses":[]},"error":"Invalid API key","code":"invalid_api_key"}'
    with pytest.raises(FatalConfig):
        unisender.parse_poll_response(ACCT, PollQuery(email_ids=("1",)), 200, {}, body, NOW)


# -- request building ---------------------------------------------------------------------------


def test_build_poll_request_exact() -> None:
    req = unisender.build_poll_request(ACCT, PollQuery(email_ids=("8219732882", "8269722886")), NOW)
    assert req.method == "POST"
    assert req.url == "https://api.unisender.com/en/api/checkEmail"
    assert req.params == ()  # api_key never in the URL
    assert req.headers == (("Content-Type", "application/x-www-form-urlencoded"),)
    assert req.body == b"format=json&api_key=APIKEY123&email_id=8219732882%2C8269722886"


def test_build_poll_request_lang_and_selzy_host() -> None:
    acct = AccountContext(
        name="a", provider=unisender.NAME, base_url="https://api.selzy.com/", api_key="k&=x", options={"lang": "ua"}
    )
    req = unisender.build_poll_request(acct, PollQuery(email_ids=("1",)), NOW)
    assert req.url == "https://api.selzy.com/ua/api/checkEmail"
    assert urllib.parse.parse_qs(req.body.decode()) == {"format": ["json"], "api_key": ["k&=x"], "email_id": ["1"]}


def test_build_poll_request_500_ids() -> None:
    ids = tuple(str(10**9 + n) for n in range(500))
    req = unisender.build_poll_request(ACCT, PollQuery(email_ids=ids), NOW)
    assert urllib.parse.parse_qs(req.body.decode())["email_id"] == [",".join(ids)]


@pytest.mark.parametrize("ids", [(), tuple(str(n) for n in range(501)), ("1,2",), ("",)])
def test_build_poll_request_rejects_bad_batches(ids) -> None:
    with pytest.raises(ValueError):
        unisender.build_poll_request(ACCT, PollQuery(email_ids=ids), NOW)


@pytest.mark.parametrize("ids", [("ABC-123",), ("1", "2x"), ("１２",), ("1.5",), (" 1",)])
def test_ids_that_are_not_numbers_are_never_sent(ids) -> None:
    """checkEmail answers invalid_arg for a whole call with one such id (sent-feed audit of
    2026-12-06): refused before sending, with a reason that says why (the runner's log and
    /status `last_reason`). Fullwidth digits are digits to str.isdigit, not to UniSender."""
    with pytest.raises(BadRequest) as refused:
        unisender.build_poll_request(ACCT, PollQuery(email_ids=ids), NOW)
    assert str(refused.value) == "unisender email ids are numbers"


def test_build_poll_request_without_key_is_fatal() -> None:
    acct = AccountContext(name="a", provider=unisender.NAME, base_url="x")
    with pytest.raises(FatalConfig):
        unisender.build_poll_request(acct, PollQuery(email_ids=("1",)), NOW)


def test_unknown_option_value_is_a_config_bug() -> None:
    acct = AccountContext(name="a", provider=unisender.NAME, base_url="x", api_key="k", options={"lang": "de"})
    with pytest.raises(ValueError):
        unisender.build_poll_request(acct, PollQuery(email_ids=("1",)), NOW)


def test_defaults() -> None:
    d = unisender.DEFAULTS
    assert (d.polling, d.id_batch, d.quota_per_minute, d.cache_ttl_secs, d.retention_days) == ("ids", 500, 1200, 0, 30)
    assert d.status_filters == ()
    assert unisender.OPTIONS["webhook_tz"].default == "UTC+3"
    assert unisender.OPTIONS["lang"].default == "en"
    assert d.tz.utcoffset(None).total_seconds() == 3 * 3600


# -- response parsing ---------------------------------------------------------------------------


def test_recipients_fill_in_and_missing_ones_stay_empty() -> None:
    body = b'{"result":{"statuses":[{"id":"1","status":"ok_delivered"},{"id":2,"status":"err_user_unknown"}]}}'
    page = unisender.parse_poll_response(
        ACCT, PollQuery(email_ids=("1", "2")), 200, {}, body, NOW, recipients={"2": "b@example.com"}
    )
    assert [(o.email_id, o.recipient, o.occurred_at, o.final) for o in page.observations] == [
        ("1", "", NOW, False),
        ("2", "b@example.com", NOW, True),
    ]
    assert page.next_offset is None and page.rows == 2


def test_single_status_to_a_multi_id_query_is_wrong_shape() -> None:
    with pytest.raises(Retriable):
        unisender.parse_poll_response(ACCT, PollQuery(email_ids=("1", "2")), 200, {}, b'{"result":{"status":"ok_sent"}}', NOW)


@pytest.mark.parametrize(
    "body, unknown",
    [
        (b'{"result":[],"failed_email_id":[{"23":"email_id does not exist"}]}', ("23",)),
        (b'{"result":{"statuses":[]},"failed_email_id":{"23":"x","24":"y"}}', ("23", "24")),
        (b'{"result":{"statuses":[]},"failed_email_id":[]}', ()),
    ],
)
def test_failed_email_id_shapes(body: bytes, unknown) -> None:
    page = unisender.parse_poll_response(ACCT, PollQuery(email_ids=("23", "24")), 200, {}, body, NOW)
    assert page.unknown_ids == unknown and page.rows == 0


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"null",
        b"[]",
        b'{"result":"ok"}',
        b'{"result":{"statuses":[]},"failed_email_id":["23"]}',
    ],
)
def test_wrong_shapes_are_retriable(body: bytes) -> None:
    with pytest.raises(Retriable):
        unisender.parse_poll_response(ACCT, PollQuery(email_ids=("1",)), 200, {}, body, NOW)


@pytest.mark.parametrize("status, error", [(400, BadRequest), (404, BadRequest), (401, FatalConfig), (503, Retriable)])
def test_http_statuses(status: int, error) -> None:
    with pytest.raises(error):
        unisender.parse_poll_response(ACCT, PollQuery(email_ids=("1",)), status, {}, b"<html/>", NOW)


# -- webhook auth -------------------------------------------------------------------------------

VECTOR_2017 = (
    b'{"auth":"d41ecf54ffc8ee1d978306a83a6e1a4a","events_by_user":[{"login":"demo","events":[{"event_name":'
    b'"email_status","event_time":"2017-06-19 10:38:22","event_data":{"email":"a@example.com","status":'
    b'"ok_delivered","status_group":"success_pending_group","email_id":11411542313}}]}]}'
)


def _req(body: bytes) -> WebhookRequest:
    return WebhookRequest(body=body, content_type="application/json")


def test_md5_vector_from_providers_md() -> None:
    # The vector's own definition, computed here without the module.
    assert hashlib.md5(VECTOR_2017.replace(b"d41ecf54ffc8ee1d978306a83a6e1a4a", b"APIKEY123")).hexdigest() == (
        "d41ecf54ffc8ee1d978306a83a6e1a4a"
    )
    assert unisender.verify_webhook(hook_acct(Provider.UNISENDER, ["APIKEY123"]), _req(VECTOR_2017), NOW, 300) == "md5-auth"
    assert unisender.verify_webhook(hook_acct(Provider.UNISENDER, ["OLD", "APIKEY123"]), _req(VECTOR_2017), NOW, 300) == "md5-auth"


def test_md5_auth_accepts_upper_case_hex() -> None:
    body = VECTOR_2017.replace(b"d41ecf54ffc8ee1d978306a83a6e1a4a", b"D41ECF54FFC8EE1D978306A83A6E1A4A")
    assert unisender.verify_webhook(hook_acct(Provider.UNISENDER, ["APIKEY123"]), _req(body), NOW, 300) == "md5-auth"


@pytest.mark.parametrize(
    "body, keys",
    [
        (VECTOR_2017, ["WRONGKEY"]),
        (VECTOR_2017, []),
        (VECTOR_2017, [""]),
        (VECTOR_2017.replace(b"ok_delivered", b"err_user_unknown"), ["APIKEY123"]),  # tampered
        (VECTOR_2017.replace(b'"auth":"d41ecf54ffc8ee1d978306a83a6e1a4a",', b""), ["APIKEY123"]),
        (b"", ["APIKEY123"]),
    ],
)
def test_md5_auth_rejects(body: bytes, keys) -> None:
    with pytest.raises(BadSignature):
        unisender.verify_webhook(hook_acct(Provider.UNISENDER, keys), _req(body), NOW, 300)


def test_split_and_observe_single_event_without_status_group() -> None:
    body = b'{"auth":"x","login":"l","event_name":"email_status","event_time":"2024-01-01 03:00:00","email":"A@B.c","status":"ok_sent","email_id":"9"}'
    records = unisender.split_webhook(_req(body))
    assert records == [
        {"login": "l", "event_name": "email_status", "event_time": "2024-01-01 03:00:00", "email": "A@B.c",
         "status": "ok_sent", "email_id": "9"}
    ]
    (obs,) = unisender.webhook_observations(ACCT, records[0])
    assert (obs.type, obs.email_id, obs.recipient, obs.occurred_at, obs.provider_sub_status) == (
        None, "9", "A@B.c", datetime(2024, 1, 1, tzinfo=UTC), None
    )


GOOD_EVENT = {"event_name": "email_status", "event_time": "2024-01-01 03:00:00",
              "event_data": {"email": "a@b.c", "status": "err_user_unknown", "email_id": 1}}


@pytest.mark.parametrize(
    "bad",
    [
        {"event_time": "2024-01-01 03:00:00", "event_data": {"email": "a@b.c", "status": "ok_sent", "email_id": 1}},
        {**GOOD_EVENT, "event_name": 5},
        {**GOOD_EVENT, "event_time": "19.06.2017 10:38"},
        {**GOOD_EVENT, "event_time": None},
        {**GOOD_EVENT, "event_data": "x"},
        {**GOOD_EVENT, "event_data": {"email": "a@b.c", "status": "ok_sent"}},
        {**GOOD_EVENT, "event_data": {"email": "", "status": "ok_sent", "email_id": 1}},
        {**GOOD_EVENT, "event_data": {"email": "a@b.c", "status": None, "email_id": 1}},
        {**GOOD_EVENT, "event_data": {"email": "a@b.c", "status": "ok_sent", "email_id": True}},
        {**GOOD_EVENT, "event_time": "0001-01-01 00:00:00"},  # no UTC equivalent in UTC+3
    ],
)
def test_a_broken_event_is_rejected_alone(bad: dict[str, Any]) -> None:
    body = orjson.dumps({"auth": "x", "events_by_user": [{"login": "l", "events": [bad, GOOD_EVENT]}]})
    bad_record, good_record = unisender.split_webhook(_req(body))
    with pytest.raises(MalformedPayload):
        unisender.webhook_observations(ACCT, bad_record)
    (obs,) = unisender.webhook_observations(ACCT, good_record)
    assert (obs.type, obs.email_id, obs.occurred_at) == (I, "1", datetime(2024, 1, 1, tzinfo=UTC))


@pytest.mark.parametrize(
    "body",
    [b"[]", b'{"auth":"x"}', b'{"events_by_user":{}}', b'{"events_by_user":[1]}', b'{"events_by_user":[{"events":[1]}]}',
     b'{"events_by_user":[{"login":"l"}]}'],
)
def test_broken_envelopes(body: bytes) -> None:
    with pytest.raises(MalformedPayload):
        unisender.split_webhook(_req(body))


def test_other_events_give_no_observations() -> None:
    assert unisender.webhook_observations(ACCT, {"event_name": "unsubscribe", "email": "a@b.c"}) == []


# -- fuzzing: only the typed errors may come out ------------------------------------------------

json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=20),
    st.sampled_from(["ok_delivered", "err_user_unknown", "email_status", "2024-01-01 00:00:00", "0001-01-01 00:00:00"]),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)
status_entries = st.fixed_dictionaries({}, optional={"id": json_values, "status": json_values})
poll_docs = st.one_of(
    json_values,
    st.fixed_dictionaries(
        {},
        optional={
            "result": st.one_of(
                json_values, st.fixed_dictionaries({}, optional={"statuses": st.lists(status_entries, max_size=3) | json_values, "status": json_values})
            ),
            "failed_email_id": json_values,
            "error": json_values,
            "code": json_values | st.sampled_from(sorted(unisender.ERRORS)),
        },
    ),
)
event_data = st.fixed_dictionaries(
    {}, optional={k: json_values for k in ("email", "status", "status_group", "email_id")}
)
events = st.fixed_dictionaries(
    {},
    optional={
        "event_name": st.sampled_from(["email_status", "subscribe"]) | json_values,
        "event_time": json_values,
        "event_data": event_data | json_values,
        "email": json_values, "status": json_values, "email_id": json_values,
    },
)
hook_docs = st.one_of(
    json_values,
    events,
    st.fixed_dictionaries(
        {"auth": st.text(max_size=32)},
        optional={"events_by_user": st.lists(st.fixed_dictionaries({}, optional={"login": json_values, "events": st.lists(events, max_size=3) | json_values}), max_size=3) | json_values},
    ),
)


def _poll_only_typed(body: bytes, status: int, ids: tuple[str, ...]) -> None:
    # typed errors only; a page that comes out has sane paging and schema-valid events
    conformance.poll_only_typed(Provider.UNISENDER, ACCT, PollQuery(email_ids=ids), status, {"retry-after": "x"},
                                body, NOW)


def _webhook_only_typed(body: bytes) -> None:
    conformance.webhook_only_typed(Provider.UNISENDER, hook_acct(Provider.UNISENDER, ["APIKEY123"]), _req(body),
                                   NOW, 300)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=poll_docs, status=st.sampled_from([200, 200, 200, 400, 404, 429, 500, 502, 302]),
       ids=st.sampled_from([("1",), ("1", "2")]))
def test_fuzz_poll_json(doc, status, ids) -> None:
    _poll_only_typed(orjson.dumps(doc), status, ids)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=hook_docs)
def test_fuzz_webhook_json(doc) -> None:
    _webhook_only_typed(orjson.dumps(doc))
    if isinstance(doc, dict):
        conformance.observations_only_typed(Provider.UNISENDER, ACCT, doc)
