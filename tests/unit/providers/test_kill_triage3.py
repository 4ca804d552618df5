"""Tests written to kill mutants of the issue-13 changes (tests/mutation): EngageLab's two callback
envelopes and Tencent's webhook fields, each case typed by hand."""

from __future__ import annotations

import json

import pytest

from worker.errors import MalformedPayload
from worker.model import EventType, Provider, Reason, Scope
from worker.providers import get_module
from worker.providers.base import AccountContext, WebhookRequest

EL_ID = "1676618583015_104117_18546_8822.sc-10_43_7_16-inbound0$bob@example.com"


def acct(provider: Provider) -> AccountContext:
    return AccountContext(name="acct", provider=provider, base_url="http://x")


def el(record: dict) -> list:
    module = get_module(Provider.ENGAGELAB)
    [split] = module.split_webhook(WebhookRequest(json.dumps(record).encode(), "application/json"))
    return module.webhook_observations(acct(Provider.ENGAGELAB), split)


def test_engagelab_top_level_event_with_the_ids_on_the_record_itself() -> None:
    """No usable response_data: the record itself holds email_id (some receivers' shape)."""
    [obs] = el({"event": "report_spam", "response_data": "n/a", "email_id": EL_ID, "itime": 1676620370426})
    assert (obs.type, obs.email_id, obs.recipient) == (EventType.COMPLAINT, EL_ID, "bob@example.com")


def test_engagelab_top_level_event_reads_the_recipient_from_response_data() -> None:
    [obs] = el({"event": "unsubscribe", "response_data": {"message_id": EL_ID, "to": "Bob@Example.COM",
                                                          "time": 1676620370426}})
    assert obs.recipient == "Bob@Example.COM"       # `to` as sent; the id's suffix is lower-case


@pytest.mark.parametrize("message_id", ["1676618583015_104117_18546_8822.sc-10_43_7_16-inbound", 12345])
def test_engagelab_a_message_id_that_is_not_per_recipient_is_no_email_id(message_id) -> None:
    with pytest.raises(MalformedPayload):
        el({"event": "unsubscribe", "response_data": {"message_id": message_id, "to": "b@x.test", "time": 1}})


def tc(fields: dict) -> list:
    module = get_module(Provider.TENCENT_SES)
    record = {"email": "bob@example.com", "bulkId": "m-1", "timestamp": 1654064683, **fields}
    [split] = module.split_webhook(WebhookRequest(json.dumps(record).encode(), "application/json"))
    return module.webhook_observations(acct(Provider.TENCENT_SES), split)


def test_tencent_a_soft_bounce_type_keeps_its_type_whatever_the_reply_class() -> None:
    [obs] = tc({"event": "bounce", "bounceType": "soft_bounce", "reason": "550 5.1.1 no such user"})
    assert (obs.type, obs.reason, obs.scope, obs.retrying) == (EventType.SOFT_BOUNCE, Reason.UNKNOWN_USER,
                                                               Scope.RECIPIENT, False)


def test_tencent_a_hard_bounce_type_stays_invalid_on_a_5xx_reply() -> None:
    [obs] = tc({"event": "bounce", "bounceType": "hard_bounce", "reason": "550 5.2.1 mailbox disabled"})
    assert (obs.type, obs.reason, obs.scope) == (EventType.INVALID, Reason.MAILBOX_DISABLED, Scope.RECIPIENT)


def test_tencent_a_hard_bounce_on_a_4xx_reply_is_a_final_soft_bounce() -> None:
    [obs] = tc({"event": "bounce", "bounceType": "hard_bounce", "reason": "452 4.2.2 mailbox full"})
    assert (obs.type, obs.reason, obs.scope) == (EventType.SOFT_BOUNCE, Reason.MAILBOX_FULL, Scope.RECIPIENT)


@pytest.mark.parametrize("bounce_type", ["", 3, None])
def test_tencent_a_bounce_type_that_is_not_text_is_none(bounce_type) -> None:
    [obs] = tc({"event": "bounce", "bounceType": bounce_type, "reason": "550 5.1.1 no such user"})
    assert obs.provider_sub_status is None
    assert (obs.type, obs.scope) == (EventType.INVALID, Scope.RECIPIENT)   # by its 5xx reply


@pytest.mark.parametrize("reason", [550, 0, ""])
def test_tencent_a_reason_that_is_not_text_is_none(reason) -> None:
    [obs] = tc({"event": "deferred", "reason": reason})
    assert (obs.provider_message, obs.smtp, obs.reason) == (None, None, Reason.DEFERRED)
