"""Unisender Go events as anymail's tests post them (public-captures audit of 2026-12-06): a
"single event" body (the event's fields at the top, beside `auth`), events without `job_id`, and
bounces whose `delivery_status` is a code classic does not emit (err_lost, err_too_large, ...),
which were dead-lettered or dropped. Source: anymail/django-anymail, `tests/test_unisender_go_webhooks.py`
(`test_hard_bounced_event`, `test_soft_bounced_event`, `test_delivered_event`) and
`anymail/webhooks/unisender_go.py` (`reject_reasons`, where err_lost, err_too_large and
err_spam_skipped are reasons of bounced events); status meanings from PROVIDERS.md 4.4. Expected
values by hand."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime

import pytest

from tests.unit.providers.test_unisender_go_events import ACCT, KEY, NOW, event, observe
from worker.errors import MalformedPayload
from worker.model import EventType, Reason, Scope
from worker.providers import unisender
from worker.providers.base import WebhookRequest


def single(fields: dict) -> list:
    """A single-event body, signed as anymail's test signs it (compact JSON, `auth` last)."""
    body = json.dumps({**fields, "auth": KEY}, separators=(",", ":"))
    signed = body.replace(f'"auth":"{KEY}"', f'"auth":"{hashlib.md5(body.encode()).hexdigest()}"').encode()
    req = WebhookRequest(body=signed, content_type="application/json")
    assert unisender.verify_webhook(ACCT, req, NOW, 600) == "md5-auth"
    return [o for record in unisender.split_webhook(req) for o in unisender.webhook_observations(ACCT, record)]


def test_anymails_hard_bounced_event_is_an_unknown_user():
    [obs] = single({"event_name": "transactional_email_status", "status": "hard_bounced", "email": "bounce@example.com",
                    "delivery_info": {"delivery_status": "err_user_unknown",
                                      "destination_response": "555 5.7.1 User unknown 'bounce@example.com'."},
                    "event_time": "2024-09-06 23:22:40"})
    assert (obs.type, obs.reason, obs.scope, obs.final, obs.retrying) == (
        EventType.INVALID, Reason.UNKNOWN_USER, Scope.RECIPIENT, True, False)
    assert (obs.email_id, obs.message_id, obs.recipient) == (
        "nojob-20240906T232240Z:bounce@example.com", None, "bounce@example.com")
    assert obs.occurred_at == datetime(2024, 9, 6, 23, 22, 40, tzinfo=UTC)


def test_anymails_soft_bounced_event_is_a_full_mailbox_still_retried():
    [obs] = single({"event_name": "transactional_email_status", "status": "soft_bounced", "email": "full@example.com",
                    "delivery_info": {"delivery_status": "err_mailbox_full",
                                      "destination_response": "554 5.2.2 Mailbox full 'full@example.com'."},
                    "event_time": "2024-09-06 23:22:40"})
    assert (obs.type, obs.reason, obs.scope, obs.retrying) == (
        EventType.SOFT_BOUNCE, Reason.MAILBOX_FULL, Scope.RECIPIENT, False)


def test_anymails_delivered_event_with_its_job():
    [obs] = single({"event_name": "transactional_email_status", "user_id": 111111, "job_id": "1smi9f-00057m-86zr",
                    "email": "recipient@example.com", "status": "delivered", "event_time": "2024-09-06 23:14:24"})
    assert (obs.type, obs.email_id, obs.message_id) == (
        EventType.DELIVERED, "1smi9f-00057m-86zr:recipient@example.com", "1smi9f-00057m-86zr")


def test_a_single_sent_event_is_nothing():
    assert single({"event_name": "transactional_email_status", "job_id": "j", "email": "a@example.com",
                   "status": "sent", "event_time": "2024-09-06 23:14:19"}) == []


