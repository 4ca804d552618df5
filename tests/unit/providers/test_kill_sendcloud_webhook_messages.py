"""The SendCloud engine's BadSignature messages, word for word: since 2026-12-06 each is the
`reason` of the 401's log line (worker.webhooks), which an operator reads to tell a wrong key from
a missing field or a stale retry, so a changed text is a changed contract. Also: a multipart body's
file parts and nameless parts are not fields."""

from __future__ import annotations

import pytest

from tests.unit.providers.test_sendcloud import EMAIL_ID, KEY, form_hook, signed_fields, verify
from tests.unit.providers.test_sendcloud_body_shapes import MODULES
from tests.unit.providers.test_sendcloud_body_shapes import verify as verify_as
from worker.errors import BadSignature
from worker.providers.base import WebhookRequest

BOUNDARY = "b0undary"


def message(req: WebhookRequest, keys: tuple[str, ...] = (KEY,)) -> str:
    with pytest.raises(BadSignature) as raised:
        verify(req, keys=keys)
    return str(raised.value)


def test_each_refusal_says_which_check_failed():
    assert message(WebhookRequest(b"event=deliver&subject=\xff", "application/x-www-form-urlencoded")) == (
        "no signature fields in an unreadable body")
    assert message(form_hook({"event": "deliver", "emailId": EMAIL_ID})) == "timestamp, token or signature missing"
    assert message(form_hook(signed_fields()), keys=()) == "no webhook key configured"
    assert message(form_hook(signed_fields()), keys=("another key",)) == "signature does not match any key"
    assert message(form_hook(signed_fields(str(1652117390000 - 10 * 86400 * 1000)))) == "timestamp outside the replay window"
    assert message(form_hook(signed_fields("soon"))) == "unreadable timestamp: ValueError"


def part(headers: str, value: str) -> bytes:
    return f"--{BOUNDARY}\r\n{headers}\r\n\r\n{value}\r\n".encode()


@pytest.mark.parametrize("provider", list(MODULES))
def test_file_parts_and_nameless_parts_are_not_fields(provider):
    body = b"".join(part(f'Content-Disposition: form-data; name="{name}"', value)
                    for name, value in signed_fields().items())
    body += part('Content-Disposition: form-data; name="attachment"; filename="a.txt"', "a file")
    body += part("Content-Disposition: form-data", "no name")
    req = WebhookRequest(body + f"--{BOUNDARY}--\r\n".encode(), f"multipart/form-data; boundary={BOUNDARY}")
    assert verify_as(provider, req) == "hmac-sha256"
    [record] = MODULES[provider].split_webhook(req)
    assert set(record) == set(signed_fields())
    assert record["emailId"] == EMAIL_ID
