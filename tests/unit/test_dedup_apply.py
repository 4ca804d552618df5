"""`DedupTable.apply`: a committed batch's overlay written at once (words put, None deleted), with
presence read in one vectorised step; the same table as `put` and `delete` one by one would leave."""

from __future__ import annotations

import numpy as np
import pytest

from worker.dedup import DedupTable

BIG_WORD = 7_703_480_829_911_681_042  # above 2**53: a float would round it


def hand_table() -> DedupTable:
    """Keys 10, 20, 30 in the columns (words 101, 201, 301), 40 only in the recent writes (401),
    20 deleted since (a recent 0)."""
    table = DedupTable()
    table.load(np.array([10, 20, 30], dtype=np.uint64), np.array([101, 201, 301], dtype=np.uint64))
    table.put(40, 401)
    table.delete(20)
    return table


def test_the_hand_table_is_as_described():
    table = hand_table()
    assert len(table) == 3
    assert [table.get(k) for k in (10, 20, 30, 40, 50)] == [101, None, 301, 401, None]


# (writes, the table's size after, each key's word after): worked out by hand from `hand_table`
CASES = [
    # fewer than FEW (4) writes: one put or delete each
    ({50: 501}, 4, {10: 101, 20: None, 30: 301, 40: 401, 50: 501}),
    ({10: None, 40: None}, 1, {10: None, 20: None, 30: 301, 40: None, 50: None}),
    ({20: None, 60: None, 10: 102}, 3, {10: 102, 20: None, 30: 301, 40: 401, 60: None}),
    # FEW or more: presence read in one step
    ({10: 102, 20: 202, 50: 501, 60: None}, 5, {10: 102, 20: 202, 30: 301, 40: 401, 50: 501, 60: None}),
    ({10: None, 20: None, 30: None, 40: None}, 0, {10: None, 20: None, 30: None, 40: None}),
    ({2**64 - 1: BIG_WORD, 30: 302, 40: 402, 70: None, 10: None}, 3,      # +1 new, -1 deleted, 70 absent
     {2**64 - 1: BIG_WORD, 10: None, 20: None, 30: 302, 40: 402, 70: None}),
]


@pytest.mark.parametrize(("writes", "size", "after"), CASES)
@pytest.mark.parametrize("merged", [False, True])
def test_apply_leaves_the_hand_worked_table(writes, size, after, merged):
    table = hand_table()
    if merged:
        table.merge()              # everything in the columns: presence read there alone
    table.apply(writes)
    assert len(table) == size
    assert {k: table.get(k) for k in after} == after
    table.merge()
    assert len(table) == size and {k: table.get(k) for k in after} == after


def test_apply_of_many_is_put_and_delete_one_by_one():
    rng = np.random.default_rng(7)
    keys = rng.integers(1, 2**63, size=300, dtype=np.uint64).tolist()
    first = {k: i + 1 for i, k in enumerate(keys[:200])}
    second = {k: (None if i % 3 == 0 else 1000 + i) for i, k in enumerate(keys[100:])}
    one, many = DedupTable(), DedupTable()
    for writes in (first, second):
        for key, word in writes.items():
            one.put(key, word) if word is not None else one.delete(key)
        many.apply(writes)
    # keys[:200] put; then of keys[100:300] every third deleted (34 of them were present: i < 100)
    # and the others put (67 of them new: i >= 100): 200 - 34 + 67
    assert len(many) == len(one) == 233
    assert many.get_many(keys).tolist() == one.get_many(keys).tolist()


def test_apply_refuses_a_zero_word_as_put_does():
    with pytest.raises(ValueError, match="^a state word is never 0$"):
        DedupTable().apply({1: 5, 2: 0, 3: 7, 4: 9})
    with pytest.raises(ValueError, match="^a state word is never 0$"):
        DedupTable().apply({2: 0})


def test_apply_merges_once_after_all_writes_when_a_merge_falls_due(monkeypatch):
    monkeypatch.setattr(DedupTable, "MERGE_AT", 4)
    table = DedupTable()
    merges = []
    real = table.merge
    monkeypatch.setattr(table, "merge", lambda: (merges.append(len(table._recent)), real()))
    table.apply({k: k * 10 for k in range(1, 7)})     # 6 writes, due at 4: one merge, of all 6
    assert merges == [6]
    assert len(table) == 6 and table.get(6) == 60
