"""Worker CPU per polled row (issue 14): the faster paths give exactly what the plain ones gave.

A page's dedup keys are hashed with the account's part hashed once (`email_keys`) and looked up in
the table in one vectorised step (`DedupTable.words`, `Staging.observe`); an event's JSON leaves whole-second UTC
times to orjson (`StatusEvent.encode`)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import numpy as np
import orjson
import pytest

from tests.integration.harness import worker_config
from worker.config import parse_config
from worker.dedup import DedupTable, decide, email_key, email_keys, hours_since_2020
from worker.model import EventType, Observation, Provider, Reason, Scope, Smtp, Source, StatusEvent, rfc3339
from worker.staging import Staging, retention_secs
from worker.state import Restored, dedup_key, dedup_value

# -- email_keys -----------------------------------------------------------------------------------


def test_email_keys_are_email_key_of_each_id_in_order():
    ids = ["m1$bob@example.com", "", "m1$bob@example.com", "邮件-1$李@例子.中国", "x" * 600]
    assert email_keys("sendcloud", "sc", ids) == [email_key("sendcloud", "sc", i) for i in ids]
    assert email_keys("engagelab", "other", iter(ids[:2])) == [email_key("engagelab", "other", i) for i in ids[:2]]
    assert email_keys("sendcloud", "sc", []) == []


def test_email_keys_keep_the_account_apart_from_the_id():
    # the separator is hashed: account "a" with id "b\x1fc" is not account "a\x1fb" with id "c"
    assert email_keys("p", "a", ["b\x1fc"]) == [email_key("p", "a", "b\x1fc")]
    assert email_keys("p", "a", ["id"]) != email_keys("p", "b", ["id"])


# -- DedupTable.words --------------------------------------------------------------------------------


def hand_written_table() -> DedupTable:
    table = DedupTable()
    table.load(np.array([10, 30, 20, 2**64 - 2], dtype=np.uint64), np.array([101, 301, 201, 7], dtype=np.uint64))
    table.put(40, 401)      # only in the recent writes
    table.put(30, 302)      # a recent write shadows the column
    table.delete(20)        # a recent deletion hides the column's word
    return table


@pytest.mark.parametrize("keys", [
    [],
    [30],
    [5, 30],                                            # fewer than FEW: one get each
    [30, 5, 40],
    [30, 5, 40, 10, 20, 2**64 - 1, 2**64 - 2, 30],      # FEW or more: one vectorised step; 30 twice
    [2**64 - 2] * 5,
])
def test_words_are_the_gets_of_each_key(keys):
    table = hand_written_table()
    expected = [table.get(k) or 0 for k in keys]
    assert table.words(keys) == expected
    assert all(type(w) is int for w in table.words(keys))
    table.merge()
    assert table.words(keys) == expected


def test_words_of_a_few_keys_and_of_many_agree():
    table = hand_written_table()
    keys = [40, 30, 20, 10, 99, 2**64 - 2]
    assert table.words(keys) == [401, 302, 0, 101, 0, 7]
    assert [table.words([k])[0] for k in keys] == table.words(keys)
    assert DedupTable().words([1, 2, 3, 4, 5]) == [0, 0, 0, 0, 0]


# -- a page's lookup in one step --------------------------------------------------------------------

NOW = datetime(2026, 11, 2, 8, 0, tzinfo=timezone.utc)
ACCOUNTS = [{"name": "sc", "provider": "sendcloud", "credentials": {"api_user": "u", "api_key_env": "K"},
             "webhook": {"enabled": False}}]
CONFIG = parse_config(worker_config("127.0.0.1:9", "p", ACCOUNTS, shards=1), {"K": "key"})
[SC] = CONFIG.accounts
RETENTION = retention_secs(CONFIG, SC)


def obs(email_id: str, type_: EventType | None, at: datetime = NOW) -> Observation:
    return Observation(email_id=email_id, recipient="Bob@Example.com", type=type_, reason=None, occurred_at=at,
                       provider_status="s")


def word(type_: EventType, at: datetime) -> int:
    occurred = int(at.timestamp())
    return decide(None, type_, occurred, hours_since_2020(occurred + RETENTION), 0.0)[1]  # type: ignore[return-value]


def key(email_id: str) -> int:
    return email_key("sendcloud", "sc", email_id)


async def test_a_page_is_decided_as_row_by_row_lookups_would_decide_it():
    hour = timedelta(hours=1)
    # the restored table (columns), then a committed batch (recent writes) on top of it
    restored = Restored(np.array([key("col-dup"), key("col-old"), key("gone")], dtype=np.uint64),
                        np.array([word(EventType.DELIVERED, NOW), word(EventType.SOFT_BOUNCE, NOW - hour),
                                  word(EventType.DELIVERED, NOW)], dtype=np.uint64))
    st = Staging(CONFIG, CONFIG.accounts, restored, NOW.timestamp())
    st.observe(SC, [obs("recent-dup", EventType.INVALID)], Source.POLL, NOW)
    st.committed(st.take(), NOW.timestamp())
    st.observe(SC, [obs("inflight", EventType.DELIVERED)], Source.POLL, NOW)
    inflight = st.take()                            # being committed: its decisions count
    st.stage_deletions([key("gone")])               # deleted in the open batch: absent from now on
    page = [
        obs("col-dup", EventType.DELIVERED),        # in the columns: a duplicate
        obs("col-old", EventType.DELIVERED),        # in the columns, an older soft bounce: new
        obs("recent-dup", EventType.INVALID),       # in the recent writes: a duplicate
        obs("inflight", EventType.DELIVERED),       # in the batch in flight: a duplicate
        obs("gone", EventType.DELIVERED),           # deleted in the open batch: new again
        obs("absent", EventType.DELIVERED),         # nowhere: new
        obs("ignored", None),                       # no type: ignored, not looked up
        obs("absent", EventType.DELIVERED),         # twice in one page: the second a duplicate
        obs("stale", EventType.SOFT_BOUNCE),
        obs("stale", EventType.INVALID, NOW - 2 * hour),   # older than the row before it: stale
    ]
    assert st.observe(SC, page, Source.POLL, NOW) == 4
    assert [orjson.loads(value)["email_id"] for _, _, value, _ in st.batch.events] == [
        "col-old", "gone", "absent", "stale"]
    assert st.batch.tally.drops == {("sendcloud", "sc", "duplicate"): 4, ("sendcloud", "sc", "stale"): 1}
    assert st.batch.tally.ignored == {("sendcloud", "sc"): 1}
    # the state written is the overlay, in page order (after the deletion)
    assert [k for k, _ in st.batch.state] == [dedup_key(key(i)) for i in ("gone", "col-old", "gone", "absent",
                                                                              "stale")]
    assert st.batch.state[2] == (dedup_key(key("gone")), dedup_value(word(EventType.DELIVERED, NOW)))
    st.committed(inflight, NOW.timestamp())
    assert st.table.get(key("inflight")) == word(EventType.DELIVERED, NOW)


def test_the_counted_emits_match_the_events():
    st = Staging(CONFIG, CONFIG.accounts, Restored.empty(), NOW.timestamp())
    assert st.observe(SC, [], Source.POLL, NOW) == 0
    assert st.observe(SC, [obs("a", EventType.DELIVERED), obs("b", EventType.DELIVERED)], Source.POLL, NOW) == 2
    assert len(st.batch.events) == 2


# -- an event's JSON --------------------------------------------------------------------------------


def event(occurred: datetime, sent: datetime | None, observed: datetime, **kw) -> StatusEvent:
    return StatusEvent(event_id="e" * 32, type=EventType.SOFT_BOUNCE, provider=Provider.SENDCLOUD, account="sc",
                       email_id="m$b@x.test", message_id=None, recipient="b@x.test", occurred_at=occurred,
                       sent_at=sent, observed_at=observed, source=Source.POLL, reason=Reason.OTHER,
                       provider_status="软退信", provider_sub_status="503", provider_message="451 4.7.1 later",
                       smtp=Smtp(451, "4.7.1"), scope=Scope.DOMAIN, attempt=2, **kw)


@pytest.mark.parametrize("at", [
    NOW,                                                        # UTC, whole seconds: orjson writes it
    NOW.replace(microsecond=1),                                 # a fraction under a millisecond: ".000"
    NOW.replace(microsecond=999_999),
    NOW.replace(microsecond=123_000),
    datetime(5, 1, 2, 3, 4, 5, tzinfo=UTC),                     # a year below 1000: four digits
    datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC),
    NOW.astimezone(timezone(timedelta(hours=8))),               # another zone: rfc3339 turns it to UTC
    NOW.astimezone(timezone(timedelta(0), "named")),            # UTC by offset, not the UTC object
    NOW.astimezone(ZoneInfo("Europe/Moscow")),
])
def test_encode_is_the_dict_as_json(at: datetime):
    for e in (event(at, at, at), event(at, None, NOW), event(NOW, at, at, raw={"k": [1, {"t": "x"}]})):
        assert e.encode() == orjson.dumps(e.to_dict())
        assert orjson.loads(e.encode())["occurred_at"] == rfc3339(e.occurred_at)


def test_to_dict_keeps_its_times_as_text():
    d = event(NOW, None, NOW.replace(microsecond=5000)).to_dict()
    assert (d["occurred_at"], d["sent_at"], d["observed_at"]) == ("2026-11-02T08:00:00Z", None,
                                                                  "2026-11-02T08:00:00.005Z")
