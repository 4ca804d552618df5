"""When a shard commits (Shard.run and `_linger`, ShardSink.persist): a batch someone downstream waits
for (events, dead letters, `_raw` records) commits at once or after `batch_linger_ms`; a batch of
state alone (a re-sweep's cursors) waits QUIET_LINGER_SECS to fill, unless output joins it or it
fills. No Kafka: the commit is replaced by a recorder that closes the shard, so `run` returns after
its first commit.

No test turns on a scheduling race: each sets the wait it rules out far beyond the 5 s it gives the
commit (a 30 s quiet linger, or a 30 s `batch_linger_ms`), and asserts only lower bounds on time.
(An earlier version slept 0.15 s and expected the quiet wait to have begun; on a loaded CI machine
both timers fired in one loop turn and the test failed.)"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from types import SimpleNamespace

import attrs

from tests.unit.test_staging import CONFIG, SC, deliver, webhook
from worker import shards
from worker.model import EventType, Observation
from worker.poll.scheduler import Cursor
from worker.poll.sink import CursorChange
from worker.shards import Shard
from worker.shardsink import ShardSink
from worker.staging import Staging
from worker.state import Restored

NOW = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)
LINGER = 0.05     # the harness's kafka.batch_linger_ms
FAR = 30.0        # a wait a test rules out: far beyond the 5 s it gives the commit
GIVEN = 5.0


def make_shard(monkeypatch, quiet: float, linger_ms: int = int(LINGER * 1000)) -> Shard:
    monkeypatch.setattr(shards, "QUIET_LINGER_SECS", quiet)
    assert CONFIG.kafka.batch_linger_ms == LINGER * 1000
    config = attrs.evolve(CONFIG, kafka=attrs.evolve(CONFIG.kafka, batch_linger_ms=linger_ms))
    shard = Shard(0, config, config.accounts, clock=lambda: NOW)
    shard.staging = Staging(config, config.accounts, Restored.empty(), NOW.timestamp())
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
    await asyncio.wait_for(runner, GIVEN)
    return at[0] - start


def cursor_change() -> CursorChange:
    return CursorChange("sc", "2026-11-02|all", Cursor(interval=600.0, offset=100, in_sweep=True))


def delivered(email_id: str) -> Observation:
    return Observation(email_id=email_id, recipient="b@x.test", type=EventType.DELIVERED, reason=None,
                       occurred_at=NOW, provider_status="送达", final=True)


async def test_a_batch_of_state_alone_waits_the_quiet_linger(monkeypatch):
    quiet = 0.4
    shard = make_shard(monkeypatch, quiet)

    async def act():
        ShardSink(shard, SC).persist([cursor_change()])
    assert await committed_after(shard, act) >= quiet - 0.01


async def test_a_batch_with_events_commits_at_once(monkeypatch):
    shard = make_shard(monkeypatch, FAR, linger_ms=int(FAR * 1000))

    async def act():
        sink = ShardSink(shard, SC)
        assert sink.observe([delivered("m1$b@x.test")], NOW) == 1
        sink.persist([cursor_change()])
    assert await committed_after(shard, act) < GIVEN


async def test_raw_records_joining_a_quiet_batch_end_its_wait(monkeypatch):
    shard = make_shard(monkeypatch, FAR)

    async def act():
        ShardSink(shard, SC).persist([cursor_change()])
        for _ in range(200):               # until the quiet wait has begun (after the linger)
            if shard._lingering:
                break
            await asyncio.sleep(0.01)
        assert shard._lingering
        shard.process_raw([SimpleNamespace(offset=0, value=webhook(deliver("m2$b@x.test")))], shard.generation)
    assert await committed_after(shard, act) >= LINGER - 0.01


async def test_raw_records_alone_wait_the_linger_only(monkeypatch):
    shard = make_shard(monkeypatch, FAR)

    async def act():
        shard.process_raw([SimpleNamespace(offset=0, value=webhook(deliver("m3$b@x.test")))], shard.generation)
    assert await committed_after(shard, act) >= LINGER - 0.01


async def test_a_full_quiet_batch_commits_at_once(monkeypatch):
    shard = make_shard(monkeypatch, FAR, linger_ms=int(FAR * 1000))

    async def act():
        shard.staging.batch.size = CONFIG.kafka.batch_max_records
        ShardSink(shard, SC).persist([cursor_change()])
    assert await committed_after(shard, act) < GIVEN
