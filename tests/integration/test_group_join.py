"""Joining the consumer group costs one generation per membership change.

aiokafka sends one JoinGroup per configured assignor, each a full join (aio-libs/aiokafka#1168),
so a replica that offered a second protocol made every join two rebalances, and two members whose
joins were out of step could re-trigger each other for minutes with no shard assigned (a rolling
update stalled 150 s that way in CI). The generation the broker hands out counts the rebalances:
written out by hand below for a group the test owns alone.
"""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

from tests.integration.harness import worker_config
from tests.integration.test_webhooks import ENV, accounts
from worker.config import parse_config
from worker.emit import ensure_topics
from worker.group import ShardManager
from worker.shards import Shard

pytestmark = pytest.mark.integration


def generation(manager: ShardManager) -> int:
    assert manager.consumer is not None
    return manager.consumer._coordinator.generation   # what the broker's last JoinGroup answered


async def joined(*managers: ShardManager, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not all(m.restored for m in managers):
        assert time.monotonic() < deadline, [m.snapshot() for m in managers]
        await asyncio.sleep(0.1)


async def test_each_membership_change_is_one_generation(kafka_bootstrap, topic_prefix):
    config = parse_config(worker_config(kafka_bootstrap, topic_prefix, accounts(), shards=4), ENV)
    await ensure_topics(config.kafka)
    async with aiohttp.ClientSession() as session:
        first, second = ShardManager(config, session), ShardManager(config, session)
        try:
            await first.start()
            await joined(first)
            assert generation(first) == 1            # a lone member: one rebalance
            assert first.assigned == {0, 1, 2, 3}
            await second.start()
            await joined(first, second)
            while generation(first) != generation(second):   # the first learns of it by heartbeat
                await asyncio.sleep(0.1)
            assert generation(second) == 2           # one more member: one more rebalance
            assert sorted([len(first.assigned), len(second.assigned)]) == [2, 2]
            await second.stop()                      # LeaveGroup: the first takes all back
            deadline = time.monotonic() + 30
            while first.assigned != {0, 1, 2, 3} or not first.restored:
                assert time.monotonic() < deadline, first.snapshot()
                await asyncio.sleep(0.1)
            assert generation(first) == 3
        finally:
            await second.stop()
            await first.stop()


@pytest.mark.parametrize(("bound", "shards"), [(1, 4), (3, 4)])
async def test_restores_run_at_most_restore_concurrency_at_a_time(kafka_bootstrap, topic_prefix, monkeypatch,
                                                                  bound, shards):
    """A replica assigned every shard at once restores `kafka.restore_concurrency` of them at a time
    (each restore peaks at several times its shard's steady memory). The real restores, observed."""
    running, most = 0, 0
    real_start = Shard.start

    async def observed_start(self: Shard) -> None:
        nonlocal running, most
        running += 1
        most = max(most, running)
        try:
            await asyncio.sleep(0.3)          # long enough for the others to start if they may
            await real_start(self)
        finally:
            running -= 1

    monkeypatch.setattr(Shard, "start", observed_start)
    config = parse_config(worker_config(kafka_bootstrap, topic_prefix, accounts(), shards=shards,
                                        kafka={"restore_concurrency": bound}), ENV)
    await ensure_topics(config.kafka)
    async with aiohttp.ClientSession() as session:
        manager = ShardManager(config, session)
        try:
            await manager.start()
            await joined(manager)
        finally:
            await manager.stop()
    assert len(manager.assigned) == shards
    assert most == bound, f"{most} restores ran at once with restore_concurrency {bound}"
