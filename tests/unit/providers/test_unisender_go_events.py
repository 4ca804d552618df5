"""Unisender Go's status events on a UniSender webhook URL (worker.providers._unisender_go;
PROVIDERS.md 4.6). Public evidence: anymail/django-anymail @ 599ed4caed5b18533cde73a77d0fdd804d21dd72,
`anymail/webhooks/unisender_go.py` (the envelope in its docstring, `event_types`, `reject_reasons`,
event_time read as UTC) and `tests/test_unisender_go_webhooks.py`; godocs.unisender.ru/email-statuses
(the nine status values). Before 2026-12-06 every such event was counted as ignored and answered
200: nothing was emitted (public-captures audit, finding 1). Expected values are written from those
sources and the project's rules (docs/mapping.md), by hand."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime

import pytest

from worker.errors import MalformedPayload
from worker.model import EventType, Reason, Scope
from worker.providers import unisender
from worker.providers.base import AccountContext, WebhookRequest

NOW = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
KEY = "GO-API-KEY-123"
ACCT = AccountContext(name="go", provider=unisender.NAME, base_url=unisender.DEFAULTS.base_url, api_key=KEY,
                      webhook_keys=(KEY,))


def event(status: str, delivery_info: dict | None = None, **data) -> dict:
    event_data = {"job_id": "1a3Q2V-0000OZ-S0", "metadata": {"key1": "val1"}, "email": "Recipient.Email@example.com",
                  "status": status, "event_time": "2015-11-30 15:09:42", "url": "http://some.url.com", **data}
    if delivery_info is not None:
        event_data["delivery_info"] = delivery_info
    return {"event_name": "transactional_email_status", "event_data": event_data}


def signed(events: list[dict]) -> bytes:
    """As Unisender Go signs: the compact JSON with the API key as `auth`, MD5'd, the hash in its place."""
    doc = {"auth": KEY, "events_by_user": [{"user_id": 456, "project_id": "6432890213745872",
                                           "project_name": "MyProject", "events": events}]}
    with_key = json.dumps(doc, separators=(",", ":"))
    return with_key.replace(f'"auth":"{KEY}"', f'"auth":"{hashlib.md5(with_key.encode()).hexdigest()}"').encode()


def observe(*events: dict) -> list:
    req = WebhookRequest(body=signed(list(events)), content_type="application/json")
    assert unisender.verify_webhook(ACCT, req, NOW, 600) == "md5-auth"
    return [o for record in unisender.split_webhook(req) for o in unisender.webhook_observations(ACCT, record)]


SPAM_BLOCK = {"event_name": "transactional_spam_block",
              "event_data": {"block_time": "2015-11-30 15:09:42", "block_type": "one_smtp", "domain": "domain_name",
                             "SMTP_blocks_count": 8, "domain_status": "blocked"}}
USER_UNKNOWN = {"delivery_status": "err_user_unknown", "destination_response": "550 5.1.1 User unknown",
                "user_agent": "UA", "ip": "111.111.111.111"}


def test_a_hard_bounce_for_an_unknown_user_is_invalid_and_the_spam_block_beside_it_is_not_an_event():
    [obs] = observe(event("hard_bounced", USER_UNKNOWN), SPAM_BLOCK)
    assert (obs.email_id, obs.recipient, obs.message_id) == (
        "1a3Q2V-0000OZ-S0:recipient.email@example.com", "Recipient.Email@example.com", "1a3Q2V-0000OZ-S0")
    assert (obs.type, obs.reason, obs.scope, obs.final, obs.retrying) == (
        EventType.INVALID, Reason.UNKNOWN_USER, Scope.RECIPIENT, True, False)
    assert obs.occurred_at == datetime(2015, 11, 30, 15, 9, 42, tzinfo=UTC)
    assert (obs.provider_status, obs.provider_sub_status, obs.provider_message) == (
        "hard_bounced", "err_user_unknown", "550 5.1.1 User unknown")
    assert (obs.smtp.code, obs.smtp.enhanced) == (550, "5.1.1")


