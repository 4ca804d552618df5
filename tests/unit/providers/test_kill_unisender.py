"""UniSender: behaviour the mutation run showed untested (login copy, retry_count stripping,
webhook event_time layout, raw record, entry contract, bug-path diagnostics)."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import orjson
import pytest

from tests.support import hook_acct
from worker.model import EventType, Provider
from worker.providers import unisender
from worker.providers.base import AccountContext, PollQuery, WebhookRequest

NOW = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
KEY = "APIKEY123"
ACCT = AccountContext(name="acct", provider=unisender.NAME, base_url=unisender.DEFAULTS.base_url, api_key=KEY,
                      webhook_keys=(KEY,))


def _req(body: bytes) -> WebhookRequest:
    return WebhookRequest(body=body, content_type="application/json")


# -- split_webhook: the user's login is copied into each of its events ---------------------------


def test_events_by_user_records_carry_their_users_login() -> None:
    body = (
        b'{"auth":"x","events_by_user":['
        b'{"login":"demo","events":[{"event_name":"email_status","event_time":"2017-06-19 10:38:22",'
        b'"event_data":{"email":"a@example.com","status":"ok_delivered","email_id":11411542313}}]},'
        b'{"login":"other","events":[{"event_name":"subscribe","email":"b@example.com"}]},'
        b'{"events":[{"event_name":"subscribe"}]}]}'
    )
    assert unisender.split_webhook(_req(body)) == [
        {"login": "demo", "event_name": "email_status", "event_time": "2017-06-19 10:38:22",
         "event_data": {"email": "a@example.com", "status": "ok_delivered", "email_id": 11411542313}},
        {"login": "other", "event_name": "subscribe", "email": "b@example.com"},
        {"login": None, "event_name": "subscribe"},
    ]


# -- webhook auth: a resend's retry_count member is stripped once, not every occurrence ----------

PLACEHOLDER = b"0" * 32
# The signed body contains the text `"retry_count":2` as event data; the resend then adds its own
# `,"retry_count":1` member (here, right after auth, so it is the first occurrence).
SIGNED = (
    b'{"auth":"' + PLACEHOLDER + b'","events_by_user":[{"login":"demo","events":[{"event_name":"email_status",'
    b'"event_time":"2024-01-01 03:00:00","event_data":{"email":"a@b.c","status":"ok_sent","email_id":"9",'
    b'"retry_count":2}}]}]}'
)


def _signed(template: bytes) -> bytes:
    auth = hashlib.md5(template.replace(PLACEHOLDER, KEY.encode())).hexdigest().encode()
    return template.replace(PLACEHOLDER, auth)


def test_resend_strips_only_its_own_retry_count_member() -> None:
    signed = _signed(SIGNED)
    auth = signed[9:41]
    received = signed.replace(b'"auth":"' + auth + b'"', b'"auth":"' + auth + b'","retry_count":1', 1)
    assert received.count(b'"retry_count"') == 2
    acct = hook_acct(Provider.UNISENDER, [KEY])
    assert unisender.verify_webhook(acct, _req(signed), NOW, 300) == "md5-auth"
    assert unisender.verify_webhook(acct, _req(received), NOW, 300) == "md5-auth"


# -- webhook_observations: event_time read with its strptime layout, raw record kept ---------------


def test_webhook_event_time_before_1970_is_read_in_the_accounts_zone() -> None:
    # The layout path reads any year (local_time's contract for UniSender's event_time), unlike
    # the default yyyy-MM-dd HH:mm:ss reader, which refuses times before 1970.
    record = {"login": "l", "event_name": "email_status", "event_time": "1969-12-31 23:30:00",
              "event_data": {"email": "a@b.c", "status": "ok_delivered", "email_id": "7"}}
    (obs,) = unisender.webhook_observations(ACCT, record)
    assert obs.occurred_at == datetime(1969, 12, 31, 20, 30, tzinfo=UTC)  # UTC+3 default zone
    utc_acct = AccountContext(name="a", provider=unisender.NAME, base_url="x", options={"webhook_tz": "UTC"})
    (obs,) = unisender.webhook_observations(utc_acct, record)
    assert obs.occurred_at == datetime(1969, 12, 31, 23, 30, tzinfo=UTC)


def test_webhook_observation_keeps_the_record_as_raw() -> None:
    record = {"login": "l", "event_name": "email_status", "event_time": "2024-01-01 03:00:00",
              "event_data": {"email": "a@b.c", "status": "err_user_unknown", "status_group": "g", "email_id": 1}}
    (obs,) = unisender.webhook_observations(ACCT, record)
    assert obs.raw == {"login": "l", "event_name": "email_status", "event_time": "2024-01-01 03:00:00",
                       "event_data": {"email": "a@b.c", "status": "err_user_unknown", "status_group": "g",
                                      "email_id": 1}}
    assert (obs.type, obs.email_id, obs.provider_sub_status) == (EventType.INVALID, "1", "g")


# -- a status entry without a string status: ValueError, as documented --------------------------


@pytest.mark.parametrize("entry", [{"id": "5"}, {"id": "5", "status": None}, {"id": "5", "status": 3}])
def test_status_entry_without_a_string_status_is_a_value_error(entry) -> None:
    with pytest.raises(ValueError):
        unisender._status_observation(ACCT, entry, frozenset({"5"}), {}, NOW)


def test_page_rejects_an_entry_without_a_status_and_keeps_the_others() -> None:
    body = orjson.dumps({"result": {"statuses": [{"id": "5"}, {"id": "6", "status": "ok_read"}]}})
    page = unisender.parse_poll_response(ACCT, PollQuery(email_ids=("5", "6")), 200, {}, body, NOW)
    assert [r.index for r in page.rejected] == [0]
    assert [(o.email_id, o.provider_status) for o in page.observations] == [("6", "ok_read")]


# -- caller bugs: the ValueError names what was wrong (it reaches the poll loop's traceback log) --


def test_bad_option_value_is_named_in_the_error() -> None:
    acct = AccountContext(name="a", provider=unisender.NAME, base_url="x", api_key="k", options={"lang": "de"})
    with pytest.raises(ValueError, match=r"lang='de'"):
        unisender.build_poll_request(acct, PollQuery(email_ids=("1",)), NOW)


def test_oversized_batch_error_gives_the_count() -> None:
    with pytest.raises(ValueError, match=r"got 501"):
        unisender.build_poll_request(ACCT, PollQuery(email_ids=tuple(str(n) for n in range(501))), NOW)


def test_comma_in_an_id_is_named_in_the_error() -> None:
    with pytest.raises(ValueError, match=r"commas"):
        unisender.build_poll_request(ACCT, PollQuery(email_ids=("1,2",)), NOW)
