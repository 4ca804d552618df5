"""A shard's staging (worker.staging): what mutation testing found unpinned.

The configuration's own knobs reaching the batch (tolerance, emit_raw, retention, sender-side
rejections), the poll-page path of `_raw` records, what webhooks teach id-polled accounts, tallies,
batch sizes, dead-letter fields, expiry of tracked ids and closing. Expected values are literals;
the dedup word is worked out in the comment above it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import orjson
import pytest

from tests.integration.harness import worker_config
from worker import raw
from worker.config import parse_config
from worker.deadletter import DeadLetter
from worker.dedup import email_key
from worker.model import EventType, Observation, Provider, Source
from worker.poll.ids import Tracked
from worker.poll.sink import IdChange
from worker.providers import sendcloud
from worker.providers.base import PollQuery
from worker.staging import Batch, Staging, retention_secs
from worker.state import Restored

NOW = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)
NOW_TS = 1_793_606_400.0                      # NOW as Unix seconds
RECEIVED = NOW - timedelta(hours=1)           # when the worker received a record (before it is staged)
RECEIVED_TS = 1_793_602_800.0
ACCOUNTS = [
    {"name": "sc", "provider": "sendcloud", "credentials": {"api_user": "u", "api_key_env": "K"},
     "webhook": {"app_key_env": "K"}, "poll": {"lookback_days": 4}, "sender_rejection": "soft_bounce"},
    {"name": "uni", "provider": "unisender", "credentials": {"api_key_env": "K"},
     "poll": {"id_max_age_days": 10}},
]
CONFIG = parse_config(worker_config("127.0.0.1:9", "p", ACCOUNTS, shards=1, emit_raw=True,
                                    dedup={"tolerance_secs": 5, "webhook_horizon_days": 2}), {"K": "key"})
SC, UNI = CONFIG.accounts


def staging(restored: Restored | None = None) -> Staging:
    return Staging(CONFIG, CONFIG.accounts, restored or Restored.empty(), NOW_TS)


def records(*values: bytes | None, first_offset: int = 10) -> list[SimpleNamespace]:
    return [SimpleNamespace(offset=first_offset + i, value=v) for i, v in enumerate(values)]


def obs(email_id: str, type_: EventType | None, at: datetime = NOW, exact: bool = True, **kw) -> Observation:
    return Observation(email_id=email_id, recipient="Bob@Example.com", type=type_, reason=None, occurred_at=at,
                       provider_status="s", exact_time=exact, **kw)


def uni_webhook(email_id: int = 8001) -> bytes:
    """A UniSender email_status record as split_webhook returns it (a final soft bounce: mailbox full)."""
    record = {"login": "demo", "event_name": "email_status", "event_time": "2026-11-02 10:00:00",
              "email": "box@example.net", "status": "err_mailbox_full", "status_group": "error_group",
              "email_id": email_id}
    return raw.encode(raw.WebhookRecord(Provider.UNISENDER, "uni", RECEIVED, record))


# -- configuration reaching the batch -------------------------------------------------------------


def test_retention_is_the_poll_window_plus_the_webhook_horizon_plus_a_day():
    assert retention_secs(CONFIG, SC) == 604_800.0       # (lookback 4 + horizon 2 + 1) days
    assert retention_secs(CONFIG, UNI) == 1_123_200.0    # (id age 10 + horizon 2 + 1) days


async def test_the_dedup_word_written_carries_time_expiry_and_flags():
    st = staging()
    assert st.observe(SC, [obs("e1", EventType.INVALID)], Source.POLL, NOW) == 1
    # occurred 1793606400 = 0x6AE84300; expiry (1793606400 + 604800 - 1577836800) // 3600 = 60104
    # hours = 0x00EAC8; flags: invalid (2) | its once bit (1 << 4) = 0x12
    key = b"d" + email_key("sendcloud", "sc", "e1").to_bytes(8, "big")
    assert st.batch.state == [(key, b"\x6a\xe8\x43\x00\x00\xea\xc8\x12")]


async def test_the_configured_tolerance_separates_soft_bounces():
    st = staging()
    bounces = [obs("e1", EventType.SOFT_BOUNCE), obs("e1", EventType.SOFT_BOUNCE, NOW + timedelta(seconds=6))]
    assert st.observe(SC, bounces, Source.WEBHOOK, NOW) == 2   # 6 s apart, tolerance 5 s: two attempts


async def test_emit_raw_puts_the_providers_record_in_the_event():
    st = staging()
    st.observe(SC, [obs("e1", EventType.INVALID, raw={"emailId": "e1"})], Source.POLL, NOW)
    [(topic, _, value, _)] = st.batch.events
    assert topic == "p.invalid"
    assert orjson.loads(value)["raw"] == {"emailId": "e1"}


async def test_an_exact_time_judges_an_older_status_stale():
    st = staging()
    later = NOW + timedelta(hours=1)   # (observed when it happened: a time after its receipt is refused)
    st.observe(SC, [obs("e1", EventType.INVALID, later)], Source.POLL, later)
    assert st.observe(SC, [obs("e1", EventType.SOFT_BOUNCE)], Source.WEBHOOK, later) == 0
    assert st.batch.tally.drops == {("sendcloud", "sc", "stale"): 1}


async def test_observe_counts_every_outcome_and_goes_on_after_one():
    st = staging()
    batch = [obs("e0", None), obs("e1", EventType.INVALID), obs("e1", EventType.INVALID),
             obs("e2", EventType.DELIVERED)]
    assert st.observe(SC, batch, Source.POLL, NOW) == 2
    tally = st.batch.tally
    assert tally.ignored == {("sendcloud", "sc"): 1}
    assert tally.drops == {("sendcloud", "sc", "duplicate"): 1}
    assert tally.events == {("sendcloud", "sc", "invalid", "poll"): 1, ("sendcloud", "sc", "delivered", "poll"): 1}


# -- _raw records ---------------------------------------------------------------------------------


async def test_a_poll_page_record_becomes_poll_events_observed_when_it_was_received():
    body = orjson.dumps({"result": True, "statusCode": 200, "message": "请求成功", "info": {
        "total": "1", "voListSize": 1, "voList": [{
            "emailId": "1793606399000_15_1_1.sc-1-inbound0$dave@126.com", "status": "无效邮件-IP、域名被拒",
            "subStatus": "405", "subStatDesc": "IP、域名被拒", "apiUser": "u", "recipients": "Dave@126.com",
            "requestTime": "2026-11-02 14:58:01", "modifiedTime": "2026-11-02 14:59:03", "sendLog": None}]}})
    page = raw.PollPageRecord(Provider.SENDCLOUD, "sc", RECEIVED, PollQuery(send_date=None, limit=100), 200,
                              {"content-type": "application/json"}, body)
    st = staging()
    st.stage_raw(records(raw.encode(page)), NOW)
    assert st.batch.dead == []
    [(topic, key, value, _)] = st.batch.events
    event = orjson.loads(value)
    # 405 is a rejection of the sender's IP or domain: this account counts those as soft bounces
    assert (topic, key) == ("p.soft_bounce", b"dave@126.com")
    assert (event["type"], event["source"], event["occurred_at"], event["observed_at"]) == (
        "soft_bounce", "poll", "2026-11-02T06:59:03Z", "2026-11-02T07:00:00Z")
    assert st.batch.tally.events == {("sendcloud", "sc", "soft_bounce", "poll"): 1}


async def test_a_webhook_record_is_read_with_the_accounts_settings():
    record = {"event": "invalid", "emailId": "m5$bob@example.com", "recipient": "Bob@Example.com",
              "substat": 405, "timestamp": "1793602700000"}   # 06:58:20Z, before it was received
    st = staging()
    st.stage_raw(records(raw.encode(raw.WebhookRecord(Provider.SENDCLOUD, "sc", RECEIVED, record))), NOW)
    [(topic, _, value, _)] = st.batch.events
    assert topic == "p.soft_bounce"
    assert orjson.loads(value)["observed_at"] == "2026-11-02T07:00:00Z"


async def test_a_dead_letter_is_stamped_with_the_staging_time_and_counted():
    st = staging()
    st.stage_raw(records(b"garbage"), NOW)
    assert st.batch.dead == [DeadLetter("unknown", "unknown", "bad_raw_record", "shard", "raw", b"garbage",
                                        "application/json", NOW)]
    assert st.batch.tally.dead == {("unknown", "unknown", "bad_raw_record"): 1}


async def test_an_untyped_error_from_a_provider_module_dead_letters_the_record(monkeypatch):
    def buggy(acct, record):
        raise KeyError("a provider bug")

    monkeypatch.setattr(sendcloud, "webhook_observations", buggy)
    value = raw.encode(raw.WebhookRecord(Provider.SENDCLOUD, "sc", RECEIVED, {"event": "deliver"}))
    st = staging()
    st.stage_raw(records(value), NOW)
    assert st.batch.dead == [DeadLetter("sendcloud", "sc", "malformed", "shard", "raw", value,
                                        "application/json", NOW)]
    assert st.batch.tally.dead == {("sendcloud", "sc", "malformed"): 1}


async def test_the_batch_size_counts_records_persists_and_deletions():
    st = staging()
    st.stage_raw(records(b"a", b"b", b"c"), NOW)
    assert (st.batch.size, st.batch.raw_offset) == (3, 13)
    st.persist([])
    assert st.batch.size == 4
    st.stage_deletions([], [IdChange("uni", "7", None)])
    assert st.batch.size == 5


# -- what webhooks teach id-polled accounts -------------------------------------------------------


async def test_a_webhook_for_an_id_polled_account_teaches_its_tracker_after_the_commit():
    st = staging()
    st.stage_raw(records(uni_webhook()), NOW)
    assert st.batch.dead == [] and len(st.batch.events) == 1
    # the id's state: final, so only its sent time (unknown: the time received), in the fixed form
    write = (b"uuni|8001", b'{"r":"","s":1793602800.000,"st":null,"f":true}')
    assert write in st.batch.state
    learned = Tracked("box@example.net", RECEIVED_TS, "err_mailbox_full", final=True)
    assert list(st.batch.learned.values()) == [IdChange("uni", "8001", learned)]
    assert st.trackers["uni"].ids == {}
    st.committed(st.take(), NOW_TS)
    assert st.trackers["uni"].ids == {} and "8001" in st.trackers["uni"].settled


async def test_a_webhook_for_an_id_already_final_teaches_nothing():
    restored = Restored.empty()
    restored.ids["uni"] = {"8001": Tracked("box@example.net", NOW_TS - 60, "ok_delivered", final=True)}
    st = staging(restored)
    st.stage_raw(records(uni_webhook()), NOW)
    assert st.batch.dead == []
    assert [k for k, _ in st.batch.state if k.startswith(b"u")] == []
    assert list(st.batch.learned.values()) == []


async def test_restored_ids_are_due_from_the_start():
    restored = Restored.empty()
    restored.ids["uni"] = {"7": Tracked("r@x.test", NOW_TS - 60)}
    st = staging(restored)
    assert set(st.trackers) == {"uni"}
    assert st.trackers["uni"].due(NOW_TS - 1) == []
    assert st.trackers["uni"].due(NOW_TS) == ["7"]


# -- expiry and closing ---------------------------------------------------------------------------


async def test_tracked_ids_past_their_age_are_listed_and_their_deletion_staged():
    restored = Restored.empty()
    restored.ids["uni"] = {"old": Tracked("o@x", NOW_TS - 11 * 86400), "new": Tracked("n@x", NOW_TS - 86400)}
    st = staging(restored)
    expired = st.expired(NOW_TS).ids
    assert expired == [IdChange("uni", "old", None)]
    st.stage_deletions([], expired)
    assert st.batch.state == [(b"uuni|old", None)]
    assert list(st.batch.learned.values()) == [IdChange("uni", "old", None)]
    st.committed(st.take(), NOW_TS)
    assert set(st.trackers["uni"].ids) == {"new"}


async def test_close_fails_the_open_batchs_waiters_and_opens_a_new_batch():
    st = staging()
    st.stage_raw(records(b"garbage"), NOW)
    waiter = st.waiter()
    closing = RuntimeError("shard closing")
    st.close(closing)
    assert waiter.exception() is closing
    assert isinstance(st.batch, Batch) and st.batch.empty


@pytest.mark.parametrize("value", [b"garbage", None])
async def test_dead_letters_keep_the_value_as_received(value):
    st = staging()
    st.stage_raw(records(value), NOW)
    assert [d.body for d in st.batch.dead] == [value or b""]
