"""esw_raw_group_lag: every replica reports the group's lag of every `_raw` partition, the ones it
does not own included, so the lag alert still sees a shard whose owner processes nothing.

The owner of shard 1 here is a bare consumer of the group (the worker's own assignor, claiming
shard 1) that reads nothing: the lag of that shard is exactly the records written to it, less what
that owner commits. The replica under test owns shard 0 only, until the bare owner leaves.
"""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import OffsetAndMetadata

from tests.integration.harness import worker_config
from tests.integration.test_webhooks import ENV, accounts
from worker import grouplag, metrics
from worker.assign import sticky_assignor
from worker.config import parse_config
from worker.emit import Topics, ensure_topics
from worker.group import ShardManager

pytestmark = pytest.mark.integration

N = 25          # records written to the unprocessed shard
SHARD = 1       # the shard the bare consumer owns


def reported(shard: int) -> float | None:
    return metrics.REGISTRY.get_sample_value("esw_raw_group_lag", {"shard": str(shard)})


async def until(what, timeout: float, *state) -> None:
    deadline = time.monotonic() + timeout
    while not what():
        assert time.monotonic() < deadline, state
        await asyncio.sleep(0.1)


async def test_a_replica_reports_the_lag_of_a_shard_it_does_not_own(kafka_bootstrap, topic_prefix, monkeypatch):
    monkeypatch.setattr(grouplag, "GROUP_LAG_EVERY_SECS", 0.5)
    config = parse_config(worker_config(kafka_bootstrap, topic_prefix, accounts(), shards=2), ENV)
    await ensure_topics(config.kafka)
    raw = Topics.from_config(config.kafka).raw
    tp = TopicPartition(raw, SHARD)
    # Joins first, alone, and claims shard 1 at every join: the assignor leaves it its claim.
    owner = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, group_id=config.kafka.group_id,
                             enable_auto_commit=False, session_timeout_ms=6000, heartbeat_interval_ms=1000,
                             partition_assignment_strategy=(sticky_assignor(lambda: [SHARD]),))
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    async with aiohttp.ClientSession() as session:
        manager = ShardManager(config, session)
        await owner.start()
        await producer.start()
        try:
            owner.subscribe([raw])
            await until(lambda: owner.assignment(), 30, "the bare owner never joined")
            await manager.start()
            await until(lambda: manager.restored and owner.assignment() == {tp}, 30,
                        manager.snapshot(), owner.assignment())
            assert manager.assigned == {0}
            for i in range(N):      # not ours to read: the bare owner leaves them where they are
                await producer.send_and_wait(raw, b"not a raw record %d" % i, partition=SHARD)

            await until(lambda: reported(SHARD) == N and reported(0) == 0, 20, reported(SHARD), reported(0))
            assert SHARD not in manager.shards and metrics.REGISTRY.get_sample_value(
                "esw_raw_lag", {"shard": str(SHARD)}) is None   # the owner's own gauge knows nothing of it

            await owner.commit({tp: OffsetAndMetadata(10, "")})        # the owner's commit counts
            await until(lambda: reported(SHARD) == N - 10, 20, reported(SHARD))

            await owner.stop()      # LeaveGroup: the replica takes shard 1 over and processes the rest
            await until(lambda: SHARD in manager.shards and reported(SHARD) == 0, 40,
                        manager.snapshot(), reported(SHARD))
            assert manager.assigned == {0, SHARD}
        finally:
            await producer.stop()
            await owner.stop()
            await manager.stop()
    assert reported(SHARD) is None      # a stopped replica reports nothing
