"""The last SendCloud-family and `base` survivors of the mutation run that a behaviour can tell
apart (tests/mutation/README.md); the rest are listed as equivalent in accepted.txt. Expected values
are literals worked out by hand in the comments."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from worker.errors import MalformedPayload
from worker.model import EventType, Reason, Scope
from worker.providers import _sendcloud_family as family
from worker.providers import _sendcloud_webhooks as sendcloud_webhooks
from worker.providers import aurora_sendcloud as aurora
from worker.providers import sendcloud
from worker.providers.base import AccountContext, WebhookRequest, epoch_time, epoch_to_utc

ACCT = AccountContext(name="acct", provider=aurora.NAME, base_url=aurora.DEFAULTS.base_url, api_user="u", api_key="k")


# -- ids ---------------------------------------------------------------------------------------------


def test_a_dollar_in_the_recipient_does_not_move_the_message_id():
    # `<message>-inbound<index>$<recipient>`: the first `$` ends the message part; an address may
    # hold a `$` in its local part (RFC 5321 allows it)
    assert family.message_id_of("1652117389552_218362_2287_3497.sc-1-inbound0$a$b@example.com") == \
        "1652117389552_218362_2287_3497.sc-1-inbound"


def test_only_the_index_digits_are_cut_from_the_message_id():
    assert family.message_id_of("msgX12$a@example.com") == "msgX"    # the X stays, 12 is the index


# -- sub-status -------------------------------------------------------------------------------------


def test_sub_status_400_falls_back_to_the_4xx_meaning():
    # 400 is no row of the table; the 4xx fallback is the 409 row (docs/mapping.md: invalid class, reason
    # other, scope unknown), whatever the status said. Without SMTP evidence that class settles
    # into a final soft bounce; with recipient evidence (5.1.1) it is invalid.
    assert family.outcome(EventType.SOFT_BOUNCE, "400", ACCT) == (EventType.INVALID, Reason.OTHER, Scope.UNKNOWN)
    for message, expected in [(None, (EventType.SOFT_BOUNCE, Reason.OTHER, Scope.UNKNOWN)),
                              ("550 5.1.1 no such user", (EventType.INVALID, Reason.UNKNOWN_USER, Scope.RECIPIENT))]:
        obs = family.observation(ACCT, email_id="m0$a@example.com", recipient="a@example.com",
                                 base=EventType.SOFT_BOUNCE, sub_status="400",
                                 occurred_at=datetime(2026, 11, 2, tzinfo=UTC), provider_status="5",
                                 message=message, record={})
        assert (obs.type, obs.reason, obs.scope) == expected


def test_an_empty_sub_status_is_none_in_the_observation():
    obs = family.observation(ACCT, email_id="m0$a@example.com", recipient="a@example.com",
                             base=EventType.DELIVERED, sub_status="", occurred_at=datetime(2026, 11, 2, tzinfo=UTC),
                             provider_status="deliver", message=None, record={})
    assert obs.provider_sub_status is None


# -- webhook bodies: the declared content type decides, except for a JSON object ---------------------


@pytest.mark.parametrize("content_type", [sendcloud_webhooks.FORM, f"{sendcloud_webhooks.FORM}; charset=utf-8"])
def test_a_json_object_declared_as_a_form_is_read_as_json(content_type):
    # `curl -d` labels any body as a form; read as one, this JSON was one field name with no `event`
    # (and a signed one SendCloud's URL test). A form never starts with `{` (2026-12-06).
    body = b'{"event": "deliver", "emailId": "m0$a@example.com"}'
    assert sendcloud.split_webhook(WebhookRequest(body=body, content_type=content_type)) == \
        [{"event": "deliver", "emailId": "m0$a@example.com"}]


@pytest.mark.parametrize("content_type", [sendcloud_webhooks.FORM, f"{sendcloud_webhooks.FORM}; charset=utf-8"])
def test_a_body_declared_as_a_form_that_starts_with_a_brace_but_is_no_json_object_is_read_as_a_form(content_type):
    # not JSON (or a JSON array): the label decides, and the form has no `event` field: malformed
    for body in (b'{"event": "deliver", "emailId": "m0$a@example.com"', b'{event=deliver'):
        with pytest.raises(MalformedPayload):
            sendcloud.split_webhook(WebhookRequest(body=body, content_type=content_type))


@pytest.mark.parametrize("body", [b'{"event": "deliver", "emailId": "m0$a@example.com"}',
                                  b'  \n{"event": "deliver", "emailId": "m0$a@example.com"}'])
def test_an_unknown_content_type_is_sniffed_by_the_first_character_that_is_not_blank(body):
    assert sendcloud.split_webhook(WebhookRequest(body=body, content_type="text/plain")) == \
        [{"event": "deliver", "emailId": "m0$a@example.com"}]


# -- epoch times ------------------------------------------------------------------------------------


def test_a_bounded_epoch_time_counts_its_characters_not_only_its_value():
    # 13 digits of milliseconds: 1793606400000 ms = 2026-11-02T08:00:00Z; with a leading zero the
    # same value has 14 characters, over the bound
    assert epoch_time("1793606400000", max_digits=13) == datetime(2026, 11, 2, 8, 0, tzinfo=UTC)
    with pytest.raises(ValueError):
        epoch_time("01793606400000", max_digits=13)


def test_milliseconds_begin_above_ten_to_the_twelve():
    # 10**12 + 1 ms = 1,000,000,000.001 s = 2001-09-09T01:46:40.001Z
    assert epoch_to_utc(1_000_000_000_001) == datetime(2001, 9, 9, 1, 46, 40, 1000, tzinfo=UTC)
    with pytest.raises((ValueError, OverflowError, OSError)):   # 10**12 itself is seconds: year 33658
        epoch_to_utc(10**12)
