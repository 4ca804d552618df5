"""esw_raw_group_lag: every replica measures the group's lag of every `_raw` partition, whoever
owns it (if anyone), so that an alert still sees a shard whose owner is gone or stuck re-opening
it (docs/metrics.md). Started by worker.group with the group's consumer."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

from aiokafka import AIOKafkaConsumer, TopicPartition

from worker import metrics
from worker.emit import kafka_error_type
from worker.errors import TIMEOUT

log = logging.getLogger("worker.group")

# How often every replica measures the group's lag of every _raw partition, and how long one
# measurement may take: a slower one (a rebalance, a coordinator moving) is skipped.
GROUP_LAG_EVERY_SECS = 15.0
GROUP_LAG_TIMEOUT_SECS = 10.0


def group_lag(committed: Mapping[int, int | None], beginnings: Mapping[int, int],
              ends: Mapping[int, int]) -> dict[int, int]:
    """Records of each partition of `ends` between the group's committed offset and the end (the
    last stable offset under read_committed). With nothing committed yet, or a committed offset
    retention has deleted since, from the beginning offset: where the consumer starts then too."""
    lags = {}
    for p, end in ends.items():
        done = committed.get(p)
        start = beginnings[p] if done is None else max(done, beginnings[p])
        lags[p] = max(0, end - start)
    return lags


async def measure_periodically(consumer: AIOKafkaConsumer, topic: str, shards: int) -> None:
    """esw_raw_group_lag, every GROUP_LAG_EVERY_SECS: the lag of every shard whoever owns it (if
    anyone), so an alert still sees a shard whose owner is gone or stuck re-opening it. A
    measurement that times out (a rebalance, a coordinator moving, Kafka down: that one is
    EswKafkaUnreachable's) is skipped at debug level and not counted; any other failure is
    counted as a `consume` error. Either way the last values stay until the next measurement."""
    while True:
        try:
            lags = await asyncio.wait_for(measure(consumer, topic, shards), GROUP_LAG_TIMEOUT_SECS)
        except Exception as exc:  # noqa: BLE001 - measured again at the next round
            kind = kafka_error_type(exc)
            if kind == TIMEOUT:
                log.debug("group lag not measured", extra={"error_type": kind})
            else:
                log.warning("group lag not measured", extra={"error_type": kind})
                metrics.error("consume", kind)
        else:
            metrics.raw_group_lag(lags)
        await asyncio.sleep(GROUP_LAG_EVERY_SECS)


async def measure(consumer: AIOKafkaConsumer, topic: str, shards: int) -> dict[int, int]:
    """Every partition, whoever owns it: the group's committed offset of each (any member may
    read them; one small OffsetFetch each, concurrently, as aiokafka asks for one at a time),
    then their beginning and end offsets (one ListOffsets per leader each)."""
    tps = [TopicPartition(topic, p) for p in range(shards)]
    committed = await asyncio.gather(*(consumer.committed(tp) for tp in tps))
    beginnings = await consumer.beginning_offsets(tps)
    ends = await consumer.end_offsets(tps)
    return group_lag({tp.partition: c for tp, c in zip(tps, committed, strict=True)},
                     {tp.partition: o for tp, o in beginnings.items()},
                     {tp.partition: o for tp, o in ends.items()})
