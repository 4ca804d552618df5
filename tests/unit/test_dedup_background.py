"""Table merges off the event loop (issue 15): `DedupTable.merge_job` and how a shard runs it.

The merge's copying runs in a thread while the loop goes on reading and writing the table; these
tests pin what the loop sees before, during and after, with hand-picked keys and words.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from worker import dedup
from worker.dedup import DedupTable


def table_with(pairs: dict[int, int], background: bool = True) -> DedupTable:
    t = DedupTable(background=background)
    t.load(np.array(list(pairs), dtype=np.uint64), np.array(list(pairs.values()), dtype=np.uint64))
    return t


def test_a_background_table_does_not_merge_on_put_until_the_backlog_bound(monkeypatch):
    monkeypatch.setattr(DedupTable, "MERGE_AT", 4)
    t = table_with({}, background=True)
    for k in range(1, 16):                        # 15 < BACKLOG (4) x MERGE_AT (4): all recent
        t.put(k, 100 + k)
    assert t.wants_merge and len(t._recent) == 15 and len(t._keys) == 0
    t.put(16, 116)                                # the 16th: a merge in place (a merge cannot keep up)
    assert len(t._recent) == 0 and t._keys.tolist() == list(range(1, 17))
    inline = table_with({}, background=False)
    for k in range(1, 5):
        inline.put(k, k)
    assert len(inline._recent) == 0 and inline._keys.tolist() == [1, 2, 3, 4]


def test_a_merge_job_folds_the_frozen_writes_while_new_ones_collect():
    t = table_with({10: 1, 20: 2, 30: 3})
    t.put(40, 4)
    t.put(20, 22)                                 # an update
    t.delete(10)                                  # a deletion
    old_keys, old_vals = t._keys, t._vals
    build = t.merge_job()
    assert not t.wants_merge and t._merging == {40: 4, 20: 22, 10: 0} and t._recent == {}
    t.put(50, 5)                                  # during the build: a new write
    t.put(40, 44)                                 # ... and an update of a frozen one
    assert [t.get(k) for k in (10, 20, 30, 40, 50)] == [None, 22, 3, 44, 5]
    install = build()
    assert old_keys.tolist() == [10, 20, 30] and old_vals.tolist() == [1, 2, 3]   # inputs untouched
    install()
    assert t._merging == {} and t._recent == {50: 5, 40: 44}
    # 10 deleted: one dead of four is over an eighth, so the columns were compacted
    assert t._keys.tolist() == [20, 30, 40] and t._vals.tolist() == [22, 3, 4]
    assert [t.get(k) for k in (10, 20, 30, 40, 50)] == [None, 22, 3, 44, 5]
    assert t.get_many(np.array([10, 20, 30, 40, 50, 60], dtype=np.uint64)).tolist() == [0, 22, 3, 44, 5, 0]
    assert len(t) == 4


def test_get_many_sees_the_frozen_writes_under_the_newer_ones():
    t = table_with({1: 1})
    t.put(2, 2)
    t.put(3, 3)
    build = t.merge_job()
    t.put(3, 33)
    assert t.get_many(np.array([1, 2, 3, 4], dtype=np.uint64)).tolist() == [1, 2, 33, 0]
    build()()
    assert t.get_many(np.array([1, 2, 3, 4], dtype=np.uint64)).tolist() == [1, 2, 33, 0]


def test_a_merge_in_place_during_a_build_wins_and_the_late_install_does_nothing():
    t = table_with({1: 1})
    t.put(2, 2)
    build = t.merge_job()
    t.put(3, 3)
    t.merge()                                     # e.g. the expiry pass: takes the frozen writes too
    assert t._keys.tolist() == [1, 2, 3] and t._merging == {} and t._recent == {}
    build()()                                     # built from the old columns: must not replace
    assert t._keys.tolist() == [1, 2, 3] and t._vals.tolist() == [1, 2, 3]


def test_a_failed_build_hands_the_frozen_writes_back(monkeypatch):
    t = table_with({1: 1})
    t.put(2, 2)
    build = t.merge_job()
    t.put(3, 3)

    def fail(*_):
        raise MemoryError

    monkeypatch.setattr(dedup, "_merged", fail)
    build()()
    assert t._merging == {} and t._recent == {2: 2, 3: 3} and t._keys.tolist() == [1]
    assert [t.get(k) for k in (1, 2, 3)] == [1, 2, 3] and t.wants_merge is (2 >= t._merge_at)


def test_load_discards_a_build_started_before_it():
    t = table_with({1: 1})
    t.put(2, 2)
    build = t.merge_job()
    t.load(np.array([7], dtype=np.uint64), np.array([70], dtype=np.uint64))
    build()()
    assert t._keys.tolist() == [7] and t.get(2) is None and len(t) == 1


@pytest.mark.parametrize("background", [False, True])
def test_the_same_writes_give_the_same_table_either_way(background, monkeypatch):
    monkeypatch.setattr(DedupTable, "MERGE_AT", 8)
    rng = np.random.default_rng(7)
    t, model = DedupTable(background=background), {}
    for step, (key, word) in enumerate(zip(rng.integers(1, 40, 400).tolist(), rng.integers(0, 5, 400).tolist(),
                                           strict=True)):
        if word:
            t.put(key, word)
            model[key] = word
        else:
            t.delete(key)
            model.pop(key, None)
        if background and t.wants_merge and step % 3:
            install = t.merge_job()()
            if step % 2:
                t.put(99, 9)
                model[99] = 9
            install()
    assert {k: t.get(k) for k in range(1, 100) if t.get(k) is not None} == model and len(t) == len(model)


async def test_a_shard_merge_runs_off_the_loop_and_installs_on_it():
    from worker.staging import merge_off_loop

    t = table_with({1: 1})
    for k in range(2, 6):
        t.put(k, k)
    running = merge_off_loop(t.merge_job())
    assert t._merging and t._keys.tolist() == [1]  # not yet: the build is in a thread
    await asyncio.wait_for(running, 10)             # the install ran first, on the loop
    assert t._merging == {} and t._keys.tolist() == [1, 2, 3, 4, 5]


async def test_a_staging_merges_each_of_its_tables_off_the_loop_once_it_has_enough_writes(monkeypatch):
    from tests.unit.test_staging import GAP_CONFIG, NOW
    from worker.staging import Staging
    from worker.state import Restored

    monkeypatch.setattr(DedupTable, "MERGE_AT", 2)
    st = Staging(GAP_CONFIG, GAP_CONFIG.accounts, Restored.empty(), NOW.timestamp())
    [tracker] = st.trackers.values()
    assert st.tables[:2] == [st.table, st.replays] and st.tables[2:] == list(tracker.settled.tables)
    assert all(t.background for t in st.tables)
    assert st.merge_off_loop() == []                 # nothing to merge yet
    st.table.put(5, 50)
    st.table.put(6, 60)
    tracker.settled.add("m1", NOW.timestamp(), persisted=False)
    tracker.settled.add("m2", NOW.timestamp(), persisted=False)
    running = st.merge_off_loop()
    assert len(running) == 2 and st.merge_off_loop() == []     # one merge per table at a time
    await asyncio.gather(*running)
    assert st.table._keys.tolist() == [5, 6] and st.table._recent == {} and len(tracker.settled.tables[1]._keys) == 2
    assert "m1" in tracker.settled and st.table.get(6) == 60
