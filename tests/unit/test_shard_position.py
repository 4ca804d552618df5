"""A shard takes `_raw` records only where it goes on (Shard.process_raw, issue 12).

While a failed transaction was being recovered (an abort or a fresh producer: seconds when the
broker is in trouble), the consume loop went on from where it was, past the failed batch, and those
records committed with the next batch: the `_raw` offset moved past records that never committed.
Now the shard knows the offset it takes next, set by every restore, rewind and rebalance, and
refuses records fetched before that (the group seeks to it).

Issue 16 (spread accounts): `_raw` now holds records written in shards' transactions (page copies),
so a read_committed consumer skips offsets (transaction markers, aborted records) and records may
start past the offset expected. Staleness is told by the shard's generation instead, new at each
restore, rewind and rebalance and captured when the consumer returned the records; a gap within a
generation is taken. No Kafka: the producer is never started; records are the consumer's shape
(offset, value)."""

from __future__ import annotations

from datetime import datetime, timezone
from types import SimpleNamespace

from tests.unit.test_staging import CONFIG, deliver, webhook
from worker.shards import Shard
from worker.staging import Staging
from worker.state import Restored

NOW = datetime(2026, 11, 2, 8, 0, tzinfo=timezone.utc)


def shard_at(offset: int) -> Shard:
    shard = Shard(0, CONFIG, CONFIG.accounts, clock=lambda: NOW)
    shard.staging = Staging(CONFIG, CONFIG.accounts, Restored.empty(), NOW.timestamp())
    shard.resume_at(offset)
    return shard


def records(first: int, n: int) -> list[SimpleNamespace]:
    return [SimpleNamespace(offset=first + i, value=webhook(deliver(f"m{first + i}$b@x.test"))) for i in range(n)]


async def test_records_where_it_goes_on_are_taken_and_move_it() -> None:
    shard = shard_at(40)
    assert shard.process_raw(records(40, 3), shard.generation) == 3
    assert shard.next_offset == 43 and shard.staging.batch.raw_offset == 43
    assert shard.process_raw(records(43, 1), shard.generation) == 1
    assert shard.next_offset == 44


async def test_records_past_where_it_goes_on_in_the_same_generation_are_taken() -> None:
    shard = shard_at(40)
    assert shard.process_raw(records(42, 2), shard.generation) == 2      # 40, 41: a transaction's marker
    assert shard.next_offset == 44 and shard.staging.batch.raw_offset == 44
    assert shard.process_raw(records(47, 1), shard.generation) == 1      # 44-46: an aborted transaction
    assert shard.next_offset == 48


async def test_records_before_where_it_goes_on_are_refused() -> None:
    shard = shard_at(40)
    assert shard.process_raw(records(38, 4), shard.generation) == 0
    assert shard.next_offset == 40 and shard.staging.batch.raw_offset is None


async def test_records_fetched_before_a_rewind_are_refused() -> None:
    shard = shard_at(40)
    fetched_in = shard.generation
    assert shard.process_raw(records(40, 3), fetched_in) == 3
    shard.staging.failed(shard.staging.take(), RuntimeError("commit failed"))
    shard._rewind()                                        # what a failed commit does at once
    assert shard.next_offset == 40 and shard.generation != fetched_in
    assert shard.process_raw(records(43, 2), fetched_in) == 0     # still in hand from before the rewind
    assert shard.process_raw(records(40, 3), shard.generation) == 3   # read again from the committed offset
    assert shard.staging.batch.raw_offset == 43


async def test_a_shard_opened_again_never_takes_its_predecessors_fetch() -> None:
    old = shard_at(40)
    fetched_in = old.generation
    new = shard_at(40)                                     # lost and reopened: a new shard, resumed
    assert new.generation != fetched_in
    assert new.process_raw(records(43, 2), fetched_in) == 0
    assert new.process_raw(records(43, 2), new.generation) == 2


async def test_while_isolating_one_record_at_a_time_moves_it_by_one() -> None:
    shard = shard_at(40)
    shard.breaker.isolate_until = 43
    assert shard.process_raw(records(40, 3), shard.generation) == 1
    assert shard.next_offset == 41
    assert shard.process_raw(records(41, 2), shard.generation) == 0          # its open batch must commit first
