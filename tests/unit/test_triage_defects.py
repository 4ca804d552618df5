"""Defects the mutation triage found by reading (tests/mutation/README.md), each pinned here.

- A sent-message record's `sent_at` in RFC 3339 with a lower-case `z` was refused (the record was
  dead-lettered), and a date with an offset but no time was read at a wrong instant (Python 3.11
  takes `2026-11-01+08:00` for 08:00 naive, i.e. 08:00 UTC).
- With `emit_raw` on, an observation whose `raw` is nested deeper than orjson encodes raised
  TypeError out of `Staging.observe`: the observations before it were staged, the caller then
  dead-lettered the whole record, and from a poll the exception reached the runner.
Expected values are literals worked out by hand."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest

from tests.unit.test_kill_staging import deep
from tests.unit.test_mutants_staging import NOW, SC, obs, staging
from worker.deadletter import DeadLetter
from worker.errors import BadSentRecord
from worker.model import EventType, Observation, Source
from worker.raw import SentMessage

RECEIVED = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def sent(sent_at: str) -> bytes:
    return orjson.dumps({"provider": "unisender", "account": "uni", "email_id": "8001",
                         "recipient": "a@example.com", "sent_at": sent_at})


@pytest.mark.parametrize(("text", "expected"), [
    ("2026-11-01T10:00:00z", datetime(2026, 11, 1, 10, 0, tzinfo=UTC)),       # RFC 3339 allows `z`
    ("2026-11-01t10:00:00Z", datetime(2026, 11, 1, 10, 0, tzinfo=UTC)),       # ... and `t`
    ("2026-11-01T10:00:00+08:00", datetime(2026, 11, 1, 2, 0, tzinfo=UTC)),
    ("2026-11-01T10:00:00.250-01:30", datetime(2026, 11, 1, 11, 30, 0, 250_000, tzinfo=UTC)),
    ("2026-11-01T10:00:00", datetime(2026, 11, 1, 10, 0, tzinfo=UTC)),        # no zone: read as UTC
    ("2026-11-01", datetime(2026, 11, 1, 0, 0, tzinfo=UTC)),                  # a date alone: midnight UTC
])
def test_sent_at_in_every_rfc_3339_spelling(text, expected):
    assert SentMessage.from_feed(sent(text), RECEIVED).sent_at == expected


@pytest.mark.parametrize("text", ["2026-11-01+08:00", "2026-11-01-05:00", "2026-11-01Z", "2026-11-01z",
                                  "yesterday", ""])
def test_a_date_with_a_zone_but_no_time_is_refused_not_misread(text):
    with pytest.raises(BadSentRecord):
        SentMessage.from_feed(sent(text), RECEIVED)


@pytest.mark.parametrize(("source", "part"), [(Source.POLL, "row"), (Source.WEBHOOK, "record")])
async def test_an_observation_too_deep_to_encode_as_an_event_is_set_aside_and_the_rest_go_on(source, part):
    st = staging()                                        # CONFIG has emit_raw on
    bad = Observation(email_id="e1", recipient="a@x.test", type=EventType.INVALID, reason=None,
                      occurred_at=NOW, provider_status="406", raw=deep(300))
    assert st.observe(SC, [bad, obs("e2", EventType.INVALID)], source, NOW) == 1
    body = b'{"email_id":"e1","provider_status":"406"}'     # what can be kept of a body too deep to encode
    assert st.batch.dead == [DeadLetter("sendcloud", "sc", "malformed", "shard", part, body,
                                        "application/json", NOW)]
    assert st.batch.tally.dead == {("sendcloud", "sc", "malformed"): 1}
    assert len(st.batch.events) == 1 and len(st.batch.overlay) == 1   # e2 only; e1 never entered dedup
