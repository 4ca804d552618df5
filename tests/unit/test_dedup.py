"""The dedup rules of DESIGN.md section 4, and the compact table behaving like a dict."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from worker.dedup import (
    ONCE_BIT,
    TYPE_CODE,
    DedupTable,
    Outcome,
    decide,
    email_key,
    hours_since_2020,
    pack,
    unpack,
)
from worker.model import EventType as T

TOL = 60
EXP = 1000


def run(observations):
    """Feed (type, time) pairs through decide; return the outcomes."""
    word, out = None, []
    for type_, at in observations:
        outcome, new = decide(word, type_, at, EXP, TOL)
        out.append(outcome)
        if new is not None:
            word = new
    return out


E, D, S = Outcome.EMIT, Outcome.DUPLICATE, Outcome.STALE


@pytest.mark.parametrize(("observations", "expected"), [
    ([(T.DELIVERED, 100)], [E]),                                        # no state: emit
    ([(T.DELIVERED, 100), (T.DELIVERED, 100)], [E, D]),                 # terminal per type
    ([(T.DELIVERED, 100), (T.DELIVERED, 99_999)], [E, D]),              # ... whatever its time
    ([(T.DELIVERED, 100_000), (T.DELIVERED, 100)], [E, D]),             # webhook ms vs poll s, any order
    ([(T.INVALID, 100), (T.INVALID, 5000)], [E, D]),
    ([(T.SOFT_BOUNCE, 100), (T.SOFT_BOUNCE, 160)], [E, D]),             # within tolerance: same attempt
    ([(T.SOFT_BOUNCE, 100), (T.SOFT_BOUNCE, 161)], [E, E]),             # later than tolerance: new attempt
    ([(T.SOFT_BOUNCE, 100), (T.SOFT_BOUNCE, 40)], [E, D]),              # older soft bounce
    ([(T.DELIVERED, 100), (T.INVALID, 3600)], [E, E]),                  # asynchronous bounce after delivery
    ([(T.DELIVERED, 100), (T.INVALID, 40)], [E, E]),                    # different type within tolerance
    ([(T.DELIVERED, 100), (T.INVALID, 39)], [E, S]),                    # older different type: stale
    ([(T.SOFT_BOUNCE, 100), (T.DELIVERED, 500), (T.SOFT_BOUNCE, 100)], [E, E, D]),  # late replay of the bounce
    ([(T.SOFT_BOUNCE, 100), (T.DELIVERED, 500), (T.SOFT_BOUNCE, 900)], [E, E, E]),  # a real later bounce
    ([(T.SOFT_BOUNCE, 100), (T.INVALID, 500), (T.INVALID, 700)], [E, E, D]),
    ([(T.COMPLAINT, 100), (T.COMPLAINT, 9000)], [E, D]),                # once per email
    ([(T.UNSUBSCRIBED, 100), (T.UNSUBSCRIBED, 100)], [E, D]),
    ([(T.DELIVERED, 5000), (T.COMPLAINT, 1)], [E, E]),                  # engagement is never stale
    ([(T.COMPLAINT, 5000), (T.DELIVERED, 1)], [E, E]),                  # ... and does not make others stale
    ([(T.DELIVERED, 100), (T.UNSUBSCRIBED, 200), (T.SOFT_BOUNCE, 300), (T.DELIVERED, 400)], [E, E, E, D]),
    # a replayed soft bounce after the final status that followed it (same second, or earlier)
    ([(T.SOFT_BOUNCE, 14), (T.DELIVERED, 14), (T.SOFT_BOUNCE, 14)], [E, E, D]),
    ([(T.SOFT_BOUNCE, 10), (T.SOFT_BOUNCE, 100), (T.INVALID, 105), (T.SOFT_BOUNCE, 100), (T.SOFT_BOUNCE, 10)],
     [E, E, E, D, D]),
    # ... but a soft bounce arriving late, after a final status with none before it, is real
    ([(T.DELIVERED, 14), (T.SOFT_BOUNCE, 14)], [E, E]),
    ([(T.DELIVERED, 14), (T.SOFT_BOUNCE, 14), (T.SOFT_BOUNCE, 14)], [E, E, D]),
    ([(T.SOFT_BOUNCE, 14), (T.DELIVERED, 14), (T.SOFT_BOUNCE, 200)], [E, E, E]),   # clearly later: new
])
def test_rules(observations, expected):
    assert run(observations) == expected


def test_a_time_we_only_saw_it_by_judges_nothing_stale():
    """UniSender's checkEmail has no times: a final status found by a poll is stamped with when we
    saw it, and a real, earlier soft bounce arriving later by webhook is still news."""
    _, seen = decide(None, T.INVALID, 5000, EXP, TOL, exact_time=False)
    assert decide(seen, T.SOFT_BOUNCE, 100, EXP, TOL)[0] is Outcome.EMIT
    _, exact = decide(None, T.INVALID, 5000, EXP, TOL)
    assert decide(exact, T.SOFT_BOUNCE, 100, EXP, TOL)[0] is Outcome.STALE
    _, after = decide(seen, T.SOFT_BOUNCE, 100, EXP, TOL)
    assert decide(after, T.SOFT_BOUNCE, 100, EXP, TOL)[0] is Outcome.DUPLICATE  # and once only
    assert decide(after, T.INVALID, 6000, EXP, TOL)[0] is Outcome.DUPLICATE


def test_state_word_layout_round_trips_and_is_never_zero():
    word = pack(1_700_000_000, hours_since_2020(1_700_000_000), ONCE_BIT[T.DELIVERED] | TYPE_CODE[T.DELIVERED])
    assert word != 0
    assert unpack(word) == (1_700_000_000, hours_since_2020(1_700_000_000), 0b1001)
    _, new = decide(None, T.COMPLAINT, 0, 1, TOL)
    assert new != 0


def test_expiry_only_moves_forward():
    _, w1 = decide(None, T.SOFT_BOUNCE, 100, 5000, TOL)
    _, w2 = decide(w1, T.DELIVERED, 500, 10, TOL)
    assert unpack(w2)[1] == 5000


def test_email_key_is_stable_and_distinguishes_accounts():
    assert email_key("sendcloud", "a", "id") == email_key("sendcloud", "a", "id")
    assert len({email_key("sendcloud", "a", "id"), email_key("sendcloud", "b", "id"),
                email_key("engagelab", "a", "id"), email_key("sendcloud", "a", "id2")}) == 4


class TestTable:
    def test_put_get_delete_across_merges(self):
        table = DedupTable()
        table.MERGE_AT = 8
        for i in range(100):
            table.put(i * 7919, i + 1)
        assert len(table) == 100
        for i in range(0, 100, 3):
            table.delete(i * 7919)
        table.put(5 * 7919, 999)
        table.merge()
        for i in range(100):
            expected = 999 if i == 5 else (None if i % 3 == 0 else i + 1)
            assert table.get(i * 7919) == expected
        assert len(table) == 100 - len(range(0, 100, 3)) + 0

    def test_load_keeps_the_last_word_and_drops_tombstones(self):
        table = DedupTable()
        keys = np.array([5, 3, 5, 9, 3, 1], dtype=np.uint64)
        words = np.array([1, 2, 3, 4, 0, 6], dtype=np.uint64)
        table.load(keys, words)
        assert [table.get(k) for k in (1, 3, 5, 9)] == [6, None, 3, 4]
        assert len(table) == 3

    def test_expired_lists_only_past_entries(self):
        table = DedupTable()
        now = 1_800_000_000
        table.put(1, pack(0, hours_since_2020(now) - 1, 1))
        table.put(2, pack(0, hours_since_2020(now) + 1, 1))
        assert table.expired(now) == [1]

    def test_large_keys_above_2_63(self):
        table = DedupTable()
        big = 2**64 - 5
        table.put(big, 7)
        table.merge()
        assert table.get(big) == 7 and table.get(big - 1) is None

    @settings(max_examples=200, deadline=None)
    @given(st.lists(st.tuples(st.sampled_from(["put", "delete", "merge"]), st.integers(0, 40),
                              st.integers(1, 2**64 - 1)), max_size=200))
    def test_behaves_like_a_dict(self, ops):
        table, model = DedupTable(), {}
        table.MERGE_AT = 5
        for op, key, word in ops:
            key = key * 0x9E3779B97F4A7C15 % 2**64
            if op == "put":
                table.put(key, word)
                model[key] = word
            elif op == "delete":
                table.delete(key)
                model.pop(key, None)
            else:
                table.merge()
            assert len(table) == len(model)
        for key in {k * 0x9E3779B97F4A7C15 % 2**64 for k in range(41)}:
            assert table.get(key) == model.get(key)


def test_get_many_reads_columns_and_recent_writes_with_zero_for_absent_keys():
    table = DedupTable()
    table.load(np.array([10, 30, 20], dtype=np.uint64), np.array([101, 301, 201], dtype=np.uint64))
    table.put(40, 401)      # only in the recent writes
    table.put(30, 302)      # a recent write shadows the column
    table.delete(20)        # a recent deletion hides the column's word
    got = table.get_many(np.array([30, 5, 40, 10, 20, 2**64 - 1], dtype=np.uint64))
    assert got.tolist() == [302, 0, 401, 101, 0, 0]
    table.merge()
    assert table.get_many(np.array([20, 30, 40, 10], dtype=np.uint64)).tolist() == [0, 302, 401, 101]
    assert DedupTable().get_many(np.array([1, 2], dtype=np.uint64)).tolist() == [0, 0]
