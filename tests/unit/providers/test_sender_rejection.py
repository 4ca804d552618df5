"""`sender_rejection`: rejections of our IP, domain or content, across every provider.

By default (`documented`) each keeps the type PROVIDERS.md gives it; an account may count them all
as invalid (suppress) or all as soft bounces (retry).
"""

from __future__ import annotations

import time
from datetime import UTC

import orjson
import pytest

from worker.model import EventType, Provider
from worker.providers import get_module
from worker.providers._sendcloud_family import sub_status_outcome
from worker.providers.base import AccountContext, WebhookRequest

DOCUMENTED, INVALID, SOFT = None, EventType.INVALID, EventType.SOFT_BOUNCE


def acct(provider: Provider, setting: EventType | None) -> AccountContext:
    return AccountContext(name="a", provider=provider, base_url="http://x", sender_rejection=setting)


@pytest.mark.parametrize("provider", [Provider.SENDCLOUD, Provider.AURORA_SENDCLOUD, Provider.ENGAGELAB])
@pytest.mark.parametrize("code", [405, 407])
@pytest.mark.parametrize(("setting", "expected"), [(DOCUMENTED, INVALID), (INVALID, INVALID), (SOFT, SOFT)])
def test_sendcloud_family_files_ip_and_content_rejections_as_invalid(provider, code, setting, expected):
    assert sub_status_outcome(code, acct(provider, setting))[0] is expected


@pytest.mark.parametrize("status", ["err_spam_rejected", "err_spam_may_retry"])
@pytest.mark.parametrize(("setting", "expected"), [(DOCUMENTED, SOFT), (INVALID, INVALID), (SOFT, SOFT)])
def test_unisender_content_rejections_are_soft_bounces_as_documented(status, setting, expected):
    module = get_module(Provider.UNISENDER)
    assert module.classify(status, acct(Provider.UNISENDER, setting))[0] is expected


def _tencent_row(send_status: int, deliver_status: int = 0, message: str = "") -> bytes:
    return orjson.dumps({"Response": {"RequestId": "r", "EmailStatusList": [{
        "MessageId": "qcloudses-1", "ToEmailAddress": "a@example.com", "FromEmailAddress": "n@example.com",
        "SendStatus": send_status, "DeliverStatus": deliver_status, "DeliverMessage": message,
        "RequestTime": 1_700_000_000, "DeliverTime": 1_700_000_100, "UserOpened": False, "UserClicked": False,
        "UserUnsubscribed": False, "UserComplainted": False}]}})


@pytest.mark.parametrize(("setting", "expected"), [(DOCUMENTED, None), (INVALID, INVALID), (SOFT, SOFT)])
def test_tencent_sender_domain_rejection_1008_is_not_emitted_as_documented(setting, expected):
    from datetime import datetime

    from worker.providers.base import PollQuery

    module = get_module(Provider.TENCENT_SES)
    now = datetime(2023, 11, 15, tzinfo=UTC)
    page = module.parse_poll_response(acct(Provider.TENCENT_SES, setting), PollQuery(limit=100), 200, {},
                                      _tencent_row(1008), now)
    assert [o.type for o in page.observations] == [expected]


@pytest.mark.parametrize(("setting", "expected"), [(DOCUMENTED, INVALID), (INVALID, INVALID), (SOFT, SOFT)])
def test_tencent_hard_bounce_for_policy_reasons_stays_invalid_as_documented(setting, expected):
    module = get_module(Provider.TENCENT_SES)
    body = orjson.dumps({"event": "bounce", "email": "a@example.com", "bulkId": "qcloudses-1",
                         "timestamp": int(time.time()), "bounceType": "hard_bounce",
                         "reason": "550 5.7.1 message rejected by policy"})
    records = module.split_webhook(WebhookRequest(body=body, content_type="application/json"))
    observations = module.webhook_observations(acct(Provider.TENCENT_SES, setting), records[0])
    assert [o.type for o in observations] == [expected]
