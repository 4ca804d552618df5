"""The multipart reader's edges, hand-counted (worker.providers._sendcloud_webhooks `_multipart_pairs`):
64 parts are read and 65 are not; a part's headers of exactly 1,024 bytes are read and 1,025 are
not; a body with no part, or with one part, is not a signed webhook; a value holding a blank line
is kept whole; an unquoted name is the name."""

from __future__ import annotations

import pytest

from tests.unit.providers.test_sendcloud import signed_fields
from tests.unit.providers.test_sendcloud_body_shapes import verify
from worker.errors import BadSignature
from worker.model import Provider
from worker.providers import sendcloud
from worker.providers._sendcloud_webhooks import _multipart_pairs
from worker.providers.base import URL_CHECK, WebhookRequest

CT = "multipart/form-data; boundary=b"


def part(name: str, value: str, pad: int = 0) -> bytes:
    return f'--b\r\nContent-Disposition: form-data; name="{name}"{"; p=" + "x" * pad if pad else ""}\r\n\r\n{value}\r\n'.encode()


def body(parts: list[bytes]) -> bytes:
    return b"".join(parts) + b"--b--\r\n"


def signed_parts(total: int) -> bytes:
    fields = [part(k, v) for k, v in signed_fields().items()]
    return body(fields + [part(f"filler{i}", "f") for i in range(total - len(fields))])


def test_64_parts_are_read_and_65_are_not():
    assert verify(Provider.SENDCLOUD, WebhookRequest(signed_parts(64), CT)) == "hmac-sha256"
    with pytest.raises(BadSignature):
        verify(Provider.SENDCLOUD, WebhookRequest(signed_parts(65), CT))


def test_headers_of_1024_bytes_are_read_and_1025_are_not():
    head = 'Content-Disposition: form-data; name="n"; p='
    pad = 1024 - len(head)
    assert _multipart_pairs(CT, body([part("n", "v", pad)])) == [("n", "v")]
    with pytest.raises(ValueError):
        _multipart_pairs(CT, body([part("n", "v", pad + 1)]))


def test_no_part_is_not_a_url_test_and_one_unsigned_part_is():
    with pytest.raises(BadSignature):
        verify(Provider.SENDCLOUD, WebhookRequest(b"--b--\r\n", CT))
    assert verify(Provider.SENDCLOUD, WebhookRequest(body([part("hello", "world")]), CT)) == URL_CHECK


def test_a_value_with_a_blank_line_is_kept_whole_and_an_unquoted_name_is_the_name():
    raw = body([part(k, v) for k, v in signed_fields().items()] + [part("subject", "a\r\n\r\nb")])
    raw = raw.replace(b'name="event"', b"name=event")
    req = WebhookRequest(raw, CT)
    assert verify(Provider.SENDCLOUD, req) == "hmac-sha256"
    [record] = sendcloud.split_webhook(req)
    assert (record["event"], record["subject"]) == ("deliver", "a\r\n\r\nb")


@pytest.mark.parametrize("content_type", ["multipart/form-data", "multipart/form-data; boundary=",
                                          'multipart/form-data; boundary=""'])
def test_a_multipart_type_without_a_boundary_is_not_read(content_type):
    # split on "--" alone, this body would be one part named x: an unsigned URL test
    raw = b'--\r\nContent-Disposition: form-data; name="x"\r\n\r\nv\r\n----\r\n'
    with pytest.raises(ValueError, match="no boundary"):
        _multipart_pairs(content_type, raw)
    with pytest.raises(BadSignature):
        verify(Provider.SENDCLOUD, WebhookRequest(raw, content_type))
