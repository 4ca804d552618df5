"""`sender_rejection`: rejections of our IP, domain or content, across every provider.

By default (`documented`) each keeps the type PROVIDERS.md gives it, read through issue 13's
contract (docs/mapping.md): a rejection of the sender never makes an address invalid, so the
documented type is a soft bounce (SendCloud-family 405/407, UniSender's content rejections) or
nothing (Tencent 1008, not emitted). `soft_bounce` emits every one of them as a soft bounce;
`invalid` is still accepted in the config but now means soft_bounce too (worker.config), and even
an account context that asks for invalid gets a soft bounce (the scope invariant).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import orjson
import pytest

from worker.configbuild import SENDER_REJECTION
from worker.model import EventType, Observation, Provider, Reason, Scope, Source, StatusEvent
from worker.providers import _sendcloud_family as family
from worker.providers import get_module
from worker.providers.base import AccountContext, PollQuery, WebhookRequest

SOFT = EventType.SOFT_BOUNCE
SETTINGS = ["documented", "invalid", "soft_bounce"]
NOW = datetime(2023, 11, 15, tzinfo=UTC)


def acct(provider: Provider, setting: str | EventType | None) -> AccountContext:
    """The account context a config `sender_rejection` setting makes (an EventType: given as is)."""
    value = SENDER_REJECTION[setting] if isinstance(setting, str) else setting
    return AccountContext(name="a", provider=provider, base_url="http://x", sender_rejection=value)


def event(obs: Observation, provider: Provider) -> StatusEvent:
    return StatusEvent.from_observation(obs, provider=provider, account="a", source=Source.POLL, observed_at=NOW)


def test_the_invalid_setting_now_means_soft_bounce() -> None:
    assert SENDER_REJECTION == {"documented": None, "invalid": SOFT, "soft_bounce": SOFT}


FAMILY = [Provider.SENDCLOUD, Provider.AURORA_SENDCLOUD, Provider.ENGAGELAB]
FAMILY_SENDER_SIDE = {405: (Reason.SENDER_REJECTED, Scope.SENDER), 407: (Reason.SPAM_REJECTED, Scope.CONTENT)}


def family_observation(provider: Provider, code: int, setting: str | EventType | None) -> Observation:
    return family.observation(acct(provider, setting), email_id="m0$a@example.com", recipient="a@example.com",
                              base=EventType.INVALID, sub_status=code, occurred_at=NOW, provider_status="4",
                              message=None, record={})


@pytest.mark.parametrize("provider", FAMILY)
@pytest.mark.parametrize("code", sorted(FAMILY_SENDER_SIDE))
@pytest.mark.parametrize("setting", [*SETTINGS, EventType.INVALID])
def test_sendcloud_family_files_ip_and_content_rejections_as_final_soft_bounces(provider, code, setting):
    # Filed under invalid (status 4) by the providers, but about us, not the address.
    obs = family_observation(provider, code, setting)
    assert (obs.type, (obs.reason, obs.scope)) == (SOFT, FAMILY_SENDER_SIDE[code])
    assert event(obs, provider).final is True


@pytest.mark.parametrize("status", ["err_spam_rejected", "err_spam_may_retry"])
@pytest.mark.parametrize("setting", [*SETTINGS, EventType.INVALID])
def test_unisender_content_rejections_are_soft_bounces_as_documented(status, setting):
    module = get_module(Provider.UNISENDER)
    type_, reason, final, scope = module.classify(status, acct(Provider.UNISENDER, setting))
    assert (type_, reason, final, scope) == (SOFT, Reason.SPAM_REJECTED, True, Scope.CONTENT)


def _tencent_row(send_status: int, deliver_status: int = 0, message: str = "") -> bytes:
    return orjson.dumps({"Response": {"RequestId": "r", "EmailStatusList": [{
        "MessageId": "qcloudses-1", "ToEmailAddress": "a@example.com", "FromEmailAddress": "n@example.com",
        "SendStatus": send_status, "DeliverStatus": deliver_status, "DeliverMessage": message,
        "RequestTime": 1_700_000_000, "DeliverTime": 1_700_000_100, "UserOpened": False, "UserClicked": False,
        "UserUnsubscribed": False, "UserComplainted": False}]}})


@pytest.mark.parametrize(("setting", "expected"), [("documented", None), ("invalid", SOFT), ("soft_bounce", SOFT),
                                                   (EventType.INVALID, SOFT)])
def test_tencent_sender_domain_rejection_1008_is_not_emitted_as_documented(setting, expected):
    # Not emitted by default; either explicit policy emits it, as a final soft bounce about the sender.
    module = get_module(Provider.TENCENT_SES)
    page = module.parse_poll_response(acct(Provider.TENCENT_SES, setting), PollQuery(limit=100), 200, {},
                                      _tencent_row(1008), NOW)
    (obs,) = page.observations
    assert obs.type is expected
    if expected is not None:
        assert (obs.reason, obs.scope) == (Reason.SENDER_REJECTED, Scope.SENDER)
        assert event(obs, Provider.TENCENT_SES).final is True


@pytest.mark.parametrize("setting", [*SETTINGS, EventType.INVALID])
def test_tencent_hard_bounce_for_policy_reasons_is_a_final_soft_bounce(setting):
    # X.7.1 is the receiving side's policy (docs/mapping.md SMTP table), not the address: a hard bounce
    # carrying it is a final soft bounce whatever the setting (it is no sender-side table row).
    module = get_module(Provider.TENCENT_SES)
    body = orjson.dumps({"event": "bounce", "email": "a@example.com", "bulkId": "qcloudses-1",
                         "timestamp": int(time.time()), "bounceType": "hard_bounce",
                         "reason": "550 5.7.1 message rejected by policy"})
    records = module.split_webhook(WebhookRequest(body=body, content_type="application/json"))
    (obs,) = module.webhook_observations(acct(Provider.TENCENT_SES, setting), records[0])
    assert (obs.type, obs.reason, obs.scope) == (SOFT, Reason.POLICY_REJECTED, Scope.POLICY)
    assert event(obs, Provider.TENCENT_SES).final is True
