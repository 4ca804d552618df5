"""Tests written to kill mutants of the 2026-12-06 classification changes (tests/mutation): the
temporary-failure rule's lower bound, an untyped Tencent bounce whose text names the mailbox, and
a SendCloud delivery webhook that carries a sub-status. Each case typed by hand."""

from __future__ import annotations

import json

from worker.model import EventType, Provider, Reason, Scope, Smtp
from worker.providers import get_module
from worker.providers.base import AccountContext, WebhookRequest
from worker.providers.classify import temporary


def acct(provider: Provider) -> AccountContext:
    return AccountContext(name="acct", provider=provider, base_url="http://x")


def test_the_first_4yz_basic_code_is_temporary_and_the_last_2yz_and_5yz_are_not() -> None:
    assert temporary(Smtp(400, None)) is True      # RFC 5321: 4yz, transient negative completion
    assert temporary(Smtp(499, None)) is True
    assert temporary(Smtp(399, None)) is False
    assert temporary(Smtp(500, None)) is False


def test_tencent_untyped_bounce_without_a_reply_code_is_a_soft_bounce_whatever_its_text_names() -> None:
    """No bounceType and no 5xx code: not known to be hard (UNKNOWN_BOUNCE, a soft bounce); the text
    names the mailbox, which sets reason and scope but never makes the row invalid."""
    module = get_module(Provider.TENCENT_SES)
    record = {"event": "bounce", "email": "a@b.c", "bulkId": "m", "timestamp": 1654064683, "reason": "Mailbox not found"}
    [split] = module.split_webhook(WebhookRequest(json.dumps(record).encode(), "application/json"))
    [obs] = module.webhook_observations(acct(Provider.TENCENT_SES), split)
    assert (obs.type, obs.reason, obs.scope) == (EventType.SOFT_BOUNCE, Reason.UNKNOWN_USER, Scope.RECIPIENT)


def test_sendcloud_delivery_webhook_keeps_no_sub_status() -> None:
    """A `deliver` event with a `substat` beside it: delivered, and the sub-status (meaningful for
    failures only, PROVIDERS.md 2.5) is not carried into the event."""
    module = get_module(Provider.SENDCLOUD)
    record = {"event": "deliver", "emailId": "1652117390000_1_2_3.sc-10_1_2_3-inbound0$a@b.c", "recipient": "a@b.c",
              "timestamp": "1652117390000", "substat": "406", "message": "250 ok"}
    [obs] = module.webhook_observations(acct(Provider.SENDCLOUD), record)
    assert (obs.type, obs.provider_sub_status) == (EventType.DELIVERED, None)
