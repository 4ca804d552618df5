"""The compatibility rule of docs/topics.md ("Formats, versions and compatibility"), decoder by
decoder: this release reads what the previous release wrote (literal records, written here by
hand from the documented formats), and tolerates what a later release may add during a rolling
update (an extra JSON member, a `_state` kind it does not know, group user data of another
version) without losing anything it can read.

The end-to-end check, the previous release running beside this one, is
tests/integration/test_upgrade.py.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

import orjson
import pytest

from worker import raw
from worker.assign import decode_claim
from worker.errors import UnknownRawVersion
from worker.model import EventType, Provider, StatusEvent
from worker.state import Restored, decode_cursor, decode_tracked

# -- _raw: records as the v0.1.0 writer laid them out, and with a later release's additions --------

WEBHOOK_V1 = (b'{"v":1,"kind":"webhook","provider":"sendcloud","account":"sc-main","received_at":1764633600000,'
              b'"record":{"event":"deliver","emailId":"e1"}}')
SENT_V1 = (b'{"v":1,"kind":"sent","provider":"unisender","account":"uni","received_at":1764633600000,'
           b'"email_id":"42","recipient":"a@example.com","sent_at":"2025-12-02T00:00:00Z"}')
PAGE_V1 = (b'{"v":1,"kind":"poll_page","provider":"engagelab","account":"el","received_at":1764633600000,'
           b'"query":{"send_date":"2025-12-01","status":null,"offset":100,"limit":100},'
           b'"status":200,"headers":{"content-type":"application/json"},"body":"{\\"result\\":[]}"}')


def with_member(value: bytes, **extra: object) -> bytes:
    return orjson.dumps({**orjson.loads(value), **extra})


def test_a_v1_webhook_record_reads_as_written():
    r = raw.decode(WEBHOOK_V1)
    assert isinstance(r, raw.WebhookRecord)
    assert (r.provider, r.account, r.record, r.replay) == (Provider.SENDCLOUD, "sc-main",
                                                           {"event": "deliver", "emailId": "e1"}, None)
    assert r.received_at == datetime(2025, 12, 2, tzinfo=UTC)


def test_a_v1_sent_record_reads_as_written():
    r = raw.decode(SENT_V1)
    assert isinstance(r, raw.SentMessage)
    assert (r.email_id, r.recipient, r.sent_at) == ("42", "a@example.com", datetime(2025, 12, 2, tzinfo=UTC))


def test_a_v1_poll_page_reads_as_written():
    r = raw.decode(PAGE_V1)
    assert isinstance(r, raw.PollPageRecord)
    assert (r.query.send_date, r.query.status, r.query.offset, r.query.limit) == (date(2025, 12, 1), None, 100, 100)
    assert (r.status, dict(r.headers), r.body) == (200, {"content-type": "application/json"}, b'{"result":[]}')


@pytest.mark.parametrize("value", [WEBHOOK_V1, SENT_V1, PAGE_V1], ids=["webhook", "sent", "poll_page"])
def test_a_later_release_may_add_members_to_a_v1_envelope(value):
    assert raw.decode(with_member(value, trace="t-1", shard_hint=3)) == raw.decode(value)


def test_a_later_envelope_version_is_refused_by_name_not_misread():
    with pytest.raises(UnknownRawVersion):
        raw.decode(with_member(WEBHOOK_V1, v=2))


# -- _state: a later release's kinds and members ----------------------------------------------------

CURSOR_V1 = (b'{"interval":300.0,"offset":200,"in_sweep":true,"started_at":1.0,"completed_at":0.0,'
             b'"due_at":2.0,"total":450,"seen":200,"changes":7,"sweeps":3}')
TRACKED_V1 = b'{"r":"a@example.com","s":1764633600.0,"st":"sent","f":false}'


def test_cursor_and_tracked_id_values_read_as_written_and_with_added_members():
    cursor = decode_cursor(CURSOR_V1)
    assert (cursor.interval, cursor.offset, cursor.in_sweep, cursor.total, cursor.seen, cursor.sweeps) == (
        300.0, 200, True, 450, 200, 3)
    assert decode_cursor(with_member(CURSOR_V1, pages_in_flight=[3, 4])) == cursor
    tracked = decode_tracked(TRACKED_V1)
    assert (tracked.recipient, tracked.sent_at, tracked.status, tracked.final) == (
        "a@example.com", 1764633600.0, "sent", False)
    assert decode_tracked(with_member(TRACKED_V1, h=12345)) == tracked


def test_a_state_kind_this_release_does_not_know_is_skipped_and_counted_and_nothing_else_moves():
    restored = Restored.empty()
    restored.add(b"d" + (7).to_bytes(8, "big"), (0x0102).to_bytes(8, "big"))
    restored.add(b"Z" + (8).to_bytes(8, "big"), b"a future layout of some table")   # a later kind
    restored.add(b"c" + b"sc-main|2025-12-01|*", CURSOR_V1)
    restored.add(b"d" + (9).to_bytes(8, "big"), (0x0304).to_bytes(8, "big"))
    restored.finish()
    assert restored.skipped == 1
    assert restored.keys.tolist() == [7, 9]
    assert restored.words.tolist() == [0x0102, 0x0304]
    assert restored.cursors["sc-main"]["2025-12-01|*"].offset == 200


# -- events and the group's user data ------------------------------------------------------------------

EVENT_V1 = {
    "schema_version": 1, "event_id": "0f" * 16, "type": "invalid", "provider": "sendcloud", "account": "sc-main",
    "email_id": "e1", "message_id": None, "recipient": "a@example.com", "occurred_at": "2025-12-02T00:00:00Z",
    "sent_at": None, "observed_at": "2025-12-02T00:00:01Z", "source": "webhook", "reason": "unknown_user",
    "provider_status": "invalid", "provider_sub_status": "406", "provider_message": "550 5.1.1 user unknown",
    "smtp": None, "final": True, "scope": "recipient", "attempt": None,
}


def test_an_event_reads_the_same_with_members_a_later_release_adds():
    plain = StatusEvent.decode(orjson.dumps(EVENT_V1))
    assert (plain.type, plain.event_id, plain.final) == (EventType.INVALID, "0f" * 16, True)
    assert StatusEvent.decode(orjson.dumps({**EVENT_V1, "campaign": "c-9", "tags": ["x"]})) == plain


def test_group_user_data_of_another_version_claims_nothing_and_never_fails_the_assignment():
    assert decode_claim(b'{"v":1,"topic":"p._raw","held":[0,2]}', "p._raw") == [0, 2]
    assert decode_claim(b'{"v":2,"topic":"p._raw","held":[0,2],"weights":[1,1]}', "p._raw") == []
    assert decode_claim(b'{"v":1,"topic":"p._raw","held":[1],"weights":[5]}', "p._raw") == [1]
