"""The consume loop stages a fetch into its shard in slices (ShardManager._hand_over), letting the
event loop run between them: a fetch of `batch_max_records` (1,000 webhook records) staged at once
costs 40-120 ms of CPU in one go, and every webhook answer, heartbeat and poll waited behind it.
It stages HAND_OVER_STEP records at a time and lets the loop run once HAND_OVER_BUDGET_SECS have
passed on its clock (`ShardManager.ticks`), here a fake one that moves 2**-9 s (1.95 ms, exact in
binary) each time it is read: with steps of 8 and a budget of 3 ms, a slice is 2 steps, 16 records.

A real ShardManager and a real Shard (staging built without Kafka, as in test_shard_position);
the consumer is only asked to `seek`, so a recorder stands in for it."""

from __future__ import annotations

import asyncio
import itertools
from types import SimpleNamespace

from aiokafka import TopicPartition

from tests.unit.test_shard_position import records, shard_at
from tests.unit.test_staging import CONFIG
from worker.group import HAND_OVER_BUDGET_SECS, HAND_OVER_STEP, ShardManager

TP = TopicPartition("p._raw", 0)


def manager_with(shard, per_read: float = 2 ** -9) -> tuple[ShardManager, list]:
    manager = ShardManager(CONFIG, session=None)  # type: ignore[arg-type]   # no pollers here
    reads = itertools.count()
    manager.ticks = lambda: next(reads) * per_read
    manager.shards[0] = shard
    seeks: list = []
    manager.consumer = SimpleNamespace(seek=lambda tp, offset: seeks.append((tp.partition, offset)))
    return manager, seeks


async def hand_over_watched(manager: ShardManager, fetched: list, between=None) -> list[int]:
    """Hand `fetched` over while another task notes the shard's next offset each time it runs
    (and does `between(seen)` then)."""
    seen: list[int] = []

    async def other() -> None:
        while True:
            seen.append(manager.shards[0].next_offset)
            if between is not None:
                between(seen)
            await asyncio.sleep(0)

    task = asyncio.ensure_future(other())
    await asyncio.sleep(0)
    try:
        await manager._hand_over(TP, fetched, manager.shards[0].generation)
    finally:
        task.cancel()
    return seen


async def test_a_fetch_is_staged_in_slices_with_the_loop_running_between_them() -> None:
    assert (HAND_OVER_STEP, HAND_OVER_BUDGET_SECS) == (8, 0.003)
    shard = shard_at(40)
    manager, seeks = manager_with(shard)
    seen = await hand_over_watched(manager, records(40, 300))
    # 300 records from offset 40, slices of 16: the other task ran before any (40) and after each
    # slice but the last (which ends at 340)
    assert sorted(set(seen)) == [40, 56, 72, 88, 104, 120, 136, 152, 168, 184, 200, 216, 232, 248, 264, 280,
                                 296, 312, 328]
    assert shard.next_offset == 340 and shard.staging.batch.raw_offset == 340
    assert manager.positions[0] == 340 and seeks == []


async def test_a_fetch_within_the_budget_is_one_slice() -> None:
    shard = shard_at(40)
    manager, seeks = manager_with(shard, per_read=0.0)      # the clock does not move: no turn is due
    seen = await hand_over_watched(manager, records(40, 300))
    assert set(seen) == {40} and shard.next_offset == 340 and manager.positions[0] == 340


async def test_a_shard_closed_between_slices_takes_no_more() -> None:
    shard = shard_at(40)
    manager, seeks = manager_with(shard)

    def close(seen: list[int]) -> None:
        if seen[-1] == 56:
            shard.closed = True

    await hand_over_watched(manager, records(40, 300), close)
    assert shard.next_offset == 56 and shard.staging.batch.raw_offset == 56
    assert manager.positions[0] == 56 and seeks == []


async def test_a_rewind_between_slices_seeks_back_and_stops() -> None:
    shard = shard_at(40)
    manager, seeks = manager_with(shard)

    def fail_commit(seen: list[int]) -> None:
        if seen[-1] == 56:
            shard.staging.failed(shard.staging.take(), RuntimeError("commit failed"))
            shard._rewind()

    await hand_over_watched(manager, records(40, 300), fail_commit)
    assert seeks == [(0, 40)]               # the next slice (from 56) refused: read again from 40
    assert shard.next_offset == 40 and shard.staging.batch.raw_offset is None
