"""SendCloud-engine webhook bodies in shapes the providers do not document (edge audit of
2026-12-06). A signed multipart/form-data body (`curl -F`; PHP's cURL given an array) was read as
a url-encoded form, found no signature field and no event, and was taken for SendCloud's URL test:
200, nothing written. It is read as its text fields now, in bounded work whatever its shape (the
body is split on its boundary by hand: the email parser over a whole body took seconds of the
event loop for a megabyte of tiny parts, before any signature check). The URL tests the providers
send still answer 200."""

from __future__ import annotations

import pytest

from tests.support import hook_acct
from tests.unit.providers.test_sendcloud import EMAIL_ID, HOOK_NOW, KEY, signed_fields
from worker.errors import BadSignature
from worker.model import Provider
from worker.providers import aurora_sendcloud, sendcloud
from worker.providers.base import URL_CHECK, WebhookRequest

MODULES = {Provider.SENDCLOUD: sendcloud, Provider.AURORA_SENDCLOUD: aurora_sendcloud}


def multipart(fields: dict[str, str], boundary: str = "------------------------7c1f0e2d9a3b4c5d") -> WebhookRequest:
    body = b"".join(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
                    for name, value in fields.items()) + f"--{boundary}--\r\n".encode()
    return WebhookRequest(body, f"multipart/form-data; boundary={boundary}")


def verify(provider: Provider, req: WebhookRequest) -> str:
    return MODULES[provider].verify_webhook(hook_acct(provider, (KEY,)), req, HOOK_NOW, 259200)


@pytest.mark.parametrize("provider", list(MODULES))
def test_a_signed_multipart_body_is_verified_and_read(provider):
    req = multipart(signed_fields(subject="你好"))
    assert verify(provider, req) == "hmac-sha256"
    [record] = MODULES[provider].split_webhook(req)
    assert (record["event"], record["emailId"], record["recipient"], record["subject"]) == (
        "deliver", EMAIL_ID, "alice@example.com", "你好")


@pytest.mark.parametrize("provider", list(MODULES))
def test_a_multipart_body_with_a_wrong_signature_or_none_is_401(provider):
    with pytest.raises(BadSignature, match="signature does not match"):
        verify(provider, multipart({**signed_fields(), "signature": "0" * 64}))
    unsigned = {"event": "invalid", "emailId": EMAIL_ID, "recipient": "alice@example.com"}
    with pytest.raises(BadSignature, match="missing"):
        verify(provider, multipart(unsigned))


@pytest.mark.parametrize("provider", list(MODULES))
@pytest.mark.parametrize(("body", "content_type"), [
    (b"", ""),
    (b"{}", "application/json"),
    (b'{"test": "url"}', "application/json"),
    (b"foo=bar", "application/x-www-form-urlencoded"),
])
def test_the_url_tests_the_providers_send_still_answer_200(provider, body, content_type):
    assert verify(provider, WebhookRequest(body, content_type)) == URL_CHECK


@pytest.mark.parametrize("body", [
    b"".join(b"--b\r\n\r\n\r\n" for _ in range(100_000)) + b"--b--\r\n",          # 100,000 empty parts
    b"".join(b'--b\r\nContent-Disposition: form-data; name="x"\r\n\r\nv\r\n' for _ in range(65)) + b"--b--\r\n",
    b'--b\r\nContent-Disposition: form-data; name="x"' + b"; a=b" * 400 + b"\r\n\r\nv\r\n--b--\r\n",   # 2.8 KB of headers
])
def test_a_multipart_body_past_the_bounds_is_refused_unread(body):
    # more than 64 parts, or a part's headers over 1 KiB: not read (401: no signature found)
    with pytest.raises(BadSignature):
        verify(Provider.SENDCLOUD, WebhookRequest(body, "multipart/form-data; boundary=b"))
