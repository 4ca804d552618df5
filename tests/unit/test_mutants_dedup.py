"""The dedup table's edges that mutation testing found unpinned: hour arithmetic, exact 64-bit
lookups in the columns, the last-word-wins restore, and the expiry boundary."""

from __future__ import annotations

import numpy as np

from worker.dedup import DedupTable, hours_since_2020, pack

EPOCH_2020 = 1_577_836_800          # 2020-01-01T00:00:00Z
BIG_WORD = 7_703_480_829_911_681_042  # above 2**53: a float would round it


def test_hours_since_2020_counts_whole_hours_and_is_at_least_one():
    assert hours_since_2020(EPOCH_2020 + 3600) == 1
    assert hours_since_2020(EPOCH_2020 + 7200) == 2
    assert hours_since_2020(EPOCH_2020 + 10 * 86400) == 240
    assert hours_since_2020(EPOCH_2020 + 10 * 86400 - 1) == 239
    assert hours_since_2020(0) == 1       # before 2020: the smallest expiry, never 0


def test_get_many_finds_64_bit_keys_exactly_when_given_a_list():
    table = DedupTable()
    table.put(2**60, 11)
    table.put(2**60 + 1, BIG_WORD)
    table.merge()                              # into the sorted columns
    words = table.get_many([2**60 + 1, 2**60 + 2, 2**60])
    assert words.dtype == np.uint64
    assert words.tolist() == [BIG_WORD, 0, 11]


def test_load_keeps_the_last_word_of_each_key_in_changelog_order():
    # 1000 records over 10 keys: key i % 10 gets the words i + 1, so the last of key k is 991 + k
    keys = np.array([i % 10 for i in range(1000)], dtype=np.uint64)
    words = np.arange(1, 1001, dtype=np.uint64)
    table = DedupTable()
    table.load(keys, words)
    assert [table.get(k) for k in range(10)] == [991, 992, 993, 994, 995, 996, 997, 998, 999, 1000]
    assert len(table) == 10


def test_expired_is_strictly_past_the_expiry_hour_and_skips_deleted_entries():
    now = EPOCH_2020 + 100 * 3600 + 5          # hour 100
    table = DedupTable()
    table.put(1, pack(0, 99, 1))               # expired an hour ago
    table.put(2, pack(0, 100, 1))              # expires this hour: not yet past
    table.put(3, pack(0, 101, 1))
    for key in range(4, 12):
        table.put(key, pack(0, 50, 1))
    table.merge()
    table.delete(11)                           # one deleted of eleven: stays as a 0 word in the columns
    table.merge()
    assert sorted(table.expired(now)) == [1, 4, 5, 6, 7, 8, 9, 10]
