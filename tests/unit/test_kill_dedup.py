"""Pins left open by mutation testing of worker.dedup: pack's default, the first engagement event
of an email, put's error, when recent writes are merged, and when deleted entries are compacted."""

from __future__ import annotations

import pytest

from worker.dedup import DedupTable, Outcome, decide, pack
from worker.model import EventType

# A word: occurred 0x65000000 s, expiry 0x1234 h, flags 0x09, bit 31 clear.
WORD = 0x65000000_00123409


def test_pack_defaults_to_an_exact_time():
    assert pack(0x65000000, 0x1234, 0x09) == WORD
    assert pack(0x65000000, 0x1234, 0x09, seen_time=True) == WORD | 0x8000_0000


def test_a_first_complaint_sets_only_its_once_bit_and_the_expiry():
    # no earlier status: occurred 0, no delivery type, no "seen time" bit; complaint = bit 5
    assert decide(None, EventType.COMPLAINT, 1_700_000_000, 5000, 60.0) == (Outcome.EMIT, 0x1388_20)
    assert decide(0, EventType.UNSUBSCRIBED, 1_700_000_000, 7, 60.0) == (Outcome.EMIT, 0x07_40)


def test_an_engagement_event_keeps_the_seen_time_bit_of_the_last_status():
    # delivered at 0x65000000 s, time only seen (bit 31), expiry 0x10 h; then a complaint
    word = 0x65000000_80001009
    assert decide(word, EventType.COMPLAINT, 0x65000100, 0x10, 60.0) == (Outcome.EMIT, 0x65000000_80001029)


def test_put_refuses_a_zero_word_saying_why():
    with pytest.raises(ValueError, match="^a state word is never 0$"):
        DedupTable().put(1, 0)


def _small_table(merge_at: int) -> DedupTable:
    table = DedupTable()
    table.MERGE_AT = merge_at
    return table


def test_put_merges_as_soon_as_the_recent_writes_reach_the_threshold():
    table = _small_table(4)
    for key in (1, 2, 3):
        table.put(key, WORD)
    assert table.nbytes == 300                       # three recent entries, empty columns
    table.put(4, WORD)
    assert table.nbytes == 4 * 16                    # merged: four 8+8-byte column entries


def test_delete_merges_as_soon_as_the_recent_writes_reach_the_threshold():
    table = _small_table(4)
    for key in (1, 2, 3, 4):
        table.put(key, WORD)                         # merged on the fourth
    for key in (5, 6, 7):
        table.put(key, WORD)
    assert table.nbytes == 4 * 16 + 300
    table.delete(1)                                  # the fourth recent write: merge (and compact)
    assert table.nbytes == 6 * 16
    assert len(table) == 6 and table.get(1) is None


def test_rewriting_a_merged_key_does_not_duplicate_it_in_the_columns():
    table = DedupTable()
    table.put(7, pack(100, 10, 1))
    table.merge()
    table.put(7, pack(200, 20, 1))
    table.merge()
    assert table.nbytes == 16
    assert table.expired(2_000_000_000) == [7]       # listed once


def test_a_key_written_and_deleted_between_merges_leaves_nothing_in_the_columns():
    table = DedupTable()
    table.put(1, WORD)
    table.merge()
    table.put(2, WORD)
    table.delete(2)
    table.merge()
    assert table.nbytes == 16 and len(table) == 1 and table.get(2) is None


def test_deleted_entries_are_compacted_once_more_than_an_eighth_is_deleted():
    table = DedupTable()
    for key in range(1, 9):
        table.put(key, WORD)
    table.merge()
    table.delete(1)
    table.merge()
    assert table.nbytes == 8 * 16                    # one of eight: kept as a deleted entry
    table.delete(2)
    table.merge()
    assert table.nbytes == 6 * 16                    # two of eight: compacted
    assert len(table) == 6
    assert [table.get(k) for k in range(1, 9)] == [None, None] + [WORD] * 6


def test_a_word_of_one_is_not_taken_for_a_deleted_entry():
    table = DedupTable()
    table.put(1, 1)
    table.put(2, WORD)
    table.merge()
    assert table.get(1) == 1 and table.nbytes == 32
