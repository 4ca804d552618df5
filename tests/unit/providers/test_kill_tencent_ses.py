"""Mutation-kill tests for worker/providers/tencent_ses.py (webhook field reading).

Expected values are written out by hand from PROVIDERS.md section 5 (Tencent Cloud SES):
`bulkId` is the MessageId (the field table spells it `bulkid`, the sample `bulkId`), and
`eventid` is a small number (1..8); a numeric string longer than five digits is not one.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tests.unit.providers.test_tencent_ses import ACCT
from worker.errors import MalformedPayload
from worker.model import EventType
from worker.providers import tencent_ses


def test_exact_bulkId_spelling_wins_over_other_case_variants() -> None:
    # Both spellings present with different values: the documented sample's `bulkId` is read,
    # whatever the key order, and becomes message_id and the email_id prefix.
    record = {
        "event": "delivered",
        "email": "User@Example.COM",
        "bulkid": "lower-id",
        "BULKID": "upper-id",
        "bulkId": "exact-id",
        "timestamp": 1654064683,
    }
    (obs,) = tencent_ses.webhook_observations(ACCT, record)
    assert obs.message_id == "exact-id"
    assert obs.email_id == "exact-id:user@example.com"
    assert obs.occurred_at == datetime(2022, 6, 1, 6, 24, 43, tzinfo=UTC)


def test_lowercase_bulkid_alone_is_read() -> None:
    record = {"event": "delivered", "email": "a@b.c", "bulkid": "m-7", "timestamp": 1654064683}
    (obs,) = tencent_ses.webhook_observations(ACCT, record)
    assert (obs.message_id, obs.email_id) == ("m-7", "m-7:a@b.c")


def test_eventid_as_five_digit_string_is_an_unknown_event() -> None:
    """Read (not malformed), and unknown: no status, so no observation (as an open or a click)."""
    record = {"eventid": "12345", "email": "a@b.c", "bulkId": "m", "timestamp": 1654064683}
    assert tencent_ses.webhook_observations(ACCT, record) == []


def test_eventid_as_short_digit_string_maps_like_the_number() -> None:
    # "1" is the documented eventid of `delivered`.
    record = {"eventid": "1", "email": "a@b.c", "bulkId": "m", "timestamp": 1654064683}
    (obs,) = tencent_ses.webhook_observations(ACCT, record)
    assert obs.provider_status == "delivered"


@pytest.mark.parametrize("eventid", ["123456", "0000001", "99999999999"])
def test_eventid_string_longer_than_five_digits_is_malformed(eventid: str) -> None:
    record = {"eventid": eventid, "email": "a@b.c", "bulkId": "m", "timestamp": 1654064683}
    with pytest.raises(MalformedPayload):
        tencent_ses.webhook_observations(ACCT, record)


# A bounce without a known bounceType goes by its SMTP reply class: any 5xx reply code (500..599)
# or a 5.x.x enhanced code makes it the hard class (as bounceType hard_bounce); otherwise soft.
# docs/mapping.md: the hard class is invalid only when the SMTP evidence is about the recipient or domain
# (5.1.1; basic 552/553 alone), else a soft bounce; a soft class stays soft even with recipient
# evidence. Every bounce is final (the ESP's answer after Tencent's attempts).
@pytest.mark.parametrize(
    "reason, expected_type, expected_final",
    [
        ("553 mailbox name not allowed", EventType.INVALID, True),   # 5xx code alone, recipient evidence
        ("552 mailbox full", EventType.SOFT_BOUNCE, True),       # full: temporary, never invalid
        ("5.1.1 user unknown", EventType.INVALID, True),             # enhanced code alone
        ("501 syntax error in parameters", EventType.SOFT_BOUNCE, True),  # hard class, no evidence
        ("500 command unrecognized", EventType.SOFT_BOUNCE, True),
        ("599 whatever", EventType.SOFT_BOUNCE, True),
        ("4.2.2 mailbox full", EventType.SOFT_BOUNCE, True),         # soft class: recipient evidence keeps it soft
        ("4.1.1 user unknown", EventType.SOFT_BOUNCE, True),
        ("453 mailbox name not allowed", EventType.SOFT_BOUNCE, True),
        ("421 try later", EventType.SOFT_BOUNCE, True),
    ],
)
def test_untyped_bounce_goes_by_reply_class(reason: str, expected_type: EventType, expected_final: bool) -> None:
    record = {"event": "bounce", "email": "a@b.c", "bulkId": "m", "timestamp": 1654064683, "reason": reason}
    (obs,) = tencent_ses.webhook_observations(ACCT, record)
    assert (obs.type, obs.final) == (expected_type, expected_final)
    assert obs.provider_sub_status is None
    assert obs.provider_message == reason


def test_webhook_observation_keeps_the_record_as_raw() -> None:
    record = {"event": "delivered", "email": "a@b.c", "bulkId": "m-9", "timestamp": 1654064683, "extra": [1, 2]}
    (obs,) = tencent_ses.webhook_observations(ACCT, record)
    assert obs.raw == {"event": "delivered", "email": "a@b.c", "bulkId": "m-9", "timestamp": 1654064683,
                       "extra": [1, 2]}


def test_bounce_type_is_a_sub_status_only_of_bounces() -> None:
    record = {"event": "delivered", "bounceType": "hard_bounce", "email": "a@b.c", "bulkId": "m", "timestamp": 1654064683}
    (obs,) = tencent_ses.webhook_observations(ACCT, record)
    assert obs.provider_status == "delivered"
    assert obs.provider_sub_status is None
    bounce = dict(record, event="bounce")
    (obs,) = tencent_ses.webhook_observations(ACCT, bounce)
    assert obs.provider_sub_status == "hard_bounce"
