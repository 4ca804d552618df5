"""The shard's breaker (worker.breaker): failures at one `_raw` position isolate its records, and
a record that fails alone is set aside; an outage (nothing reported) never trips it."""

from __future__ import annotations

from worker.breaker import Breaker


def test_three_failures_at_one_offset_isolate_that_batch_then_a_record_that_fails_alone_is_poison():
    b = Breaker(limit=3)
    b.failed(100, 150)
    b.failed(100, 150)
    assert not b.isolating
    b.failed(100, 150)                         # third in a row at 100: one record per transaction
    assert b.isolating and b.isolate_until == 150 and not b.poison(100)
    b.committed(101)                           # 100 alone was fine
    assert b.isolating and not b.poison(101)
    b.failed(101, 102)
    b.failed(101, 102)
    assert not b.poison(101)
    b.failed(101, 102)                         # 101 failed alone three times
    assert b.poison(101) and not b.poison(102)
    b.committed(102)                           # set aside and committed
    assert not b.poison(101) and b.isolating
    b.committed(150)
    assert not b.isolating and b.at is None


def test_failures_at_different_offsets_do_not_add_up():
    b = Breaker(limit=2)
    b.failed(10, 20)
    b.failed(11, 20)
    assert not b.isolating and (b.at, b.fails) == (11, 1)
    b.committed(20)
    b.failed(20, 30)
    assert not b.isolating


def test_a_batch_without_raw_records_is_not_counted():
    b = Breaker(limit=1)
    b.failed(None, None)
    b.committed(None)
    assert not b.isolating and b.at is None
