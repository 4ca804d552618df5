"""The consume loop stages a fetch into its shard in slices (ShardManager._hand_over), letting the
event loop run between them: a fetch of `batch_max_records` (1,000 SendCloud webhook records)
staged at once costs ~60 ms of CPU in one go, and every webhook answer, heartbeat and poll waited
behind it; a slice of 128 ~8 ms.

A real ShardManager and a real Shard (staging built without Kafka, as in test_shard_position);
the consumer is only asked to `seek`, so a recorder stands in for it."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from aiokafka import TopicPartition

from tests.unit.test_shard_position import records, shard_at
from tests.unit.test_staging import CONFIG
from worker.group import HAND_OVER_SLICE, ShardManager

TP = TopicPartition("p._raw", 0)


def manager_with(shard) -> tuple[ShardManager, list]:
    manager = ShardManager(CONFIG, session=None)  # type: ignore[arg-type]   # no pollers here
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
        await manager._hand_over(TP, fetched)
    finally:
        task.cancel()
    return seen


async def test_a_fetch_is_staged_in_slices_with_the_loop_running_between_them() -> None:
    assert HAND_OVER_SLICE == 128
    shard = shard_at(40)
    manager, seeks = manager_with(shard)
    seen = await hand_over_watched(manager, records(40, 300))
    # 300 records from offset 40: slices end at 168, 296 and 340; the other task ran after each
    # of the first two (before any: 40)
    assert 40 in seen and 168 in seen and 296 in seen
    assert shard.next_offset == 340 and shard.staging.batch.raw_offset == 340
    assert manager.positions[0] == 340 and seeks == []


async def test_a_small_fetch_is_one_slice() -> None:
    shard = shard_at(40)
    manager, seeks = manager_with(shard)
    seen = await hand_over_watched(manager, records(40, 128))
    assert set(seen) == {40} and shard.next_offset == 168 and manager.positions[0] == 168


async def test_a_shard_closed_between_slices_takes_no_more() -> None:
    shard = shard_at(40)
    manager, seeks = manager_with(shard)

    def close(seen: list[int]) -> None:
        if seen[-1] == 168:
            shard.closed = True

    await hand_over_watched(manager, records(40, 300), close)
    assert shard.next_offset == 168 and shard.staging.batch.raw_offset == 168
    assert manager.positions[0] == 168 and seeks == []


async def test_a_rewind_between_slices_seeks_back_and_stops() -> None:
    shard = shard_at(40)
    manager, seeks = manager_with(shard)

    def fail_commit(seen: list[int]) -> None:
        if seen[-1] == 168:
            shard.staging.failed(shard.staging.take(), RuntimeError("commit failed"))
            shard._rewind()

    await hand_over_watched(manager, records(40, 300), fail_commit)
    assert seeks == [(0, 40)]               # the next slice (from 168) refused: read again from 40
    assert shard.next_offset == 40 and shard.staging.batch.raw_offset is None
