"""EngageLab's and UniSender's BadSignature messages, word for word: since 2026-12-06 each is the
`reason` of the 401's log line (worker.webhooks), which the runbook (EswWebhooksRejected) sends
operators to read, so a changed text is a changed contract (the SendCloud engine's are in
test_kill_sendcloud_webhook_messages.py)."""

from __future__ import annotations

import pytest

from tests.support import hook_acct
from tests.unit.providers.test_engagelab import MD5_VECTOR, hook
from tests.unit.providers.test_engagelab import verify as verify_engagelab
from tests.unit.providers.test_unisender import NOW, VECTOR_2017, _req
from worker.errors import BadSignature
from worker.model import Provider
from worker.providers import unisender
from worker.providers.base import WebhookRequest


def refusal(check, *args, **kw) -> str:
    with pytest.raises(BadSignature) as raised:
        check(*args, **kw)
    return str(raised.value)


def test_engagelabs_refusals_say_which_check_failed():
    assert refusal(verify_engagelab, hook(MD5_VECTOR, ts=None)) == "X-WebHook-Timestamp or X-WebHook-Signature missing"
    assert refusal(verify_engagelab, hook(MD5_VECTOR), keys=()) == "no webhook key configured"
    assert refusal(verify_engagelab, hook("0" * 32)) == "signature does not match any key or scheme"
    legacy = WebhookRequest(b"{}", "application/json", {"authorization": "ab" * 32})
    assert refusal(verify_engagelab, legacy, signature_scheme="md5") == (
        "an Authorization-header signature is HMAC; the account accepts md5 only")


def test_unisenders_refusals_say_which_check_failed():
    assert refusal(unisender.verify_webhook, hook_acct(Provider.UNISENDER, []), _req(VECTOR_2017), NOW, 300) == (
        "no unisender api key configured for webhooks")
    assert refusal(unisender.verify_webhook, hook_acct(Provider.UNISENDER, ["WRONG"]), _req(VECTOR_2017), NOW,
                   300) == "unisender auth missing or wrong"