# code -> reason, scope of a send Unisender blocked or lost (never invalid, whatever the reply says)
BLOCKED = [
    ("err_internal", Reason.PROVIDER_ERROR, Scope.PROVIDER),
    ("err_lost", Reason.PROVIDER_ERROR, Scope.PROVIDER),
    ("err_not_allowed", Reason.POLICY_REJECTED, Scope.PROVIDER),
    ("err_src_invalid", Reason.SENDER_REJECTED, Scope.SENDER),
    ("err_over_quota", Reason.OTHER, Scope.SENDER),
    ("err_too_large", Reason.POLICY_REJECTED, Scope.CONTENT),
    ("err_spam_skipped", Reason.SPAM_REJECTED, Scope.CONTENT),
    ("err_spam_removed", Reason.SPAM_REJECTED, Scope.CONTENT),
]


@pytest.mark.parametrize(("code", "reason", "scope"), BLOCKED)
def test_a_hard_bounce_of_a_blocked_send_is_a_final_soft_bounce_about_its_cause(code, reason, scope):
    [obs] = observe(event("hard_bounced", {"delivery_status": code, "destination_response": "550 Message lost"}))
    assert (obs.type, obs.reason, obs.scope, obs.final, obs.retrying, obs.provider_sub_status) == (
        EventType.SOFT_BOUNCE, reason, scope, True, False, code)


@pytest.mark.parametrize(("code", "reason", "scope"), BLOCKED)
def test_a_soft_bounce_of_a_blocked_send_is_one_unisender_still_retries(code, reason, scope):
    [obs] = observe(event("soft_bounced", {"delivery_status": code}))
    assert (obs.type, obs.reason, obs.scope, obs.retrying) == (EventType.SOFT_BOUNCE, reason, scope, True)


def test_a_blocked_send_with_an_unknown_user_reply_is_still_not_invalid():
    """err_lost's send never reached the server: a reply about the address is not about this send."""
    [obs] = observe(event("hard_bounced", {"delivery_status": "err_lost",
                                           "destination_response": "550 5.1.1 User unknown"}))
    assert (obs.type, obs.scope) == (EventType.SOFT_BOUNCE, Scope.PROVIDER)


def test_event_data_that_is_not_an_object_is_malformed():
    with pytest.raises(MalformedPayload):
        unisender.webhook_observations(ACCT, {"event_name": "transactional_email_status", "event_data": ["x"]})


def test_job_less_events_of_one_address_are_not_one_email():
    """Keyed by the address alone, a later send's delivery was a duplicate of an earlier one's (the
    review of 2026-12-06): each job-less event is its own email, named by its time."""
    def job_less(status: str, when: str) -> str:
        [obs] = single({"event_name": "transactional_email_status", "status": status, "email": "a@example.com",
                        "event_time": when})
        return obs.email_id
    assert [job_less("delivered", "2026-12-01 10:00:00"), job_less("delivered", "2026-12-05 10:00:00")] == [
        "nojob-20261201T100000Z:a@example.com", "nojob-20261205T100000Z:a@example.com"]


@pytest.mark.parametrize("event_time", ["2024-09-06T23:22:40Z", "2024-09-07T02:22:40+03:00", "2024-09-07T02:22:40+0300"])
def test_an_iso_event_time_with_an_offset_is_read_as_that_instant(event_time):
    [obs] = single({"event_name": "transactional_email_status", "job_id": "1smi9f-00057m-86zr",
                    "email": "recipient@example.com", "status": "delivered", "event_time": event_time})
    assert obs.occurred_at == datetime(2024, 9, 6, 23, 22, 40, tzinfo=UTC)


@pytest.mark.parametrize("event_time", ["2024-09-06T23:22:40", "06.09.2024 23:22:40", "yesterday"])
def test_an_event_time_without_a_zone_or_of_another_shape_is_malformed(event_time):
    with pytest.raises(MalformedPayload):
        single({"event_name": "transactional_email_status", "job_id": "1smi9f-00057m-86zr",
                "email": "recipient@example.com", "status": "delivered", "event_time": event_time})
