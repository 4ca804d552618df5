"""Mutation-testing gaps in worker/providers/sendcloud.py, _sendcloud_family.py and
aurora_sendcloud.py."""

from __future__ import annotations

from worker.providers import _sendcloud_family as family
from worker.providers import _sendcloud_webhooks as sendcloud_webhooks
from worker.providers import sendcloud
from worker.providers.base import WebhookRequest


def test_first_present_skips_empty_strings():
    # an empty string counts as absent: the next key's value is the one present
    assert family.first_present({"a": "", "b": "507"}, ("a", "b")) == "507"
    assert family.first_present({"a": "", "b": None}, ("a", "b")) is None
    assert family.first_present({"a": 0, "b": "507"}, ("a", "b")) == 0


def test_first_present_takes_a_value_that_merely_looks_like_a_placeholder():
    assert family.first_present({"a": "XXXX", "b": "507"}, ("a", "b")) == "XXXX"


# -- webhook list fields -----------------------------------------------------------------------------


def test_list_field_json_array_string_with_leading_whitespace_is_decoded():
    # a JSON-array string is recognised by its first non-blank character
    req = WebhookRequest(body=b'{"event": "deliver", "emailIds": "  [\\"a$x@y.com\\", \\"b$z@y.com\\"]"}',
                         content_type=sendcloud_webhooks.JSON)
    [record] = sendcloud.split_webhook(req)
    assert record["emailIds"] == ["a$x@y.com", "b$z@y.com"]


def test_list_field_form_value_with_leading_whitespace_is_decoded():
    req = WebhookRequest(body=b"event=deliver&recipientArray=%20%5B%22r%40y.com%22%5D", content_type=sendcloud_webhooks.FORM)
    [record] = sendcloud.split_webhook(req)
    assert record["recipientArray"] == ["r@y.com"]


def test_form_body_keeps_blank_fields_in_the_record():
    # the raw record is what was sent: a blank field stays, as an empty string
    req = WebhookRequest(body=b"event=deliver&emailId=a%24x%40y.com&cause=&recipientArray=", content_type=sendcloud_webhooks.FORM)
    [record] = sendcloud.split_webhook(req)
    assert record == {"event": "deliver", "emailId": "a$x@y.com", "cause": "", "recipientArray": [""]}


def test_form_body_first_of_a_repeated_field_counts_even_when_blank():
    req = WebhookRequest(body=b"event=deliver&token=&token=abc", content_type=sendcloud_webhooks.FORM)
    [record] = sendcloud.split_webhook(req)
    assert record["token"] == ""
