"""When a shard commits (Shard.run and `_linger`, ShardSink.persist): a batch someone downstream waits
for (events, dead letters, `_raw` records) commits at once or after `batch_linger_ms`; a batch of
state alone (a re-sweep's cursors) waits QUIET_LINGER_SECS to fill, unless output joins it or it
fills. No Kafka: the commit is replaced by a recorder that closes the shard, so `run` returns after
its first commit. QUIET_LINGER_SECS is set to 0.4 s and the harness's linger is 50 ms, so the
moments told apart are hundreds of milliseconds apart."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest

from tests.unit.test_staging import CONFIG, SC, deliver, webhook
from worker import shards
from worker.model import EventType, Observation
from worker.poll.scheduler import Cursor
from worker.poll.sink import CursorChange
from worker.shards import Shard
from worker.staging import Staging
from worker.state import Restored

NOW = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)
QUIET = 0.4
LINGER = 0.05     # the harness's kafka.batch_linger_ms


@pytest.fixture
def shard(monkeypatch) -> Shard:
    monkeypatch.setattr(shards, "QUIET_LINGER_SECS", QUIET)
    assert CONFIG.kafka.batch_linger_ms == LINGER * 1000
    shard = Shard(0, CONFIG, CONFIG.accounts, clock=lambda: NOW)
    shard.staging = Staging(CONFIG, CONFIG.accounts, Restored.empty(), NOW.timestamp())
    shard.resume_at(0)
    return shard


async def committed_after(shard: Shard, act) -> float:
    """Seconds from `act()` (called on the loop, the committer waiting) to the first commit."""
    loop = asyncio.get_running_loop()
    at: list[float] = []

    async def commit() -> None:
        at.append(loop.time())
        shard.closed = True

    shard.commit = commit  # type: ignore[method-assign]
    runner = asyncio.ensure_future(shard.run())
    await asyncio.sleep(0)
    start = loop.time()
    await act()
    await asyncio.wait_for(runner, 5)
    return at[0] - start


def cursor_change() -> CursorChange:
    return CursorChange("sc", "2026-11-02|all", Cursor(interval=600.0, offset=100, in_sweep=True))


def delivered(email_id: str) -> Observation:
    return Observation(email_id=email_id, recipient="b@x.test", type=EventType.DELIVERED, reason=None,
                       occurred_at=NOW, provider_status="送达", final=True)


async def test_a_batch_of_state_alone_waits_the_quiet_linger(shard):
    async def act():
        shard.sink(SC).persist([cursor_change()])
    assert await committed_after(shard, act) >= QUIET - 0.01


async def test_a_batch_with_events_commits_at_once(shard):
    async def act():
        sink = shard.sink(SC)
        assert sink.observe([delivered("m1$b@x.test")], NOW) == 1
        sink.persist([cursor_change()])
    assert await committed_after(shard, act) < LINGER


async def test_raw_records_joining_a_quiet_batch_end_its_wait(shard):
    async def act():
        shard.sink(SC).persist([cursor_change()])
        await asyncio.sleep(0.15)          # past the linger: the quiet wait has begun
        assert shard._lingering
        shard.process_raw([SimpleNamespace(offset=0, value=webhook(deliver("m2$b@x.test")))])
    waited = await committed_after(shard, act)
    assert 0.15 <= waited < QUIET - 0.1


async def test_raw_records_alone_wait_the_linger_only(shard):
    async def act():
        shard.process_raw([SimpleNamespace(offset=0, value=webhook(deliver("m3$b@x.test")))])
    waited = await committed_after(shard, act)
    assert LINGER - 0.01 <= waited < QUIET - 0.1


async def test_a_full_quiet_batch_commits_at_once(shard):
    async def act():
        shard.staging.batch.size = CONFIG.kafka.batch_max_records
        shard.sink(SC).persist([cursor_change()])
    assert await committed_after(shard, act) < LINGER