# status, delivery_info -> type, reason, scope, retrying (the provider retries)
CASES = [
    ("delivered", None, EventType.DELIVERED, None, None, False),
    # (a complaint's and an unsubscription's scope is the event's: recipient, worker.model.event_scope)
    ("spam", None, EventType.COMPLAINT, None, None, False),
    ("unsubscribed", None, EventType.UNSUBSCRIBED, Reason.UNSUBSCRIBED, None, False),
    # Unisender retries these itself: a soft bounce that may still change
    ("soft_bounced", {"delivery_status": "err_will_retry"}, EventType.SOFT_BOUNCE, Reason.DEFERRED, Scope.UNKNOWN,
     True),
    ("soft_bounced", None, EventType.SOFT_BOUNCE, Reason.OTHER, Scope.UNKNOWN, True),
    # a full mailbox is temporary, never invalid (docs/consumers.md)
    ("hard_bounced", {"delivery_status": "err_mailbox_full", "destination_response": "552 5.2.2 Mailbox full"},
     EventType.SOFT_BOUNCE, Reason.MAILBOX_FULL, Scope.RECIPIENT, False),
    ("hard_bounced", {"delivery_status": "err_no_dns"}, EventType.INVALID, Reason.DOMAIN_INVALID, Scope.DOMAIN, False),
    # no evidence about the address: a final soft bounce, as every provider's bounce without evidence
    ("hard_bounced", None, EventType.SOFT_BOUNCE, Reason.OTHER, Scope.UNKNOWN, False),
    # the reply alone is evidence: its codes, or its words when it has none
    ("hard_bounced", {"destination_response": "550 5.1.1 <x@example.com>: Recipient address rejected"},
     EventType.INVALID, Reason.UNKNOWN_USER, Scope.RECIPIENT, False),
    ("hard_bounced", {"destination_response": "mailbox unavailable: user unknown"},
     EventType.INVALID, Reason.UNKNOWN_USER, Scope.RECIPIENT, False),
    # a code's own scope (the table's fourth column): a misconfigured domain, no reply to say more
    ("soft_bounced", {"delivery_status": "err_destination_misconfigured"}, EventType.SOFT_BOUNCE, Reason.OTHER,
     Scope.DOMAIN, True),
    # a delivery_status that is not an err_* code names no cause: the status word decides
    ("hard_bounced", {"delivery_status": "ok_delivered"}, EventType.SOFT_BOUNCE, Reason.OTHER, Scope.UNKNOWN, False),
]


@pytest.mark.parametrize(("status", "info", "type_", "reason", "scope", "retrying"), CASES)
def test_each_status_with_a_delivery_meaning(status, info, type_, reason, scope, retrying):
    [obs] = observe(event(status, info))
    assert (obs.type, obs.reason, obs.scope, obs.retrying, obs.final) == (type_, reason, scope, retrying, True)


@pytest.mark.parametrize("status", ["sent", "opened", "clicked", "subscribed", "queued_for_later"])
def test_statuses_without_a_delivery_meaning_give_no_observation(status):
    assert observe(event(status)) == []


@pytest.mark.parametrize(("broken", "data"), [
    ("no email", {"email": ""}),
    ("a time of another layout", {"event_time": "30.11.2015 15:09"}),
    ("no time", {"event_time": None}),
])
def test_an_event_that_cannot_be_read_is_malformed(broken, data):
    record = event("delivered", None, **data)
    record["event_data"] = {k: v for k, v in record["event_data"].items() if v is not None}
    with pytest.raises(MalformedPayload):
        unisender.webhook_observations(ACCT, record)


def test_the_cause_and_reply_are_kept_only_when_they_are_text():
    [obs] = observe(event("soft_bounced", {"delivery_status": "ok_delivered", "destination_response": ""}))
    assert (obs.provider_sub_status, obs.provider_message, obs.smtp) == (None, None, None)
    [obs] = observe(event("soft_bounced", {"delivery_status": 5, "destination_response": 550}))
    assert (obs.provider_sub_status, obs.provider_message, obs.smtp) == (None, None, None)


def test_the_record_is_kept_as_the_observations_raw():
    record = event("delivered")
    [obs] = unisender.webhook_observations(ACCT, record)
    assert obs.raw is record


def test_an_event_time_beside_event_data_is_read_as_classic_places_it():
    record = event("delivered")
    record["event_time"] = record["event_data"].pop("event_time")
    [obs] = unisender.webhook_observations(ACCT, record)
    assert obs.occurred_at == datetime(2015, 11, 30, 15, 9, 42, tzinfo=UTC)


def test_a_content_rejection_is_a_sender_side_soft_bounce():
    """err_spam_rejected is the receiving server refusing the content (unisender_tables: SenderSide,
    resolved with the account's `sender_rejection`): a soft bounce about the content, as classic's."""
    [obs] = observe(event("hard_bounced", {"delivery_status": "err_spam_rejected"}))
    assert (obs.type, obs.reason, obs.scope, obs.retrying) == (
        EventType.SOFT_BOUNCE, Reason.SPAM_REJECTED, Scope.CONTENT, False)


def test_the_event_time_is_utc_whatever_the_hosts_zone(monkeypatch):
    import time

    monkeypatch.setenv("TZ", "Asia/Shanghai")
    time.tzset()
    try:
        [obs] = unisender.webhook_observations(ACCT, event("delivered"))
    finally:
        monkeypatch.undo()
        time.tzset()
    assert obs.occurred_at == datetime(2015, 11, 30, 15, 9, 42, tzinfo=UTC)
