"""worker.grouplag.group_lag: the records of each `_raw` partition the group has not committed yet."""

from __future__ import annotations

import pytest

from worker import metrics
from worker.grouplag import group_lag


@pytest.mark.parametrize(("committed", "beginning", "end", "lag"), [
    (None, 0, 0, 0),          # a new, empty partition
    (None, 0, 25, 25),        # nothing committed yet: everything from the beginning
    (None, 40, 100, 60),      # ... which retention may have moved
    (10, 0, 25, 15),
    (25, 0, 25, 0),           # caught up
    (0, 0, 7, 7),             # a commit at offset 0 is a commit, not "none"
    (30, 50, 80, 30),         # committed offset deleted by retention: the consumer restarts at 50
    (26, 0, 25, 0),           # the end read a moment before a commit: never negative
])
def test_lag_of_one_partition(committed, beginning, end, lag):
    assert group_lag({3: committed}, {3: beginning}, {3: end}) == {3: lag}


def test_every_partition_with_an_end_gets_a_lag():
    assert group_lag({0: 5, 1: None}, {0: 0, 1: 0, 2: 0}, {0: 5, 1: 9, 2: 4}) == {0: 0, 1: 9, 2: 4}


def test_the_gauge_holds_the_last_measurement_only():
    def sample(shard: int) -> float | None:
        return metrics.REGISTRY.get_sample_value("esw_raw_group_lag", {"shard": str(shard)})

    metrics.raw_group_lag({0: 3, 1: 25})
    assert (sample(0), sample(1)) == (3, 25)
    metrics.raw_group_lag({0: 0})
    assert (sample(0), sample(1)) == (0, None)
    metrics.raw_group_lag({})
    assert sample(0) is None
