"""Compact final ids and background merges (issue 15): the edges mutation testing found unpinned.

Each test names what it pins; expected values are hand-picked keys, words and times.
"""

from __future__ import annotations

import asyncio

import orjson

from tests.unit.test_mutants_staging import staging
from worker.dedup import DedupTable
from worker.poll.ids import IdPlan, IdTracker, Tracked
from worker.poll.settled import SettledIds
from worker.staging import merge_off_loop
from worker.state import Restored, id_key

NOW = 1_700_000_000.0
DAY = 86400.0


def final(sent: float = NOW) -> bytes:
    return orjson.dumps({"r": "r@x.test", "s": sent, "st": "ok_delivered", "f": True})


def test_a_restore_settles_accounts_that_have_only_numeric_or_only_string_final_ids():
    restored = Restored.empty()
    restored.add(id_key("num", "9999999999999999999"), final())     # the largest numeric id
    restored.add(id_key("str", "x-9"), final())
    restored.add(id_key("str", "x-10"), orjson.dumps({"r": "r@x.test", "s": NOW, "st": "ok_sent", "f": False}))
    restored.finish()
    assert restored.skipped == 0                                       # an open string id is no error
    assert "9999999999999999999" in restored.settled["num"] and len(restored.settled["num"]) == 1
    assert "x-9" in restored.settled["str"] and len(restored.settled["str"]) == 1
    assert set(restored.ids["str"]) == {"x-10"}


def test_a_restored_send_time_is_exact_to_the_bit():
    sent = NOW + 0.123456789                                           # a full mantissa
    restored = Restored.empty()
    restored.add(id_key("uni", "42"), final(sent))
    restored.finish()
    settled = restored.settled["uni"]
    assert settled.expired(sent + 30 * DAY, 30 * DAY) == []            # exactly max_age old: kept
    assert settled.expired(sent + 30 * DAY + 1e-6, 30 * DAY) == ["42"]


def test_staging_hands_the_restored_final_ids_to_the_account_tracker():
    restored = Restored.empty()
    restored.add(id_key("uni", "8001"), final())
    st = staging(restored.finish())
    tracker = st.trackers["uni"]
    assert "8001" in tracker.settled and tracker.ids == {}


def test_drop_hashed_counts_only_ids_it_removed():
    s = SettledIds()
    s.add("m1$bob@example.com", NOW, persisted=False)
    s.add("m2$ann@example.com", NOW, persisted=False)
    s.add("77", NOW)                                    # persisted: not a hashed id
    s.discard("m2$ann@example.com")                     # gone already
    keys = [hash(e) & (2**64 - 1) for e in ("m1$bob@example.com", "m2$ann@example.com", "77", "never")]
    assert s.drop_hashed(keys) == 1
    assert "m1$bob@example.com" not in s and "77" in s and len(s) == 1


async def test_a_cancelled_background_merge_raises_nothing_on_the_loop():
    errors: list[dict] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    table = DedupTable(background=True)
    table.put(1, 1)
    running = merge_off_loop(table.merge_job())
    running.cancel()
    await asyncio.sleep(0.05)
    assert errors == [] and table.get(1) == 1


def test_a_gap_driven_status_change_is_rescheduled_from_its_gap():
    t = IdTracker(max_age_secs=4 * DAY, batch=100, gap_after_secs=900.0)
    t.apply_write("m", Tracked("r@x.test", NOW), NOW)
    t.apply_write("m", Tracked("r@x.test", NOW, "soft_bounce"), NOW + 10)
    assert t.ids["m"].due_at == NOW + 900                  # max(now + 60, sent + gap)


def test_the_early_heap_is_rebuilt_past_twice_the_open_ids_plus_1024():
    t = IdTracker(max_age_secs=30 * DAY, batch=3, floor_secs=30, min_recheck_secs=30)
    t.apply_write("a", Tracked("a@x", NOW), NOW)
    t.apply_write("b", Tracked("b@x", NOW), NOW)
    t.apply_write("z", Tracked("z@x", NOW, final=True), NOW)          # settled: not counted
    t.claim(NOW, top_up=False)
    for i in range(1026):                                              # 2 + 1026 = 1028 = 2 x 2 + 1024
        t.apply(IdPlan((), {}, ("a",)), NOW + i)
    assert len(t._by_check) == 1028
    t.apply(IdPlan((), {}, ("a",)), NOW + 1026)                        # 1029: rebuilt from the open ids
    assert sorted(t._by_check) == [(float("-inf"), "b"), (NOW + 1026, "a")]


def test_a_merge_in_place_takes_the_frozen_writes_even_with_no_newer_ones():
    t = DedupTable()
    t.put(1, 10)
    t.merge_job()                                     # frozen; nothing newer
    t.merge()
    assert t._keys.tolist() == [1] and t._merging == {} and t._recent == {}
