"""The expiry pass off the event loop (issue 15): its scan runs over snapshots in a thread, so a
key written after the snapshot must not be tombstoned by what the scan found.

Times are worked by hand: a SendCloud entry's expiry is its last update + `lookback_days` (3) +
`dedup.webhook_horizon_days` (3) + 1 day = 7 days (worker.staging), so an email delivered at NOW
is expired 8 days later and one that complained 8 days later is not.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import numpy as np
import pytest

from tests.integration.harness import worker_config
from tests.unit.test_staging import ACCOUNTS, GAP_CONFIG, NOW, deliver, records, staging
from worker import raw
from worker.config import parse_config
from worker.dedup import DedupTable, email_key, expiry_test, word_expired
from worker.model import Provider
from worker.poll.ids import Tracked
from worker.staging import Staging
from worker.state import REPLAY, Restored, dedup_key

LATER = NOW + timedelta(days=8)


def at(when, record: dict, replay: str | None = None) -> bytes:
    return raw.encode(raw.WebhookRecord(Provider.SENDCLOUD, "sc", when, record, replay=replay))


def ms(when) -> int:
    return int(when.timestamp() * 1000)


async def test_a_key_written_after_the_scan_is_not_tombstoned_and_the_others_are():
    st = staging()
    st.stage_raw(records(at(NOW, deliver("a$a@x.test", ms(NOW))), at(NOW, deliver("b$b@x.test", ms(NOW)))), NOW)
    st.committed(st.take(), NOW.timestamp())
    a, b = email_key("sendcloud", "sc", "a$a@x.test"), email_key("sendcloud", "sc", "b$b@x.test")
    scan = st.expiry_job(LATER.timestamp())              # the snapshot: both expired
    # meanwhile a complaint for a arrives and is staged (its entry now lives 7 more days)
    spam = {**deliver("a$a@x.test", ms(LATER)), "event": "report_spam"}
    st.stage_raw(records(at(LATER, spam), first_offset=50), LATER)
    found = await asyncio.get_running_loop().run_in_executor(None, scan)
    assert sorted(found.keys) == sorted([a, b])
    st.stage_deletions(found.keys, now=LATER.timestamp())
    tombstones = [key for key, value in st.batch.state if value is None]
    assert tombstones == [dedup_key(b)]
    assert st.batch.overlay[a] is not None and st.batch.overlay[b] is None
    st.committed(st.take(), LATER.timestamp())
    assert st.table.get(a) is not None and st.table.get(b) is None


async def test_without_now_every_key_found_is_tombstoned():
    st = staging()
    st.stage_raw(records(at(NOW, deliver("a$a@x.test", ms(NOW)))), NOW)
    st.committed(st.take(), NOW.timestamp())
    a = email_key("sendcloud", "sc", "a$a@x.test")
    st.stage_deletions([a])
    assert st.batch.state == [(dedup_key(a), None)]


async def test_a_replay_key_already_deleted_or_not_expired_is_not_tombstoned_again():
    st = staging()
    st.stage_raw(records(at(NOW, deliver("a$a@x.test", ms(NOW)), replay="sig-1"),
                         at(NOW, deliver("b$b@x.test", ms(NOW)), replay="sig-2")), NOW)
    st.committed(st.take(), NOW.timestamp())
    window = st.replay_window["sc"]
    after = NOW.timestamp() + window + 3600
    found = st.expired(after)
    assert len(found.replays) == 2
    first, second = found.replays
    assert st.expired(NOW.timestamp()).replays == []
    st.stage_deletions([], replays=[first], now=after)    # one tombstone staged...
    st.stage_deletions([], replays=[first, second], now=NOW.timestamp())   # ...before their expiry: none
    st.stage_deletions([], replays=[first, second], now=after)   # first is deleted already: second only
    assert [(key, value) for key, value in st.batch.state] == [
        (dedup_key(first, REPLAY), None), (dedup_key(second, REPLAY), None)]


async def test_hashed_final_ids_found_by_the_scan_are_dropped_by_account_without_tombstones():
    # a gap-driven SendCloud account (a sent feed): its final ids are kept by hash until
    # lookback_days (3) + 1 = 4 days after sending, with no `_state` record
    st = Staging(GAP_CONFIG, GAP_CONFIG.accounts, Restored.empty(), NOW.timestamp())
    tracker = st.trackers["sc"]
    for email_id, sent in (("m1$bob@x.test", NOW), ("m2$ann@x.test", NOW + timedelta(days=2))):
        st.stage_raw(records(raw.encode(raw.SentMessage(Provider.SENDCLOUD, "sc", sent, email_id, "r@x.test", sent)),
                             at(sent, deliver(email_id, ms(sent)))), sent)
        st.committed(st.take(), sent.timestamp())
    assert "m1$bob@x.test" in tracker.settled and "m2$ann@x.test" in tracker.settled
    after = (NOW + timedelta(days=4, seconds=1)).timestamp()
    found = await asyncio.get_running_loop().run_in_executor(None, st.expiry_job(after))
    assert found.ids == [] and len(found.hashed["sc"]) == 1    # m1 only, and nothing to tombstone
    assert st.drop_hashed("sc", found.hashed["sc"]) == 1
    assert "m1$bob@x.test" not in tracker.settled and "m2$ann@x.test" in tracker.settled


async def test_an_expiry_pass_merges_every_table_with_recent_writes_first():
    # a commit merges a table only at 65,536 recent writes (~100 B each); the hourly pass merges
    # whatever is pending, in a thread, so a small shard does not hold 65,536 per table
    st = staging()
    st.stage_raw(records(at(NOW, deliver("a$a@x.test", ms(NOW)), replay="sig-1")), NOW)
    st.committed(st.take(), NOW.timestamp())
    assert st.merge_off_loop() == []
    futures = st.merge_off_loop(every=True)
    assert len(futures) == 2                                  # the dedup table and the replay table
    assert st.merge_off_loop(every=True) == []               # being merged: not twice
    await asyncio.gather(*futures)
    a = email_key("sendcloud", "sc", "a$a@x.test")
    assert st.table._recent == {} and st.replays._recent == {}
    assert st.table._keys.tolist() == [a] and st.table.get(a) is not None


# -- the expiry test, by hand: hour H since 2020-01-01 00:00 UTC (1,577,836,800) starts at
# 1,577,836,800 + H x 3,600; an entry whose expiry hour is H is expired once the hour is past H

H = 60_000
HOUR_H = 1_577_836_800 + H * 3600                   # 1,793,836,800
PLAIN = (H << 8) | 1                                # occurred 0, expiry hour H, type code 1
BUSY = (1_793_000_000 << 32) | (1 << 31) | (H << 8) | 0x7F   # the other fields all set


@pytest.mark.parametrize(("now", "expired"), [
    (HOUR_H, False),                                # the expiry hour itself
    (HOUR_H + 3599, False),                         # its last second
    (HOUR_H + 3600, True),                          # the next hour
    (HOUR_H + 86_400 * 30, True),
    (HOUR_H - 3600, False),
])
def test_an_entry_expires_after_its_expiry_hour_on_the_loop_and_in_the_columns_alike(now, expired):
    for word in (PLAIN, BUSY):
        assert word_expired(word, now) is expired
        assert expiry_test(now)(np.array([word], dtype=np.uint64)).tolist() == [expired]


def test_a_deleted_word_is_never_expired():
    assert word_expired(0, HOUR_H + 10**9) is False


def test_recent_writes_become_columns_in_slices_in_their_order(monkeypatch):
    import worker.dedup as dedup
    monkeypatch.setattr(dedup, "DICT_SLICE", 3)
    writes = {7: 70, 1: 10, 9: 0, 4: 40, 2**64 - 1: 2**63, 5: 50, 3: 30}
    keys, words = dedup._dict_columns(writes)
    assert keys.dtype == words.dtype == np.uint64
    assert keys.tolist() == [7, 1, 9, 4, 2**64 - 1, 5, 3]
    assert words.tolist() == [70, 10, 0, 40, 2**63, 50, 30]
    empty_keys, empty_words = dedup._dict_columns({})
    assert empty_keys.tolist() == [] and empty_words.tolist() == []


def test_deleted_entries_are_never_listed_by_an_expiry_scan():
    # a deleted word is 0, and 0's expiry hour (0) is before any hour: the scan must skip it
    table = DedupTable()
    for key in range(1, 10):
        table.put(key, PLAIN)
    table.merge()
    table.delete(1)
    table.merge()                                   # one dead of nine: not compacted, a 0 stays
    assert table._keys.tolist()[0] == 1 and table._vals.tolist()[0] == 0
    table.delete(2)                                 # a deletion among the recent writes
    assert sorted(table.scan_job(expiry_test(HOUR_H + 3600))()) == [3, 4, 5, 6, 7, 8, 9]
    assert table.scan_job(expiry_test(HOUR_H))() == []


async def test_a_key_absent_or_already_deleted_gets_no_tombstone():
    st = staging()
    st.stage_raw(records(at(NOW, deliver("a$a@x.test", ms(NOW)))), NOW)
    st.committed(st.take(), NOW.timestamp())
    a, never = email_key("sendcloud", "sc", "a$a@x.test"), email_key("sendcloud", "sc", "never$n@x.test")
    st.stage_deletions([never], now=LATER.timestamp())          # in no batch and not in the table
    assert st.batch.state == []
    st.stage_deletions([a], now=LATER.timestamp())
    st.stage_deletions([a], now=LATER.timestamp())              # deleted in the open batch already
    assert st.batch.state == [(dedup_key(a), None)]


ID_CONFIG = parse_config({**worker_config("127.0.0.1:9", "p", ACCOUNTS, shards=1),
                          "inputs": {"sent_topic": "sent"}}, {"K": "key"})


def test_the_scan_lists_the_expired_ids_of_every_tracking_account():
    # UniSender ids age out after id_max_age_days (30), a gap-driven SendCloud account's after
    # lookback_days + 1 (4)
    restored = Restored.empty()
    month_ago = (NOW - timedelta(days=31)).timestamp()
    restored.ids["uni"] = {"11": Tracked("u@x.test", month_ago), "12": Tracked("v@x.test", NOW.timestamp())}
    restored.ids["sc"] = {"m1$s@x.test": Tracked("s@x.test", month_ago)}
    st = Staging(ID_CONFIG, ID_CONFIG.accounts, restored, NOW.timestamp())
    assert set(st.trackers) == {"sc", "uni"}
    found = st.expired(NOW.timestamp())
    assert sorted((c.account, c.email_id) for c in found.ids) == [("sc", "m1$s@x.test"), ("uni", "11")]
    assert all(c.tracked is None for c in found.ids)
