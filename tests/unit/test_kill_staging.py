"""A shard's staging (worker.staging): what the second mutation run found unpinned.

Poll pages with unreadable rows or a throttling answer in `_raw`, the exact bounds of the clock
skew and of the event size, what an observation set aside carries (and that the ones after it
still count), poison records without a value, replay tombstones, and the send time a webhook
teaches an id-polled account. Expected values are literals or worked out in the comment above."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from types import SimpleNamespace

import orjson

from tests.unit.test_mutants_staging import NOW, RECEIVED, SC, UNI, obs, records, staging
from worker import raw
from worker.deadletter import DeadLetter
from worker.emit import event_record
from worker.model import EventType, Observation, Provider, Source, StatusEvent
from worker.poll.ids import Tracked
from worker.poll.sink import IdChange
from worker.providers import unisender
from worker.providers.base import PollQuery

# the replay table key of SendCloud account `sc`, signature `sig-1` (worker.replays):
# blake2b-64 of b"sendcloud\x1fsc\x1fsig-1"
SIG1_KEY = 0x328E11E041D2117E


def deep(levels: int) -> dict:
    """A dict nested `levels` deep: more than orjson encodes (254)."""
    root: dict = {}
    cur = root
    for _ in range(levels):
        cur["a"] = {}
        cur = cur["a"]
    return root


# -- poll pages in `_raw` ---------------------------------------------------------------------------


GOOD_ROW = {"emailId": "1793606399000_15_1_1.sc-1-inbound0$dave@126.com", "status": "无效邮件-IP、域名被拒",
            "subStatus": "405", "subStatDesc": "IP、域名被拒", "apiUser": "u", "recipients": "Dave@126.com",
            "requestTime": "2026-11-02 14:58:01", "modifiedTime": "2026-11-02 14:59:03", "sendLog": None}


def page_value(status: int, headers: dict, body: bytes) -> bytes:
    return raw.encode(raw.PollPageRecord(Provider.SENDCLOUD, "sc", RECEIVED, PollQuery(send_date=None, limit=100),
                                         status, headers, body))


async def test_a_page_with_an_unreadable_row_is_dead_lettered_whole_and_its_other_rows_still_count():
    body = orjson.dumps({"result": True, "statusCode": 200, "message": "请求成功", "info": {
        "total": "2", "voListSize": 2, "voList": [GOOD_ROW, 5]}})     # the second row is no object
    value = page_value(200, {"content-type": "application/json"}, body)
    st = staging()
    st.stage_raw(records(value), NOW)
    assert st.batch.dead == [DeadLetter("sendcloud", "sc", "malformed", "shard", "raw", value,
                                        "application/json", NOW)]
    assert st.batch.tally.dead == {("sendcloud", "sc", "malformed"): 1}
    [(topic, key, _, _)] = st.batch.events
    assert (topic, key) == ("p.soft_bounce", b"dave@126.com")
    assert st.batch.tally.events == {("sendcloud", "sc", "soft_bounce", "poll"): 1}


async def test_a_throttled_answer_in_raw_is_dead_lettered_as_throttled():
    # 429 with an HTTP-date Retry-After: read with the page's headers, against the time it was received
    value = page_value(429, {"retry-after": "Mon, 02 Nov 2026 07:05:00 GMT"}, b"")
    st = staging()
    st.stage_raw(records(value), NOW)
    assert st.batch.dead == [DeadLetter("sendcloud", "sc", "throttled", "shard", "raw", value,
                                        "application/json", NOW)]
    assert st.batch.events == [] and st.batch.raw_offset == 11


# -- observations set aside -------------------------------------------------------------------------


async def test_a_status_exactly_at_the_clock_skew_is_trusted():
    st = staging()
    assert st.observe(SC, [obs("e1", EventType.INVALID, NOW + timedelta(seconds=300))], Source.POLL, NOW) == 1
    assert st.batch.dead == []
    assert st.observe(SC, [obs("e2", EventType.INVALID, NOW + timedelta(seconds=301))], Source.POLL, NOW) == 0
    assert [d.reason for d in st.batch.dead] == ["future_time"]


async def test_a_future_status_is_set_aside_with_its_fields_and_the_next_one_still_counts():
    st = staging()
    ahead = obs("e1", EventType.INVALID, NOW + timedelta(hours=1), raw={"emailId": "e1"})
    assert st.observe(SC, [ahead, obs("e2", EventType.INVALID)], Source.WEBHOOK, NOW) == 1
    assert st.batch.dead == [DeadLetter("sendcloud", "sc", "future_time", "shard", "record", b'{"emailId":"e1"}',
                                        "application/json", NOW)]
    assert st.batch.tally.dead == {("sendcloud", "sc", "future_time"): 1}
    assert len(st.batch.events) == 1


async def test_a_record_too_deep_to_encode_keeps_its_id_and_status_cut_to_the_caps():
    st = staging()
    long_id, status = "i" * 600, "s" * 200                    # over the caps: field_too_long
    bad = Observation(email_id=long_id, recipient="a@x.test", type=EventType.INVALID, reason=None,
                      occurred_at=NOW, provider_status=status, raw=deep(300))
    assert st.observe(SC, [bad, obs("e2", EventType.INVALID)], Source.POLL, NOW) == 1
    body = b'{"email_id":"' + b"i" * 512 + b'","provider_status":"' + b"s" * 128 + b'"}'
    assert st.batch.dead == [DeadLetter("sendcloud", "sc", "field_too_long", "shard", "row", body,
                                        "application/json", NOW)]
    assert st.batch.tally.dead == {("sendcloud", "sc", "field_too_long"): 1}


def at_size(email_id: str, size: int) -> Observation:
    """An observation whose event (with `raw`, CONFIG has emit_raw on) encodes to `size` bytes: each
    character of the ASCII padding adds one byte."""
    def make(pad: int) -> Observation:
        return obs(email_id, EventType.INVALID, raw={"pad": "y" * pad})

    topics = staging().topics
    base = len(event_record(topics, StatusEvent.from_observation(
        make(0), provider=Provider.SENDCLOUD, account="sc", source=Source.WEBHOOK, observed_at=NOW,
        emit_raw=True))[2])
    return make(size - base)


async def test_an_event_of_exactly_the_largest_size_is_emitted():
    st = staging()
    assert st.observe(SC, [at_size("e1", 524_288)], Source.WEBHOOK, NOW) == 1
    assert [len(e[2]) for e in st.batch.events] == [524_288]
    assert st.batch.dead == []


async def test_an_event_one_byte_too_large_is_set_aside_as_a_record_and_the_next_one_still_counts():
    st = staging()
    assert st.observe(SC, [at_size("e1", 524_289), obs("e2", EventType.INVALID)], Source.WEBHOOK, NOW) == 1
    [letter] = st.batch.dead
    assert (letter.reason, letter.part, letter.received_at) == ("event_too_large", "record", NOW)
    assert [orjson.loads(e[2])["email_id"] for e in st.batch.events] == ["e2"]


# -- dedup settings reaching decide -----------------------------------------------------------------


async def test_soft_bounces_within_the_configured_tolerance_are_one_attempt():
    st = staging()
    bounces = [obs("e1", EventType.SOFT_BOUNCE), obs("e1", EventType.SOFT_BOUNCE, NOW + timedelta(seconds=3))]
    assert st.observe(SC, bounces, Source.WEBHOOK, NOW) == 1   # 3 s apart, tolerance 5 s: a duplicate
    assert st.batch.tally.drops == {("sendcloud", "sc", "duplicate"): 1}


async def test_a_status_known_only_by_when_it_was_seen_does_not_make_an_earlier_one_stale():
    st = staging()
    later = NOW + timedelta(hours=1)
    assert st.observe(SC, [obs("e1", EventType.INVALID, later, exact=False)], Source.POLL, later) == 1
    assert st.observe(SC, [obs("e1", EventType.SOFT_BOUNCE)], Source.WEBHOOK, later) == 1
    assert st.batch.tally.drops == {}


# -- poison ------------------------------------------------------------------------------------------


async def test_a_poisoned_record_without_a_value_is_set_aside_empty_and_counted_in_the_size():
    st = staging()
    st.stage_raw(records(b"garbage"), NOW)                     # size 1
    st.stage_poison(SimpleNamespace(offset=11, value=None), NOW)
    assert st.batch.dead[1:] == [DeadLetter("unknown", "unknown", "poison_record", "shard", "raw", b"",
                                            "application/json", NOW)]
    assert (st.batch.size, st.batch.raw_offset) == (2, 12)


# -- replays -----------------------------------------------------------------------------------------


def signed(record: dict, key: str = "sig-1") -> bytes:
    return raw.encode(raw.WebhookRecord(Provider.SENDCLOUD, "sc", RECEIVED, record, replay=key))


def deliver(email_id: str) -> dict:
    return {"event": "deliver", "emailId": email_id, "recipient": "Bob@Example.com", "timestamp": "1793602700000"}


async def test_the_replay_entry_is_keyed_by_provider_account_and_signature():
    st = staging()
    st.stage_raw(records(signed(deliver("m1$bob@example.com"))), NOW)
    assert [k for k, _ in st.batch.state if k[:1] == b"r"] == [b"r\x32\x8e\x11\xe0\x41\xd2\x11\x7e"]
    assert list(st.batch.replays) == [SIG1_KEY]
    # the key written out by hand above is the documented hash
    assert hashlib.blake2b(b"sendcloud\x1fsc\x1fsig-1", digest_size=8).digest() == SIG1_KEY.to_bytes(8, "big")


async def test_a_replay_entry_tombstoned_is_forgotten_on_commit():
    st = staging()
    st.stage_raw(records(signed(deliver("m1$bob@example.com"))), NOW)
    st.committed(st.take(), NOW.timestamp())
    st.stage_deletions([], replays=[SIG1_KEY])
    assert st.batch.state == [(b"r\x32\x8e\x11\xe0\x41\xd2\x11\x7e", None)]
    assert st.batch.replays == {SIG1_KEY: None} and st.batch.overlay == {}
    assert st.replays.get(SIG1_KEY) is not None                # memory unchanged before the commit
    st.committed(st.take(), NOW.timestamp())
    assert st.replays.get(SIG1_KEY) is None
    # sig-1 with another record is now a new delivery, not a replay
    st.stage_raw(records(signed(deliver("m2$alice@example.com"))), NOW)
    assert st.batch.dead == [] and len(st.batch.events) == 1


# -- id learning -------------------------------------------------------------------------------------


async def test_a_webhook_that_knows_the_send_time_teaches_it(monkeypatch):
    sent = RECEIVED - timedelta(hours=2)                       # 1793602800 - 7200 = 1793595600

    def with_sent_at(acct, record):
        return [Observation(email_id="8001", recipient="box@example.net", type=None, reason=None,
                            occurred_at=RECEIVED, provider_status="ok_sent", sent_at=sent)]

    monkeypatch.setattr(unisender, "webhook_observations", with_sent_at)
    st = staging()
    st.stage_raw(records(raw.encode(raw.WebhookRecord(Provider.UNISENDER, UNI.name, RECEIVED, {"x": 1}))), NOW)
    assert list(st.batch.learned.values()) == [IdChange("uni", "8001", Tracked("box@example.net", 1_793_595_600.0, "ok_sent"))]
