"""A shard's staging (worker.staging) through its seams: `_raw` records in, a batch of writes out,
memory changed only by `committed`. No Kafka: the batch is inspected as the transaction would
send it."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace

import orjson
import pytest

from tests.integration.harness import worker_config
from worker import raw
from worker.config import parse_config
from worker.dedup import email_key
from worker.errors import CommitFailed
from worker.model import EventType, Observation, Provider, Source
from worker.poll.ids import Tracked
from worker.poll.scheduler import Cursor
from worker.poll.sink import CursorChange, IdChange
from worker.staging import Staging
from worker.state import Restored, cursor_key, dedup_key, encode_cursor, encode_tracked, id_key

NOW = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)
ENV = {"K": "key"}
ACCOUNTS = [
    {"name": "sc", "provider": "sendcloud", "credentials": {"api_user": "u", "api_key_env": "K"},
     "webhook": {"app_key_env": "K"}},
    {"name": "uni", "provider": "unisender", "credentials": {"api_key_env": "K"}},
]
CONFIG = parse_config(worker_config("127.0.0.1:9", "p", ACCOUNTS, shards=1), ENV)
SC, UNI = CONFIG.accounts


def staging() -> Staging:
    return Staging(CONFIG, CONFIG.accounts, Restored.empty(), NOW.timestamp())


def deliver(email_id: str, ms: int = 1_793_606_400_000) -> dict:
    """A SendCloud `deliver` webhook record, as split_webhook returns it."""
    return {"event": "deliver", "emailId": email_id, "recipient": "Bob@Example.com", "timestamp": str(ms)}


def records(*values: bytes, first_offset: int = 40) -> list[SimpleNamespace]:
    return [SimpleNamespace(offset=first_offset + i, value=v) for i, v in enumerate(values)]


def webhook(record: dict, account: str = "sc") -> bytes:
    return raw.encode(raw.WebhookRecord(Provider.SENDCLOUD, account, NOW, record))


async def test_a_webhook_record_becomes_an_event_and_its_state_in_one_batch():
    st = staging()
    st.stage_raw(records(webhook(deliver("m1$bob@example.com"))), NOW)
    batch = st.batch
    assert batch.raw_offset == 41 and batch.size == 1
    [(topic, key, value, headers)] = batch.events
    event = orjson.loads(value)
    assert topic == "p.delivered" and key == b"bob@example.com"
    assert (event["type"], event["source"], event["recipient"], event["occurred_at"]) == (
        "delivered", "webhook", "bob@example.com", "2026-11-02T08:00:00Z")
    k = email_key("sendcloud", "sc", "m1$bob@example.com")
    assert [w[0] for w in batch.state] == [dedup_key(k)]
    assert st.table.get(k) is None                       # nothing in memory before the commit
    done = st.waiter()
    st.committed(st.take(), NOW.timestamp())
    assert st.table.get(k) is not None and done.done() and done.exception() is None


async def test_the_batch_in_flight_dedups_the_next_one():
    st = staging()
    st.stage_raw(records(webhook(deliver("m1$bob@example.com"))), NOW)
    inflight = st.take()                                 # being committed
    st.stage_raw(records(webhook(deliver("m1$bob@example.com")), first_offset=41), NOW)
    assert len(inflight.events) == 1 and st.batch.events == []
    assert st.batch.tally.drops == {("sendcloud", "sc", "duplicate"): 1}
    st.committed(inflight, NOW.timestamp())
    st.stage_raw(records(webhook(deliver("m1$bob@example.com")), first_offset=42), NOW)
    assert st.batch.events == []                         # and the table, once committed


async def test_a_failed_commit_leaves_memory_as_committed_and_fails_both_batches():
    st = staging()
    st.stage_raw(records(webhook(deliver("m1$bob@example.com"))), NOW)
    first = st.waiter()
    inflight = st.take()
    st.stage_raw(records(webhook(deliver("m2$bob@example.com")), first_offset=41), NOW)
    second = st.waiter()
    st.failed(inflight, CommitFailed("kafka"))
    assert isinstance(first.exception(), CommitFailed) and isinstance(second.exception(), CommitFailed)
    assert len(st.table) == 0 and st.batch.events == [] and st.batch.raw_offset is None
    st.stage_raw(records(webhook(deliver("m1$bob@example.com"))), NOW)   # replayed: emitted again
    assert len(st.batch.events) == 1


@pytest.mark.parametrize(("value", "provider", "account", "reason"), [
    (b"garbage", "unknown", "unknown", "bad_raw_record"),
    (b'{"v": 9, "kind": "webhook"}', "unknown", "unknown", "unknown_raw_version"),
    (None, "unknown", "unknown", "bad_raw_record"),
    (raw.encode(raw.WebhookRecord(Provider.SENDCLOUD, "elsewhere", NOW, deliver("x$y@z"))),
     "sendcloud", "elsewhere", "unknown_account"),
    (raw.encode(raw.WebhookRecord(Provider.SENDCLOUD, "sc", NOW, {"event": "deliver"})),
     "sendcloud", "sc", "malformed"),
])
async def test_unusable_records_are_dead_lettered_with_the_raw_value(value, provider, account, reason):
    st = staging()
    st.stage_raw(records(value, webhook(deliver("m9$a@b.c"))), NOW)
    [letter] = st.batch.dead
    assert (letter.provider, letter.account, letter.reason, letter.source, letter.part) == (
        provider, account, reason, "shard", "raw")
    assert letter.body == (value or b"")
    assert len(st.batch.events) == 1 and st.batch.raw_offset == 42   # the next record still counts


async def test_ids_learned_from_the_sent_feed_reach_the_tracker_only_after_the_commit():
    st = staging()
    sent = raw.SentMessage(Provider.UNISENDER, "uni", NOW, "77", "r@x.test", NOW)
    st.stage_raw(records(raw.encode(sent)), NOW)
    assert st.batch.state == [(id_key("uni", "77"), encode_tracked(Tracked("r@x.test", NOW.timestamp())))]
    tracker = st.trackers["uni"]
    assert len(tracker) == 0
    st.committed(st.take(), NOW.timestamp())
    assert tracker.ids["77"] == Tracked("r@x.test", NOW.timestamp())
    assert tracker.due(NOW.timestamp()) == ["77"]


async def test_poll_observations_and_their_cursor_commit_together():
    st = staging()
    obs = Observation(email_id="e1", recipient="A@x.test", type=EventType.INVALID, reason=None,
                      occurred_at=NOW, provider_status="无效邮件")
    assert st.observe(SC, [obs, obs], Source.POLL, NOW) == 1     # the second is a duplicate
    cursor = Cursor(interval=600.0, offset=100, in_sweep=True)
    done = st.persist([CursorChange("sc", "2026-11-02|invalid", cursor), IdChange("uni", "5", None)])
    assert st.batch.state[-2:] == [(cursor_key("sc", "2026-11-02|invalid"), encode_cursor(cursor)),
                                   (id_key("uni", "5"), None)]
    assert not done.done()
    st.committed(st.take(), NOW.timestamp())
    assert done.done()


async def test_expired_entries_are_tombstoned_and_forgotten_on_commit():
    st = staging()
    st.stage_raw(records(webhook(deliver("old$a@b.c"))), NOW)
    st.committed(st.take(), NOW.timestamp())
    k = email_key("sendcloud", "sc", "old$a@b.c")
    assert st.expired(NOW.timestamp()).keys == []
    far = NOW.timestamp() + 400 * 86400
    assert st.expired(far).keys == [k]
    st.stage_deletions([k])
    assert st.batch.state == [(dedup_key(k), None)]
    assert st.table.get(k) is not None
    st.committed(st.take(), far)
    assert st.table.get(k) is None


# -- no poison, no forged times (issue 11) ----------------------------------------------------------


async def test_a_status_dated_in_the_future_is_dead_lettered_and_never_enters_dedup():
    st = staging()
    ahead = deliver("m1$bob@example.com", ms=1_793_606_400_000 + 301_000)    # 5 min 1 s after receipt
    st.stage_raw(records(webhook(ahead)), NOW)
    [letter] = st.batch.dead
    assert (letter.reason, letter.part, letter.source) == ("future_time", "record", "shard")
    assert orjson.loads(letter.body) == ahead
    assert st.batch.events == [] and st.batch.overlay == {}
    st.stage_raw(records(webhook(deliver("m1$bob@example.com", ms=1_793_606_400_000 + 299_000))), NOW)
    assert len(st.batch.events) == 1                  # within the clock skew: fine


async def test_oversized_fields_and_events_are_dead_lettered_before_they_reach_a_transaction():
    st = staging()
    long_id = "x" * 513 + "$bob@example.com"
    obs = Observation(email_id=long_id, recipient="A@x.test", type=EventType.INVALID, reason=None,
                      occurred_at=NOW, provider_status="无效邮件", raw={"emailId": long_id})
    assert st.observe(SC, [obs], Source.POLL, NOW) == 0
    [letter] = st.batch.dead
    assert (letter.reason, letter.part) == ("field_too_long", "row")
    big = parse_config(worker_config("127.0.0.1:9", "p", ACCOUNTS, shards=1, emit_raw=True), ENV)
    st = Staging(big, big.accounts, Restored.empty(), NOW.timestamp())
    fat = Observation(email_id="e2", recipient="A@x.test", type=EventType.INVALID, reason=None,
                      occurred_at=NOW, provider_status="无效邮件", raw={"log": "y" * 600_000})
    assert st.observe(big.accounts[0], [fat], Source.POLL, NOW) == 0
    assert [d.reason for d in st.batch.dead] == ["event_too_large"] and st.batch.events == []


async def test_a_poisoned_record_is_set_aside_whole_and_the_offset_moves_past_it():
    st = staging()
    value = webhook(deliver("m1$bob@example.com"))
    st.stage_poison(SimpleNamespace(offset=77, value=value), NOW)
    [letter] = st.batch.dead
    assert (letter.provider, letter.account, letter.reason, letter.part, letter.body) == (
        "sendcloud", "sc", "poison_record", "raw", value)
    assert st.batch.raw_offset == 78 and st.batch.events == []


async def test_a_signature_reused_with_another_record_is_a_replay_and_never_emitted():
    st = staging()
    genuine = deliver("m1$bob@example.com")
    forged = {**genuine, "event": "invalid", "emailId": "m2$alice@example.com", "recipient": "alice@example.com"}

    def signed(record: dict, key: str = "sig-1") -> bytes:
        return raw.encode(raw.WebhookRecord(Provider.SENDCLOUD, "sc", NOW, record, replay=key))

    st.stage_raw(records(signed(genuine)), NOW)
    assert len(st.batch.events) == 1 and st.batch.dead == []
    inflight = st.take()                                        # the memory of sig-1 is in flight
    st.stage_raw(records(signed(forged), signed(genuine), signed(forged, key="sig-2"), first_offset=41), NOW)
    reasons = [(d.reason, d.part) for d in st.batch.dead]
    assert reasons == [("replayed_signature", "raw")]           # sig-1 with another record
    assert st.batch.dead[0].body == signed(forged)
    # the genuine retry is only a duplicate; sig-2 is a new delivery and its event goes out
    assert [orjson.loads(e[2])["email_id"] for e in st.batch.events] == ["m2$alice@example.com"]
    st.committed(inflight, NOW.timestamp())
    st.committed(st.take(), NOW.timestamp())
    # remembered across batches, and in `_state` under key kind r, until the window has passed
    st.stage_raw(records(signed({**genuine, "event": "soft_bounce"})), NOW)
    assert [d.reason for d in st.batch.dead] == ["replayed_signature"]
    window = CONFIG.accounts[0].webhook.replay_window_secs
    assert st.expired(NOW.timestamp() + window - 3600).replays == []
    assert len(st.expired(NOW.timestamp() + window + 3600).replays) == 2


async def test_replay_entries_are_written_to_state_and_restored():
    st = staging()
    st.stage_raw(records(raw.encode(raw.WebhookRecord(Provider.SENDCLOUD, "sc", NOW, deliver("m1$b@x.test"),
                                                      replay="sig-9"))), NOW)
    [replay_write] = [w for w in st.batch.state if w[0][:1] == b"r"]
    restored = Restored.empty()
    restored.add(*replay_write)
    again = Staging(CONFIG, CONFIG.accounts, restored.finish(), NOW.timestamp())
    forged = raw.encode(raw.WebhookRecord(Provider.SENDCLOUD, "sc", NOW, deliver("m7$c@x.test"), replay="sig-9"))
    again.stage_raw(records(forged), NOW)
    assert [d.reason for d in again.batch.dead] == ["replayed_signature"]


GAP_CONFIG = parse_config({**worker_config("127.0.0.1:9", "p", ACCOUNTS[:1], shards=1),
                           "inputs": {"sent_topic": "sent"}}, ENV)


async def test_a_gap_driven_account_tracks_what_was_sent_until_a_delivery_status_settles_it():
    """Issue 14: with a sent feed, a SendCloud account is gap-driven: sent records are tracked (due
    once their gap has passed), an open says nothing, a delivered webhook settles the id."""
    [sc] = GAP_CONFIG.accounts
    assert sc.poll.gap_driven
    st = Staging(GAP_CONFIG, GAP_CONFIG.accounts, Restored.empty(), NOW.timestamp())
    tracker = st.trackers["sc"]
    sent = raw.SentMessage(Provider.SENDCLOUD, "sc", NOW, "m1$bob@example.com", "bob@example.com", NOW)
    opened = {"event": "open", "emailId": "m1$bob@example.com", "recipient": "bob@example.com",
              "timestamp": "1793606400000"}
    st.stage_raw(records(raw.encode(sent), webhook(opened)), NOW)
    assert st.batch.state == [(id_key("sc", "m1$bob@example.com"),
                               encode_tracked(Tracked("bob@example.com", NOW.timestamp())))]   # nothing for the open
    assert tracker.fed                                   # the date sweeps may now slow down
    st.committed(st.take(), NOW.timestamp())
    assert tracker.claim(NOW.timestamp() + 899) == []
    assert tracker.due(NOW.timestamp() + 960) == ["m1$bob@example.com"]   # gap 900 s, then a minute's linger
    st.stage_raw(records(webhook(deliver("m1$bob@example.com")), first_offset=42), NOW)
    # settled: its record is tombstoned (issue 15: a gap-driven final id is remembered by hash only)
    assert (id_key("sc", "m1$bob@example.com"), None) in st.batch.state
    st.committed(st.take(), NOW.timestamp())
    assert "m1$bob@example.com" in tracker.settled and "m1$bob@example.com" not in tracker.ids
    assert tracker.claim(NOW.timestamp() + 10_000) == []
    # a late sent record for it changes nothing and writes nothing
    st.stage_raw(records(raw.encode(sent), first_offset=43), NOW)
    assert st.batch.state == [] and tracker.learn("m1$bob@example.com", "bob@example.com", NOW.timestamp(),
                                                   None, False, NOW.timestamp() + 60) is False
