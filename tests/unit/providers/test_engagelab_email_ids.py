"""An EngageLab status callback that lists its email as `status_data.email_ids` (public-captures
audit of 2026-12-06, finding 4): the documented shape of a `target` callback, and a public receiver
reads `email_ids[0]` for any event. It was dead-lettered (`malformed`). One per-recipient id listed
alone is now that email's; several, or one not in the per-recipient form, still are not read."""

from __future__ import annotations

import pytest

from tests.unit.providers.test_engagelab import EMAIL_ID, account, status_callback
from worker.errors import MalformedPayload
from worker.model import EventType
from worker.providers import engagelab


def listed(ids) -> dict:
    record = status_callback("delivered")
    record["status"]["status_data"] = {"email_ids": ids, "tos": ["12345@hotmail.com"], "message": "ok"}
    return record


def test_one_listed_id_is_the_callbacks_email():
    [obs] = engagelab.webhook_observations(account(), listed([EMAIL_ID]))
    assert (obs.type, obs.email_id, obs.recipient) == (EventType.DELIVERED, EMAIL_ID, "12345@hotmail.com")


def test_email_id_beside_the_list_wins():
    record = listed(["other0$someone@example.com"])
    record["status"]["status_data"]["email_id"] = EMAIL_ID
    [obs] = engagelab.webhook_observations(account(), record)
    assert obs.email_id == EMAIL_ID


@pytest.mark.parametrize("ids", [[EMAIL_ID, "x0$b@example.com"], [], ["no-recipient-in-id"], [7], "x0$a@b.c"])
def test_anything_else_is_not_an_email_id(ids):
    with pytest.raises(MalformedPayload):
        engagelab.webhook_observations(account(), listed(ids))
