"""Survivors of the 2026-12-06 mutation run in `_sendcloud_webhooks._body_fields` that a behaviour
tells apart (the rest are equivalents in tests/mutation/accepted.txt). Expected values are worked
out by hand in the comments."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from worker.errors import BadSignature, MalformedPayload
from worker.providers import sendcloud
from worker.providers.base import AccountContext, WebhookRequest

ACCT = AccountContext(name="acct", provider=sendcloud.NAME, base_url=sendcloud.DEFAULTS.base_url,
                      webhook_keys=("test_appkey",))
NOW = datetime(2026, 12, 6, tzinfo=UTC)


@pytest.mark.parametrize("content_type", ["text/plain", ""])
def test_a_body_of_no_declared_kind_that_starts_with_a_brace_but_is_no_json_is_not_a_url_test(content_type):
    # neither a form nor JSON declared: the first byte says JSON; the JSON does not read, so the body is
    # unreadable and unsigned: 401. Read as a form it would be one field named `{"event"...` with no
    # signature and no event: SendCloud's URL test, 200 and nothing written.
    req = WebhookRequest(body=b'{"event": "deliver", "emailId": "m0$a@example.com"', content_type=content_type)
    with pytest.raises(BadSignature):
        sendcloud.verify_webhook(ACCT, req, NOW, 259200)


def test_json_with_a_charset_parameter_is_json_and_an_unsigned_form_under_it_is_unreadable():
    # "application/json; charset=utf-8" is JSON: this unsigned form is not JSON, and read as a form it finds
    # no signature, so it stays unreadable. (Compared whole, the type would be neither form nor JSON and
    # the body, not starting with a brace, would be read as the form it is.)
    req = WebhookRequest(body=b"event=deliver&emailId=m0%24a%40example.com&recipient=a%40example.com",
                         content_type="application/json; charset=utf-8")
    with pytest.raises(MalformedPayload):
        sendcloud.split_webhook(req)
