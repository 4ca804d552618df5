"""EngageLab: which field names the recipient and the message, and replay keys of odd records.

Every expectation is a literal: the row/callback says one address or message id and its email id
another, so reading the wrong field (or none) shows.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.providers.test_engagelab import (
    EMAIL_ID,
    MESSAGE_ID,
    account,
    answer,
    parse,
    response_callback,
    row,
    status_callback,
)
from worker.model import EventType
from worker.providers import engagelab
from worker.providers.base import RejectedRow, WebhookRequest

SIGNATURE = "a9d5ea2634e13031de0d3ececed4ec7a"   # PROVIDERS.md 1.5 md5 test vector, as a header value


# -- status API rows: `email` names the recipient -----------------------------------------------


def test_a_row_recipient_is_its_email_field_over_the_email_id_suffix() -> None:
    page = parse(answer(row(email="other@example.org")))
    (obs,) = page.observations
    assert obs.recipient == "other@example.org"
    assert obs.email_id == EMAIL_ID                      # the id is kept as sent


def test_a_row_whose_email_id_has_no_recipient_uses_its_email_field() -> None:
    page = parse(answer(row(email_id="1676615711309_104117_18546_8821.sc-10_43_7_16-inbound0",
                            email="someone@example.org")))
    assert page.rejected == ()
    (obs,) = page.observations
    assert (obs.recipient, obs.type) == ("someone@example.org", EventType.DELIVERED)


def test_a_row_with_neither_email_nor_a_recipient_in_its_id_is_rejected_alone() -> None:
    page = parse(answer(row(email_id="no-recipient-in-id", email=""), row()))
    assert page.rejected == (RejectedRow(0, "malformed"),)
    assert [o.recipient for o in page.observations] == ["12345@hotmail.com"]


# -- webhook callbacks: `to` names the recipient, `message_id` the message ----------------------


@pytest.mark.parametrize("make", [status_callback, response_callback], ids=["status", "response"])
def test_a_callback_recipient_is_its_to_field_over_the_email_id_suffix(make: Any) -> None:
    event = "delivered" if make is status_callback else "unsubscribe"
    (obs,) = engagelab.webhook_observations(account(), make(event, to="other@example.org"))
    assert obs.recipient == "other@example.org"
    assert obs.email_id == EMAIL_ID


def test_a_callback_whose_email_id_has_no_recipient_uses_to() -> None:
    record = status_callback("delivered", to="someone@example.org")
    record["status"]["status_data"]["email_id"] = "plain-id-without-recipient"
    (obs,) = engagelab.webhook_observations(account(), record)
    assert (obs.recipient, obs.email_id) == ("someone@example.org", "plain-id-without-recipient")


def test_a_callback_message_id_is_the_envelope_message_id() -> None:
    record = status_callback("delivered")
    record["message_id"] = "envelope-message-id-42"
    (obs,) = engagelab.webhook_observations(account(), record)
    assert obs.message_id == "envelope-message-id-42"


def test_a_callback_message_id_without_the_envelope_field_comes_from_the_email_id() -> None:
    record = status_callback("soft_bounce")
    del record["message_id"]
    (obs,) = engagelab.webhook_observations(account(), record)
    assert obs.message_id == MESSAGE_ID


def test_a_callback_with_another_shape_of_email_id_keeps_the_envelope_message_id() -> None:
    record = response_callback("report_spam")
    record["response"]["response_data"]["email_id"] = "opaque-id$12345@hotmail.com"
    record["message_id"] = "msg-7"
    (obs,) = engagelab.webhook_observations(account(), record)
    assert (obs.type, obs.message_id) == (EventType.COMPLAINT, "msg-7")


# -- replay keys of records the module does not read ---------------------------------------------


def req() -> WebhookRequest:
    return WebhookRequest(b"{}", "application/json", {"x-webhook-signature": SIGNATURE})


@pytest.mark.parametrize("record", [
    {"itime": 1676615713250},
    {"status": "delivered", "response": None, "itime": 1676615713250},
    {"status": None, "response": ["delivered"], "itime": 1676615713250},
])
def test_a_record_with_neither_envelope_has_no_replay_key(record: dict[str, Any]) -> None:
    assert engagelab.replay_key(req(), record) is None


@pytest.mark.parametrize("data", ["x", ["e1$a@x.test"], 7])
def test_a_replay_key_survives_data_that_is_not_an_object(data: Any) -> None:
    opened = {"response": {"event": "open", "response_data": data}, "itime": 1}
    assert engagelab.replay_key(req(), opened) is None     # never emitted: not keyed, and no crash
    delivered = {"status": {"message_status": "delivered", "status_data": data}, "itime": 1}
    assert engagelab.replay_key(req(), delivered) == f"{SIGNATURE}|None|delivered|1"
