"""EngageLab's test of a new callback URL (public-captures audit of 2026-12-06): EngageLab's SMS
callback docs (https://www.engagelab.com/docs/sms/api/callback) say the platform checks a URL by
POSTing `{}` and expects 200; the worker answered an unsigned `{}` with 401, which would fail the
email console's check if it tests the same way. An unsigned empty body or `{}` is now the URL's
test (200, nothing written); anything else unsigned is still refused."""

from __future__ import annotations

import pytest

from tests.support import hook_acct
from tests.unit.providers.test_engagelab import HOOK_NOW, SECRET
from worker.errors import BadSignature
from worker.model import Provider
from worker.providers import engagelab
from worker.providers.base import URL_CHECK, WebhookRequest


def verify(body: bytes, headers: dict | None = None) -> str:
    return engagelab.verify_webhook(hook_acct(Provider.ENGAGELAB, (SECRET,)), WebhookRequest(body, "application/json",
                                                                                          headers or {}), HOOK_NOW, 600)


@pytest.mark.parametrize("body", [b"{}", b"", b" {}\n", b"\r\n"])
def test_an_unsigned_empty_post_is_the_urls_test(body):
    assert verify(body) == URL_CHECK


@pytest.mark.parametrize(("body", "headers"), [
    (b'{"message_id":"m"}', {}),                                       # not empty
    (b"[]", {}),
    (b"{ }", {"x-webhook-signature": "0" * 32}),                       # signed, wrongly
    (b"{}", {"x-webhook-timestamp": "1700000000"}),                    # half signed
    (b"{}", {"authorization": "ab" * 32}),                             # the older scheme, wrong
])
def test_anything_else_unsigned_or_wrongly_signed_is_refused(body, headers):
    with pytest.raises(BadSignature):
        verify(body, headers)
